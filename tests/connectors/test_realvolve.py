"""The Realvolve connector: request shapes against the vendor doc's own samples
(aioresponses), then reads and writes against the simulator over real HTTP."""
from __future__ import annotations

import math
import re
import time
from collections import Counter
from typing import Any

import anyio
import pytest
from aioresponses import CallbackResult
from tests.aioresp import _Response, aioresponses
from yarl import URL

from migrator.connectors.base import Context
from migrator.connectors.realvolve import CHUNK, Realvolve, phone_digits
from migrator.errors import AuthError, RecordError
from migrator.sandbox.base import Faults
from migrator.sandbox.server import Sandbox, make

BASE = "https://start.realvolve.com"
API = f"{BASE}/utility_api/v1"
TOKEN_URL = f"{BASE}/oauth/token"

# ---- the doc's sample bodies ---------------------------------------------------------

DOC_TOKEN = {"access_token": "xxxxxxxxxxx", "token_type": "bearer", "expires_in": 7200,
             "created_at": 1455665559}
PIC = {"url": None, "large": {"url": None}, "thumb": {"url": None},
       "small_thumb": {"url": None}, "package_image_thumb": {"url": None}}
DOC_CONTACTS = {"success": True, "pages": 1, "data": [
    {"first_name": "Cary", "id": 904144, "last_name": "Siegler", "profile_pic_url": PIC}]}
DOC_NOTE = {  # the add_note sample's "data"
    "bcc_email_address_with_ids": None, "body": None, "cc_email_address_with_ids": None,
    "content": "New note from the API", "created_at": "2016-05-07T01:03:16Z", "creator_id": 615,
    "delivered": True, "delivery_message": None, "email_address_with_ids": None,
    "entity_id": 904139, "entity_type": "Contact", "feed_id": None,
    "feed_timestamp": 1462582996, "from": "realvolve", "guid": None, "id": 1578367,
    "import_session_uuid": None, "mark_for_deletion": False, "matching_import_uuid": None,
    "note_type": None, "pairing_import_uuid": None, "pinned": False, "rendered_at": None,
    "title": None, "to": None, "transitory": False, "updated_at": "2016-05-07T01:03:16Z"}
DOC_DETAIL = {
    "success": True,
    "email_addresses": [{
        "category_id": 1, "email_address": "zeeth@gmail.com", "entity_id": 904134,
        "entity_type": "Contact", "google_type": "work", "id": 537838,
        "import_session_uuid": None, "matching_import_uuid": None, "pairing_import_uuid": None}],
    "addresses": [{
        "address": "3568 Front St, San Diego, CA", "address_line": "Front St",
        "backfill_required": False, "category_id": 1, "country": "US", "county": None,
        "courier_route": None, "created_at": "2016-03-23T22:13:39Z", "direction_prefix": None,
        "entity_id": 904134, "entity_type": "Contact", "geo_city": "San Diego", "geo_state": "CA",
        "google_type": "work", "id": 1009157, "import_session_uuid": None,
        "imported_address_id": None, "latitude": 32.74273, "longitude": -117.165281,
        "matching_import_uuid": None, "name": None, "pairing_import_uuid": None,
        "street_number": "3568", "updated_at": "2016-03-23T22:13:39Z", "zipcode": "92103"}],
    "phone_numbers": [{
        "category_id": 1, "created_at": "2016-03-23T22:13:39Z", "entity_id": 904134,
        "entity_type": "Contact", "google_type": "work", "id": 487491,
        "import_session_uuid": None, "matching_import_uuid": None, "pairing_import_uuid": None,
        "phone_number": "843-697-3932", "phone_type": "phone",
        "plain_phone_number": "+18436973932", "updated_at": "2016-03-23T22:13:39Z"}],
    "tags": [
        {"cached_slug": "hot-buyer-0sx2n7jsp3", "id": 4468, "name": "hot-buyer",
         "rendered_at": "2016-03-08T21:40:07Z"},
        {"cached_slug": "mobile-app-371ftsa6s", "id": 4467, "name": "mobile-app",
         "rendered_at": "2016-03-08T01:04:44Z"}],
    "notes": [],
}
DOC_SOURCES = {"success": True, "data": [
    {"account_id": 143, "created_at": "2015-06-10T09:56:32Z", "id": 160, "is_custom": True,
     "name": "Dev", "updated_at": "2015-06-10T09:56:32Z"},
    {"account_id": 143, "created_at": "2015-08-17T06:31:30Z", "id": 194, "is_custom": False,
     "name": "Events", "updated_at": "2015-08-17T06:31:30Z"},
    {"account_id": 143, "created_at": "2015-08-14T08:09:53Z", "id": 186, "is_custom": True,
     "name": "Gmail", "updated_at": "2015-08-14T08:17:58Z"}]}
