"""The REI Software simulator against its doc and HighLevel's notes, over real HTTP."""
from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import aiohttp
import pytest

from migrator.sandbox.base import DailyQuota, Faults
from migrator.sandbox.rei import ReiSim
from migrator.sandbox.server import Sandbox

DOC_BODY = {
    "email": "john@deo.com", "phone": "+18887324197", "firstName": "John", "lastName": "Deo",
    "name": "John Deo", "dateOfBirth": "1990-09-25", "address1": "3535 1st St N",
    "city": "Dolomite", "state": "AL", "country": "US", "postalCode": "35061",
    "companyName": "DGS VolMAX", "website": "35061", "tags": ["aute consequat ad ea", "dolor sed"],
    "source": "public api",
}
CONTACT_KEYS = {"id", "locationId", "firstName", "lastName", "contactName", "email", "emailLowerCase",
                "phone", "companyName", "address1", "city", "state", "postalCode", "country",
                "dateOfBirth", "source", "tags", "dnd", "dateAdded", "dateUpdated", "customField",
                "fingerprint", "timezone", "type"}
META_KEYS = {"total", "nextPageUrl", "startAfterId", "startAfter", "currentPage", "nextPage", "prevPage"}


class Client:
    """An aiohttp session pointed at one simulator, authorised unless told otherwise."""

    def __init__(self, sim: ReiSim, session: aiohttp.ClientSession):
        self.sim, self.session = sim, session
        self.auth = {"Authorization": f"Bearer {sim.credentials()['REI_API_KEY']}"}

    async def call(self, method: str, path: str, *, auth: bool = True, **kw: Any) -> tuple[int, Any, Any]:
        headers = {**(self.auth if auth else {}), **kw.pop("headers", {})}
        url = path if path.startswith("http") else self.sim.base_url + path
        async with self.session.request(method, url, headers=headers, **kw) as r:
            raw = await r.read()
            body = await r.json(content_type=None) if raw else None
            return r.status, body, r.headers


@asynccontextmanager
async def serve(**kw: Any) -> AsyncIterator[Client]:
    kw.setdefault("contacts", 30)
    sim = ReiSim(**kw)
    async with Sandbox({"rei": sim}), aiohttp.ClientSession() as session:
        yield Client(sim, session)


def field_id(sim: ReiSim, name: str) -> str:
    return next(f["id"] for f in sim.custom_fields if f["name"] == name)


async def test_doc_samples_create_get_update_delete() -> None:
    async with serve() as c:
        spouse = field_id(c.sim, "Spouse Name")
        status, body, _ = await c.call("POST", "/v1/contacts/", json={**DOC_BODY, "customField": {spouse: "Jane"}})
        assert status == 200 and set(body) == {"contact"}
        contact = body["contact"]
        assert CONTACT_KEYS <= set(contact)
        assert len(contact["id"]) == 20 and contact["id"].isalnum()
        assert contact["locationId"] == c.sim.location_id and contact["type"] == "lead"
        assert contact["emailLowerCase"] == "john@deo.com" and contact["phone"] == "+18887324197"
        assert contact["contactName"] == "john deo" and contact["dateOfBirth"] == "1990-09-25"
        assert contact["customField"] == [{"id": spouse, "value": "Jane"}]
        assert contact["tags"] == ["aute consequat ad ea", "dolor sed"]
        assert contact["dateAdded"].endswith("Z") and len(contact["dateAdded"]) == 24
        cid = contact["id"]

        status, body, _ = await c.call("GET", f"/v1/contacts/{cid}")
        assert status == 200 and body == {"contact": contact}

        status, body, _ = await c.call("PUT", f"/v1/contacts/{cid}",
                                       json={"email": "John@Deo.com", "city": "Austin", "tags": ["tag1"]})
        assert status == 200 and body["contact"]["city"] == "Austin"
        assert body["contact"]["tags"] == ["tag1"]  # PUT replaces tags
        assert body["contact"]["email"] == "John@Deo.com" and body["contact"]["emailLowerCase"] == "john@deo.com"
        assert body["contact"]["dateUpdated"] >= contact["dateUpdated"]

        status, body, _ = await c.call("DELETE", f"/v1/contacts/{cid}")
        assert status == 200 and body is None
        for method in ("GET", "DELETE"):
            status, body, _ = await c.call(method, f"/v1/contacts/{cid}")
            assert status == 404 and body == {"msg": "Contact not found"}
        status, _, _ = await c.call("PUT", f"/v1/contacts/{cid}", json={"email": "a@b.co"})
        assert status == 404
        assert c.sim.stats.creates_by_key == {"john@deo.com": 1}


