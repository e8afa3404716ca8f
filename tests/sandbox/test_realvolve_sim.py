"""The Realvolve simulator against its vendor doc, over real HTTP on loopback."""
from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator

import aiohttp
import orjson
import pytest
from yarl import URL

from migrator.sandbox.base import Faults
from migrator.sandbox.realvolve import RealvolveSim
from migrator.sandbox.server import Sandbox

API = "/utility_api/v1"

# Key sets copied from the doc's sample responses.
ROW_KEYS = {"first_name", "id", "last_name", "profile_pic_url"}
PIC = {"url": None, "large": {"url": None}, "thumb": {"url": None},
       "small_thumb": {"url": None}, "package_image_thumb": {"url": None}}
EMAIL_KEYS = set("""category_id email_address entity_id entity_type google_type id
    import_session_uuid matching_import_uuid pairing_import_uuid""".split())
ADDRESS_KEYS = set("""address address_line backfill_required category_id country county
    courier_route created_at direction_prefix entity_id entity_type geo_city geo_state
    google_type id import_session_uuid imported_address_id latitude longitude
    matching_import_uuid name pairing_import_uuid street_number updated_at zipcode""".split())
PHONE_KEYS = set("""category_id created_at entity_id entity_type google_type id
    import_session_uuid matching_import_uuid pairing_import_uuid phone_number phone_type
    plain_phone_number updated_at""".split())
TAG_KEYS = {"cached_slug", "id", "name", "rendered_at"}
SOURCE_KEYS = {"account_id", "created_at", "id", "is_custom", "name", "updated_at"}
STATUS_KEYS = {"created_at", "id", "name", "updated_at"}
WORKFLOW_KEYS = set("""alternate_workflow_id cached_slug created_at creator_id deleted_at
    description downloaded id import_session_uuid import_status_id instance
    is_active_instance mark_for_deletion matching_import_uuid pairing_import_uuid
    progenitor_id rendered_at title updated_at use_with""".split())
NOTE_KEYS = set("""bcc_email_address_with_ids body cc_email_address_with_ids content
    created_at creator_id delivered delivery_message email_address_with_ids entity_id
    entity_type feed_id feed_timestamp from guid id import_session_uuid mark_for_deletion
    matching_import_uuid note_type pairing_import_uuid pinned rendered_at title to
    transitory updated_at""".split())
CONTACT_KEYS = set("""animoto_link annual_income birth_date blog_link cached_slug category
    client_id company contact_score contact_source_link contact_source_type_id
    contact_status_id created_at creator_id deleted_at dropbox_link email_folder_link
    enhanced_google_map_link evernote_link facebook_invalid facebook_profile_link fb_uid
    first_name google_drive_link google_plus_link has_synced home_purchase_anniversary id
    import_engine import_id import_session_uuid import_status_id imported_at
    imported_contact_id imported_referred_by_id inactive instagram_link is_special_contact
    known_since last_call_date last_google_synced_at last_name last_personal_note_date
    last_personal_visit_date last_updated_at lifetime_value linkedin_invalid linkedin_link
    mark_for_deletion matching_import_uuid pairing_import_uuid pinterest_link prefix
    profile_pic_url propinquity_points record_type referred_date referrer_id rendered_at
    rent_own rss_link savvycard_link sex source source_id stage suffix sync_in_progress
    title twitter_handle twitter_invalid updated_at viewed_at year_moved
    youtube_link""".split())

DOC_CREATE_QUERY = (
    "contact%5Bprimary%5D%5Bfirst_name%5D=Zooth&contact%5Bprimary%5D%5Bworkflow_id%5D=2843"
    "&contact%5Bprimary%5D%5Blast_name%5D=Ziggs&contact%5Bprimary%5D%5Bcreator_id%5D=615"
    "&contact%5Bdetails%5D%5Baddress%5D%5Bwork_address%5D=3568%20Front%20St%2C%20San%20Diego%2C%20CA"
    "&contact%5Bdetails%5D%5Bemail_address%5D%5Bwork_email%5D=zeeth%40gmail.com"
    "&contact%5Bdetails%5D%5Btags%5D=mobile-app")
DOC_UPDATE_QUERY = (
    "contact%5Bdetails%5D%5Baddress%5D%5Bhome_address%5D=3568%20Front%20St%2C%20San%20Diego%2C%20CA"
    "&contact%5Bdetails%5D%5Bemail_address%5D%5Bhome_email%5D=usaseth%40gmail.comm"
    "&contact%5Bdetails%5D%5Btags%5D=mobile-app%2C%20hot-buyer"
    "&contact%5Bprimary%5D%5Bcontact_source%5D=realvolve-app"
    "&contact%5Bdetails%5D%5Bphone_number%5D%5Bhome_phone%5D=8436973932"
    "&contact%5Bprimary%5D%5Bcompany%5D=Hoverboard%20Labs%2C%20Inc&contact%5Bprimary%5D%5Btitle%5D=CEO"
    "&contact%5Bdetails%5D%5Baddress%5D%5Bwork_address%5D=2372%20First%20Ave%2C%20San%20Diego%2C%20CA"
    "&contact%5Bdetails%5D%5Bemail_address%5D%5Bwork_email%5D=seth%40hoverboardlabs.comm"
    "&contact%5Bdetails%5D%5Bphone_number%5D%5Bwork_phone%5D=8585555555")


