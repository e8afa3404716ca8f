"""The Spark simulator over real HTTP: the doc's shapes, its refusals, sessions, limits, faults."""
from __future__ import annotations

import asyncio
import hashlib
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import aiohttp
import orjson
import pytest
from yarl import URL

from migrator.sandbox.base import Faults
from migrator.sandbox.data import Dirt
from migrator.sandbox.server import Sandbox
from migrator.sandbox.spark import SparkSim

UA = {"X-SparkApi-User-Agent": "crm-migrator-tests/1.0"}


@asynccontextmanager
async def serve(**kwargs: Any) -> AsyncIterator[tuple[SparkSim, aiohttp.ClientSession]]:
    sim = SparkSim(**kwargs)
    async with Sandbox({"spark": sim}), aiohttp.ClientSession(base_url=sim.base_url) as http:
        yield sim, http


def bearer(sim: SparkSim) -> dict[str, str]:
    return {**UA, "Authorization": f"Bearer {sim.credentials()['SPARK_ACCESS_TOKEN']}"}


async def call(http: aiohttp.ClientSession, method: str, path: str, headers: dict[str, str],
               **kwargs: Any) -> tuple[int, dict[str, Any], Any]:
    async with http.request(method, path, headers=headers, **kwargs) as resp:
        return resp.status, orjson.loads(await resp.read()), resp.headers


def assert_error(status: int, body: dict, want_status: int, want_code: int) -> None:
    assert status == want_status, body
    assert body["D"]["Success"] is False
    assert body["D"]["Code"] == want_code
    assert isinstance(body["D"]["Message"], str) and body["D"]["Message"]


def new_id(body: dict) -> str:
    """The created contact's Id, from the ResourceUri the standard success response carries."""
    return body["D"]["Results"][0]["ResourceUri"].rsplit("/", 1)[1]


def md5(text: bytes) -> str:
    return hashlib.md5(text).hexdigest()


class SessionClient:
    """Signs requests the way the Spark auth page describes, independently of the simulator."""

    def __init__(self, sim: SparkSim, http: aiohttp.ClientSession):
        env = sim.credentials()
        self.key, self.secret, self.http = env["SPARK_API_KEY"], env["SPARK_API_SECRET"], http
        self.token = ""

    async def open(self) -> tuple[int, dict]:
        sig = md5(f"{self.secret}ApiKey{self.key}".encode())
        status, body, _ = await call(self.http, "POST", "/v1/session", UA,
                                     params={"ApiKey": self.key, "ApiSig": sig})
        if status == 200:
            self.token = body["D"]["Results"][0]["AuthToken"]
        return status, body

    def sign(self, path: str, params: dict[str, str], body: bytes = b"") -> str:
        joined = "".join(k + v for k, v in sorted(params.items()))
        text = f"{self.secret}ApiKey{self.key}ServicePath{path}AuthToken{self.token}{joined}"
        return md5(text.encode() + body)

    async def request(self, method: str, path: str, params: dict[str, str] | None = None,
                      body: bytes | None = None, sig: str | None = None) -> tuple[int, dict, Any]:
        params = dict(params or {})
        signature = sig or self.sign(path, params, body or b"")
        headers = {**UA, "Content-Type": "application/json"} if body is not None else UA
        return await call(self.http, method, path, headers,
                          params={**params, "AuthToken": self.token, "ApiSig": signature}, data=body)


async def create(http: aiohttp.ClientSession, sim: SparkSim, d: dict[str, Any]) -> tuple[int, dict, Any]:
    return await call(http, "POST", "/v1/contacts", bearer(sim), json={"D": d})


async def all_ids(http: aiohttp.ClientSession, sim: SparkSim, params: dict[str, str]) -> list[str]:
    _, body, _ = await call(http, "GET", "/v1/contacts", bearer(sim), params={**params, "_limit": "25"})
    assert body["D"]["Success"] is True, body
    return [c["Id"] for c in body["D"]["Results"]]


# ---- the doc's samples ----------------------------------------------------------------

async def test_get_sample_shape() -> None:
    async with serve(contacts=3, seed=2) as (sim, http):
        status, body, headers = await call(http, "GET", "/v1/contacts", bearer(sim))
        assert status == 200 and headers["Content-Type"].startswith("application/json")
        assert body["D"]["Success"] is True and "Pagination" not in body["D"]
        first = body["D"]["Results"][0]
        assert len(first["Id"]) == 24 and first["Id"].isdigit()
        assert first["ResourceUri"] == f"/v1/contacts/{first['Id']}"
        assert isinstance(first["DisplayName"], str) and "@" in first["PrimaryEmail"]
        assert isinstance(first["Tags"], list)
        assert "Notes" not in first
        ids = [c["Id"] for c in body["D"]["Results"]]
        assert ids == sorted(ids) == [c["Id"] for c in sim.inspect_records("contacts")]