async def test_custom_fields_endpoint() -> None:
    async with serve() as c:
        status, body, _ = await c.call("GET", "/v1/custom-fields/")
        assert status == 200
        names = [f["name"] for f in body["customFields"]]
        assert names == ["Spouse Name", "Anniversary", "Lead Score", "Property Interest", "Notes"]
        assert body["customFields"][0]["fieldKey"] == "contact.spouse_name"
        assert all(f["dataType"] == "TEXT" and len(f["id"]) == 20 for f in body["customFields"])
        assert body["customFields"] == c.sim.inspect_records("custom_fields")


async def test_credentials_missing_wrong_or_other_scheme_get_401() -> None:
    async with serve() as c:
        for headers in ({}, {"Authorization": "Bearer nope"},
                        {"Authorization": f"Basic {c.sim.api_key}"}, {"Authorization": c.sim.api_key}):
            status, body, _ = await c.call("GET", "/v1/contacts/", auth=False, headers=headers)
            assert status == 401 and body == {"msg": "Api key is invalid."}
        status, _, _ = await c.call("GET", "/v1/contacts/", auth=False,
                                    headers={"Authorization": f"bearer {c.sim.api_key}"})
        assert status == 200
        assert c.sim.stats.unauthorized == 4


async def _walk(c: Client, order: str, limit: int = 7, **extra: str) -> tuple[list[dict], list[dict]]:
    """Follow the cursor from the first page; returns (contacts, metas)."""
    params = {"limit": str(limit), "order": order, **extra}
    seen, metas = [], []
    status, body, _ = await c.call("GET", "/v1/contacts/", params=params)
    while True:
        assert status == 200
        seen += body["contacts"]
        metas.append(body["meta"])
        if body["meta"]["nextPageUrl"] is None:
            return seen, metas
        status, body, _ = await c.call("GET", body["meta"]["nextPageUrl"])


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_cursor_paging_returns_each_contact_once_across_timestamp_ties(order: str) -> None:
    async with serve() as c:
        seen, metas = await _walk(c, order)
        ids = [x["id"] for x in seen]
        assert len(ids) == 30 and set(ids) == {x["id"] for x in c.sim.inspect_records("contacts")}
        keys = [(x["dateAdded"], x["id"]) for x in seen]
        assert keys == sorted(keys, reverse=order == "desc")
        added = [x["dateAdded"] for x in seen]
        boundaries = [i for i in range(7, 30, 7) if added[i - 1] == added[i]]
        assert boundaries, "a timestamp tie must straddle a page boundary"
        assert [m["currentPage"] for m in metas] == [1, 2, 3, 4, 5]
        assert [m["prevPage"] for m in metas] == [None, 1, 2, 3, 4]
        assert [m["nextPage"] for m in metas] == [2, 3, 4, 5, None]
        assert all(set(m) == META_KEYS and m["total"] == 30 for m in metas)
        last = metas[-1]
        assert last["startAfter"] is None and last["startAfterId"] is None
        first = metas[0]
        assert first["startAfterId"] == ids[6]
        assert "limit=7" in first["nextPageUrl"] and f"order={order}" in first["nextPageUrl"]

        # A cursor at the very last record gives an empty page.
        status, body, _ = await c.call("GET", "/v1/contacts/", params={
            "order": order, "startAfterId": seen[-1]["id"],
            "startAfter": str(c.sim._ts[seen[-1]["id"]][0])})
        assert status == 200 and body["contacts"] == []
        assert body["meta"]["nextPageUrl"] is None and body["meta"]["total"] == 30