class Client:
    """A thin Realvolve caller: token handling is explicit so tests can break it."""

    def __init__(self, sim: RealvolveSim, session: aiohttp.ClientSession):
        self.sim, self.session, self.token = sim, session, ""

    async def fetch_token(self) -> str:
        c = self.sim.credentials()
        async with self.session.post(f"{self.sim.base_url}/oauth/token", params={
                "grant_type": "client_credentials", "client_id": c["REALVOLVE_CLIENT_ID"],
                "client_secret": c["REALVOLVE_CLIENT_SECRET"]}) as r:
            assert r.status == 200, await r.text()
            self.token = (await r.json())["access_token"]
        return self.token

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token if token is not None else self.token}"}

    def params(self, **params: Any) -> dict[str, str]:
        return {"utility_api_key": self.sim.utility_api_key, **{k: str(v) for k, v in params.items()}}

    async def get(self, path: str, **params: Any) -> tuple[int, Any]:
        async with self.session.get(self.sim.base_url + API + path, params=self.params(**params),
                                    headers=self.headers()) as r:
            return r.status, await r.json(content_type=None)

    async def post(self, path: str, form: dict[str, str] | None = None,
                   **params: Any) -> tuple[int, Any]:
        async with self.session.post(self.sim.base_url + API + path, params=self.params(**params),
                                     data=form, headers=self.headers()) as r:
            return r.status, await r.json(content_type=None)

    async def post_raw_query(self, path: str, query: str) -> tuple[int, Any]:
        url = URL(f"{self.sim.base_url}{API}{path}?utility_api_key={self.sim.utility_api_key}&{query}",
                  encoded=True)
        async with self.session.post(url, headers=self.headers()) as r:
            return r.status, await r.json(content_type=None)


@asynccontextmanager
async def running(sim: RealvolveSim, token: bool = True) -> AsyncIterator[Client]:
    async with Sandbox({"realvolve": sim}):
        async with aiohttp.ClientSession() as session:
            client = Client(sim, session)
            if token:
                await client.fetch_token()
            yield client


def seeded(uid: int) -> int:
    """The simulator gives seeded person ``uid`` the contact id 904000 + uid."""
    return 904000 + uid


# ---- authentication ------------------------------------------------------------------

async def test_token_doc_sample_query_and_form_body_both_issue_valid_tokens():
    sim = RealvolveSim(contacts=3, limit=False)
    async with running(sim, token=False) as client:
        c = sim.credentials()
        url = (f"{sim.base_url}/oauth/token?grant_type=client_credentials"
               f"&client_id={c['REALVOLVE_CLIENT_ID']}&client_secret={c['REALVOLVE_CLIENT_SECRET']}")
        async with client.session.post(url) as r:
            assert r.status == 200
            first = await r.json()
        assert set(first) == {"access_token", "token_type", "expires_in", "created_at"}
        assert first["token_type"] == "bearer" and first["expires_in"] == 7200
        assert abs(first["created_at"] - time.time()) < 5
        async with client.session.post(f"{sim.base_url}/oauth/token", data={
                "grant_type": "client_credentials", "client_id": c["REALVOLVE_CLIENT_ID"],
                "client_secret": c["REALVOLVE_CLIENT_SECRET"]}) as r:
            assert r.status == 200
            second = await r.json()
        assert second["access_token"] != first["access_token"]
        for token in (first["access_token"], second["access_token"]):
            client.token = token
            assert (await client.get("/contacts"))[0] == 200
        assert sim.tokens_issued == 2


@pytest.mark.parametrize("override", [{"client_secret": "wrong"}, {"client_id": "wrong"},
                                      {"grant_type": "password"}, {"grant_type": None}])
async def test_token_refused_with_json_401(override):
    sim = RealvolveSim(contacts=1, limit=False)
    async with running(sim, token=False) as client:
        c = sim.credentials()
        params = {"grant_type": "client_credentials", "client_id": c["REALVOLVE_CLIENT_ID"],
                  "client_secret": c["REALVOLVE_CLIENT_SECRET"], **override}
        async with client.session.post(f"{sim.base_url}/oauth/token",
                                       params={k: v for k, v in params.items() if v}) as r:
            assert r.status == 401
            assert isinstance((await r.json())["error"], str)
        assert sim.tokens_issued == 0 and sim.stats.unauthorized == 1