DOC_STATUSES = {"success": True, "data": [
    {"created_at": "2015-06-26T07:15:21Z", "id": i, "name": name,
     "updated_at": "2015-06-26T07:15:21Z"}
    for i, name in enumerate(["Suspect", "Prospect", "Lead", "Client", "Past Client"], start=1)]}
DOC_CREATED = {"success": True, "msg": "Contact created successfully.", "contact": {
    "birth_date": None, "cached_slug": "904125-zooth-ziggs", "company": None,
    "contact_status_id": None, "created_at": "2016-03-08T01:04:40Z", "creator_id": 615,
    "first_name": "Zooth", "id": 904125, "last_name": "Ziggs", "profile_pic_url": PIC,
    "source_id": None, "title": None, "updated_at": "2016-03-08T01:04:43Z"}}


def reply(**kwargs: Any) -> CallbackResult:
    return CallbackResult(response_class=_Response, **kwargs)


def api(path: str) -> re.Pattern[str]:
    """A Utility API URL with any query string (utility_api_key is always there)."""
    return re.compile(rf"^{re.escape(API + path)}(\?.*)?$")


def unit_connector(**extra: Any) -> Realvolve:
    settings = {"system": "realvolve", "client_id": "cid", "client_secret": "csecret",
                "utility_api_key": "ukey", "rate_limit": "off", **extra}
    return Realvolve(settings, Context(role="target", concurrency=8))


def calls(m: aioresponses, method: str, path: str) -> list[tuple[URL, Any]]:
    return [(url, call) for (meth, url), made in m.requests.items()
            if meth == method and url.path == URL(BASE + path).path for call in made]


# ---- unit: request shapes ------------------------------------------------------------

async def test_token_request_and_every_call_carry_the_doc_credentials():
    c = unit_connector()
    with aioresponses() as m:
        m.post(TOKEN_URL, payload=DOC_TOKEN)
        m.get(api("/contacts/contact_statuses"), payload=DOC_STATUSES)
        await c.open()
        try:
            await c.prepare([])
        finally:
            await c.close()
        [(url, token_call)] = calls(m, "POST", "/oauth/token")
        assert token_call.kwargs["data"] == {"grant_type": "client_credentials",
                                             "client_id": "cid", "client_secret": "csecret"}
        [(url, call)] = calls(m, "GET", "/utility_api/v1/contacts/contact_statuses")
        assert dict(url.query) == {"utility_api_key": "ukey"}
        assert call.kwargs["headers"]["Authorization"] == "Bearer xxxxxxxxxxx"


