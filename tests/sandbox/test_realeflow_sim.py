"""The Realeflow simulator over real HTTP: the doc's samples, its 200-with-failure
answers, the 25-newest lists, relations, auth, the rate limit and every fault."""
from __future__ import annotations

import asyncio
import base64
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import aiohttp
import orjson
import pytest

from migrator.sandbox.base import Faults
from migrator.sandbox.realeflow import RealeflowSim
from migrator.sandbox.server import Sandbox

DOC_CONTACT = {
    "fullname": "John Smith", "email": "test@email.com", "companyname": "Test LLC",
    "phone": "1112224444", "phonetype": "Work", "source": "google ads 1",
    "address": "123 Main St", "city": "Cleveland", "state": "OH", "zipcode": "44113",
    "type": ["buyer", "seller"], "tags": ["sms opt-in", "active investors"],
    "customfields": ["this is custom 1", "custom 2", None, "custom 4"],
}
DOC_PROPERTY = {
    "address": "123 Main St", "city": "Cleveland", "state": "OH", "zipcode": "44113",
    "tags": ["sms opt-in", "active properties"],
    "customfields": ["this is custom 1", "custom 2", None, "custom 4"],
}
CONTACT_ROW_KEYS = {"id", "contactId", "fullName", "email", "companyName", "phone", "phoneType",
                    "mobilePhoneDigits", "fax", "source", "address", "city", "state", "zipCode",
                    "created", "customFields", "tags"}
PROPERTY_ROW_KEYS = {"id", "propertyId", "address", "city", "state", "zipCode", "source",
                     "created", "customFields", "tags"}


def basic(user: str, password: str = "", colon: bool = True) -> str:
    raw = f"{user}:{password}" if colon else user
    return "Basic " + base64.b64encode(raw.encode()).decode()


class Client:
    def __init__(self, sim: RealeflowSim, session: aiohttp.ClientSession):
        self.sim, self.session = sim, session
        self.auth = basic(sim.credentials()["REALEFLOW_API_KEY"])

    async def call(self, method: str, path: str, body: Any = None,
                   auth: str | None = "default") -> tuple[int, Any, aiohttp.ClientResponse]:
        headers = {} if auth is None else {"Authorization": self.auth if auth == "default" else auth}
        async with self.session.request(method, self.sim.base_url + path, json=body,
                                        headers=headers) as r:
            raw = await r.read()
            return r.status, orjson.loads(raw) if raw else None, r

    async def post(self, path: str, body: Any) -> Any:
        status, data, _ = await self.call("POST", path, body)
        assert status == 200, data
        return data


@asynccontextmanager
async def running(**kwargs: Any) -> AsyncIterator[Client]:
    kwargs.setdefault("limit", False)
    sim = RealeflowSim(**kwargs)
    async with Sandbox({"realeflow": sim}):
        async with aiohttp.ClientSession() as session:
            yield Client(sim, session)


async def test_account_status_and_suspended_account_refuses_writes():
    async with running() as c:
        assert (await c.call("GET", "/api/account/status"))[:2] == (200, {"AccountStatus": "Active"})
    async with running(account_status="Suspended", contacts=3) as c:
        assert (await c.call("GET", "/api/account/status"))[1] == {"AccountStatus": "Suspended"}
        status, body, _ = await c.call("POST", "/api/contact/create", DOC_CONTACT)
        assert status == 403 and "Message" in body
        assert len((await c.call("GET", "/api/contact/list"))[1]) == 3


async def test_doc_sample_contact_round_trips_in_the_doc_row_shape():
    async with running() as c:
        res = await c.post("/api/contact/create", DOC_CONTACT)
        assert res["Successful"] is True and res["Error"] is None and isinstance(res["Id"], int)
        status, rows, _ = await c.call("GET", "/api/contact/list")
        assert status == 200 and len(rows) == 1
        row = rows[0]
        assert set(row) == CONTACT_ROW_KEYS
        assert row["contactId"] == res["Id"]
        assert (row["fullName"], row["phoneType"], row["state"], row["zipCode"]) == \
            ("John Smith", "Work", "OH", "44113")
        assert row["mobilePhoneDigits"] is None
        assert row["customFields"] == ["this is custom 1", "custom 2", None, "custom 4"]
        assert row["tags"] == ["sms opt-in", "active investors"]
        assert len(row["id"]) == 36 and row["created"][:2] == "20"
        assert c.sim.inspect_records("contacts")[0]["type"] == ["Buyer", "Seller"]