async def test_every_utility_call_needs_bearer_token_and_utility_api_key():
    sim = RealvolveSim(contacts=2, limit=False)
    async with running(sim) as client:
        url = sim.base_url + API + "/contacts"
        key = {"utility_api_key": sim.utility_api_key}
        cases = [({}, key), ({"Authorization": "Bearer nope"}, key),
                 ({"Authorization": client.token}, key),
                 (client.headers(), {}), (client.headers(), {"utility_api_key": "wrong"})]
        for headers, params in cases:
            async with client.session.get(url, headers=headers, params=params) as r:
                assert r.status == 401, (headers, params)
                assert "error" in await r.json()
        async with client.session.get(url, params={**key, "access_token": client.token}) as r:
            assert r.status == 401
        form = {"utility_api_key": sim.utility_api_key, "contact_id": str(seeded(1)),
                "note_content": "key in the form body"}
        async with client.session.post(sim.base_url + API + "/contacts/add_note", data=form,
                                       headers=client.headers()) as r:
            assert r.status == 200
        assert sim.stats.unauthorized == 6


async def test_expired_token_gives_401_and_a_new_token_works():
    sim = RealvolveSim(contacts=2, limit=False, faults=Faults(token_ttl=0.5))
    async with running(sim, token=False) as client:
        c = sim.credentials()
        async with client.session.post(f"{sim.base_url}/oauth/token", params={
                "grant_type": "client_credentials", "client_id": c["REALVOLVE_CLIENT_ID"],
                "client_secret": c["REALVOLVE_CLIENT_SECRET"]}) as r:
            body = await r.json()
        assert body["expires_in"] == 0.5
        client.token = body["access_token"]
        assert (await client.get("/contacts"))[0] == 200
        await asyncio.sleep(0.6)
        status, body = await client.get("/contacts")
        assert status == 401 and body["error"] == "invalid_token"
        await client.fetch_token()
        assert (await client.get("/contacts"))[0] == 200
        assert sim.tokens_issued == 2


# ---- reads ---------------------------------------------------------------------------

async def test_paging_returns_every_contact_once_then_an_empty_page():
    sim = RealvolveSim(contacts=30, page_size=7, limit=False)
    async with running(sim) as client:
        status, first = await client.get("/contacts")
        assert status == 200 and first["success"] is True and first["pages"] == 5
        ids: list[int] = []
        for page in range(1, 6):
            status, body = await client.get("/contacts", page=page)
            assert status == 200 and body["pages"] == 5
            for row in body["data"]:
                assert set(row) == CONTACT_KEYS and row["profile_pic_url"] == PIC
            ids += [row["id"] for row in body["data"]]
        assert first["data"] == (await client.get("/contacts", page=1))[1]["data"]
        assert len(ids) == 30 and ids == sorted(set(ids))
        assert ids == [c["id"] for c in sim.inspect_records("contacts")]
        status, past = await client.get("/contacts", page=6)
        assert status == 200 and past == {"success": True, "pages": 5, "data": []}
        for bad in ("abc", "1.5", "0", "-1"):
            assert (await client.get("/contacts", page=bad))[0] == 400


async def test_list_rows_carry_the_contact_fields_or_only_the_doc_samples_names():
    sim = RealvolveSim(contacts=12, seed=3, limit=False)
    person = next(p for p in sim.seed_people if p.company and p.birthday)
    async with running(sim) as client:
        _, body = await client.get("/contacts")
        row = next(r for r in body["data"] if r["id"] == seeded(person.uid))
        assert set(row) == CONTACT_KEYS
        assert (row["first_name"], row["last_name"], row["company"], row["title"], row["birth_date"]) == (
            person.first_name, person.last_name, person.company, person.title, person.birthday.isoformat())
        statuses = {s["id"]: s["name"] for s in (await client.get("/contacts/contact_statuses"))[1]["data"]}
        sources = {s["id"]: s["name"] for s in (await client.get("/contacts/contact_sources"))[1]["data"]}
        assert statuses[row["contact_status_id"]] == person.status
        assert sources[row["source_id"]] == person.source
    sample = RealvolveSim(contacts=12, seed=3, limit=False, list_fields="sample")
    async with running(sample) as client:
        _, body = await client.get("/contacts")
        assert body["pages"] == 1 and len(body["data"]) == 12
        assert all(set(r) == ROW_KEYS and r["profile_pic_url"] == PIC for r in body["data"])
        _, body = await client.get("/contacts/recent_contacts", updated_time="2000-01-01T00:00:00Z")
        assert all(set(r) == ROW_KEYS for r in body["data"])