async def test_create_sends_creates_params_then_update_contact_for_the_rest_then_notes():
    """Create Contact lists names, source, addresses, e-mails and tags; company, title,
    dates, status and phones are Edit Contact's, so they follow in one update_contact."""
    c = unit_connector()
    record = {"first_name": "Zooth", "last_name": "Ziggs", "company": "Hoverboard Labs, Inc",
              "title": "CEO", "contact_source": "realvolve-app",
              "work_email": "zeeth@gmail.com", "home_email": "usaseth@gmail.comm",
              "work_phone": "+18585555555", "home_phone": "+18436973932",
              "work_address": "3568 Front St, San Diego, CA", "contact_status_id": 3,
              "home_address": "2372 First Ave, San Diego, CA", "birth_date": "1980-03-08",
              "tags": ["mobile-app", "hot-buyer"], "notes": ["First call", "Wants a pool"]}
    order: list[str] = []

    def seen(name: str, payload: dict[str, Any]) -> Any:
        def callback(url: URL, **kwargs: Any) -> CallbackResult:
            order.append(name)
            return reply(payload=payload)
        return callback
    with aioresponses() as m:
        m.post(TOKEN_URL, payload=DOC_TOKEN)
        m.post(api("/contacts"), callback=seen("create", DOC_CREATED))
        m.post(api("/contacts/update_contact"),
               callback=seen("update", {"success": True, "data": DOC_CREATED["contact"]}))
        m.post(api("/contacts/add_note"), callback=seen("note", {"success": True, "data": DOC_NOTE}),
               repeat=True)
        await c.open()
        try:
            result = await c.write("contacts", record, source_id="s1")
        finally:
            await c.close()
        [(url, create)] = calls(m, "POST", "/utility_api/v1/contacts")
        assert dict(url.query) == {"utility_api_key": "ukey"}
        assert create.kwargs["data"] == {
            "contact[primary][first_name]": "Zooth",
            "contact[primary][last_name]": "Ziggs",
            "contact[primary][contact_source]": "realvolve-app",
            "contact[details][email_address][work_email]": "zeeth@gmail.com",
            "contact[details][email_address][home_email]": "usaseth@gmail.comm",
            "contact[details][address][work_address]": "3568 Front St, San Diego, CA",
            "contact[details][address][home_address]": "2372 First Ave, San Diego, CA",
            "contact[details][tags]": "mobile-app, hot-buyer",
        }
        [(_, fill)] = calls(m, "POST", "/utility_api/v1/contacts/update_contact")
        assert fill.kwargs["data"] == {
            "contact_id": "904125",
            "contact[primary][company]": "Hoverboard Labs, Inc",
            "contact[primary][title]": "CEO",
            "contact[primary][contact_status_id]": "3",
            "contact[primary][birth_date]": "1980-03-08",
            "contact[details][phone_number][work_phone]": "8585555555",
            "contact[details][phone_number][home_phone]": "8436973932",
        }
        notes = [call.kwargs["data"] for _, call in calls(m, "POST", "/utility_api/v1/contacts/add_note")]
        assert notes == [{"contact_id": "904125", "note_content": "First call"},
                         {"contact_id": "904125", "note_content": "Wants a pool"}]
    assert order == ["create", "update", "note", "note"]
    assert (result.target_id, result.action, result.requests) == ("904125", "created",
                                                                  {"create": 1, "fill": 1, "note": 2})


async def test_a_create_with_only_creates_fields_sends_no_update_and_the_plan_counts_fills():
    c = unit_connector()
    only_create = {"first_name": "Zooth", "work_email": "zeeth@gmail.com", "tags": ["vip"]}
    with aioresponses() as m:
        m.post(TOKEN_URL, payload=DOC_TOKEN)
        m.post(api("/contacts"), payload=DOC_CREATED)
        await c.open()
        try:
            result = await c.write("contacts", only_create, source_id="s1")
        finally:
            await c.close()
        assert not calls(m, "POST", "/utility_api/v1/contacts/update_contact")
    assert result.requests == {"create": 1}
    planner = await c.write_planner("contacts", None)
    for record in (only_create, {**only_create, "company": "Acme"}, {**only_create, "home_phone": "+18436973932"},
                   {**only_create, "title": ""}):
        planner.add(record)
    assert dict(planner.counts) == {"create": 4, "fill": 2}