async def test_post_put_get_delete_samples() -> None:
    async with serve() as (sim, http):
        status, body, _ = await create(http, sim, {"DisplayName": "My Contact",
                                                   "PrimaryEmail": "mycontact@sparkplatform.com"})
        assert status == 201 and body["D"]["Success"] is True
        new = body["D"]["Results"][0]
        assert set(new) == {"ResourceUri"}, "the standard success response promises no Id"
        assert new["ResourceUri"].startswith("/v1/contacts/") and len(new["ResourceUri"]) == 13 + 24
        status, body, _ = await call(http, "GET", new["ResourceUri"], bearer(sim))
        got = body["D"]["Results"][0]
        assert status == 200 and got["DisplayName"] == "My Contact"
        await asyncio.sleep(0.01)
        status, body, _ = await call(http, "PUT", new["ResourceUri"], bearer(sim), json={
            "D": {"PrimaryPhoneNumber": "555-555-5555", "ReferredBy": "Mr. Crowley"}})
        assert status == 200 and body == {"D": {"Success": True}}
        _, body, _ = await call(http, "GET", new["ResourceUri"], bearer(sim))
        after = body["D"]["Results"][0]
        assert after["PrimaryPhoneNumber"] == "555-555-5555" and after["ReferredBy"] == "Mr. Crowley"
        assert after["ModificationTimestamp"] > got["ModificationTimestamp"]
        assert after["CreatedTimestamp"] == got["CreatedTimestamp"]
        status, body, _ = await call(http, "DELETE", new["ResourceUri"], bearer(sim))
        assert status == 200 and body == {"D": {"Success": True}}
        status, body, _ = await call(http, "GET", new["ResourceUri"], bearer(sim))
        assert_error(status, body, 404, 404)
        assert sim.inspect_records("contacts") == []


@pytest.mark.parametrize("method,path", [("PUT", "/v1/contacts"), ("DELETE", "/v1/contacts"),
                                         ("POST", "/v1/contacts/201901010056000000000000"),
                                         ("GET", "/v1/session")])
async def test_not_implemented_methods_answer_405(method: str, path: str) -> None:
    async with serve(contacts=1) as (sim, http):
        status, body, _ = await call(http, method, path, bearer(sim))
        assert_error(status, body, 405, 405)


# ---- header and credentials ----------------------------------------------------------

async def test_missing_user_agent_is_1016_everywhere() -> None:
    async with serve(contacts=1) as (sim, http):
        token = {"Authorization": bearer(sim)["Authorization"]}
        status, body, _ = await call(http, "GET", "/v1/contacts", token)
        assert_error(status, body, 400, 1016)
        status, body, _ = await call(http, "POST", "/v1/session", {},
                                     params={"ApiKey": sim.api_key, "ApiSig": "x"})
        assert_error(status, body, 400, 1016)
        status, body, _ = await call(http, "GET", "/v1/contacts", {**token, "X-SparkApi-User-Agent": " "})
        assert_error(status, body, 400, 1016)


async def test_bad_or_missing_credentials_are_1000() -> None:
    async with serve(contacts=1) as (sim, http):
        for headers in (UA, {**UA, "Authorization": "Bearer nope"},
                        {**UA, "Authorization": f"Basic {sim.access_token}"}):
            status, body, _ = await call(http, "GET", "/v1/contacts", headers)
            assert_error(status, body, 401, 1000)
        status, body, _ = await call(http, "GET", "/v1/contacts", UA,
                                     params={"AuthToken": "unknown", "ApiSig": "0" * 32})
        assert_error(status, body, 401, 1000)
        status, _, _ = await call(http, "GET", "/v1/contacts",
                                  {**UA, "Authorization": f"OAuth {sim.access_token}"})
        assert status == 200
        assert sim.stats.unauthorized == 4


# ---- paging, filters, ordering, expansions ---------------------------------------------

async def test_paging_returns_each_contact_once() -> None:
    async with serve(contacts=30, seed=4) as (sim, http):
        seen: list[str] = []
        for page in range(1, 6):
            status, body, _ = await call(http, "GET", "/v1/contacts", bearer(sim),
                                         params={"_pagination": "1", "_limit": "7", "_page": str(page)})
            assert status == 200
            assert body["D"]["Pagination"] == {"TotalRows": 30, "PageSize": 7, "TotalPages": 5,
                                               "CurrentPage": page}
            assert len(body["D"]["Results"]) == (7 if page < 5 else 2)
            seen += [c["Id"] for c in body["D"]["Results"]]
        assert sorted(seen) == sorted(c["Id"] for c in sim.inspect_records("contacts"))
        assert len(set(seen)) == 30
        _, body, _ = await call(http, "GET", "/v1/contacts", bearer(sim),
                                params={"_pagination": "1", "_limit": "7", "_page": "6"})
        assert body["D"]["Results"] == [] and body["D"]["Pagination"]["CurrentPage"] == 6
        _, body, _ = await call(http, "GET", "/v1/contacts", bearer(sim), params={"_pagination": "count"})
        assert body["D"] == {"Success": True, "Pagination": {"TotalRows": 30, "PageSize": 10,
                                                             "TotalPages": 3, "CurrentPage": 1}}
        _, body, _ = await call(http, "GET", "/v1/contacts", bearer(sim))
        assert len(body["D"]["Results"]) == 10