async def test_contact_detail_has_doc_shapes_and_the_seeded_person():
    sim = RealvolveSim(contacts=40, seed=3, limit=False)
    person = next(p for p in sim.seed_people if len(p.emails) > 1 and p.notes and p.tags)
    async with running(sim) as client:
        status, d = await client.get("/contacts/contact_detail", contact_id=seeded(person.uid))
        assert status == 200 and d["success"] is True
        # Exactly the keys of the doc's sample response: no contact object.
        assert set(d) == {"success", "email_addresses", "addresses", "phone_numbers", "tags",
                          "notes"}
        assert all(set(e) == EMAIL_KEYS for e in d["email_addresses"])
        assert all(set(a) == ADDRESS_KEYS for a in d["addresses"])
        assert all(set(p) == PHONE_KEYS for p in d["phone_numbers"])
        assert all(set(t) == TAG_KEYS for t in d["tags"])
        assert all(set(n) == NOTE_KEYS for n in d["notes"])
        assert [e["email_address"] for e in d["email_addresses"]] == [e for _, e in person.emails]
        assert [e["google_type"] for e in d["email_addresses"]] == [k for k, _ in person.emails]
        assert [p["plain_phone_number"] for p in d["phone_numbers"]] == [n for _, n in person.phones]
        assert d["addresses"][0]["zipcode"] == person.addresses[0].zip
        assert d["addresses"][0]["geo_city"] == person.addresses[0].city
        assert [t["name"] for t in d["tags"]] == person.tags
        assert [n["content"] for n in d["notes"]] == person.notes
        for bad in ("999", "abc", ""):
            status, body = await client.get("/contacts/contact_detail", contact_id=bad)
            assert status == 404 and body["success"] is False and body["msg"]
        assert (await client.get("/contacts/contact_detail"))[0] == 404


async def test_lookup_lists_match_the_doc():
    sim = RealvolveSim(contacts=10, limit=False)
    async with running(sim) as client:
        status, body = await client.get("/contacts/contact_statuses")
        assert status == 200 and body["success"] is True
        assert [(s["id"], s["name"]) for s in body["data"]] == [
            (1, "Suspect"), (2, "Prospect"), (3, "Lead"), (4, "Client"), (5, "Past Client")]
        assert all(set(s) == STATUS_KEYS for s in body["data"])
        for path, keys in (("/contacts/contact_sources", SOURCE_KEYS),
                           ("/contacts/account_tags", TAG_KEYS),
                           ("/contacts/workflows", WORKFLOW_KEYS)):
            status, body = await client.get(path)
            assert status == 200 and body["success"] is True and body["data"], path
            assert all(set(item) == keys for item in body["data"]), path
        tags = {t["name"] for t in (await client.get("/contacts/account_tags"))[1]["data"]}
        assert tags == {t for p in sim.seed_people for t in p.tags}


async def test_properties_name_no_contacts_as_the_doc_shows_none():
    sim = RealvolveSim(contacts=25, limit=False)
    async with running(sim) as client:
        status, body = await client.get("/properties")
        assert status == 200 and body["success"] is True
        assert len(body["data"]) == len(sim.seed_properties) > 0
        for prop, seed in zip(body["data"], sim.seed_properties):
            assert {"id", "address_line", "city", "state", "zipcode", "bedrooms", "bathrooms",
                    "area_in_sq_feet", "list_price", "acreage", "zillow_link"} <= set(prop)
            assert not any("contact" in key or "owner" in key for key in prop)
            assert (prop["address_line"], prop["zipcode"], prop["list_price"]) == (
                seed.street, seed.zip, seed.list_price)


