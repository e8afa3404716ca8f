"""Realeflow connector: request shapes against the doc's samples (aioresponses), then
writes, reads and refusals against the simulator over real HTTP."""
from __future__ import annotations

import base64
from types import SimpleNamespace
from typing import Any

import anyio
import orjson
import pytest
from tests.aioresp import aioresponses
from yarl import URL

from migrator.connectors.base import Context
from migrator.connectors.realeflow import RELATION_FLAGS, Realeflow
from migrator.errors import AccountError, AuthError, JobError, MappingError, RecordError
from migrator.limits import RateLimit
from migrator.sandbox.base import Faults
from migrator.sandbox.server import Sandbox, make

API = "https://api.realeflow.com"
KEY = "rf-unit-key-0001"
LABELS = ["Motivation", None, "Timeline", "Asking Price", "Condition"]
DOC_OK = {"Successful": True, "Id": 1234, "Error": None}
DOC_CONTACT_ROW = {
    "id": "d71a29d1-b44d-43ed-ac24-322afe37410d", "contactId": 335275, "fullName": "John, Smith",
    "email": "john@smith.com", "companyName": "John Smith Inc.", "phone": None, "phoneType": None,
    "mobilePhoneDigits": "18888888888", "fax": None, "source": "SMS Opt-In", "address": None,
    "city": None, "state": "OH", "zipCode": None, "created": "2019-12-04T21:30:52.52",
    "customFields": None, "tags": ["Moby opt-in"],
}
DOC_PROPERTY_ROW = {
    "id": "edfc33df-328f-4553-bcfb-b0b03ac56117", "propertyId": 1113557, "address": "123123 Main St",
    "city": None, "state": None, "zipCode": None, "source": "Virtual Assistant",
    "created": "2019-12-03T10:16:02.113", "customFields": None, "tags": [],
}


def connector(concurrency: int = 8, **settings: Any) -> Realeflow:
    base = {"system": "realeflow", "api_key": KEY, "custom_fields": LABELS, "rate_limit": "off"}
    return Realeflow({**base, **settings}, Context(role="target", concurrency=concurrency))


def sent(m: aioresponses, method: str, path: str, n: int = 0) -> Any:
    return m.requests[(method, URL(API + path))][n].kwargs


def sent_json(m: aioresponses, path: str, n: int = 0) -> Any:
    return orjson.loads(sent(m, "POST", path, n)["data"])


@pytest.fixture
async def rf():
    c = connector()
    await c.open()
    yield c
    await c.close()


# ---- facts ---------------------------------------------------------------------------

def test_declared_facts():
    assert Realeflow.default_limit == RateLimit(5, 1.0)
    assert Realeflow.credential_envs() == ["REALEFLOW_API_KEY"]
    assert Realeflow.reads == "api" and set(Realeflow.source_streams) == {"contacts", "properties"}
    contacts = Realeflow.schemas()["contacts"]
    assert contacts.field("custom.Motivation") is not None and contacts.field("custom_28") is not None
    assert contacts.field("custom_29") is None
    good = {"FullName": "John Smith", "Email": "test@email.com", "PhoneType": "Work", "State": "OH",
            "ZipCode": "44113", "Type": ["Buyer", "Seller"], "Tags": ["sms opt-in"], "custom_3": "x"}
    assert contacts.validate(good) == []
    bad = contacts.validate({"Email": "nope", "State": "Ohio", "ZipCode": "44113-1234",
                             "PhoneType": "Pager", "Type": ["Landlord"]})
    assert {v.field for v in bad} == {"FullName", "Email", "State", "ZipCode", "PhoneType", "Type"}
    rel = Realeflow.schemas()["relations"]
    assert {v.field for v in rel.validate({"IsOwner": "true"})} == {"IsOwner", "PropertyId", "ContactId"}
    assert Realeflow.schemas()["properties"].validate({"City": "Cleveland"})[0].field == "Address"


@pytest.mark.parametrize("labels, needle", [
    ("Motivation", "list of labels"),
    (["a"] * 2, "twice"),
    ([f"l{i}" for i in range(29)], "at most 28"),
])
def test_bad_custom_fields_setting_is_refused(labels, needle):
    with pytest.raises(JobError, match=needle):
        connector(custom_fields=labels)


# ---- request shapes ----------------------------------------------------------------