async def test_dirty_seed_keeps_its_dirt_and_still_pages() -> None:
    dirt = Dirt(missing_email=0.2, duplicate_email=0.3, unicode_name=0.2, long_name=0.1)
    async with serve(contacts=40, seed=9, dirt=dirt) as (sim, http):
        stored = sim.inspect_records("contacts")
        emails = [c["PrimaryEmail"] for c in stored if c["PrimaryEmail"]]
        assert len(emails) < 40 and len(set(emails)) < len(emails)
        seen = []
        for page in (1, 2):
            _, body, _ = await call(http, "GET", "/v1/contacts", bearer(sim), params={
                "_limit": "25", "_page": str(page), "_expand": "UniquePrimaryEmail"})
            seen += body["D"]["Results"]
        assert sorted(c["Id"] for c in seen) == sorted(c["Id"] for c in stored)
        shared = {e for e in emails if emails.count(e) > 1}
        assert all(c["UniquePrimaryEmail"] is (bool(c["PrimaryEmail"]) and c["PrimaryEmail"] not in shared)
                   for c in seen)
        dup = min(shared, key=lambda e: (len(e), e))  # not set order: a long-name dirt e-mail can pass 75 chars
        assert len(await all_ids(http, sim, {"_filter": f"PrimaryEmail Eq '{dup}'"})) == emails.count(dup)
        status, body, _ = await create(http, sim, {"DisplayName": "Late", "PrimaryEmail": dup.upper()})
        assert_error(status, body, 409, 1055)


@pytest.mark.parametrize("params", [{"_limit": "26"}, {"_limit": "-1"}, {"_limit": "x"},
                                    {"_limit": ""}, {"_page": "0"}, {"_pagination": "yes"},
                                    {"_expand": "Nope"}])
async def test_bad_paging_parameters_are_1053(params: dict[str, str]) -> None:
    async with serve(contacts=2) as (sim, http):
        status, body, _ = await call(http, "GET", "/v1/contacts", bearer(sim), params=params)
        assert_error(status, body, 400, 1053)


async def test_filters_and_the_display_name_wildcard_rule() -> None:
    async with serve(contacts=20, seed=5) as (sim, http):
        status, body, _ = await create(http, sim, {"DisplayName": "Neddy Nederlander",
                                                   "PrimaryEmail": "Neddy@Example.com"})
        assert status == 201
        neddy = new_id(body)
        for pattern, hit in [("Neddy*", True), ("Neder*", True), ("neder*", True), ("*lander", True),
                             ("Neddy Ned*", True), ("Nederlander", False), ("Ned Neder*", False),
                             ("neddy nederlander", True), ("Nedd", False)]:
            ids = await all_ids(http, sim, {"_filter": f"DisplayName Eq '{pattern}'"})
            assert (neddy in ids) is hit, pattern
        assert await all_ids(http, sim, {"_filter": "PrimaryEmail Eq 'NEDDY@example.COM'"}) == [neddy]
        assert await all_ids(http, sim, {"_filter": "PrimaryEmail Eq 'neddy@example.co'"}) == []
        assert await all_ids(http, sim, {
            "_filter": "DisplayName Eq 'Neder*' And PrimaryEmail Eq 'neddy@example.com'"}) == [neddy]
        assert await all_ids(http, sim, {
            "_filter": "DisplayName Eq 'Neder*' And PrimaryEmail Eq 'other@example.com'"}) == []

        seeded = sim.inspect_records("contacts")[:20]
        stamps = sorted(c["ModificationTimestamp"] for c in seeded)
        pivot = stamps[9]
        older = await all_ids(http, sim, {"_filter": f"ModificationTimestamp Le {pivot}"})
        newer = await all_ids(http, sim, {"_filter": f"ModificationTimestamp Gt {pivot}"})
        assert len(older) == 10 and neddy in newer and len(newer) == 11
        assert not set(older) & set(newer)
        lo, hi = stamps[2], stamps[5]
        window = await all_ids(http, sim, {
            "_filter": f"ModificationTimestamp Ge {lo} And ModificationTimestamp Lt {hi}"})
        assert window == [c["Id"] for c in seeded if lo <= c["ModificationTimestamp"] < hi]
        assert len(window) == 3
        since_2020 = await all_ids(http, sim, {"_filter": "ModificationTimestamp Gt 2020-01-01T00:00:00Z"})
        assert since_2020 == [c["Id"] for c in seeded if c["ModificationTimestamp"] > "2020-01-01"] + [neddy]