async def test_paging_defaults_cap_deprecated_page_and_sort_by_updated() -> None:
    async with serve(contacts=130, limit=False) as c:
        status, body, _ = await c.call("GET", "/v1/contacts/")
        assert status == 200 and len(body["contacts"]) == 20 and body["meta"]["total"] == 130
        added = [x["dateAdded"] for x in body["contacts"]]
        assert added == sorted(added, reverse=True)  # default order desc by dateAdded

        status, body, _ = await c.call("GET", "/v1/contacts/", params={"limit": "500"})
        assert len(body["contacts"]) == 100

        pages = []
        for page in (1, 2, 3):
            _, body, _ = await c.call("GET", "/v1/contacts/", params={"limit": "50", "page": str(page)})
            pages.append([x["id"] for x in body["contacts"]])
            assert body["meta"]["currentPage"] == page
        assert [len(p) for p in pages] == [50, 50, 30]
        _, body, _ = await c.call("GET", "/v1/contacts/", params={"limit": "50", "page": "4"})
        assert body["contacts"] == [] and body["meta"]["currentPage"] == 4 and body["meta"]["nextPage"] is None
        assert len(set(sum(pages, []))) == 130

        oldest = pages[2][-1]
        await c.call("PUT", f"/v1/contacts/{oldest}", json={"email": "fresh@example.com"})
        _, body, _ = await c.call("GET", "/v1/contacts/", params={"sortBy": "date_updated", "limit": "1"})
        assert body["contacts"][0]["id"] == oldest
        seen, _ = await _walk(c, "asc", limit=40, sortBy="date_updated")
        updated = [(x["dateUpdated"], x["id"]) for x in seen]
        assert len(seen) == 130 and updated == sorted(updated)


@pytest.mark.parametrize("params,field", [
    ({"limit": "ten"}, "limit"), ({"limit": "0"}, "limit"), ({"sortBy": "name"}, "sortBy"),
    ({"order": "up"}, "order"), ({"startAfter": "yesterday", "startAfterId": "x"}, "startAfter"),
    ({"startAfter": "1603870249758"}, "startAfterId"), ({"startAfterId": "abc"}, "startAfter"),
    ({"page": "0"}, "page"),
])
async def test_list_parameter_errors_are_422(params: dict[str, str], field: str) -> None:
    async with serve(contacts=3) as c:
        status, body, _ = await c.call("GET", "/v1/contacts/", params=params)
        assert status == 422 and field in body


async def test_query_searches_name_email_phone_tags_company() -> None:
    async with serve(contacts=40) as c:
        people = c.sim.inspect_records("contacts")
        target = next(p for p in people if p["companyName"] and p["tags"])
        digits = target["phone"][2:]
        probes = [target["lastName"].upper(), target["email"], f"({digits[:3]}) {digits[3:6]}-{digits[6:]}",
                  target["companyName"].lower(), target["tags"][0]]
        for query in probes:
            status, body, _ = await c.call("GET", "/v1/contacts/", params={"query": query, "limit": "100"})
            assert status == 200 and target["id"] in [x["id"] for x in body["contacts"]], query
            assert body["meta"]["total"] == len(body["contacts"]) < 40
        _, body, _ = await c.call("GET", "/v1/contacts/", params={"query": "zzz-no-such-thing"})
        assert body["contacts"] == [] and body["meta"]["total"] == 0


@pytest.mark.parametrize("payload,key", [
    ({"firstName": "No", "lastName": "Keys"}, "msg"),
    ({"email": "john@deo.com", "phone": "555-CALL-NOW"}, "phone"),
    ({"phone": "12345"}, "phone"),
    ({"email": "not-an-email"}, "email"),
    ({"email": ""}, "email"),
    ({"email": "a@b.co", "customField": {"unknownFieldId00000": "x"}}, "customField"),
    ({"email": "a@b.co", "customField": ["not", "an", "object"]}, "customField"),
    ({"email": "a@b.co", "tags": "vip"}, "tags"),
    ({"email": "a@b.co", "dnd": "yes"}, "dnd"),
    ({"email": "a@b.co", "dateOfBirth": "25/09/1990"}, "dateOfBirth"),
    ({"email": "a@b.co", "timezone": "Mars/Olympus"}, "timezone"),
    ({"email": "a@b.co", "country": "USA"}, "country"),
    ({"email": "a@b.co", "postalCode": 35061}, "postalCode"),
    ({"email": "a@b.co", "firstName": None}, "firstName"),
])
async def test_create_validation_errors_are_422(payload: dict[str, Any], key: str) -> None:
    async with serve(contacts=2) as c:
        status, body, _ = await c.call("POST", "/v1/contacts/", json=payload)
        assert status == 422 and key in body
        if key == "msg":
            assert body == {"msg": "Email or Phone are required to create contact"}
        else:
            assert set(body[key]) == {"message", "rule"}
        assert len(c.sim.contacts) == 2 and not c.sim.stats.creates_by_key