async def test_pascal_case_keys_and_default_phone_type():
    async with running() as c:
        res = await c.post("/api/contact/create", {"FullName": "Ana Díaz", "Phone": "(212) 555-0199",
                                                   "PhoneType": None, "State": "PR", "ZipCode": "00901"})
        assert res["Successful"] is True
        row = (await c.call("GET", "/api/contact/list"))[1][0]
        assert (row["phoneType"], row["mobilePhoneDigits"], row["state"]) == ("Mobile", "12125550199", "PR")


@pytest.mark.parametrize("change, needle", [
    ({"fullname": None}, "FullName is required"),
    ({"fullname": "   "}, "FullName is required"),
    ({"state": "Ohio"}, "State"),
    ({"state": "ZZ"}, "State"),
    ({"state": "oh"}, "State"),
    ({"zipcode": "4411"}, "ZipCode"),
    ({"zipcode": "44113-1234"}, "ZipCode"),
    ({"zipcode": 44113}, "ZipCode"),
    ({"customfields": ["x"] * 29}, "CustomFields"),
    ({"customfields": ["x", 3]}, "CustomFields"),
    ({"phonetype": "Pager"}, "PhoneType"),
    ({"type": ["Buyer", "Landlord"]}, "Type"),
    ({"type": "Buyer"}, "Type"),
    ({"tags": "vip"}, "Tags"),
    ({"email": "not-an-email"}, "Email"),
])
async def test_validation_failure_is_http_200_with_successful_false(change, needle):
    async with running() as c:
        body = {k: v for k, v in {**DOC_CONTACT, **change}.items()}
        status, res, _ = await c.call("POST", "/api/contact/create", body)
        assert status == 200
        assert res["Successful"] is False and res["Id"] == 0
        assert needle in res["Error"]
        assert c.sim.inspect_records("contacts") == []


async def test_unknown_keys_are_dropped_silently_unless_told_to_refuse():
    """A misspelt key is ignored, as a .NET model binder does: the record is created
    without it and the answer is the doc's plain success."""
    async with running() as c:
        res = await c.post("/api/contact/create", {**DOC_CONTACT, "FirstName": "John", "emial": "x@y.z"})
        assert set(res) == set(DOC_OK) and res["Successful"] is True and res["Error"] is None
        row = (await c.call("GET", "/api/contact/list"))[1][0]
        assert set(row) == CONTACT_ROW_KEYS and row["email"] == "test@email.com"
        res = await c.post("/api/property/create", {**DOC_PROPERTY, "bedrooms": 3})
        assert res["Successful"] is True
    async with running(refuse_unknown=True) as c:
        res = await c.post("/api/contact/create", {**DOC_CONTACT, "FirstName": "John"})
        assert res["Successful"] is False and "FirstName" in res["Error"]


async def test_every_failing_field_is_named_and_28_custom_fields_pass():
    async with running() as c:
        res = await c.post("/api/contact/create", {"state": "XX", "zipcode": "1"})
        assert res["Successful"] is False
        assert all(n in res["Error"] for n in ("FullName", "State", "ZipCode"))
        ok = await c.post("/api/contact/create", {"FullName": "A B", "CustomFields": [None] * 27 + ["z"]})
        assert ok["Successful"] is True


async def test_not_json_is_refused():
    async with running() as c:
        async with c.session.post(c.sim.base_url + "/api/contact/create", data="fullname=x",
                                  headers={"Authorization": c.auth,
                                           "Content-Type": "application/x-www-form-urlencoded"}) as r:
            assert r.status == 415 and "Message" in await r.json()
        async with c.session.post(c.sim.base_url + "/api/contact/create", data="{oops",
                                  headers={"Authorization": c.auth, "Content-Type": "application/json"}) as r:
            body = await r.json()
            assert r.status == 200 and body["Successful"] is False
        assert (await c.post("/api/contact/create", ["John"]))["Successful"] is False