async def test_filter_or_not_lists_tags_and_between() -> None:
    async with serve() as (sim, http):
        ids = {}
        for name, email, tags in [("Ann Alpha", "ann@example.com", ["vip"]),
                                  ("Bob Beta", "bob@example.com", ["investor", "VIP"]),
                                  ("Cy Gamma", "cy@example.com", [])]:
            _, body, _ = await create(http, sim, {"DisplayName": name, "PrimaryEmail": email, "Tags": tags})
            ids[name.split()[0]] = new_id(body)
            await asyncio.sleep(0.005)
        ann, bob, cy = ids["Ann"], ids["Bob"], ids["Cy"]
        assert await all_ids(http, sim, {"_filter": "Tags Eq 'vip'"}) == [ann, bob]
        assert await all_ids(http, sim, {"_filter": "Tags Ne 'vip'"}) == [cy]
        either = "PrimaryEmail Eq 'ann@example.com','cy@example.com'"
        assert await all_ids(http, sim, {"_filter": either}) == [ann, cy]
        assert await all_ids(http, sim, {
            "_filter": "DisplayName Eq 'Bob*' Or (Tags Eq 'vip' And Not DisplayName Eq 'Ann*')"}) == [bob]
        neither = "Not (DisplayName Eq 'Bob*' Or DisplayName Eq 'Cy*')"
        assert await all_ids(http, sim, {"_filter": neither}) == [ann]
        stamps = {c["Id"]: c["ModificationTimestamp"] for c in sim.inspect_records("contacts")}
        assert await all_ids(http, sim, {
            "_filter": f"ModificationTimestamp Bt {stamps[ann]},{stamps[bob]}"}) == [ann, bob]
        status, body, _ = await call(http, "GET", "/v1/contacts", bearer(sim),
                                     params={"_filter": f"ModificationTimestamp Bt {stamps[ann]}"})
        assert_error(status, body, 400, 1040)


async def test_unconnected_contacts_and_other_expansions() -> None:
    async with serve() as (sim, http):
        await create(http, sim, {"DisplayName": "Linked", "PrimaryEmail": "l@example.com"})
        status, body, _ = await create(http, sim, {"DisplayName": "Loose", "PrimaryEmail": "u@example.com",
                                                   "RecordStatus": "Unconnected"})
        assert status == 201
        loose = body["D"]["Results"][0]
        _, body, _ = await call(http, "GET", "/v1/contacts", bearer(sim))
        assert [c["DisplayName"] for c in body["D"]["Results"]] == ["Linked"]
        _, body, _ = await call(http, "GET", "/v1/contacts/unconnected", bearer(sim),
                                params={"_pagination": "1"})
        assert [c["Id"] for c in body["D"]["Results"]] == [new_id({"D": {"Results": [loose]}})]
        assert body["D"]["Pagination"]["TotalRows"] == 1
        status, _, _ = await call(http, "PUT", loose["ResourceUri"], bearer(sim),
                                  json={"D": {"RecordStatus": "Connected"}})
        assert status == 200
        status, body, _ = await call(http, "PUT", loose["ResourceUri"], bearer(sim),
                                     json={"D": {"RecordStatus": "Unconnected"}})
        assert_error(status, body, 400, 1053)
        _, body, _ = await call(http, "GET", "/v1/contacts", bearer(sim),
                                params={"_expand": "UniquePrimaryEmail,VowEnabled"})
        assert all(c["UniquePrimaryEmail"] is True and c["VowExists"] is False for c in body["D"]["Results"])
        status, body, _ = await call(http, "GET", "/v1/contacts", bearer(sim), params={"_expand": "Activity"})
        assert_error(status, body, 403, 1500)
        status, body, _ = await call(http, "GET", "/v1/listings", bearer(sim))
        assert_error(status, body, 404, 404)


@pytest.mark.parametrize("params", [
    {"_filter": "PrimaryEmail Eq"}, {"_filter": "PrimaryEmail Like 'a@b.co'"},
    {"_filter": "SecondaryEmails Eq 'a@b.co'"}, {"_filter": "Bogus Eq 'x'"},
    {"_filter": "PrimaryEmail Eq a@b.co"}, {"_filter": "ModificationTimestamp Gt 'yesterday'"},
    {"_filter": "ModificationTimestamp Gt yesterday"}, {"_filter": "(PrimaryEmail Eq 'a@b.co'"},
    {"_filter": "PrimaryEmail Eq 'a@b.co' and DisplayName Eq 'x'"}, {"_filter": "DisplayName Gt 'a'"},
    {"_filter": "PrimaryEmail Eq 'unterminated"}, {"_filter": ""},
    {"_orderby": "Bogus"}, {"_orderby": "-SecondaryEmails"}, {"_orderby": "Id"},
    {"_orderby": "-DisplayName"}, {"_orderby": "ModificationTimestamp"}])
async def test_bad_filter_or_orderby_is_1040(params: dict[str, str]) -> None:
    async with serve(contacts=2) as (sim, http):
        status, body, _ = await call(http, "GET", "/v1/contacts", bearer(sim), params=params)
        assert_error(status, body, 400, 1040)


async def test_orderby_is_only_what_the_doc_lists() -> None:
    """The doc lists one sort, ``_orderby=-Score``, under the Activity expansion (Private role)."""
    async with serve(contacts=12, seed=6) as (sim, http):
        for value in ("-Score", "Score"):
            status, body, _ = await call(http, "GET", "/v1/contacts", bearer(sim), params={"_orderby": value})
            assert_error(status, body, 403, 1500)
        _, body, _ = await call(http, "GET", "/v1/contacts", bearer(sim), params={"_limit": "25"})
        assert len(body["D"]["Results"]) == 12