async def test_a_refused_fill_names_the_created_contact_and_its_fields():
    c = unit_connector()
    with aioresponses() as m:
        m.post(TOKEN_URL, payload=DOC_TOKEN)
        m.post(api("/contacts"), payload=DOC_CREATED)
        m.post(api("/contacts/update_contact"), status=422, payload={
            "success": False, "msg": "contact[details][phone_number][work_phone]: '123' is not a phone number"})
        await c.open()
        try:
            with pytest.raises(RecordError) as err:
                await c.write("contacts", {"first_name": "Zooth", "company": "Acme", "work_phone": "123",
                                           "notes": ["hi"]}, source_id="s1")
        finally:
            await c.close()
        assert not calls(m, "POST", "/utility_api/v1/contacts/add_note")
    reason = err.value.reason
    assert "contact 904125 was created" in reason and "company, work_phone" in reason
    assert "is not a phone number" in reason and "notes were not added" in reason
    assert "create the contact again" in reason
    assert err.value.rule == "partial" and err.value.field == "work_phone"


@pytest.mark.parametrize("mode, expect_overwrite", [("append", False), ("overwrite", True)])
async def test_update_sends_contact_id_and_overwrites_tags_only_when_asked(mode, expect_overwrite):
    c = unit_connector(tags=mode)
    with aioresponses() as m:
        m.post(TOKEN_URL, payload=DOC_TOKEN)
        m.post(api("/contacts/update_contact"), payload={"success": True, "data": DOC_CREATED["contact"]})
        await c.open()
        try:
            result = await c.write("contacts", {"last_name": "Ziggs", "tags": ["vip"]},
                                   source_id="s1", target_id="1045454")
        finally:
            await c.close()
        [(_, update)] = calls(m, "POST", "/utility_api/v1/contacts/update_contact")
        expected = {"contact_id": "1045454", "contact[primary][last_name]": "Ziggs",
                    "contact[details][tags]": "vip"}
        if expect_overwrite:
            expected["contact[details][tag_list]"] = "overwrite"
        assert update.kwargs["data"] == expected
    assert (result.target_id, result.action) == ("1045454", "updated")


def test_phones_become_the_docs_digits():
    assert phone_digits("+18436973932") == "8436973932"
    assert phone_digits("+442071838750") == "442071838750"
    assert phone_digits("(858) 555-5555") == "8585555555"


async def test_list_row_fields_are_merged_with_the_details_arrays_and_status_and_source_names():
    """Contact-level fields come from the list row (update takes "any available field
    that appears in the GET /contacts calls"); the detail adds its five arrays only."""
    c = unit_connector()
    contact = {**DOC_CREATED["contact"], "id": 904144, "first_name": "Cary", "last_name": "Siegler",
               "contact_status_id": 3, "source_id": 194, "company": "Hoverboard Labs, Inc"}
    detail = {**DOC_DETAIL, "notes": [{**DOC_NOTE, "entity_id": 904144}]}
    with aioresponses() as m:
        m.post(TOKEN_URL, payload=DOC_TOKEN)
        m.get(api("/contacts"), payload={**DOC_CONTACTS, "data": [contact]}, repeat=True)
        m.get(api("/contacts/contact_detail"), payload=detail, repeat=True)
        m.get(api("/contacts/contact_statuses"), payload=DOC_STATUSES)
        m.get(api("/contacts/contact_sources"), payload=DOC_SOURCES)
        await c.open()
        try:
            info = await c.info("contacts")
            pages = [p async for p in c.pages("contacts", None)]
            notes = [p async for p in c.pages("notes", None)]
        finally:
            await c.close()
        assert len(calls(m, "GET", "/utility_api/v1/contacts")) == 2  # info's page 1 reused; notes' own
        [(url, _)] = calls(m, "GET", "/utility_api/v1/contacts/contact_statuses")
        detail_urls = [u for u, _ in calls(m, "GET", "/utility_api/v1/contacts/contact_detail")]
        assert {dict(u.query)["contact_id"] for u in detail_urls} == {"904144"}
    assert info.total == 1
    [page] = pages
    assert page.cursor is None
    [rec] = page.records
    assert rec.source_id == "904144"
    d = rec.data
    assert d["first_name"] == "Cary" and d["profile_pic_url"] == PIC
    assert d["email_addresses"][0]["email_address"] == "zeeth@gmail.com"
    assert d["phone_numbers"][0]["plain_phone_number"] == "+18436973932"
    assert d["addresses"][0]["zipcode"] == "92103"
    assert [t["name"] for t in d["tags"]] == ["hot-buyer", "mobile-app"]
    assert d["company"] == "Hoverboard Labs, Inc" and d["contact_status_id"] == 3
    assert (d["contact_status"], d["contact_source"]) == ("Lead", "Events")
    assert "contact" not in d
    [note] = notes[0].records
    assert note.source_id == "1578367"
    assert note.data["contact_id"] == 904144 and note.data["content"] == "New note from the API"