async def test_recent_contacts_filters_by_updated_at_and_pages():
    sim = RealvolveSim(contacts=30, page_size=4, limit=False)
    updated = sorted(p.updated_at for p in sim.seed_people)
    since = updated[12]
    expected = [seeded(p.uid) for p in sim.seed_people if p.updated_at >= since]
    async with running(sim) as client:
        ids: list[int] = []
        page = 1
        while True:
            status, body = await client.get("/contacts/recent_contacts",
                                            updated_time=since.isoformat(), page=page)
            assert status == 200 and all(set(r) == CONTACT_KEYS for r in body["data"])
            if not body["data"]:
                break
            ids += [r["id"] for r in body["data"]]
            page += 1
        assert ids == expected and body["pages"] == -(-len(expected) // 4)
        oldest = min(sim.seed_people, key=lambda p: p.updated_at)
        just_before = datetime.now(timezone.utc) - timedelta(seconds=2)
        assert (await client.post("/contacts/update_contact", contact_id=seeded(oldest.uid),
                                  **{"contact[primary][title]": "Broker"}))[0] == 200
        status, body = await client.get("/contacts/recent_contacts",
                                        updated_time=just_before.strftime("%Y-%m-%dT%H:%M:%SZ"))
        assert [r["id"] for r in body["data"]] == [seeded(oldest.uid)]
        for bad in ("yesterday", "2024-13-40T00:00:00Z", ""):
            assert (await client.get("/contacts/recent_contacts", updated_time=bad))[0] == 400
        assert (await client.get("/contacts/recent_contacts"))[0] == 400
        url = URL(f"{sim.base_url}{API}/contacts/recent_contacts?utility_api_key="
                  f"{sim.utility_api_key}&updated_time=2020-01-01T00:00:00+00:00", encoded=True)
        async with client.session.get(url, headers=client.headers()) as r:
            assert r.status == 400


# ---- writes --------------------------------------------------------------------------

async def test_create_contact_doc_sample_request():
    sim = RealvolveSim(contacts=5, limit=False)
    async with running(sim) as client:
        status, body = await client.post_raw_query("/contacts", DOC_CREATE_QUERY)
        assert status == 200, body
        assert body["success"] is True and body["msg"] == "Contact created successfully."
        contact = body["contact"]
        assert set(contact) == CONTACT_KEYS
        assert (contact["first_name"], contact["last_name"], contact["creator_id"]) == ("Zooth", "Ziggs", 615)
        assert contact["cached_slug"] == f"{contact['id']}-zooth-ziggs"
        status, d = await client.get("/contacts/contact_detail", contact_id=contact["id"])
        assert [(e["email_address"], e["google_type"], e["category_id"])
                for e in d["email_addresses"]] == [("zeeth@gmail.com", "work", 1)]
        a = d["addresses"][0]
        assert (a["address"], a["street_number"], a["address_line"], a["geo_city"], a["geo_state"],
                a["google_type"]) == ("3568 Front St, San Diego, CA", "3568", "Front St",
                                      "San Diego", "CA", "work")
        assert [t["name"] for t in d["tags"]] == ["mobile-app"]
        stored = sim.inspect_records("contacts")[-1]
        assert stored["id"] == contact["id"] and stored["workflow_ids"] == [2843]
        _, listing = await client.get("/contacts")
        assert listing["data"][-1]["id"] == contact["id"]
        assert sim.stats.creates_by_key["zeeth@gmail.com"] == 1


async def test_create_takes_only_the_create_params_and_drops_the_rest_silently():
    """Create Contact lists names, addresses, e-mails, tags and source; company, title,
    status, dates and phones are Edit Contact's. A create carrying them stores only what
    create takes (no error), and the same fields then land through update_contact."""
    sim = RealvolveSim(contacts=5, limit=False)
    async with running(sim) as client:
        form = {"contact[primary][first_name]": "Ada", "contact[primary][last_name]": "Lovelace",
                "contact[primary][company]": "Engines Ltd", "contact[primary][title]": "Analyst",
                "contact[primary][contact_source]": "zillow",
                "contact[primary][contact_status_id]": "4",
                "contact[primary][birth_date]": "1815-12-10",
                "contact[primary][home_purchase_anniversary]": "2020-02-29",
                "contact[details][address][home_address]": "12 St James Sq, London, KY 40741",
                "contact[details][email_address][home_email]": "ada@example.org",
                "contact[details][phone_number][home_phone]": "18436973932",
                "contact[details][phone_number][work_phone]": "8585555555",
                "contact[details][tags]": "Lakefront, Beach-House ,lakefront,,"}
        status, body = await client.post("/contacts", form)
        assert status == 200, body
        c = body["contact"]
        assert set(c) == CONTACT_KEYS
        sources = {s["id"]: s for s in (await client.get("/contacts/contact_sources"))[1]["data"]}
        assert sources[c["source_id"]]["name"] == "Zillow"
        assert (c["first_name"], c["last_name"]) == ("Ada", "Lovelace")
        assert (c["company"], c["title"], c["contact_status_id"], c["birth_date"],
                c["home_purchase_anniversary"]) == (None, None, None, None, None)
        _, d = await client.get("/contacts/contact_detail", contact_id=c["id"])
        assert d["phone_numbers"] == []
        assert d["addresses"][0]["zipcode"] == "40741"
        assert [e["email_address"] for e in d["email_addresses"]] == ["ada@example.org"]
        rest = {k: v for k, v in form.items() if "company" in k or "title" in k or "status" in k
                or "date" in k or "anniversary" in k or "phone" in k}
        status, body = await client.post("/contacts/update_contact", rest, contact_id=c["id"])
        assert status == 200, body
        u = body["data"]
        assert (u["company"], u["title"], u["contact_status_id"], u["birth_date"],
                u["home_purchase_anniversary"]) == ("Engines Ltd", "Analyst", 4, "1815-12-10", "2020-02-29")
        _, d = await client.get("/contacts/contact_detail", contact_id=c["id"])
        assert [(p["google_type"], p["phone_number"], p["plain_phone_number"], p["phone_type"])
                for p in d["phone_numbers"]] == [
            ("home", "843-697-3932", "+18436973932", "phone"),
            ("work", "858-555-5555", "+18585555555", "phone")]
        assert [t["name"] for t in d["tags"]] == ["Lakefront", "Beach-House"]
        form2 = {"contact[primary][last_name]": "Solo",
                 "contact[primary][contact_source]": "Realvolve App"}
        status, body = await client.post("/contacts", form2)
        _, sources = await client.get("/contacts/contact_sources")
        custom = [s for s in sources["data"] if s["name"] == "Realvolve App"]
        assert len(custom) == 1 and custom[0]["is_custom"] is True
        assert body["contact"]["source_id"] == custom[0]["id"]
        data = aiohttp.FormData({"contact[primary][first_name]": "Multi"}, default_to_multipart=True)
        status, body = await client.post("/contacts", data)  # type: ignore[arg-type]
        assert status == 200 and body["contact"]["first_name"] == "Multi"


@pytest.mark.parametrize("form, fragment", [
    ({"contact[primary][company]": "No Name Inc"}, "name"),
    ({"contact[primary][first_name]": "   "}, "name"),
    ({"contact[primary][first_name]": "A", "contact[details][email_address][work_email]": "not-an-email"},
     "work_email"),
    ({"contact[primary][first_name]": "A", "contact[details][email_address][home_email][]": "a@b.co"},
     "home_email"),
    ({"contact[primary][first_name]": "A", "contact[primary][workflow_id]": "1"}, "workflow_id"),
    ({"contact[primary][first_name]": "A", "contact[primary][creator_id]": "me"}, "creator_id"),
    ({"contact[primary][first_name]": "x" * 256}, "first_name"),
])
async def test_create_contact_validation_errors_write_nothing(form, fragment):
    sim = RealvolveSim(contacts=3, limit=False)
    async with running(sim) as client:
        status, body = await client.post("/contacts", form)
        assert status == 422 and body["success"] is False
        assert fragment in body["msg"]
        assert len(sim.inspect_records("contacts")) == 3
        assert not sim.stats.creates_by_key


async def test_conflicting_bracket_params_are_a_400():
    sim = RealvolveSim(contacts=1, limit=False)
    async with running(sim) as client:
        status, _ = await client.post_raw_query(
            "/contacts", "contact%5Bprimary%5D=x&contact%5Bprimary%5D%5Bfirst_name%5D=y")
        assert status == 400
        assert len(sim.inspect_records("contacts")) == 1


async def test_no_dedup_duplicates_are_created_and_counted():
    sim = RealvolveSim(contacts=2, limit=False)
    async with running(sim) as client:
        ids = []
        for email in ("Dup@Example.com", "dup@example.com"):
            status, body = await client.post("/contacts", {
                "contact[primary][first_name]": "Dee",
                "contact[details][email_address][work_email]": email})
            assert status == 200
            ids.append(body["contact"]["id"])
        assert ids[0] != ids[1]
        assert sim.duplicates() == {"dup@example.com": 2}
        assert len(sim.inspect_records("contacts")) == 4


async def test_query_params_replace_body_params_shallowly_like_rails():
    sim = RealvolveSim(contacts=1, limit=False)
    async with running(sim) as client:
        status, body = await client.post("/contacts", {"contact[primary][first_name]": "Body"},
                                         **{"contact[primary][last_name]": "Query"})
        assert status == 200
        assert (body["contact"]["first_name"], body["contact"]["last_name"]) == (None, "Query")


async def test_update_contact_doc_sample_then_tag_overwrite():
    sim = RealvolveSim(contacts=20, seed=5, limit=False)
    person = next(p for p in sim.seed_people if p.tags and "hot-buyer" not in p.tags)
    cid = seeded(person.uid)
    async with running(sim) as client:
        status, body = await client.post_raw_query("/contacts/update_contact",
                                                   f"{DOC_UPDATE_QUERY}&contact_id={cid}")
        assert status == 200, body
        assert body["success"] is True and set(body["data"]) == CONTACT_KEYS
        c = body["data"]
        assert (c["id"], c["company"], c["title"]) == (cid, "Hoverboard Labs, Inc", "CEO")
        assert c["first_name"] == person.first_name
        _, d = await client.get("/contacts/contact_detail", contact_id=cid)
        emails = {e["google_type"]: e["email_address"] for e in d["email_addresses"]}
        assert emails["home"] == "usaseth@gmail.comm" and emails["work"] == "seth@hoverboardlabs.comm"
        phones = {p["google_type"]: p["plain_phone_number"] for p in d["phone_numbers"]}
        assert phones["home"] == "+18436973932" and phones["work"] == "+18585555555"
        assert len(d["addresses"]) == len({a["google_type"] for a in d["addresses"]})
        names = [t["name"] for t in d["tags"]]
        assert names == person.tags + [t for t in ("mobile-app", "hot-buyer") if t not in person.tags]
        sources = {s["id"]: s for s in (await client.get("/contacts/contact_sources"))[1]["data"]}
        assert sources[c["source_id"]]["name"] == "realvolve-app" and sources[c["source_id"]]["is_custom"]

        status, _ = await client.post("/contacts/update_contact", contact_id=cid, **{
            "contact[details][tags]": "vip", "contact[details][tag_list]": "overwrite"})
        _, d = await client.get("/contacts/contact_detail", contact_id=cid)
        assert status == 200 and [t["name"] for t in d["tags"]] == ["vip"]
        await client.post("/contacts/update_contact", contact_id=cid, tag_list="overwrite",
                          **{"contact[details][tags]": "seller, investor"})
        _, d = await client.get("/contacts/contact_detail", contact_id=cid)
        assert [t["name"] for t in d["tags"]] == ["seller", "investor"]
        await client.post("/contacts/update_contact", contact_id=cid, **{"contact[details][tags]": "Seller"})
        _, d = await client.get("/contacts/contact_detail", contact_id=cid)
        assert [t["name"] for t in d["tags"]] == ["seller", "investor"]

        status, body = await client.post("/contacts/update_contact", contact_id=999,
                                         **{"contact[primary][title]": "x"})
        assert status == 404 and body["success"] is False
        status, body = await client.post("/contacts/update_contact", contact_id=cid, **{
            "contact[primary][first_name]": "", "contact[primary][last_name]": ""})
        assert status == 422 and body["success"] is False
        assert sim.inspect_records("contacts")[person.uid - 1]["first_name"] == person.first_name


@pytest.mark.parametrize("form, fragment", [
    ({"contact[details][phone_number][work_phone]": "843-697-3932"}, "work_phone"),
    ({"contact[details][phone_number][home_phone]": "12345"}, "home_phone"),
    ({"contact[primary][contact_status_id]": "9"}, "contact_status_id"),
    ({"contact[primary][birth_date]": "03/08/1980"}, "birth_date"),
    ({"contact[primary][title]": "x" * 256}, "title"),
])
async def test_update_contact_validation_errors_write_nothing(form, fragment):
    sim = RealvolveSim(contacts=3, limit=False)
    async with running(sim) as client:
        before = sim.inspect_records("contacts")
        status, body = await client.post("/contacts/update_contact", form, contact_id=seeded(2))
        assert status == 422 and body["success"] is False and fragment in body["msg"]
        assert sim.inspect_records("contacts") == before


UNKNOWN = {"contact[primary][nickname]": "x", "contact[primary][colour]": "red",
           "contact[details][fax]": "1", "contact[secondary][x]": "1",
           "contact[details][email_address][other_email]": "a@b.co",
           "contact[details][phone_number][mobile_phone]": "8436973932",
           "contact[primary][prefix]": "Dr", "contact[primary][fist_name]": "Typo"}


async def test_unknown_keys_are_dropped_silently_on_create_and_update():
    """No call in the doc names these keys: the server drops them as a Rails app drops
    unpermitted params — a 200, and nothing of them stored."""
    sim = RealvolveSim(contacts=3, limit=False)
    async with running(sim) as client:
        status, body = await client.post("/contacts", {"contact[primary][first_name]": "Una", **UNKNOWN})
        assert status == 200, body
        cid = body["contact"]["id"]
        status, body = await client.post("/contacts/update_contact", {
            "contact[primary][last_name]": "Known", **UNKNOWN}, contact_id=cid)
        assert status == 200, body
        stored = sim.inspect_records("contacts")[-1]
        assert (stored["first_name"], stored["last_name"], stored["prefix"]) == ("Una", "Known", None)
        assert stored["phone_numbers"] == [] and stored["email_addresses"] == []
        assert "nickname" not in stored and "colour" not in stored and "fist_name" not in stored
        # update-only params on a create are dropped too; workflow_id on an update as well
        status, body = await client.post("/contacts", {
            "contact[primary][last_name]": "Tagless", "contact[details][tag_list]": "overwrite",
            "contact[details][phone_number][work_phone]": "8585555555",
            "contact[primary][company]": "Co"})
        assert status == 200 and body["contact"]["company"] is None
        status, _ = await client.post("/contacts/update_contact", {"contact[primary][workflow_id]": "3939"},
                                      contact_id=cid)
        assert status == 200 and sim.inspect_records("contacts")[3]["workflow_ids"] == []


async def test_add_note_doc_shape_and_validation():
    sim = RealvolveSim(contacts=3, limit=False)
    cid = seeded(2)
    async with running(sim) as client:
        before = sim.inspect_records("contacts")[1]["updated_at"]
        status, body = await client.post("/contacts/add_note", contact_id=cid,
                                         note_content="New note from the API")
        assert status == 200 and body["success"] is True
        note = body["data"]
        assert set(note) == NOTE_KEYS
        assert (note["content"], note["entity_id"], note["entity_type"]) == (
            "New note from the API", cid, "Contact")
        _, d = await client.get("/contacts/contact_detail", contact_id=cid)
        assert d["notes"][-1] == note
        assert sim.inspect_records("contacts")[1]["updated_at"] == before
        assert sim.inspect_records("notes")[-1]["id"] == note["id"]
        for content in ("", "   "):
            status, body = await client.post("/contacts/add_note", contact_id=cid, note_content=content)
            assert status == 422 and body["success"] is False
        assert (await client.post("/contacts/add_note", contact_id=cid))[0] == 422
        assert (await client.post("/contacts/add_note", contact_id=1, note_content="x"))[0] == 404


async def test_assign_workflow():
    sim = RealvolveSim(contacts=2, limit=False)
    async with running(sim) as client:
        status, body = await client.post(f"/contacts/{seeded(1)}/assign_workflow",
                                         workflow_id=3939, contact_id=seeded(1))
        assert (status, body) == (200, {"success": True})
        assert sim.inspect_records("contacts")[0]["workflow_ids"] == [3939]
        assert (await client.post(f"/contacts/{seeded(1)}/assign_workflow", workflow_id=1))[0] == 404
        assert (await client.post("/contacts/5/assign_workflow", workflow_id=3939))[0] == 404


async def test_reset_and_inspection_routes():
    sim = RealvolveSim(contacts=4, limit=False)
    async with running(sim) as client:
        await client.post("/contacts", {"contact[primary][first_name]": "Temp"})
        async with client.session.get(f"{sim.base_url}/_sandbox/records/contacts") as r:
            assert len(await r.json()) == 5
        async with client.session.post(f"{sim.base_url}/_sandbox/reset") as r:
            assert r.status == 200
        assert len(sim.inspect_records("contacts")) == 4 and sim.tokens_issued == 0
        assert (await client.get("/contacts"))[0] == 200
    with pytest.raises(KeyError):
        sim.inspect_records("leads")


# ---- limits and faults ---------------------------------------------------------------

async def test_sixth_request_in_a_second_gets_429_with_retry_after():
    sim = RealvolveSim(contacts=3, limit=(5, 1.0))
    async with running(sim) as client:
        for _ in range(3):
            await client.fetch_token()
        statuses = []
        for _ in range(6):
            async with client.session.get(sim.base_url + API + "/contacts", params=client.params(),
                                          headers=client.headers()) as r:
                statuses.append(r.status)
                if r.status == 429:
                    assert int(r.headers["Retry-After"]) >= 1
                    assert (await r.text()).strip() == "Retry later"
        assert statuses == [200] * 5 + [429]
        assert sim.window is not None and sim.window.max_in_window <= 5
        assert sim.stats.rate_limited == 1


async def test_fault_latency():
    sim = RealvolveSim(contacts=2, limit=False)
    async with running(sim) as client:
        sim.set_faults(Faults(latency=0.2))
        start = time.monotonic()
        assert (await client.get("/contacts"))[0] == 200
        assert time.monotonic() - start >= 0.2


async def test_fault_5xx_and_429_burst():
    sim = RealvolveSim(contacts=2, limit=False)
    async with running(sim) as client:
        sim.set_faults(Faults(error_rate=1.0))
        status, body = await client.get("/contacts")
        assert status in (500, 502, 503) and body["status"] == status and body["error"]
        sim.set_faults(Faults(burst_429_rate=1.0, burst_len=2))
        async with client.session.get(sim.base_url + API + "/contacts", params=client.params(),
                                      headers=client.headers()) as r:
            assert r.status == 429 and int(r.headers["Retry-After"]) >= 1
        assert sim.stats.faults["5xx"] == 1 and sim.stats.faults["429_burst"] == 1


async def test_fault_drop_before_applies_nothing_and_drop_after_applies_the_write():
    sim = RealvolveSim(contacts=2, limit=False)
    async with running(sim) as client:
        form = {"contact[primary][first_name]": "Dropped"}
        sim.set_faults(Faults(drop_before_rate=1.0))
        with pytest.raises(aiohttp.ClientError):
            await client.post("/contacts", form)
        assert len(sim.inspect_records("contacts")) == 2
        sim.set_faults(Faults(drop_after_rate=1.0))
        with pytest.raises(aiohttp.ClientError):
            await client.post("/contacts", form)
        contacts = sim.inspect_records("contacts")
        assert len(contacts) == 3 and contacts[-1]["first_name"] == "Dropped"


async def test_fault_truncated_body():
    sim = RealvolveSim(contacts=5, limit=False)
    async with running(sim) as client:
        sim.set_faults(Faults(truncate_rate=1.0))
        async with client.session.get(sim.base_url + API + "/contacts", params=client.params(),
                                      headers=client.headers()) as r:
            raw = await r.read()
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(raw)
        assert sim.stats.faults["truncated"] == 1