async def test_expand_notes() -> None:
    async with serve(contacts=5, seed=3) as (sim, http):
        status, body, _ = await create(http, sim, {"DisplayName": "Noted Person",
                                                   "PrimaryEmail": "n@example.com",
                                                   "Note": "Met at the open house."})
        assert status == 201
        uri = body["D"]["Results"][0]["ResourceUri"]
        _, body, _ = await call(http, "GET", uri, bearer(sim), params={"_expand": "Notes"})
        notes = body["D"]["Results"][0]["Notes"]
        assert [n["Note"] for n in notes] == ["Met at the open house."]
        assert set(notes[0]) == {"Id", "Note", "CreatedTimestamp"} and "Note" not in body["D"]["Results"][0]
        _, body, _ = await call(http, "GET", "/v1/contacts", bearer(sim), params={"_expand": "Notes"})
        assert all(isinstance(c["Notes"], list) for c in body["D"]["Results"])
        stored = {c["Id"]: c["Notes"] for c in sim.inspect_records("contacts")}
        assert {c["Id"]: c["Notes"] for c in body["D"]["Results"]} == stored
        assert any(stored.values())


# ---- writes: validation and dedup --------------------------------------------------

OK = {"DisplayName": "Valid Person", "PrimaryEmail": "valid@example.com"}


@pytest.mark.parametrize("d,code,field", [
    ({"DisplayName": "No Email"}, 1050, None),
    ({"PrimaryEmail": "noname@example.com"}, 1050, None),
    ({**OK, "DisplayName": "  "}, 1050, None),
    ({**OK, "DisplayName": "x" * 76}, 1053, "DisplayName"),
    ({**OK, "PrimaryEmail": "a" * 64 + "@example.com"}, 1053, "PrimaryEmail"),
    ({**OK, "PrimaryEmail": "not-an-email"}, 1053, "PrimaryEmail"),
    ({**OK, "GivenName": "g" * 301}, 1053, "GivenName"),
    ({**OK, "MobilePhoneCountryCode": "USA"}, 1053, "MobilePhoneCountryCode"),
    ({**OK, "Tags": ["t" * 76]}, 1053, "Tags"),
    ({**OK, "Tags": "vip"}, 1053, "Tags"),
    ({**OK, "Note": "n" * 10_001}, 1053, "Note"),
    ({**OK, "Id": "201901010056000000000000"}, 1053, "Id"),
    ({**OK, "ModificationTimestamp": "2020-01-01T00:00:00Z"}, 1053, "ModificationTimestamp"),
    ({**OK, "Organization": 42}, 1053, "Organization"),
    ({**OK, "SecondaryEmails": ["not-an-email"]}, 1053, "SecondaryEmails"),
    ({**OK, "SecondaryEmails": ["a@example.com"], "AdditionalNotificationEmails": ["b@example.com"]},
     1053, "AdditionalNotificationEmails"),
    ({**OK, "Settings": {"Theme": "dark"}}, 1053, "Settings"),
    ({**OK, "Notify": "yes"}, 1053, "Notify"),
    ({**OK, "RecordStatus": "Lost"}, 1053, "RecordStatus"),
    ({**OK, "OwnerId": "20090815223215294334000000"}, 1053, "OwnerId"),
])
async def test_create_validation(d: dict[str, Any], code: int, field: str | None) -> None:
    async with serve() as (sim, http):
        status, body, _ = await create(http, sim, d)
        assert_error(status, body, 400, code)
        if field:
            assert field in body["D"]["Message"] and body["D"]["Details"] == [{field: body["D"]["Message"]}]
        assert sim.inspect_records("contacts") == [] and not sim.stats.creates_by_key


async def test_create_limits_are_inclusive() -> None:
    async with serve() as (sim, http):
        status, body, _ = await create(http, sim, {"DisplayName": "x" * 75, "GivenName": "g" * 300,
                                                   "PrimaryEmail": "a" * 63 + "@example.com",
                                                   "Tags": ["t" * 75], "Note": "n" * 10_000})
        assert status == 201, body
        assert len(sim.inspect_records("notes")[0]["Note"]) == 10_000


async def test_body_must_be_json_envelope() -> None:
    async with serve() as (sim, http):
        for headers, data in [({"Content-Type": "text/plain"}, orjson.dumps({"D": OK})),
                              ({"Content-Type": "application/json"}, b"{not json"),
                              ({"Content-Type": "application/json"}, orjson.dumps(OK)),
                              ({"Content-Type": "application/json"}, b"[]")]:
            status, body, _ = await call(http, "POST", "/v1/contacts", {**bearer(sim), **headers}, data=data)
            assert_error(status, body, 400, 1035)
        assert sim.inspect_records("contacts") == []