async def test_basic_auth_is_the_key_with_a_blank_password(rf):
    with aioresponses() as m:
        m.get(API + "/api/contact/list", payload=[DOC_CONTACT_ROW])
        [page] = [p async for p in rf.pages("contacts", None)]
    header = sent(m, "GET", "/api/contact/list")["headers"]["Authorization"]
    assert header == "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()
    assert base64.b64decode(header.split()[1]) == f"{KEY}:".encode()
    assert page.cursor is None and page.records[0].source_id == "335275"
    assert page.records[0].data == DOC_CONTACT_ROW


async def test_contact_body_uses_the_doc_sample_keys_and_positional_custom_fields(rf):
    record = {"FullName": "John Smith", "Email": "test@email.com", "CompanyName": "Test LLC",
              "Phone": "1112224444", "PhoneType": "Work", "Source": "google ads 1",
              "Address": "123 Main St", "City": "Cleveland", "State": "OH", "ZipCode": "44113",
              "Type": ["Buyer", "Seller"], "Tags": ["sms opt-in", "active investors"],
              "custom_1": "this is custom 1", "custom.Condition": "fair", "custom.Timeline": "90 days"}
    with aioresponses() as m:
        m.post(API + "/api/contact/create", payload=DOC_OK)
        m.get(API + "/api/contact/list", payload=[{**DOC_CONTACT_ROW, "contactId": 1234}])
        res = await rf.write("contacts", record, source_id="s1")
    # The create answers the integer Id; the GUID the relations need is read back from the list.
    assert (res.target_id, res.action) == (DOC_CONTACT_ROW["id"], "created")
    assert res.requests == {"create": 1, "list": 1}
    assert sent_json(m, "/api/contact/create") == {
        "fullname": "John Smith", "email": "test@email.com", "companyname": "Test LLC",
        "phone": "1112224444", "phonetype": "Work", "source": "google ads 1",
        "address": "123 Main St", "city": "Cleveland", "state": "OH", "zipcode": "44113",
        "type": ["Buyer", "Seller"], "tags": ["sms opt-in", "active investors"],
        "customfields": ["this is custom 1", None, "90 days", None, "fair"],
    }
    assert sent(m, "POST", "/api/contact/create")["headers"]["Content-Type"] == "application/json"


async def test_custom_fields_gaps_are_null_and_trailing_nulls_trimmed(rf):
    with aioresponses() as m:
        m.post(API + "/api/property/create", payload=DOC_OK, repeat=True)
        m.get(API + "/api/property/list", payload=[], repeat=True)
        await rf.write("properties", {"Address": "1 Elm St", "custom_2": "b", "custom_4": None},
                       source_id="p1")
        await rf.write("properties", {"Address": "2 Elm St", "custom_28": "last"}, source_id="p2")
        await rf.write("properties", {"Address": "3 Elm St"}, source_id="p3")
    assert sent_json(m, "/api/property/create", 0) == {"address": "1 Elm St", "customfields": [None, "b"]}
    body = sent_json(m, "/api/property/create", 1)
    assert len(body["customfields"]) == 28 and body["customfields"][27] == "last"
    assert set(body["customfields"][:27]) == {None}
    assert sent_json(m, "/api/property/create", 2) == {"address": "3 Elm St"}


async def test_same_custom_position_twice_with_different_values_is_a_record_error(rf):
    with pytest.raises(RecordError) as e:
        await rf.write("contacts", {"FullName": "A", "custom_1": "x", "custom.Motivation": "y"},
                       source_id="1")
    assert e.value.field == "custom.Motivation" and e.value.rule == "conflict"


async def test_relation_sends_every_flag_as_the_docs_strings(rf):
    with aioresponses() as m:
        m.post(API + "/api/contact/propertyrelation", payload={"Successful": True, "Id": 77, "Error": None})
        res = await rf.write("relations", {"PropertyId": DOC_PROPERTY_ROW["id"], "ContactId": DOC_CONTACT_ROW["id"],
                                           "IsOwner": True, "IsTenant": False},
                             source_id="r1")
    assert res.target_id == "77" and res.requests == {"relation": 1}
    body = sent_json(m, "/api/contact/propertyrelation")
    assert body["PropertyId"] == DOC_PROPERTY_ROW["id"] and body["ContactId"] == DOC_CONTACT_ROW["id"]
    assert body["IsOwner"] == "true" and body["IsTenant"] == "false"
    assert {k for k in body if k.startswith("Is")} == set(RELATION_FLAGS)
    assert all(isinstance(v, str) for v in body.values())