async def test_a_401_makes_one_token_refresh_for_every_concurrent_caller():
    c = unit_connector()
    issued: list[str] = []

    def token(url, **kwargs):
        issued.append(f"t{len(issued) + 1}")
        return reply(payload={**DOC_TOKEN, "access_token": issued[-1]})

    def detail(url, **kwargs):
        if kwargs["headers"]["Authorization"] == "Bearer t1":
            return reply(status=401, body="")
        return reply(payload={**DOC_DETAIL, "contact": {"id": 904144}})

    with aioresponses() as m:
        m.post(TOKEN_URL, callback=token, repeat=True)
        m.get(api("/contacts/contact_statuses"), payload=DOC_STATUSES)
        m.get(api("/contacts/contact_detail"), callback=detail, repeat=True)
        await c.open()
        try:
            await c.prepare([])
            assert issued == ["t1"]
            answers: list[int] = []

            async def one(i: int) -> None:
                resp = await c.http.request("GET", "/utility_api/v1/contacts/contact_detail",
                                            params={"contact_id": i}, kind="detail")
                answers.append(resp.status)

            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(one, i)
        finally:
            await c.close()
    assert answers == [200] * 20
    assert issued == ["t1", "t2"]
    assert c.request_stats()["requests"]["auth"] == 2


async def test_success_false_on_http_200_is_a_record_error_with_the_servers_message():
    c = unit_connector()
    msg = "contact[details][email_address][work_email]: 'zeeth' is not a valid e-mail address"
    with aioresponses() as m:
        m.post(TOKEN_URL, payload=DOC_TOKEN)
        m.post(api("/contacts"), status=200, payload={"success": False, "msg": msg})
        await c.open()
        try:
            with pytest.raises(RecordError) as err:
                await c.write("contacts", {"first_name": "Zooth", "work_email": "zeeth"}, source_id="s1")
        finally:
            await c.close()
    assert err.value.reason == msg and err.value.field == "work_email" and err.value.status == 200


async def test_a_note_failing_after_the_create_names_the_created_contact():
    c = unit_connector()
    with aioresponses() as m:
        m.post(TOKEN_URL, payload=DOC_TOKEN)
        m.post(api("/contacts"), payload=DOC_CREATED)
        m.post(api("/contacts/add_note"), payload={"success": True, "data": DOC_NOTE})
        m.post(api("/contacts/add_note"), status=422,
               payload={"success": False, "msg": "Content is too long"})
        await c.open()
        try:
            with pytest.raises(RecordError) as err:
                await c.write("contacts", {"first_name": "Zooth", "notes": ["ok", "x" * 9000]},
                              source_id="s1")
        finally:
            await c.close()
    reason = err.value.reason
    assert "contact 904125 was created" in reason and "note 2 of 2 failed" in reason
    assert "Content is too long" in reason and "note 1 was added" in reason
    assert err.value.rule == "partial" and err.value.field == "notes"


async def test_refused_client_credentials_name_their_variables():
    c = unit_connector()
    with aioresponses() as m:
        m.post(TOKEN_URL, status=401, payload={"error": "invalid_client", "error_description": "x"})
        await c.open()
        try:
            with pytest.raises(AuthError) as err:
                await c.prepare([])
        finally:
            await c.close()
    assert "REALVOLVE_CLIENT_ID" in str(err.value) and "REALVOLVE_CLIENT_SECRET" in str(err.value)
    assert "csecret" not in str(err.value)