async def test_duplicate_email_is_409_1055() -> None:
    async with serve() as (sim, http):
        status, first, _ = await create(http, sim, {"DisplayName": "A One",
                                                    "PrimaryEmail": "dup@example.com"})
        assert status == 201
        status, body, _ = await create(http, sim, {"DisplayName": "A Two", "PrimaryEmail": "DUP@Example.com"})
        assert_error(status, body, 409, 1055)
        assert len(sim.inspect_records("contacts")) == 1
        assert sim.stats.creates_by_key == {"dup@example.com": 1} and sim.duplicates() == {}
        status, second, _ = await create(http, sim, {"DisplayName": "B", "PrimaryEmail": "b@example.com"})
        uri = second["D"]["Results"][0]["ResourceUri"]
        status, body, _ = await call(http, "PUT", uri, bearer(sim),
                                     json={"D": {"PrimaryEmail": "Dup@example.com"}})
        assert_error(status, body, 409, 1055)
        own = first["D"]["Results"][0]["ResourceUri"]
        status, _, _ = await call(http, "PUT", own, bearer(sim),
                                  json={"D": {"PrimaryEmail": "DUP@example.com"}})
        assert status == 200
        status, body, _ = await call(http, "PUT", uri, bearer(sim), json={"D": {"DisplayName": ""}})
        assert_error(status, body, 400, 1050)


async def test_put_rules_and_transfer() -> None:
    async with serve() as (sim, http):
        _, body, _ = await create(http, sim, {**OK, "Notify": True, "SecondaryEmails": ["alt@example.com"],
                                              "AdditionalNotificationEmails": ["alt@example.com"]})
        uri = body["D"]["Results"][0]["ResourceUri"]
        for d, code in [({}, 1050), ({"Notify": True}, 1053), ({"PrimaryEmail": None}, 1050),
                        ({"OwnerId": "20090815223215294334000000", "DisplayName": "X"}, 1053),
                        ({"OwnerId": "not-an-id"}, 1053)]:
            status, resp, _ = await call(http, "PUT", uri, bearer(sim), json={"D": d})
            assert_error(status, resp, 400, code)
        status, resp, _ = await call(http, "PUT", uri, bearer(sim), json={"D": {"Note": "Called back."}})
        assert status == 200 and [n["Note"] for n in sim.inspect_records("notes")] == ["Called back."]
        status, resp, _ = await call(http, "PUT", uri, bearer(sim),
                                     json={"D": {"OwnerId": "20090815223215294334000000"}})
        assert status == 200 and resp == {"D": {"Success": True}}
        assert_error(*(await call(http, "GET", uri, bearer(sim)))[:2], 404, 404)
        assert sim.inspect_records("contacts") == []


# ---- sessions ------------------------------------------------------------------------

async def test_session_auth_and_one_session_per_key() -> None:
    async with serve(contacts=8, seed=7) as (sim, http):
        client = SessionClient(sim, http)
        status, body = await client.open()
        result = body["D"]["Results"][0]
        assert status == 200 and body["D"]["Success"] is True and result["Roles"] == ["idx"]
        assert result["Expires"] and result["AuthToken"]
        params = {"_limit": "5", "_filter": "DisplayName Eq '*'", "_pagination": "1"}
        status, body, _ = await client.request("GET", "/v1/contacts", params)
        assert status == 200 and len(body["D"]["Results"]) == 5, body
        status, body, _ = await client.request("GET", "/v1/contacts", params, sig="0" * 32)
        assert_error(status, body, 401, 1000)
        stale = client.sign("/v1/contacts", params)
        status, body, _ = await client.request("GET", "/v1/contacts", {**params, "_page": "2"}, sig=stale)
        assert_error(status, body, 401, 1000)

        payload = orjson.dumps({"D": {"DisplayName": "Signed", "PrimaryEmail": "signed@example.com"}})
        status, body, _ = await client.request("POST", "/v1/contacts", body=payload)
        assert status == 201, body
        forged = client.sign("/v1/contacts", {}, payload)
        other = orjson.dumps({"D": {"DisplayName": "Forged", "PrimaryEmail": "forged@example.com"}})
        status, body, _ = await client.request("POST", "/v1/contacts", body=other, sig=forged)
        assert_error(status, body, 401, 1000)
        assert "forged@example.com" not in sim.stats.creates_by_key

        second = SessionClient(sim, http)
        assert (await second.open())[0] == 200
        status, body, _ = await client.request("GET", "/v1/contacts", params)
        assert_error(status, body, 401, 1020)
        status, _, _ = await second.request("GET", "/v1/contacts", params)
        assert status == 200
        assert sim.sessions_opened == 2


async def test_session_open_with_wrong_signature_is_1000() -> None:
    async with serve() as (sim, http):
        status, body, _ = await call(http, "POST", "/v1/session", UA,
                                     params={"ApiKey": sim.api_key, "ApiSig": md5(b"wrong")})
        assert_error(status, body, 401, 1000)
        status, body, _ = await call(http, "POST", "/v1/session", UA, params={"ApiKey": sim.api_key})
        assert_error(status, body, 400, 1050)
        assert sim.sessions_opened == 0


async def test_session_lifetime_and_idle_timeout() -> None:
    now = [1_000_000.0]
    async with serve(contacts=2, clock=lambda: now[0]) as (sim, http):
        client = SessionClient(sim, http)
        await client.open()
        for _ in range(20):
            now[0] += 3599
            assert (await client.request("GET", "/v1/contacts"))[0] == 200
        now[0] = 1_000_000.0 + 86400
        status, body, _ = await client.request("GET", "/v1/contacts")
        assert_error(status, body, 401, 1020)
        await client.open()
        now[0] += 3600
        status, body, _ = await client.request("GET", "/v1/contacts")
        assert_error(status, body, 401, 1020)