DOC_CONTACT_KEYS = {"id", "locationId", "email", "emailLowerCase", "fingerprint", "timezone", "country",
                    "source", "dateAdded"}   # what the doc's create/get/update samples show before "View More"


async def test_doc_sample_requests_answer_the_doc_sample_shapes() -> None:
    """Each call as the doc's example request sends it; each answer against the doc's
    example response: its top-level keys exactly, and every key the sample shows."""
    async with serve(contacts=2) as c:
        doc_body = {k: DOC_BODY[k] for k in ("email", "phone", "firstName", "lastName", "name", "dateOfBirth",
                                            "address1", "city", "state", "country")}   # the doc's cut sample
        status, body, headers = await c.call("POST", "/v1/contacts/", json=doc_body)
        assert status == 200 and set(body) == {"contact"} and DOC_CONTACT_KEYS <= set(body["contact"])
        cid = body["contact"]["id"]
        status, body, _ = await c.call("GET", f"/v1/contacts/{cid}")
        assert status == 200 and set(body) == {"contact"} and DOC_CONTACT_KEYS <= set(body["contact"])
        status, body, _ = await c.call("PUT", f"/v1/contacts/{cid}", json=doc_body)
        assert status == 200 and set(body) == {"contact"} and DOC_CONTACT_KEYS <= set(body["contact"])
        status, body, _ = await c.call("GET", "/v1/contacts/?limit=20&query=John")
        assert status == 200 and set(body) == {"contacts", "meta"} and set(body["meta"]) == META_KEYS
        assert [x["id"] for x in body["contacts"]] == [cid]
        assert DOC_CONTACT_KEYS - {"dateAdded"} <= set(body["contacts"][0])
        status, body, _ = await c.call("GET", "/v1/contacts/lookup?email=john@deo.com&phone=+491971259866")
        assert status == 200 and set(body) == {"contacts"} and [x["id"] for x in body["contacts"]] == [cid]
        status, body, _ = await c.call("POST", f"/v1/contacts/{cid}/tags/", json={"tags": ["n", "in dolore esse dol"]})
        assert status == 200 and set(body) == {"tags"} and {"n", "in dolore esse dol"} <= set(body["tags"])
        status, body, _ = await c.call("DELETE", f"/v1/contacts/{cid}/tags/", json={"tags": ["n", "in dolore esse dol"]})
        assert status == 200 and set(body) == {"tags"} and not {"n", "in dolore esse dol"} & set(body["tags"])
        status, body, _ = await c.call("GET", f"/v1/contacts/{cid}/appointments/")
        assert (status, body) == (200, {})
        status, body, _ = await c.call("DELETE", f"/v1/contacts/{cid}")
        assert (status, body) == (200, None)   # "This request doesn't return a response body"


async def test_unknown_keys_are_dropped_silently_not_refused() -> None:
    """A misspelt or unknown field is dropped, as a real server does: nothing names it, so
    only comparing what arrived catches it."""
    async with serve(contacts=0) as c:
        status, body, _ = await c.call("POST", "/v1/contacts/", json={
            "email": "ann@example.com", "fristName": "Ann", "assignedTo": "someone", "customFields": {"x": 1}})
        assert status == 200
        contact = body["contact"]
        assert contact["firstName"] is None and contact["assignedTo"] is None
        assert not {"fristName", "customFields"} & set(contact)
        status, body, _ = await c.call("PUT", f"/v1/contacts/{contact['id']}",
                                       json={"email": "ann@example.com", "lastname": "Lee"})
        assert status == 200 and body["contact"]["lastName"] is None and "lastname" not in body["contact"]
        status, body, _ = await c.call("POST", f"/v1/contacts/{contact['id']}/tags/", json={"tags": ["a"], "x": 1})
        assert (status, body) == (200, {"tags": ["a"]})
        status, _, _ = await c.call("POST", "/v1/contacts/", json={"fristName": "Bob", "mail": "bob@example.com"})
        assert status == 422, "a body of unknown keys alone still lacks the e-mail or phone a create needs"