async def test_a_record_whose_guid_was_not_read_back_keeps_its_integer_id(rf):
    """Other users' creates pushed it out of the newest 25, or the list cannot be read:
    the create stands under its integer id (never sent again), and a relation to it
    fails before any request, saying why."""
    rf.http.backoff_base = 0.001   # the 500s below are retried as any read is: quickly here
    with aioresponses() as m:
        m.post(API + "/api/contact/create", payload=DOC_OK, repeat=True)
        m.get(API + "/api/contact/list", payload=[DOC_CONTACT_ROW])   # contactId 335275, not 1234
        m.get(API + "/api/contact/list", status=500, repeat=True)
        pushed_out = await rf.write("contacts", {"FullName": "A"}, source_id="1")
        unreadable = await rf.write("contacts", {"FullName": "B"}, source_id="2")
        assert len(m.requests[("POST", URL(API + "/api/contact/create"))]) == 2
    assert pushed_out.target_id == unreadable.target_id == "1234"
    with aioresponses() as m:
        with pytest.raises(RecordError) as e:
            await rf.write("relations", {"PropertyId": DOC_PROPERTY_ROW["id"], "ContactId": "1234"},
                           source_id="r")
        assert not m.requests
    assert e.value.field == "ContactId" and e.value.rule == "guid"
    assert "contact 1234 was created, but its GUID was not among the 25 newest contacts" in e.value.reason


async def test_successful_false_on_http_200_is_a_record_error(rf):
    error = "State must be a two-letter U.S. state abbreviation (e.g. OH).; ZipCode must be a five-digit U.S. zip code."
    with aioresponses() as m:
        m.post(API + "/api/contact/create", status=200, payload={"Successful": False, "Id": 0, "Error": error})
        with pytest.raises(RecordError) as e:
            await rf.write("contacts", {"FullName": "A", "State": "Ohio"}, source_id="1")
    assert e.value.reason == error and e.value.field == "State" and e.value.status == 200


async def test_401_names_the_variable_never_the_key(rf):
    with aioresponses() as m:
        m.get(API + "/api/contact/list", status=401,
              payload={"Message": "Authorization has been denied for this request."})
        with pytest.raises(AuthError) as e:
            [p async for p in rf.pages("contacts", None)]
    assert "REALEFLOW_API_KEY" in str(e.value) and KEY not in str(e.value)


@pytest.mark.parametrize("status", ["Suspended", "Inactive"])
async def test_prepare_refuses_an_account_that_is_not_active(rf, status):
    with aioresponses() as m:
        m.get(API + "/api/account/status", payload={"AccountStatus": status})
        with pytest.raises(AccountError) as e:
            await rf.prepare([])
    assert str(e.value) == f"Realeflow account status is '{status}': writes are refused until it is Active"


async def test_prepare_passes_an_active_account_and_checks_custom_labels(rf):
    with aioresponses() as m:
        m.get(API + "/api/account/status", payload={"AccountStatus": "Active"})
        m.get(API + "/api/contact/list", payload=[])   # what was there before: see _GuidReader
        await rf.prepare([SimpleNamespace(target_stream="contacts", fields={"FullName": 1, "custom.Motivation": 1})])
    assert len(m.requests[("GET", URL(API + "/api/account/status"))]) == 1
    assert len(m.requests[("GET", URL(API + "/api/contact/list"))]) == 1
    with pytest.raises(MappingError, match="'Motive'.*Motivation, Timeline"):
        await rf.prepare([SimpleNamespace(target_stream="contacts", fields={"custom.Motive": 1})])
    with pytest.raises(MappingError, match="Custom 1 twice"):
        await rf.prepare([SimpleNamespace(target_stream="contacts",
                                          fields={"custom_1": 1, "custom.Motivation": 1})])


async def test_403_on_a_write_is_an_account_error(rf):
    with aioresponses() as m:
        m.post(API + "/api/contact/create", status=403, payload={"Message": "Account is not active."})
        with pytest.raises(AccountError, match="Account is not active"):
            await rf.write("contacts", {"FullName": "A"}, source_id="1")


async def test_property_list_and_the_notice(rf):
    info = await rf.info("properties")
    assert "only the 25 newest properties" in info.notice and "system: csv" in info.notice
    with aioresponses() as m:
        m.get(API + "/api/property/list", payload=[DOC_PROPERTY_ROW])
        [page] = [p async for p in rf.pages("properties", None)]
    assert [r.source_id for r in page.records] == ["1113557"] and page.cursor is None
    with pytest.raises(JobError):
        await rf.info("relations")