@pytest.mark.parametrize("make_auth", [
    lambda key: None,
    lambda key: "wrong",
    lambda key: basic("nope"),
    lambda key: basic(key, "secret"),
    lambda key: basic(key, colon=False),
    lambda key: f"Bearer {key}",
    lambda key: "Basic !!!not-base64",
], ids=["missing", "garbage", "wrong-key", "password", "no-colon", "bearer", "bad-base64"])
async def test_bad_credentials_get_401(make_auth):
    async with running(contacts=2) as c:
        auth = make_auth(c.sim.credentials()["REALEFLOW_API_KEY"])
        for method, path in (("GET", "/api/contact/list"), ("POST", "/api/contact/create")):
            status, body, r = await c.call(method, path, DOC_CONTACT, auth=auth)
            assert status == 401 and "Message" in body
            assert r.headers["WWW-Authenticate"].startswith("Basic")
        assert c.sim.stats.unauthorized == 2 and len(c.sim.inspect_records("contacts")) == 2


async def test_password_with_the_right_key_is_refused():
    async with running() as c:
        key = c.sim.credentials()["REALEFLOW_API_KEY"]
        assert (await c.call("GET", "/api/account/status", auth=basic(key, "x")))[0] == 401
        assert (await c.call("GET", "/api/account/status", auth=basic(key, colon=False)))[0] == 401
        assert (await c.call("GET", "/api/account/status", auth=basic(key)))[0] == 200


async def test_small_seed_lists_every_record_exactly_once_newest_first():
    async with running(contacts=12, seed=3) as c:
        rows = (await c.call("GET", "/api/contact/list"))[1]
        seeded = c.sim.seed_people
        assert [r["email"] for r in rows] == [p.email for p in reversed(seeded)]
        assert len({r["contactId"] for r in rows}) == 12
        props = (await c.call("GET", "/api/property/list"))[1]
        assert len(props) == len(c.sim.seed_properties) and all(set(p) == PROPERTY_ROW_KEYS for p in props)
    async with running() as c:
        assert (await c.call("GET", "/api/contact/list"))[1] == []
        assert (await c.call("GET", "/api/property/list"))[1] == []


async def test_list_returns_only_the_25_newest():
    async with running(contacts=40, seed=1) as c:
        rows = (await c.call("GET", "/api/contact/list"))[1]
        all_ids = [r["contactId"] for r in c.sim.inspect_records("contacts")]
        assert [r["contactId"] for r in rows] == all_ids[-25:][::-1]
        new = await c.post("/api/contact/create", {"fullname": "Newest Person"})
        rows = (await c.call("GET", "/api/contact/list"))[1]
        assert len(rows) == 25 and rows[0]["contactId"] == new["Id"]
        assert all_ids[-25] not in {r["contactId"] for r in rows}
        for _ in range(30):
            await c.post("/api/property/create", {"Address": "1 Elm St"})
        props = (await c.call("GET", "/api/property/list"))[1]
        assert len(props) == 25 and props[0]["propertyId"] > props[-1]["propertyId"]


async def test_no_dedup_same_email_makes_two_contacts():
    async with running() as c:
        a = await c.post("/api/contact/create", {"FullName": "A", "Email": "Dup@x.com"})
        b = await c.post("/api/contact/create", {"FullName": "B", "Email": "dup@x.com"})
        assert a["Id"] != b["Id"]
        assert c.sim.duplicates() == {"dup@x.com": 2}


async def test_doc_sample_property_and_its_validation():
    async with running() as c:
        res = await c.post("/api/property/create", DOC_PROPERTY)
        assert res["Successful"] is True and res["Error"] is None
        row = (await c.call("GET", "/api/property/list"))[1][0]
        assert set(row) == PROPERTY_ROW_KEYS and row["propertyId"] == res["Id"]
        assert (row["address"], row["state"], row["zipCode"]) == ("123 Main St", "OH", "44113")
        for bad, needle in (({"city": "X"}, "Address is required"), ({**DOC_PROPERTY, "state": "O"}, "State"),
                            ({**DOC_PROPERTY, "zipcode": "441130"}, "ZipCode"),
                            ({**DOC_PROPERTY, "customfields": [None] * 29}, "CustomFields")):
            out = await c.post("/api/property/create", bad)
            assert out["Successful"] is False and out["Id"] == 0 and needle in out["Error"]
        assert len(c.sim.inspect_records("properties")) == 1