def test_schema_requires_a_name_and_takes_the_docs_field_names():
    contacts = Realvolve.schemas()["contacts"]
    assert [v.rule for v in contacts.validate({"company": "Acme"})] == ["any_of"]
    assert contacts.validate({"last_name": "Ziggs", "tags": ["vip"], "notes": ["hi"],
                              "work_email": "zeeth@gmail.com", "home_phone": "+18436973932",
                              "birth_date": "1980-03-08"}) == []
    # The doc's calls take a work and a home phone only: no mobile_phone field to map to.
    assert "mobile_phone" not in contacts.fields
    assert {v.field for v in contacts.validate({"first_name": "A", "work_email": "nope",
                                                "birth_date": "03/08/1980"})} == {"work_email", "birth_date"}
    notes = Realvolve.schemas()["notes"]
    assert {v.field for v in notes.validate({})} == {"contact_id", "note_content"}


# ---- integration: the simulator over real HTTP ------------------------------------------

def sim_connector(sim, *, concurrency: int = 16, **extra: Any) -> Realvolve:
    cred = sim.credentials()
    settings = {"system": "realvolve", "client_id": cred["REALVOLVE_CLIENT_ID"],
                "client_secret": cred["REALVOLVE_CLIENT_SECRET"],
                "utility_api_key": cred["REALVOLVE_UTILITY_API_KEY"],
                "base_url": sim.base_url, "rate_limit": "off", **extra}
    since = settings.pop("since", None)
    return Realvolve(settings, Context(concurrency=concurrency, since=since))


def spy_on_requests(c: Realvolve) -> Counter:
    """Peak number of requests in flight at once, by kind."""
    inflight: Counter = Counter()
    peak: Counter = Counter()
    original = c.http.request

    async def spy(method: str, path: str, **kwargs: Any):
        kind = kwargs.get("kind", "read")
        inflight[kind] += 1
        peak[kind] = max(peak[kind], inflight[kind])
        try:
            return await original(method, path, **kwargs)
        finally:
            inflight[kind] -= 1

    c.http.request = spy  # type: ignore[method-assign]
    return peak