# ---- against the simulator -----------------------------------------------------------

def sim_connector(sim, **settings: Any) -> Realeflow:
    return connector(**{"api_key": sim.credentials()["REALEFLOW_API_KEY"], "base_url": sim.base_url,
                        **settings})


async def test_write_100_contacts_properties_and_relations_into_the_simulator():
    sim = make("realeflow", limit=False)
    async with Sandbox({"realeflow": sim}):
        c = sim_connector(sim)
        await c.open()
        try:
            await c.prepare([SimpleNamespace(target_stream="contacts", fields={"custom.Timeline": 1})])
            contacts: dict[int, str] = {}
            properties: dict[int, str] = {}

            async def one(i: int) -> None:
                rec = {"FullName": f"Person {i:03d}", "Email": f"person{i}@example.com",
                       "Phone": f"216555{i:04d}", "PhoneType": "Mobile", "State": "OH",
                       "ZipCode": f"{44100 + i:05d}", "Type": ["Buyer"], "Tags": ["import"],
                       "custom_1": f"m{i}", "custom.Timeline": f"{i} days"}
                contacts[i] = (await c.write("contacts", rec, source_id=str(i))).target_id
                prop = {"Address": f"{i} Main St", "City": "Cleveland", "State": "OH",
                        "ZipCode": "44113", "Source": "import", "custom_2": f"p{i}"}
                properties[i] = (await c.write("properties", prop, source_id=str(i))).target_id
                rel = {"PropertyId": properties[i], "ContactId": contacts[i], "IsOwner": True,
                       "IsPrimaryContact": True, "IsTenant": False}
                await c.write("relations", rel, source_id=str(i))

            async with anyio.create_task_group() as tg:
                for i in range(100):
                    tg.start_soon(one, i)
            stats = c.request_stats()
        finally:
            await c.close()
    stored = {r["id"]: r for r in sim.inspect_records("contacts")}
    assert len(stored) == 100 and set(stored) == set(contacts.values())
    row = stored[contacts[7]]
    assert (row["fullName"], row["email"], row["zipCode"], row["type"]) == \
        ("Person 007", "person7@example.com", "44107", ["Buyer"])
    assert row["customFields"] == ["m7", None, "7 days"]
    props = {p["id"]: p for p in sim.inspect_records("properties")}
    assert len(props) == 100 and props[properties[7]]["customFields"] == [None, "p7"]
    rels = sim.inspect_records("relations")
    assert len(rels) == 100
    assert {(str(r["PropertyId"]), str(r["ContactId"])) for r in rels} == \
        {(properties[i], contacts[i]) for i in range(100)}
    assert all(r["IsOwner"] and r["IsPrimaryContact"] and not r["IsTenant"] for r in rels)
    # One list read serves many creates.
    listed = stats["requests"]["list"]
    assert stats["requests"]["create"] == 200 and 200 // 8 <= listed < 200


async def test_creates_in_flight_are_bounded_so_every_guid_is_still_in_the_newest_25():
    """60 concurrent creates with room for 40: unbounded, most would have left the 25
    newest before a list read; bounded to 20 awaiting their GUID, every one is found."""
    sim = make("realeflow", limit=False, faults=Faults(latency=0.01, jitter=0.02, seed=3))
    async with Sandbox({"realeflow": sim}):
        c = sim_connector(sim, concurrency=40)
        await c.open()
        try:
            ids: list[str] = []

            async def one(i: int) -> None:
                ids.append((await c.write("contacts", {"FullName": f"P {i}"}, source_id=str(i))).target_id)

            async with anyio.create_task_group() as tg:
                for i in range(60):
                    tg.start_soon(one, i)
        finally:
            await c.close()
    assert sorted(ids) == sorted(r["id"] for r in sim.inspect_records("contacts"))
    assert c.readback_slots() == 20