DOC_RELATION = {
    "PropertyId": "D71A29D1-B44D-43ED-AC24-322AFE37410D",
    "ContactId": " EJ1A29D1-B64D-43ED-A324-322AFE99410D",
    "IsOwner": "true", "IsPrimaryContact": "true", "IsRealtor": "false", "IsOccupier": "true",
    "IsInterested": "true", "IsTitleEscrowAgent": "false", "IsAttorney": "false",
    "IsInsuranceAgent": "false", "IsInspector": "false", "IsLenderMtgBroker": "false",
    "IsLossMitigator": "false", "IsBpoAgent": "false", "IsAppraiser": "false",
    "IsContractor": "false", "IsTenant": "false", "IsPropertyManager": "false",
    "IsHoaContact": "false", "IsLienContact": "false",
}
DOC_OK = {"Successful": True, "Id": 1234, "Error": None}


def same_shape(got: Any, want: Any) -> bool:
    """The same keys, each value of the same JSON type (None matching None or a string)."""
    if isinstance(want, dict):
        return isinstance(got, dict) and set(got) == set(want) and all(same_shape(got[k], want[k]) for k in want)
    if want is None:
        return got is None or isinstance(got, str)
    return type(got) is type(want)


async def test_doc_samples_answer_in_the_doc_shapes():
    """Every write sample of the doc, sent as printed: each answer has the sample answer's
    shape (an integer ``Id``); the list rows carry the GUID ``id`` and the integer id."""
    async with running() as c:
        contact = await c.post("/api/contact/create", DOC_CONTACT)
        prop = await c.post("/api/property/create", DOC_PROPERTY)
        assert same_shape(contact, DOC_OK) and same_shape(prop, DOC_OK)
        crow = (await c.call("GET", "/api/contact/list"))[1][0]
        prow = (await c.call("GET", "/api/property/list"))[1][0]
        assert (crow["contactId"], prow["propertyId"]) == (contact["Id"], prop["Id"])
        assert isinstance(crow["id"], str) and isinstance(prow["id"], str)
        # The doc's relation sample names records this account does not hold, and its
        # ContactId is not even a GUID ("EJ…"): refused the doc's way, HTTP 200.
        status, refused, _ = await c.call("POST", "/api/contact/propertyrelation", DOC_RELATION)
        assert status == 200 and same_shape(refused, DOC_OK | {"Error": "x"})
        assert refused["Successful"] is False and refused["Id"] == 0 and "ContactId" in refused["Error"]
        # The same sample naming the records just made (upper case, the leading space kept).
        body = {**DOC_RELATION, "PropertyId": prow["id"].upper(), "ContactId": " " + crow["id"].upper()}
        rel = await c.post("/api/contact/propertyrelation", body)
        assert same_shape(rel, DOC_OK) and rel["Successful"] is True and rel["Error"] is None
        [stored] = c.sim.inspect_records("relations")
        assert (stored["PropertyId"], stored["ContactId"]) == (prow["id"], crow["id"])
        assert stored["IsOwner"] is True and stored["IsRealtor"] is False


async def test_relations_take_only_guids_and_both_are_required():
    async with running() as c:
        cid = (await c.post("/api/contact/create", {"FullName": "Owner One"}))["Id"]
        pid = (await c.post("/api/property/create", DOC_PROPERTY))["Id"]
        cguid = (await c.call("GET", "/api/contact/list"))[1][0]["id"]
        pguid = (await c.call("GET", "/api/property/list"))[1][0]["id"]
        rel = await c.post("/api/contact/propertyrelation", {"PropertyId": pguid, "ContactId": cguid,
                                                             "IsOwner": "true"})
        assert rel["Successful"] is True
        again = await c.post("/api/contact/propertyrelation",
                             {"propertyid": pguid, "contactid": cguid, "isowner": "False", "IsTenant": "TRUE"})
        assert again["Id"] == rel["Id"]
        stored = c.sim.inspect_records("relations")
        assert len(stored) == 1
        assert (stored[0]["PropertyId"], stored[0]["ContactId"], stored[0]["IsOwner"], stored[0]["IsTenant"]) \
            == (pguid, cguid, False, True)
        for body, needle in (({"ContactId": cguid}, "PropertyId is required"),
                             ({"PropertyId": pguid}, "ContactId is required"),
                             ({"PropertyId": pid, "ContactId": cguid}, "PropertyId is not a valid GUID"),
                             ({"PropertyId": pguid, "ContactId": str(cid)}, "ContactId is not a valid GUID"),
                             ({"PropertyId": pguid, "ContactId": cid}, "ContactId is not a valid GUID"),
                             ({"PropertyId": pguid, "ContactId": pguid}, "Contact"),
                             ({"PropertyId": "d71a29d1-b44d-43ed-ac24-322afe37410d", "ContactId": cguid},
                              "Property"),
                             ({"PropertyId": "EJ1A29D1-nope", "ContactId": cguid}, "PropertyId"),
                             ({"PropertyId": pguid, "ContactId": cguid, "IsOwner": "yes"}, "IsOwner"),
                             ({"PropertyId": pguid, "ContactId": cguid, "IsOwner": True}, "IsOwner"),
                             ({"PropertyId": pguid, "ContactId": cguid, "IsOwner": 1}, "IsOwner")):
            out = await c.post("/api/contact/propertyrelation", body)
            assert out["Successful"] is False and out["Id"] == 0 and needle in out["Error"], (body, out)
        assert len(c.sim.inspect_records("relations")) == 1