async def test_body_without_json_content_type_counts_as_empty_and_bad_json_is_400() -> None:
    async with serve(contacts=0) as c:
        status, body, _ = await c.call("POST", "/v1/contacts/", data='{"email": "john@deo.com"}',
                                       headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 422 and body == {"msg": "Email or Phone are required to create contact"}
        status, body, _ = await c.call("POST", "/v1/contacts/", data="{nope",
                                       headers={"Content-Type": "application/json"})
        assert status == 400 and body == {"msg": "Invalid JSON body"}


async def test_put_needs_email_or_phone_and_refuses_anothers_email() -> None:
    async with serve(contacts=5) as c:
        a, b = c.sim.inspect_records("contacts")[:2]
        status, body, _ = await c.call("PUT", f"/v1/contacts/{a['id']}", json={"city": "Austin"})
        assert status == 422 and body == {"msg": "Email or Phone are required to update contact"}
        status, body, _ = await c.call("PUT", f"/v1/contacts/{a['id']}", json={"email": b["email"].upper()})
        assert status == 400 and body["meta"] == {"contactId": b["id"], "matchingField": "email"}
        status, body, _ = await c.call("PUT", f"/v1/contacts/{a['id']}",
                                       json={"email": a["email"], "phone": "+1 (415) 555-0134"})
        assert status == 200 and body["contact"]["phone"] == "+14155550134"
        status, body, _ = await c.call("GET", "/v1/contacts/lookup", params={"phone": "+14155550134"})
        assert [x["id"] for x in body["contacts"]] == [a["id"]]


async def test_create_or_update_merges_by_email_then_by_phone() -> None:
    async with serve(contacts=5) as c:
        existing = c.sim.inspect_records("contacts")[0]
        status, body, _ = await c.call("POST", "/v1/contacts/", json={
            "email": existing["email"].upper(), "firstName": "Renamed", "tags": ["New-Tag", existing["tags"][0]]
            if existing["tags"] else ["New-Tag"]})
        assert status == 200 and body["contact"]["id"] == existing["id"]
        assert body["contact"]["firstName"] == "Renamed"
        assert body["contact"]["tags"] == list(dict.fromkeys([*existing["tags"], "new-tag"]))
        assert c.sim.merged_writes == 1 and len(c.sim.contacts) == 5

        # A new e-mail but a known phone: the phone decides.
        national = existing["phone"][2:]
        status, body, _ = await c.call("POST", "/v1/contacts/", json={
            "email": "someone.else@example.com", "phone": national, "tags": ["by-phone"]})
        assert status == 200 and body["contact"]["id"] == existing["id"]
        assert body["contact"]["email"] == "someone.else@example.com"
        assert "by-phone" in body["contact"]["tags"] and "new-tag" in body["contact"]["tags"]
        assert c.sim.merged_writes == 2 and len(c.sim.contacts) == 5

        # Matched by e-mail while the phone belongs to someone else: the phone is ignored.
        other = c.sim.inspect_records("contacts")[1]
        status, body, _ = await c.call("POST", "/v1/contacts/", json={
            "email": "someone.else@example.com", "phone": other["phone"]})
        assert body["contact"]["id"] == existing["id"] and body["contact"]["phone"] == existing["phone"]

        status, body, _ = await c.call("POST", "/v1/contacts/", json={"email": "brand.new@example.com"})
        assert body["contact"]["id"] not in {existing["id"], other["id"]}
        assert len(c.sim.contacts) == 6 and c.sim.merged_writes == 3
        assert c.sim.stats.creates_by_key == {"brand.new@example.com": 1} and c.sim.duplicates() == {}


async def test_allow_duplicates_creates_a_second_record() -> None:
    async with serve(contacts=3, allow_duplicates=True) as c:
        for _ in range(2):
            status, _, _ = await c.call("POST", "/v1/contacts/", json={"email": "twin@example.com"})
            assert status == 200
        assert len(c.sim.contacts) == 5 and c.sim.merged_writes == 0
        assert c.sim.duplicates() == {"twin@example.com": 2}
        status, body, _ = await c.call("GET", "/v1/contacts/lookup", params={"email": "TWIN@example.com"})
        assert len(body["contacts"]) == 2


async def test_phone_first_match_order() -> None:
    async with serve(contacts=3, match_order=("phone", "email")) as c:
        a, b = c.sim.inspect_records("contacts")[:2]
        status, body, _ = await c.call("POST", "/v1/contacts/", json={"email": a["email"], "phone": b["phone"]})
        assert status == 200 and body["contact"]["id"] == b["id"]
        assert body["contact"]["email"] == b["email"]  # a's e-mail is held by a: ignored
    with pytest.raises(ValueError):
        ReiSim(match_order=("name",))


async def test_lookup_tries_email_first_then_phone() -> None:
    async with serve(contacts=5) as c:
        a, b = c.sim.inspect_records("contacts")[:2]
        status, body, _ = await c.call("GET", "/v1/contacts/lookup", params={"email": a["email"], "phone": b["phone"]})
        assert status == 200 and [x["id"] for x in body["contacts"]] == [a["id"]]
        assert CONTACT_KEYS <= set(body["contacts"][0])
        _, body, _ = await c.call("GET", "/v1/contacts/lookup", params={"email": "none@example.com", "phone": b["phone"]})
        assert [x["id"] for x in body["contacts"]] == [b["id"]]
        # The doc's sample puts a raw "+" in the query string.
        _, body, _ = await c.call("GET", f"/v1/contacts/lookup?phone={b['phone']}")
        assert [x["id"] for x in body["contacts"]] == [b["id"]]
        _, body, _ = await c.call("GET", "/v1/contacts/lookup?email=john@deo.com&phone=+491971259866")
        assert body == {"contacts": []}
        status, body, _ = await c.call("GET", "/v1/contacts/lookup")
        assert status == 422 and body == {"msg": "Email or Phone are required to lookup contact."}


async def test_tags_appointments_campaigns_workflow() -> None:
    async with serve(contacts=2) as c:
        cid = c.sim.inspect_records("contacts")[0]["id"]
        before = c.sim.contacts[cid]["tags"]
        status, body, _ = await c.call("POST", f"/v1/contacts/{cid}/tags/", json={"tags": ["n", "In Dolore"]})
        assert status == 200 and body == {"tags": list(dict.fromkeys([*before, "n", "in dolore"]))}
        status, body, _ = await c.call("DELETE", f"/v1/contacts/{cid}/tags/", json={"tags": ["n", *before]})
        assert status == 200 and body == {"tags": ["in dolore"]}
        for bad in ({}, {"tags": "x"}, {"tags": []}, {"extra": ["ok"]}):
            status, _, _ = await c.call("POST", f"/v1/contacts/{cid}/tags/", json=bad)
            assert status == 422, bad

        status, body, _ = await c.call("GET", f"/v1/contacts/{cid}/appointments/")
        assert status == 200 and body == {}

        for method, path in (("POST", "campaigns/Y2I9XM7aO1hncuSOlc9L"), ("POST", "campaigns/other"),
                             ("DELETE", "campaigns/other")):
            async with c.session.request(method, f"{c.sim.base_url}/v1/contacts/{cid}/{path}",
                                         headers=c.auth) as r:
                assert r.status == 200 and await r.read() == b'""'
        assert c.sim.inspect_records("campaigns") == [{"contactId": cid, "campaignIds": ["Y2I9XM7aO1hncuSOlc9L"]}]
        status, body, _ = await c.call("DELETE", f"/v1/contacts/{cid}/campaigns/remove-all")
        assert status == 200 and body == "" and c.sim.inspect_records("campaigns") == []

        wf = "78559bb3-b920-461e-b010-7b2a2816d2a9"
        status, body, _ = await c.call("POST", f"/v1/contacts/{cid}/workflow/{wf}",
                                       json={"eventStartTime": "2021-05-26T11:33:49.000Z"})
        assert status == 200 and body == ""
        status, _, _ = await c.call("POST", f"/v1/contacts/{cid}/workflow/{wf}",
                                    json={"eventStartTime": "2021-05-26 11:33"})
        assert status == 422
        assert c.sim.inspect_records("workflows") == [
            {"contactId": cid, "workflowId": wf, "eventStartTime": "2021-05-26T11:33:49.000Z"}]

        ghost = "sx6wyHhbFdRXh302LLNR"
        for method, path in (("GET", "appointments/"), ("POST", "tags/"), ("DELETE", "tags/"),
                             ("POST", "campaigns/x"), ("DELETE", "campaigns/x"),
                             ("DELETE", "campaigns/remove-all"), ("POST", f"workflow/{wf}")):
            status, body, _ = await c.call(method, f"/v1/contacts/{ghost}/{path}", json={"tags": ["a"]})
            assert status == 404 and body == {"msg": "Contact not found"}, path


async def test_rate_limit_headers_count_down_and_sixth_request_is_429() -> None:
    async with serve(contacts=3, limit=(5, 1.0)) as c:
        remaining = []
        for _ in range(5):
            status, _, headers = await c.call("GET", "/v1/contacts/")
            assert status == 200
            assert headers["X-RateLimit-Max"] == "5" and headers["X-RateLimit-Interval-Milliseconds"] == "1000"
            assert headers["X-RateLimit-Limit-Daily"] == "200000"
            remaining.append(int(headers["X-RateLimit-Remaining"]))
        assert remaining == [4, 3, 2, 1, 0]
        status, body, headers = await c.call("GET", "/v1/contacts/")
        assert status == 429 and body == {"msg": "Too many requests, please try again later."}
        assert int(headers["Retry-After"]) >= 1 and headers["X-RateLimit-Remaining"] == "0"
        assert "X-RateLimit-Daily-Remaining" in headers
        assert c.sim.window.max_in_window <= 5 and c.sim.stats.rate_limited == 1
        await asyncio.sleep(1.05)
        status, _, _ = await c.call("GET", "/v1/contacts/")
        assert status == 200


async def test_daily_quota_refuses_until_the_day_turns() -> None:
    async with serve(contacts=3, limit=False, daily_quota=3, day_seconds=1.0) as c:
        await asyncio.sleep(1.02 - time.time() % 1.0)  # start just after a day boundary
        daily = []
        for _ in range(3):
            status, _, headers = await c.call("GET", "/v1/contacts/")
            assert status == 200
            daily.append(headers["X-RateLimit-Daily-Remaining"])
        assert daily == ["2", "1", "0"]
        status, body, headers = await c.call("GET", "/v1/contacts/")
        assert status == 429 and headers["X-RateLimit-Daily-Remaining"] == "0"
        assert headers["Retry-After"] == "1" and "msg" in body
        assert c.sim.quota.refused == 1
        await asyncio.sleep(1.02 - time.time() % 1.0)
        status, _, headers = await c.call("GET", "/v1/contacts/")
        assert status == 200 and headers["X-RateLimit-Daily-Remaining"] == "2"


def test_daily_quota_is_per_key_and_refusals_do_not_spend_it() -> None:
    now = [250.0]
    q = DailyQuota(2, day=100.0, clock=lambda: now[0])
    assert [q.take("a"), q.take("a"), q.take("a"), q.take("a")] == [True, True, False, False]
    assert q.remaining("a") == 0 and q.refused == 2
    assert q.take("b") and q.remaining("b") == 1, "each key has its own budget"
    assert q.resets_at() == 300.0
    now[0] = 300.0
    assert q.remaining("a") == 2 and q.take("a") and q.remaining("a") == 1


async def test_a_quota_refusal_says_when_the_day_turns_with_every_header() -> None:
    async with serve(contacts=3, limit=(50, 10.0), daily_quota=1, day_seconds=100.0) as c:
        status, _, headers = await c.call("GET", "/v1/contacts/")
        assert status == 200 and headers["X-RateLimit-Daily-Remaining"] == "0"
        status, body, headers = await c.call("GET", "/v1/contacts/")
        turns = c.sim.quota.resets_at() - time.time()
        assert status == 429 and body == {"msg": "Too many requests, please try again later."}
        assert 1 <= int(headers["Retry-After"]) and abs(int(headers["Retry-After"]) - turns) <= 1
        assert headers["X-RateLimit-Limit-Daily"] == "1" and headers["X-RateLimit-Daily-Remaining"] == "0"
        assert headers["X-RateLimit-Max"] == "50" and headers["X-RateLimit-Interval-Milliseconds"] == "10000"
        assert c.sim.quota.refused == 1 and c.sim.stats.rate_limited == 1


async def test_fault_latency_and_error_rate() -> None:
    async with serve(contacts=2, faults=Faults(latency=0.15)) as c:
        t0 = time.perf_counter()
        status, _, _ = await c.call("GET", "/v1/custom-fields/")
        assert status == 200 and time.perf_counter() - t0 >= 0.15
        c.sim.set_faults(Faults(error_rate=1.0))
        status, body, _ = await c.call("GET", "/v1/custom-fields/")
        assert status in (500, 502, 503) and set(body) == {"msg"}
        assert c.sim.stats.faults["5xx"] == 1


async def test_fault_burst_429() -> None:
    async with serve(contacts=2, faults=Faults(burst_429_rate=1.0, burst_len=2)) as c:
        status, body, headers = await c.call("GET", "/v1/contacts/")
        assert status == 429 and "Retry-After" in headers and "msg" in body
        assert c.sim.stats.faults["429_burst"] >= 1


async def test_fault_drop_before_applies_nothing_and_drop_after_applies_the_write() -> None:
    async with serve(contacts=2, faults=Faults(drop_before_rate=1.0)) as c:
        with pytest.raises(aiohttp.ClientError):
            await c.call("POST", "/v1/contacts/", json={"email": "dropped@example.com"})
        assert len(c.sim.contacts) == 2
        c.sim.set_faults(Faults(drop_after_rate=1.0))
        with pytest.raises(aiohttp.ClientError):
            await c.call("POST", "/v1/contacts/", json={"email": "applied@example.com"})
        c.sim.set_faults(Faults())
        status, body, _ = await c.call("GET", "/v1/contacts/lookup", params={"email": "applied@example.com"})
        assert status == 200 and len(body["contacts"]) == 1
        assert c.sim.stats.faults["drop_before"] == 1 and c.sim.stats.faults["drop_after"] == 1


async def test_fault_truncated_body() -> None:
    async with serve(contacts=2, faults=Faults(truncate_rate=1.0)) as c:
        async with c.session.get(c.sim.base_url + "/v1/contacts/", headers=c.auth) as r:
            raw = await r.read()
        with pytest.raises(ValueError):
            json.loads(raw)
        assert c.sim.stats.faults["truncated"] == 1


async def test_token_ttl_does_not_expire_a_location_key() -> None:
    async with serve(contacts=2, faults=Faults(token_ttl=0.05)) as c:
        assert c.sim.token_ttl(3600) == 0.05
        await asyncio.sleep(0.1)
        status, _, _ = await c.call("GET", "/v1/contacts/")
        assert status == 200


async def test_seeding_is_deterministic_and_reset_forgets_writes() -> None:
    a, b = ReiSim(contacts=12, seed=7), ReiSim(contacts=12, seed=7)
    assert a.inspect_records("contacts") == b.inspect_records("contacts")
    assert a.credentials() == b.credentials() != ReiSim(contacts=1, seed=8).credentials()
    async with serve(contacts=12, seed=7) as c:
        await c.call("POST", "/v1/contacts/", json={"email": "extra@example.com"})
        assert len(c.sim.contacts) == 13
        async with c.session.post(c.sim.base_url + "/_sandbox/reset") as r:
            assert r.status == 200
        assert c.sim.inspect_records("contacts") == a.inspect_records("contacts")
        assert c.sim.merged_writes == 0