async def test_reads_only_the_25_newest_and_says_so():
    sim = make("realeflow", contacts=40, seed=2, limit=False)
    async with Sandbox({"realeflow": sim}):
        c = sim_connector(sim)
        await c.open()
        try:
            info = await c.info("contacts")
            pages = [p async for p in c.pages("contacts", None)]
            prop_pages = [p async for p in c.pages("properties", None)]
        finally:
            await c.close()
    assert info.notice == ("Realeflow's API returns only the 25 newest contacts; for a full migration "
                           "export a CSV from Realeflow's UI and use system: csv with "
                           "mappings/realeflow-csv-to-<target>.yaml")
    assert len(pages) == 1 and pages[0].cursor is None
    ids = [r.source_id for r in pages[0].records]
    newest = [str(r["contactId"]) for r in sim.inspect_records("contacts")][-25:][::-1]
    assert ids == newest and len(set(ids)) == 25
    assert pages[0].records[0].data["email"] == sim.inspect_records("contacts")[-1]["email"]
    expected_props = min(25, len(sim.inspect_records("properties")))
    assert len(prop_pages[0].records) == expected_props > 0


async def test_simulator_refusals_become_typed_errors():
    sim = make("realeflow", limit=False)
    async with Sandbox({"realeflow": sim}):
        c = sim_connector(sim)
        await c.open()
        try:
            with pytest.raises(RecordError) as e:
                await c.write("contacts", {"FullName": "A", "State": "Ohio", "ZipCode": "4411"}, source_id="1")
            assert "State" in e.value.reason and "ZipCode" in e.value.reason and e.value.field == "State"
            with pytest.raises(RecordError) as e:
                await c.write("relations", {"PropertyId": "d71a29d1-b44d-43ed-ac24-322afe37410d",
                                            "ContactId": "edfc33df-328f-4553-bcfb-b0b03ac56117"}, source_id="r")
            assert e.value.field == "PropertyId" and "was not found" in e.value.reason
        finally:
            await c.close()
        bad = sim_connector(sim, api_key="wrong-key")
        await bad.open()
        try:
            with pytest.raises(AuthError) as e:
                await bad.prepare([])
            assert "REALEFLOW_API_KEY" in str(e.value) and "wrong-key" not in str(e.value)
        finally:
            await bad.close()
    assert sim.inspect_records("contacts") == []


async def test_suspended_simulator_account_refuses_before_and_during_writes():
    sim = make("realeflow", limit=False, account_status="Suspended")
    async with Sandbox({"realeflow": sim}):
        c = sim_connector(sim)
        await c.open()
        try:
            with pytest.raises(AccountError, match="'Suspended'"):
                await c.prepare([])
            with pytest.raises(AccountError):
                await c.write("contacts", {"FullName": "A"}, source_id="1")
        finally:
            await c.close()
    assert sim.inspect_records("contacts") == []


async def test_validate_and_run_print_the_notice_and_write_the_newest_25(tmp_path):
    from migrator.engine import Engine
    from migrator.job import load_job

    source = make("realeflow", contacts=30, seed=4, limit=False)
    target = make("realeflow", seed=5, limit=False)
    job = tmp_path / "job.yaml"
    job.write_text(
        "source: {system: realeflow, api_key: '${SRC_KEY}', base_url: '${SRC_URL}'}\n"
        "target:\n"
        "  system: realeflow\n"
        "  api_key: ${REALEFLOW_API_KEY}\n"
        "  base_url: ${DST_URL}\n"
        "  rate_limit: {requests: 200, per: 1}\n"
        "  custom_fields: [Origin, null, Batch]\n"
        "mapping:\n"
        "  source: realeflow\n"
        "  target: realeflow\n"
        "  streams:\n"
        "    contacts:\n"
        "      fields:\n"
        "        FullName: fullName\n"
        "        Email: email\n"
        "        Tags: tags\n"
        "        custom.Batch: {value: first}\n"
        "        custom_1: {value: realeflow api}\n"
        "checkpoint: job.ckpt.sqlite\n")
    async with Sandbox({"src": source, "dst": target}):
        env = {"SRC_KEY": source.credentials()["REALEFLOW_API_KEY"], "SRC_URL": source.base_url,
               **target.credentials(), "DST_URL": target.base_url}
        for mode in ("validate", "run"):
            lines: list[str] = []
            outcome = await Engine(load_job(job, env=env), mode=mode, progress=False, out=lines.append).run()
            assert any("only the 25 newest contacts" in line for line in lines), (mode, lines)
            assert outcome.total("valid" if mode == "validate" else "created") == 25
    written = target.inspect_records("contacts")
    assert len(written) == 25 and {w["customFields"][0] for w in written} == {"realeflow api"}
    assert written[0]["customFields"] == ["realeflow api", None, "first"]
    newest = {s["email"] for s in source.inspect_records("contacts")[-25:]}
    assert {w["email"] for w in written} == newest