async def test_seeded_owners_become_relations():
    sim = RealeflowSim(contacts=20, seed=5, limit=False)
    rels = sim.inspect_records("relations")
    assert len(rels) == len(sim.seed_properties) > 0
    contact_by_email = {c["email"]: c["id"] for c in sim.inspect_records("contacts")}
    for rel, prop in zip(rels, sim.seed_properties):
        owner = sim.seed_people[prop.owner_uid - 1]
        assert rel["ContactId"] == contact_by_email[owner.email] and rel["IsOwner"] is True


async def test_rate_limit_answers_429_with_retry_after():
    async with running(limit=(5, 1.0)) as c:
        statuses = [(await c.call("GET", "/api/account/status"))[:2] for _ in range(6)]
        assert [s for s, _ in statuses[:5]] == [200] * 5
        status, body, r = await c.call("GET", "/api/account/status")
        assert status == 429 and "Message" in body and int(r.headers["Retry-After"]) >= 1
        assert c.sim.window.max_in_window <= 5


async def test_default_limit_is_ten_per_second():
    assert RealeflowSim().window.limit == 10 and RealeflowSim().window.period == 1.0


async def test_faults_latency_errors_and_bursts():
    async with running(faults=Faults(latency=0.08)) as c:
        t = time.perf_counter()
        assert (await c.call("GET", "/api/account/status"))[0] == 200
        assert time.perf_counter() - t >= 0.08
        c.sim.set_faults(Faults(error_rate=1.0))
        status, body, _ = await c.call("POST", "/api/contact/create", DOC_CONTACT)
        assert status in (500, 502, 503) and "Message" in body
        assert c.sim.inspect_records("contacts") == []
        c.sim.set_faults(Faults(burst_429_rate=1.0))
        status, body, r = await c.call("GET", "/api/contact/list")
        assert status == 429 and "Retry-After" in r.headers


async def test_faults_drops_and_truncation():
    async with running(faults=Faults(drop_before_rate=1.0)) as c:
        with pytest.raises(aiohttp.ClientError):
            await c.call("POST", "/api/contact/create", DOC_CONTACT)
        assert c.sim.inspect_records("contacts") == []
        c.sim.set_faults(Faults(drop_after_rate=1.0))
        with pytest.raises(aiohttp.ClientError):
            await c.call("POST", "/api/contact/create", DOC_CONTACT)
        assert len(c.sim.inspect_records("contacts")) == 1
        c.sim.set_faults(Faults(truncate_rate=1.0))
        with pytest.raises(orjson.JSONDecodeError):
            await c.call("POST", "/api/contact/create", DOC_CONTACT)
        assert len(c.sim.inspect_records("contacts")) == 2


async def test_token_ttl_does_not_expire_a_static_api_key():
    async with running(faults=Faults(token_ttl=0.01)) as c:
        assert (await c.call("GET", "/api/account/status"))[0] == 200
        await asyncio.sleep(0.05)
        assert (await c.call("GET", "/api/account/status"))[0] == 200


async def test_reset_forgets_writes_and_reseeds():
    async with running(contacts=4) as c:
        await c.post("/api/contact/create", {"FullName": "Temp"})
        async with c.session.post(c.sim.base_url + "/_sandbox/reset") as r:
            assert r.status == 200
        assert len(c.sim.inspect_records("contacts")) == 4