# ---- rate limit ----------------------------------------------------------------------

@pytest.mark.parametrize("limit_status", [503, 429])
async def test_rate_limit_is_1550_with_retry_after(limit_status: int) -> None:
    async with serve(contacts=2, limit=(5, 1.0), rate_limit_status=limit_status) as (sim, http):
        for _ in range(5):
            assert (await call(http, "GET", "/v1/contacts", bearer(sim)))[0] == 200
        status, body, headers = await call(http, "GET", "/v1/contacts", bearer(sim))
        assert_error(status, body, limit_status, 1550)
        assert int(headers["Retry-After"]) >= 1
        assert sim.window.max_in_window == 5 and sim.stats.rate_limited == 1


async def test_bearer_and_session_share_the_keys_window() -> None:
    async with serve(contacts=2, limit=(5, 1.0)) as (sim, http):
        for _ in range(3):
            assert (await call(http, "GET", "/v1/contacts", bearer(sim)))[0] == 200
        client = SessionClient(sim, http)
        assert (await client.open())[0] == 200
        assert (await client.request("GET", "/v1/contacts"))[0] == 200
        status, body, _ = await client.request("GET", "/v1/contacts")
        assert_error(status, body, 503, 1550)
        assert sim.window.max_in_window <= 5


# ---- faults --------------------------------------------------------------------------

async def test_fault_latency() -> None:
    async with serve(contacts=1, faults=Faults(latency=0.15)) as (sim, http):
        start = time.perf_counter()
        assert (await call(http, "GET", "/v1/contacts", bearer(sim)))[0] == 200
        assert time.perf_counter() - start >= 0.15


async def test_fault_error_rate_is_not_a_rate_limit() -> None:
    async with serve(contacts=1, faults=Faults(error_rate=1.0)) as (sim, http):
        for _ in range(5):
            status, body, _ = await call(http, "GET", "/v1/contacts", bearer(sim))
            assert status in (500, 502, 503) and body["D"]["Success"] is False
            assert body["D"]["Code"] == status != 1550


async def test_fault_burst_429() -> None:
    async with serve(contacts=1, faults=Faults(burst_429_rate=1.0, burst_len=3)) as (sim, http):
        status, body, headers = await call(http, "GET", "/v1/contacts", bearer(sim))
        assert_error(status, body, 503, 1550)
        assert "Retry-After" in headers and sim.stats.faults["429_burst"] == 1


async def test_fault_drop_before_applies_nothing() -> None:
    async with serve(faults=Faults(drop_before_rate=1.0)) as (sim, http):
        with pytest.raises(aiohttp.ClientError):
            await create(http, sim, OK)
        assert sim.inspect_records("contacts") == [] and not sim.stats.creates_by_key


async def test_fault_drop_after_applies_the_write() -> None:
    async with serve(faults=Faults(drop_after_rate=1.0)) as (sim, http):
        with pytest.raises(aiohttp.ClientError):
            await create(http, sim, OK)
        assert [c["PrimaryEmail"] for c in sim.inspect_records("contacts")] == [OK["PrimaryEmail"]]
        assert sim.stats.faults["drop_after"] == 1


async def test_fault_truncate() -> None:
    async with serve(contacts=3, faults=Faults(truncate_rate=1.0)) as (sim, http):
        async with http.get("/v1/contacts", headers=bearer(sim)) as resp:
            raw = await resp.read()
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(raw)
        assert sim.stats.faults["truncated"] == 1


async def test_fault_token_ttl_expires_sessions() -> None:
    async with serve(contacts=1, faults=Faults(token_ttl=0.3)) as (sim, http):
        client = SessionClient(sim, http)
        _, body = await client.open()
        assert (await client.request("GET", "/v1/contacts"))[0] == 200
        await asyncio.sleep(0.35)
        status, body, _ = await client.request("GET", "/v1/contacts")
        assert_error(status, body, 401, 1020)
        assert (await client.open())[0] == 200
        assert (await client.request("GET", "/v1/contacts"))[0] == 200


# ---- issue 17: as strict as the doc ------------------------------------------------------

DOC_POST = {"D": {"DisplayName": "My Contact", "PrimaryEmail": "mycontact@sparkplatform.com"}}


@pytest.mark.parametrize("answer,want", [("uri", {"ResourceUri"}), ("id", {"ResourceUri", "Id"}), ("bare", None)])
async def test_doc_post_sample_answers_the_standard_success_response(answer: str, want: set | None) -> None:
    async with serve(create_answer=answer) as (sim, http):
        status, body, _ = await call(http, "POST", "/v1/contacts", bearer(sim), json=DOC_POST)
        assert status == 201 and body["D"]["Success"] is True
        stored = sim.inspect_records("contacts")
        assert [c["DisplayName"] for c in stored] == ["My Contact"]
        if want is None:
            assert body == {"D": {"Success": True}}
        else:
            (row,) = body["D"]["Results"]
            assert set(row) == want and row["ResourceUri"] == f"/v1/contacts/{stored[0]['Id']}"