async def test_reads_2100_contacts_in_three_concurrent_pages_in_order_with_details():
    sim = make("realvolve", contacts=2100, seed=3, page_size=1000, limit=False)
    seeded = sim.inspect_records("contacts")
    statuses = {s["id"]: s["name"] for s in DOC_STATUSES["data"]}
    sources = {s["id"]: s["name"] for s in sim.inspect_records("contact_sources")}
    async with Sandbox({"realvolve": sim}):
        c = sim_connector(sim)
        await c.open()
        try:
            peak = spy_on_requests(c)
            info = await c.info("contacts")
            pages = [p async for p in c.pages("contacts", None)]
            stats = c.request_stats()
        finally:
            await c.close()
    assert info.total == 2100
    # Handed on CHUNK at a time as details arrive; a chunk short of its page's end resumes at that page.
    def parts(before: int, rows: int, end: Any) -> list[Any]:
        n = rows // CHUNK
        return [{"page": before, "part": k} for k in range(1, n)] + [end]
    assert [p.cursor for p in pages] == (
        parts(0, 1000, {"page": 1}) + parts(1, 1000, {"page": 2}) + parts(2, 100, None))
    assert [len(p.records) for p in pages] == [CHUNK] * (2100 // CHUNK)
    records = [r for p in pages for r in p.records]
    assert [r.source_id for r in records] == [str(s["id"]) for s in seeded]
    assert peak["page"] >= 2 and peak["detail"] > 1
    assert stats["requests"]["detail"] == 2100 and stats["requests"]["page"] <= 4
    for rec, want in zip(records, seeded):
        d = rec.data
        assert d["email_addresses"] == want["email_addresses"]
        assert d["phone_numbers"] == want["phone_numbers"] and d["notes"] == want["notes"]
        assert [t["name"] for t in d["tags"]] == want["tag_names"]
        assert d["company"] == want["company"] and d["birth_date"] == want["birth_date"]
        assert d["contact_status"] == statuses[want["contact_status_id"]]
        assert d["contact_source"] == sources[want["source_id"]]
    assert sim.tokens_issued == 1


async def test_rows_with_only_the_doc_samples_names_still_read_every_contact():
    """The doc's list sample shows first_name, id, last_name and profile_pic_url only. The
    connector relies on nothing more: every contact arrives with its details, and the
    fields no row carried are absent (validate's fill rates show them), never an error."""
    sim = make("realvolve", contacts=25, seed=4, limit=False, list_fields="sample")
    seeded = sim.inspect_records("contacts")
    async with Sandbox({"realvolve": sim}):
        c = sim_connector(sim)
        await c.open()
        try:
            await c.info("contacts")
            records = [r for p in [p async for p in c.pages("contacts", None)] for r in p.records]
        finally:
            await c.close()
    assert [r.source_id for r in records] == [str(s["id"]) for s in seeded]
    assert all(r.error is None for r in records)
    for rec, want in zip(records, seeded):
        d = rec.data
        assert (d["first_name"], d["last_name"]) == (want["first_name"], want["last_name"])
        assert d["email_addresses"] == want["email_addresses"] and d["notes"] == want["notes"]
        assert "company" not in d and "birth_date" not in d
        assert d["contact_status"] is None and d["contact_source"] is None


async def test_notes_properties_resume_and_since():
    sim = make("realvolve", contacts=45, seed=11, page_size=20, limit=False)
    seeded = sim.inspect_records("contacts")
    cutoff = sorted(s["updated_at"] for s in seeded)[len(seeded) // 2]
    async with Sandbox({"realvolve": sim}):
        c = sim_connector(sim)
        await c.open()
        try:
            notes = [r for p in [p async for p in c.pages("notes", None)] for r in p.records]
            props = [r for p in [p async for p in c.pages("properties", None)] for r in p.records]
            resumed = [p async for p in c.pages("contacts", {"page": 2})]
        finally:
            await c.close()
        d = sim_connector(sim, since=cutoff)
        await d.open()
        try:
            recent = [r.source_id for p in [p async for p in d.pages("contacts", None)] for r in p.records]
        finally:
            await d.close()
    want_notes = sim.inspect_records("notes")
    assert want_notes and sorted(r.source_id for r in notes) == sorted(str(n["id"]) for n in want_notes)
    assert all(r.data["contact_id"] == r.data["entity_id"] for r in notes)
    want_props = sim.inspect_records("properties")
    assert [r.source_id for r in props] == [str(p["id"]) for p in want_props]
    assert props[0].data["address_line"] == want_props[0]["address_line"]
    assert [(p.cursor, len(p.records)) for p in resumed] == [(None, 5)]
    assert [r.source_id for r in resumed[0].records] == [str(s["id"]) for s in seeded[40:]]
    assert recent == [str(s["id"]) for s in seeded if s["updated_at"] >= cutoff]
    assert 0 < len(recent) < len(seeded)


async def test_creates_contacts_with_tags_and_notes_then_a_note_and_an_update():
    sim = make("realvolve", contacts=2, seed=1, limit=False)
    people = [
        {"first_name": "Ada", "last_name": "Lovelace", "work_email": "ada@example.org",
         "home_phone": "+18436973932", "home_address": "12 Elm St, Austin, TX 78701",
         "contact_source": "Zillow", "tags": ["investor", "vip"], "notes": ["met at open house", "call in May"]},
        {"last_name": "Solo", "company": "Engines Ltd", "title": "Analyst", "birth_date": "1815-12-10"},
    ]
    async with Sandbox({"realvolve": sim}):
        c = sim_connector(sim, tags="overwrite")
        await c.open()
        try:
            await c.prepare([])
            results = [await c.write("contacts", p, source_id=str(i)) for i, p in enumerate(people)]
            note = await c.write("notes", {"contact_id": results[1].target_id, "note_content": "hello"},
                                 source_id="n1")
            updated = await c.write("contacts", {"first_name": "Ada", "tags": ["seller"]},
                                    source_id="0", target_id=results[0].target_id)
        finally:
            await c.close()
    stored = {str(s["id"]): s for s in sim.inspect_records("contacts")}
    ada, solo = stored[results[0].target_id], stored[results[1].target_id]
    assert results[0].requests == {"create": 1, "fill": 1, "note": 2} and updated.action == "updated"
    assert results[1].requests == {"create": 1, "fill": 1}
    assert (ada["first_name"], ada["last_name"]) == ("Ada", "Lovelace")
    assert [e["email_address"] for e in ada["email_addresses"]] == ["ada@example.org"]
    assert [p["plain_phone_number"] for p in ada["phone_numbers"]] == ["+18436973932"]
    assert ada["addresses"][0]["zipcode"] == "78701"
    assert [n["content"] for n in ada["notes"]] == ["met at open house", "call in May"]
    assert ada["tag_names"] == ["seller"]
    assert (solo["company"], solo["title"], solo["birth_date"]) == ("Engines Ltd", "Analyst", "1815-12-10")
    assert [n["content"] for n in solo["notes"]] == ["hello"]
    assert note.target_id == str(solo["notes"][0]["id"])
    assert len(stored) == 4


async def test_a_short_lived_token_is_renewed_about_once_per_life_during_a_long_read():
    sim = make("realvolve", contacts=140, seed=4, page_size=50, limit=False,
               faults=Faults(token_ttl=1.0))
    async with Sandbox({"realvolve": sim}):
        c = sim_connector(sim, concurrency=8, rate_limit={"requests": 30, "per": 1})
        await c.open()
        started = time.monotonic()
        try:
            records = [r for p in [p async for p in c.pages("contacts", None)] for r in p.records]
        finally:
            await c.close()
        elapsed = time.monotonic() - started
    assert len(records) == 140 and all(r.error is None for r in records)
    assert elapsed > 2.5
    assert 3 <= sim.tokens_issued <= math.ceil(elapsed / 0.9) + 1


@pytest.mark.parametrize("wrong, variable", [("REALVOLVE_CLIENT_SECRET", "REALVOLVE_CLIENT_SECRET"),
                                             ("REALVOLVE_UTILITY_API_KEY", "REALVOLVE_UTILITY_API_KEY")])
async def test_a_refused_credential_is_named_never_shown(wrong, variable):
    sim = make("realvolve", contacts=1, seed=1, limit=False)
    async with Sandbox({"realvolve": sim}):
        setting = {"REALVOLVE_CLIENT_SECRET": "client_secret",
                   "REALVOLVE_UTILITY_API_KEY": "utility_api_key"}[wrong]
        c = sim_connector(sim, **{setting: "not-the-right-one"})
        await c.open()
        try:
            with pytest.raises(AuthError) as err:
                await c.info("contacts")
        finally:
            await c.close()
    assert variable in str(err.value) and "not-the-right-one" not in str(err.value)
    assert sim.tokens_issued <= 1


async def test_chunks_of_a_page_resume_at_their_page():
    """A crash after the first chunk of a page resumes at that page: the chunk's cursor
    names the page before it, so nothing of the page is skipped (settled ones the engine
    skips by the checkpoint)."""
    sim = make("realvolve", contacts=CHUNK * 5 // 2, seed=5, page_size=CHUNK * 2, limit=False)
    seeded = [str(s["id"]) for s in sim.inspect_records("contacts")]
    async with Sandbox({"realvolve": sim}):
        c = sim_connector(sim)
        await c.open()
        try:
            pages = [p async for p in c.pages("contacts", None)]
            resumed = [p async for p in c.pages("contacts", pages[0].cursor)]
        finally:
            await c.close()
    assert [(p.cursor, len(p.records)) for p in pages] == [
        ({"page": 0, "part": 1}, CHUNK), ({"page": 1}, CHUNK), (None, CHUNK // 2)]
    assert [r.source_id for p in resumed for r in p.records] == seeded