async def test_the_ruby_clients_contacts_body_is_accepted() -> None:
    async with serve() as (sim, http):
        d = {"D": {"Contacts": [DOC_POST["D"], {"DisplayName": "Two", "PrimaryEmail": "two@example.com"}]}}
        status, body, _ = await call(http, "POST", "/v1/contacts", bearer(sim), json=d)
        assert status == 201 and len(body["D"]["Results"]) == 2
        assert sorted(c["DisplayName"] for c in sim.inspect_records("contacts")) == ["My Contact", "Two"]
        # all or nothing: one bad contact stores none
        d = {"D": {"Contacts": [{"DisplayName": "Three", "PrimaryEmail": "three@example.com"},
                                {"DisplayName": "No mail"}]}}
        status, body, _ = await call(http, "POST", "/v1/contacts", bearer(sim), json=d)
        assert_error(status, body, 400, 1050)
        assert len(sim.inspect_records("contacts")) == 2


async def test_unknown_keys_are_dropped_silently() -> None:
    async with serve() as (sim, http):
        status, body, _ = await create(http, sim, {**OK, "Nickname": "Val", "GivenNmae": "Typo"})
        assert status == 201, body
        (stored,) = sim.inspect_records("contacts")
        assert "Nickname" not in stored and "GivenNmae" not in stored and stored["GivenName"] is None
        status, body, _ = await call(http, "PUT", body["D"]["Results"][0]["ResourceUri"], bearer(sim),
                                     json={"D": {"Bogus": 1}})
        assert status == 200 and body == {"D": {"Success": True}}


async def test_session_signature_covers_the_path_as_sent() -> None:
    async with serve(contacts=1) as (sim, http):
        client = SessionClient(sim, http)
        await client.open()
        # a path with a character that is sent percent-encoded: signed as sent, it is a 404
        # (no such contact); signed decoded, the signature is wrong (1000)
        sent, decoded = "/v1/contacts/a%20b", "/v1/contacts/a b"
        params = {"AuthToken": client.token, "ApiSig": client.sign(sent, {})}
        status, body, _ = await call(http, "GET", URL(sent, encoded=True).with_query(params), UA)
        assert_error(status, body, 404, 404)
        params = {"AuthToken": client.token, "ApiSig": client.sign(decoded, {})}
        status, body, _ = await call(http, "GET", URL(sent, encoded=True).with_query(params), UA)
        assert_error(status, body, 401, 1000)


async def test_access_token_expires_and_the_refresh_grant_renews_it() -> None:
    now = [1000.0]
    async with serve(contacts=1, clock=lambda: now[0]) as (sim, http):
        env = sim.credentials()
        assert (await call(http, "GET", "/v1/contacts", bearer(sim)))[0] == 200
        now[0] += 86400
        status, body, _ = await call(http, "GET", "/v1/contacts", bearer(sim))
        assert_error(status, body, 401, 1020)
        grant = {"client_id": env["SPARK_CLIENT_ID"], "client_secret": env["SPARK_CLIENT_SECRET"],
                 "grant_type": "refresh_token", "refresh_token": env["SPARK_REFRESH_TOKEN"]}
        for bad, want in [({**grant, "client_secret": "x"}, (401, "invalid_client")),
                          ({**grant, "refresh_token": "x"}, (400, "invalid_grant")),
                          ({**grant, "grant_type": "password"}, (400, "unsupported_grant_type")),
                          ({**grant, "grant_type": "authorization_code", "code": "c"}, (400, "invalid_grant")),
                          ({"client_id": env["SPARK_CLIENT_ID"]}, (400, "invalid_request"))]:
            status, body, _ = await call(http, "POST", "/v1/oauth2/grant", UA, json=bad)
            assert (status, body["error"]) == want and body["error_description"]
        status, body, _ = await call(http, "POST", "/v1/oauth2/grant", UA, json=grant)
        assert status == 200 and set(body) == {"access_token", "refresh_token", "expires_in"}
        assert body["expires_in"] == 86400 and body["refresh_token"] == env["SPARK_REFRESH_TOKEN"]
        fresh = {**UA, "Authorization": f"OAuth {body['access_token']}"}
        assert (await call(http, "GET", "/v1/contacts", fresh))[0] == 200
        # the old token is over; a second grant ends the first new one too
        status, body2, _ = await call(http, "POST", "/v1/oauth2/grant", UA, json=grant)
        assert_error(*(await call(http, "GET", "/v1/contacts", fresh))[:2], 401, 1020)
        assert sim.grants == 2


async def test_access_token_lifetime_is_configurable() -> None:
    async with serve(contacts=1, access_token_ttl=0.2) as (sim, http):
        assert (await call(http, "GET", "/v1/contacts", bearer(sim)))[0] == 200
        await asyncio.sleep(0.25)
        status, body, _ = await call(http, "GET", "/v1/contacts", bearer(sim))
        assert_error(status, body, 401, 1020)
