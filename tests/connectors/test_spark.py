"""Spark connector: request shapes from the doc (aioresponses), then the simulator over HTTP."""
from __future__ import annotations

import hashlib
import re
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import anyio
import orjson
import pytest
from tests.aioresp import aioresponses
from yarl import URL

from migrator.connectors.base import Context
from migrator.connectors.spark import Spark, SparkRefused
from migrator.errors import (AuthError, ConfigError, CredentialExpired, RateLimited, RecordError, Retryable,
                             TokenExpired, UncertainWrite)
from migrator.http import Request, Response
from migrator.sandbox.base import Faults
from migrator.sandbox.server import Sandbox, make

BASE = "https://sparkapi.com"
KEY, SECRET, TOKEN = "idx_key_123", "s3cr3t-value", "bearer-token-value"
UA = "acme-tests/2.0"
ANY_CONTACTS = re.compile(r"^https://sparkapi\.com/v1/contacts(\?.*)?$")
ANY_SESSION = re.compile(r"^https://(sparkapi\.com|auth\.example\.com)/v1/session\?.*$")

# The doc's own sample bodies.
DOC_LIST = {"D": {"Success": True, "Results": [{
    "ResourceUri": "/vX/contacts/201010122342756895000000",
    "Id": "201010122342756895000000",
    "DisplayName": "Some Person",
    "PrimaryEmail": "test@test.com",
    "Tags": ["IDX Lead"]}]}}
DOC_POST = {"DisplayName": "My Contact", "PrimaryEmail": "mycontact@sparkplatform.com"}
DOC_PUT = {"PrimaryPhoneNumber": "555-555-5555", "ReferredBy": "Mr. Crowley"}
NEW_ID = "20101230223226074306000000"
CREATED = {"D": {"Success": True, "Results": [{"ResourceUri": f"/v1/contacts/{NEW_ID}", "Id": NEW_ID}]}}
SESSION = {"D": {"Success": True, "Results": [
    {"AuthToken": "xxxxx", "Expires": "2010-10-30T15:49:01-05:00", "Roles": ["idx"]}]}}


def md5(text: str | bytes) -> str:
    return hashlib.md5(text.encode() if isinstance(text, str) else text).hexdigest()


def with_paging(body: dict, rows: int, pages: int, page: int = 1) -> dict:
    d = dict(body["D"])
    d["Pagination"] = {"TotalRows": rows, "PageSize": 25, "TotalPages": pages, "CurrentPage": page}
    return {"D": d}


def failure(code: int, message: str, **extra: Any) -> dict:
    return {"D": {"Success": False, "Code": code, "Message": message, **extra}}


def bearer(**extra: Any) -> Spark:
    return Spark({"system": "spark", "access_token": TOKEN, "user_agent": UA, "rate_limit": "off", **extra},
                 Context())


def session(**extra: Any) -> Spark:
    return Spark({"system": "spark", "api_key": KEY, "api_secret": SECRET, "user_agent": UA,
                  "rate_limit": "off", **extra}, Context())


def calls(m: aioresponses, method: str | None = None) -> list[tuple[str, URL, dict[str, Any]]]:
    return [(meth, url, call.kwargs) for (meth, url), made in m.requests.items() for call in made
            if method is None or meth == method]


def query(url: URL) -> dict[str, str]:
    return dict(url.query)


# ---- unit: request and response shapes -------------------------------------------------

async def test_list_request_and_unwrapped_envelope() -> None:
    c = bearer()
    with aioresponses() as m:
        m.get(ANY_CONTACTS, payload=with_paging(DOC_LIST, 1, 1))
        pages = [p async for p in c.pages("contacts", None)]
        await c.close()
    [(_, url, kwargs)] = calls(m, "GET")
    assert url.path == "/v1/contacts"
    assert query(url) == {"_pagination": "1", "_limit": "25", "_page": "1"}   # no _orderby: the doc lists none
    assert kwargs["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert kwargs["headers"]["X-SparkApi-User-Agent"] == UA
    [page] = pages
    assert page.cursor is None and page.total == 1
    assert [(r.source_id, r.data) for r in page.records] == [
        ("201010122342756895000000", DOC_LIST["D"]["Results"][0])]


async def test_info_page_is_not_fetched_again() -> None:
    c = bearer()
    with aioresponses() as m:
        m.get(ANY_CONTACTS, payload=with_paging(DOC_LIST, 1, 1))
        info = await c.info("contacts")
        pages = [p async for p in c.pages("contacts", None)]
        await c.close()
    assert info.total == 1 and len(pages) == 1 and len(calls(m)) == 1


async def test_since_and_notes_expansion_shape_the_query() -> None:
    from migrator.mapping.compile import load_mapping
    mapping = load_mapping("source: spark\ntarget: spark\nstreams:\n  contacts:\n    fields:\n"
                           "      DisplayName: DisplayName\n      PrimaryEmail: PrimaryEmail\n"
                           "      Note: Notes[0].Note\n", schemas=Spark.schemas())
    c = Spark({"system": "spark", "access_token": TOKEN, "rate_limit": "off"},
              Context(since="2024-03-01T12:00:00+02:00"))
    c.use_mapping(list(mapping.streams.values()))
    with aioresponses() as m:
        m.get(ANY_CONTACTS, payload=with_paging(DOC_LIST, 1, 1))
        [p async for p in c.pages("contacts", None)]
        await c.close()
    [(_, url, kwargs)] = calls(m)
    q = query(url)
    assert q["_expand"] == "Notes"
    assert q["_filter"] == "ModificationTimestamp Gt 2024-03-01T10:00:00Z"
    assert kwargs["headers"]["X-SparkApi-User-Agent"] == "crm-migrator/0.1"


async def test_no_notes_expansion_unless_mapped() -> None:
    from migrator.mapping.compile import load_mapping
    mapping = load_mapping("source: spark\ntarget: spark\nstreams:\n  contacts:\n    fields:\n"
                           "      DisplayName: DisplayName\n      PrimaryEmail: PrimaryEmail\n",
                           schemas=Spark.schemas())
    c = bearer()
    c.use_mapping(list(mapping.streams.values()))
    with aioresponses() as m:
        m.get(ANY_CONTACTS, payload=with_paging(DOC_LIST, 1, 1))
        [p async for p in c.pages("contacts", None)]
        await c.close()
    assert "_expand" not in query(calls(m)[0][1]) and "_filter" not in query(calls(m)[0][1])


async def test_create_sends_the_d_envelope_and_reads_the_id() -> None:
    c = bearer()
    with aioresponses() as m:
        m.post(f"{BASE}/v1/contacts", status=201, payload=CREATED)
        result = await c.write("contacts", dict(DOC_POST), source_id="s1")
        await c.close()
    [(_, url, kwargs)] = calls(m)
    assert orjson.loads(kwargs["data"]) == {"D": DOC_POST}
    assert kwargs["headers"]["Content-Type"] == "application/json"
    assert (result.target_id, result.action, result.requests) == (NEW_ID, "created", {"create": 1})


async def test_update_puts_to_the_contact() -> None:
    c = bearer()
    with aioresponses() as m:
        m.put(f"{BASE}/v1/contacts/{NEW_ID}", payload={"D": {"Success": True}})
        result = await c.write("contacts", {**DOC_PUT, "Settings.ReverseProspecting": True, "Other": None},
                               source_id="s1", target_id=NEW_ID)
        await c.close()
    [(method, url, kwargs)] = calls(m)
    assert orjson.loads(kwargs["data"]) == {"D": {**DOC_PUT, "Settings": {"ReverseProspecting": True}}}
    assert (result.target_id, result.action) == (NEW_ID, "updated")


@pytest.mark.parametrize("on_merge", ["update", "skip", "fail"])
async def test_duplicate_email_is_one_lookup_then_on_merge_decides(on_merge: str) -> None:
    c = bearer()
    c.on_merge = on_merge
    found = "201010122342756895000000"
    record = {"DisplayName": "Some Person", "PrimaryEmail": "Test@Test.com"}
    with aioresponses() as m:
        m.post(f"{BASE}/v1/contacts", status=409,
               payload=failure(1055, "A contact with PrimaryEmail test@test.com already exists."))
        m.get(ANY_CONTACTS, payload=DOC_LIST)
        m.put(f"{BASE}/v1/contacts/{found}", payload={"D": {"Success": True}})
        m.get(f"{BASE}/v1/contacts/{found}", payload=DOC_LIST)   # update reads it first: what undo puts back
        if on_merge == "fail":
            with pytest.raises(RecordError) as e:
                await c.write("contacts", record, source_id="s1")
        else:
            result = await c.write("contacts", record, source_id="s1")
        await c.close()
    assert len(calls(m, "POST")) == 1
    [(_, url, _)] = [c for c in calls(m, "GET") if "_filter" in query(c[1])]
    assert query(url)["_filter"] == "PrimaryEmail Eq 'Test@Test.com'"
    assert len(calls(m, "GET")) == (2 if on_merge == "update" else 1)
    puts = calls(m, "PUT")
    if on_merge == "fail":
        assert (e.value.rule, e.value.field) == ("merge", "PrimaryEmail") and not puts
        assert found in e.value.reason and "PrimaryEmail=Test@Test.com" in e.value.reason
        return
    assert result.target_id == found and result.matched_key == "PrimaryEmail=Test@Test.com"
    if on_merge == "update":
        [(_, _, kwargs)] = puts
        assert orjson.loads(kwargs["data"]) == {"D": record}
        assert result.action == "updated" and result.requests == {"create": 1, "lookup": 1, "read": 1, "update": 1}
    else:
        assert not puts and result.action == "matched" and result.requests == {"create": 1, "lookup": 1}


async def test_duplicate_that_lookup_cannot_find_stays_a_refusal() -> None:
    c = bearer()
    with aioresponses() as m:
        m.post(f"{BASE}/v1/contacts", status=409, payload=failure(1055, "duplicate"))
        m.get(ANY_CONTACTS, payload={"D": {"Success": True, "Results": []}})
        with pytest.raises(SparkRefused) as e:
            await c.write("contacts", dict(DOC_POST), source_id="s1")
        await c.close()
    assert e.value.code == 1055 and e.value.field == "PrimaryEmail" and "Code 1055" in e.value.reason


async def test_lookup_escapes_quotes_and_skips_records_without_email() -> None:
    c = bearer()
    with aioresponses() as m:
        m.get(ANY_CONTACTS, payload={"D": {"Success": True, "Results": [
            {"Id": "1", "PrimaryEmail": "o'neil@example.com"}]}})
        assert await c.lookup("contacts", {"PrimaryEmail": "o'neil@example.com"}, "s") == "1"
        assert await c.lookup("contacts", {"DisplayName": "No Mail"}, "s") is None
        await c.close()
    [(_, url, _)] = calls(m)
    assert query(url)["_filter"] == "PrimaryEmail Eq 'o\\'neil@example.com'"


# ---- unit: session auth and signatures ---------------------------------------------------

async def test_session_login_signed_get_and_signed_post() -> None:
    c = session(auth_base_url="https://auth.example.com")
    with aioresponses() as m:
        m.post(ANY_SESSION, payload=SESSION)
        m.get(ANY_CONTACTS, payload={"D": {"Success": True, "Results": []}})
        m.post(re.compile(r"^https://sparkapi\.com/v1/contacts\?.*$"), status=201, payload=CREATED)
        assert await c.lookup("contacts", {"PrimaryEmail": "a b@example.com"}, "s") is None
        result = await c.write("contacts", dict(DOC_POST), source_id="s1")
        await c.close()
    [(_, login, login_kw)] = [x for x in calls(m, "POST") if x[1].path == "/v1/session"]
    assert login.host == "auth.example.com"
    assert query(login) == {"ApiKey": KEY, "ApiSig": md5(f"{SECRET}ApiKey{KEY}")}
    [(_, get, get_kw)] = calls(m, "GET")
    params = query(get)
    assert params["AuthToken"] == "xxxxx"
    expected = md5(f"{SECRET}ApiKey{KEY}ServicePath/v1/contactsAuthTokenxxxxx"
                   f"_filterPrimaryEmail Eq 'a b@example.com'_limit25")
    assert params["ApiSig"] == expected
    [(_, post, post_kw)] = [x for x in calls(m, "POST") if x[1].path == "/v1/contacts"]
    body = post_kw["data"]
    assert orjson.loads(body) == {"D": DOC_POST}
    assert query(post)["ApiSig"] == md5(f"{SECRET}ApiKey{KEY}ServicePath/v1/contactsAuthTokenxxxxx".encode()
                                        + body)
    assert result.target_id == NEW_ID
    every = calls(m)
    assert len(every) == 3 and all(kw["headers"]["X-SparkApi-User-Agent"] == UA for _, _, kw in every)
    assert c.request_stats()["requests"] == {"auth": 1, "lookup": 1, "create": 1}


async def test_session_expiry_1020_renews_once_and_retries() -> None:
    c = session()
    with aioresponses() as m:
        m.post(ANY_SESSION, payload=SESSION)
        m.post(ANY_SESSION, payload={"D": {"Success": True, "Results": [{"AuthToken": "yyyyy"}]}})
        m.get(ANY_CONTACTS, status=401, payload=failure(1020, "Session token has expired."))
        m.get(ANY_CONTACTS, payload={"D": {"Success": True, "Results": []}})
        assert await c.lookup("contacts", {"PrimaryEmail": "a@example.com"}, "s") is None
        await c.close()
    tokens = [query(url)["AuthToken"] for _, url, _ in calls(m, "GET")]
    assert sorted(tokens) == ["xxxxx", "yyyyy"]
    assert c.request_stats()["token_refreshes"] == 1


async def test_rate_limit_1550_on_503_is_retried_after_retry_after() -> None:
    c = bearer()
    with aioresponses() as m:
        m.get(ANY_CONTACTS, status=503, headers={"Retry-After": "0"},
              payload=failure(1550, "Rate limit exceeded"))
        m.get(ANY_CONTACTS, payload={"D": {"Success": True, "Results": []}})
        assert await c.lookup("contacts", {"PrimaryEmail": "a@example.com"}, "s") is None
        await c.close()
    assert c.request_stats()["retries"] == {"rate_limited": 1}


# ---- unit: error envelopes to typed errors --------------------------------------------------

def classify(c: Spark, status: int, body: Any, headers: dict[str, str] | None = None,
             write: bool = False) -> Exception | None:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return c._classify(Response(status, headers or {}, raw, Request("POST", "/v1/contacts", write=write)))


@pytest.mark.parametrize("status", [429, 503])
def test_1550_is_rate_limited_with_retry_after(status: int) -> None:
    err = classify(bearer(), status, failure(1550, "Rate limit exceeded"), {"Retry-After": "7"})
    assert isinstance(err, RateLimited) and err.retry_after == 7.0 and "1550" in str(err)


def test_plain_503_outage_is_retryable_not_rate_limited() -> None:
    err = classify(bearer(), 503, failure(503, "The service is temporarily unavailable."))
    assert err is None  # HttpClient's default: Retryable


@pytest.mark.parametrize("code,status", [(1000, 401), (1010, 401), (1015, 403)])
def test_auth_codes_name_the_variables_never_the_values(code: int, status: int) -> None:
    err = classify(session(), status, failure(code, "Invalid API key."))
    assert isinstance(err, AuthError) and f"Code {code}" in str(err)
    assert "SPARK_API_KEY" in str(err) and "SPARK_API_SECRET" in str(err)
    assert KEY not in str(err) and SECRET not in str(err)
    err = classify(bearer(), status, failure(code, "Invalid access token."))
    assert isinstance(err, AuthError) and "SPARK_ACCESS_TOKEN" in str(err) and TOKEN not in str(err)


def test_1020_renews_a_session_but_not_a_bearer_token() -> None:
    assert isinstance(classify(session(), 401, failure(1020, "expired")), TokenExpired)
    err = classify(bearer(), 401, failure(1020, "expired"))
    assert isinstance(err, CredentialExpired) and err.stop and "SPARK_ACCESS_TOKEN" in str(err)
    assert "renew" in str(err) and TOKEN not in str(err) and "\n" not in str(err)
    refreshing = bearer(refresh_token="r", client_id="c", client_secret="s")
    assert isinstance(classify(refreshing, 401, failure(1020, "expired")), TokenExpired)


def test_1016_and_1017() -> None:
    err = classify(bearer(), 400, failure(1016, "The X-SparkApi-User-Agent header is required."))
    assert isinstance(err, ConfigError) and "user_agent" in str(err) and "1016" in str(err)
    err = classify(bearer(), 405, failure(1017, "This key is read-only."))
    assert isinstance(err, AuthError) and "read-only" in str(err)


@pytest.mark.parametrize("code,body_extra,message,field", [
    (1053, {"Details": [{"DisplayName": "DisplayName has a maximum of 75 characters."}]},
     "DisplayName has a maximum of 75 characters.", "DisplayName"),
    (1050, {}, "PrimaryEmail is required.", "PrimaryEmail"),
    (1040, {}, "Bogus is not a searchable field", None),
    (1053, {}, "GivenName has a maximum of 300 characters.", "GivenName"),
])
def test_record_codes_name_the_field(code: int, body_extra: dict, message: str, field: str | None) -> None:
    err = classify(bearer(), 400, failure(code, message, **body_extra))
    assert isinstance(err, RecordError) and err.field == field and err.status == 400
    assert f"Code {code}" in err.reason and message in err.reason


def test_garbled_success_body_is_retryable_or_uncertain() -> None:
    assert isinstance(classify(bearer(), 200, b'{"D": {"Succ'), Retryable)
    assert isinstance(classify(bearer(), 201, b'{"D": {"Succ', write=True), UncertainWrite)


def test_credentials_are_required() -> None:
    with pytest.raises(ConfigError) as e:
        Spark({"system": "spark", "api_key": KEY}, Context())
    assert "SPARK_ACCESS_TOKEN" in str(e.value) and "SPARK_API_SECRET" in str(e.value)
    assert KEY not in str(e.value)


def test_schema_from_the_doc() -> None:
    schema = Spark.schemas()["contacts"]
    ok = {"DisplayName": "x" * 75, "PrimaryEmail": "a@example.com", "Tags": ["t" * 75],
          "MobilePhoneCountryCode": "US", "Note": "n" * 10_000, "GivenName": "g" * 300}
    assert schema.validate(ok) == []
    bad = {"DisplayName": "x" * 76, "Tags": ["t" * 76], "MobilePhoneCountryCode": "USA",
           "Note": "n" * 10_001, "GivenName": "g" * 301, "Id": "1", "ModificationTimestamp": "x"}
    got = {(v.field, v.rule) for v in schema.validate(bad)}
    assert got == {("DisplayName", "max_length"), ("Tags", "max_length"),
                   ("MobilePhoneCountryCode", "max_length"), ("Note", "max_length"),
                   ("GivenName", "max_length"), ("Id", "unknown"), ("ModificationTimestamp", "unknown"),
                   ("PrimaryEmail", "required")}
    assert schema.field("SecondaryEmails").type == "list" and schema.field("OwnerId") is None


# ---- integration against the simulator ----------------------------------------------------

@asynccontextmanager
async def sandbox(contacts: int = 0, *, auth: str = "session", rate_limit: Any = None,
                  concurrency: int = 8, **sim_kwargs: Any) -> AsyncIterator[tuple[Any, Spark]]:
    sim = make("spark", contacts=contacts, seed=11, **sim_kwargs)
    async with Sandbox({"spark": sim}):
        env = sim.credentials()
        settings: dict[str, Any] = {"system": "spark", "base_url": sim.base_url,
                                    "rate_limit": rate_limit or {"requests": 1000, "per": 1}}
        if auth == "session":
            settings.update(api_key=env["SPARK_API_KEY"], api_secret=env["SPARK_API_SECRET"])
        else:
            settings["access_token"] = env["SPARK_ACCESS_TOKEN"]
        if auth == "oauth2":
            settings.update(refresh_token=env["SPARK_REFRESH_TOKEN"], client_id=env["SPARK_CLIENT_ID"],
                            client_secret=env["SPARK_CLIENT_SECRET"])
        c = Spark(settings, Context(role="target", concurrency=concurrency))
        await c.open()
        try:
            yield sim, c
        finally:
            await c.close()


@pytest.mark.parametrize("auth", ["session", "bearer"])
async def test_reads_every_seeded_contact_once_in_order(auth: str) -> None:
    async with sandbox(130, auth=auth, faults=Faults(latency=0.08)) as (sim, c):
        started = time.perf_counter()
        info = await c.info("contacts")
        pages = [p async for p in c.pages("contacts", None)]
        elapsed = time.perf_counter() - started
        seeded = [r["Id"] for r in sim.inspect_records("contacts")]
    assert info.total == 130
    ids = [r.source_id for p in pages for r in p.records]
    assert ids == sorted(seeded) and len(set(ids)) == 130
    assert [len(p.records) for p in pages] == [25, 25, 25, 25, 25, 5]
    assert [p.cursor for p in pages] == [{"page": n} for n in range(1, 6)] + [None]
    assert sim.stats.requests["GET /v1/contacts"] == 6
    # page 1, then pages 2-6 at once: sequential would take 6 latencies
    assert elapsed < 4 * 0.08 + 0.15
    by_id = {r["Id"]: r for r in sim.inspect_records("contacts")}
    first = pages[0].records[0]
    assert first.data["PrimaryEmail"] == by_id[first.source_id]["PrimaryEmail"] and "Notes" not in first.data


async def test_resumes_after_the_cursor_and_expands_notes() -> None:
    async with sandbox(130) as (sim, c):
        c.use_mapping([type("SM", (), {"source_stream": "contacts", "uses_paths": {"Notes", "Id"}})()])
        pages = [p async for p in c.pages("contacts", {"page": 4})]
        seeded = sorted(r["Id"] for r in sim.inspect_records("contacts"))
        notes = {r["Id"]: r["Notes"] for r in sim.inspect_records("contacts")}
    assert [r.source_id for p in pages for r in p.records] == seeded[100:]
    assert all(r.data["Notes"] == notes[r.source_id] for p in pages for r in p.records)


async def test_write_create_duplicate_and_schema_refusal() -> None:
    async with sandbox(3) as (sim, c):
        c.on_merge = "skip"   # the duplicate is settled on the first contact, which keeps its name
        schema = c.schema("contacts")
        record = {"DisplayName": "Dana Whitfield", "PrimaryEmail": "dana+home@example.com",
                  "Tags": ["Buyer"], "Note": "Met at the open house.", "Settings.ReverseProspecting": True}
        assert schema.validate(record) == []
        created = await c.write("contacts", record, source_id="a")
        dup = await c.write("contacts", {"DisplayName": "Dana W.", "PrimaryEmail": "DANA+home@example.com"},
                            source_id="b")
        too_long = {"DisplayName": "x" * 76, "PrimaryEmail": "long@example.com"}
        [violation] = schema.validate(too_long)
        updated = await c.write("contacts", {"WorkPhoneNumber": "212-555-0100"}, source_id="a",
                                target_id=created.target_id)
        stored = {r["Id"]: r for r in sim.inspect_records("contacts")}
        found = await c.lookup("contacts", {"PrimaryEmail": "Dana+Home@example.com"}, "a")
        missing = await c.lookup("contacts", {"PrimaryEmail": "nobody@example.com"}, "x")
    assert created.action == "created" and created.target_id in stored
    assert (dup.action, dup.target_id, dup.matched_key) == ("matched", created.target_id,
                                                           "PrimaryEmail=DANA+home@example.com")
    assert (violation.field, violation.rule) == ("DisplayName", "max_length")
    assert updated.action == "updated"
    row = stored[created.target_id]
    assert row["DisplayName"] == "Dana Whitfield" and row["Tags"] == ["Buyer"]
    assert row["Settings"] == {"ReverseProspecting": True} and row["WorkPhoneNumber"] == "212-555-0100"
    assert [n["Note"] for n in row["Notes"]] == ["Met at the open house."]
    assert len(stored) == 4 and sim.duplicates() == {}
    assert found == created.target_id and missing is None


async def test_server_refusal_is_a_record_error_naming_the_field() -> None:
    async with sandbox() as (sim, c):
        with pytest.raises(RecordError) as e:
            await c.write("contacts", {"DisplayName": "x" * 76, "PrimaryEmail": "long@example.com"},
                          source_id="a")
    assert e.value.field == "DisplayName" and "Code 1053" in e.value.reason
    assert sim.inspect_records("contacts") == []


async def test_one_session_renewal_per_expiry_under_concurrency() -> None:
    async with sandbox(5, limit=None, faults=Faults(token_ttl=1.0), concurrency=16) as (sim, c):
        started = time.perf_counter()
        done = 0

        async def worker(i: int) -> None:
            nonlocal done
            while time.perf_counter() - started < 2.3:
                assert await c.lookup("contacts", {"PrimaryEmail": f"w{i}@example.com"}, "s") is None
                done += 1
                await anyio.sleep(0.005)

        async with anyio.create_task_group() as tg:
            for i in range(16):
                tg.start_soon(worker, i)
        stats = c.request_stats()
    assert done > 100
    assert 2 <= sim.sessions_opened <= 4          # the first login and one per expiry
    assert stats["token_refreshes"] == sim.sessions_opened - 1
    assert stats["retries"]["token_expired"] >= 1


async def test_rate_limit_1550_is_honoured() -> None:
    async with sandbox(5, auth="bearer", rate_limit="off", limit=(4, 1.0)) as (sim, c):
        results = []
        async with anyio.create_task_group() as tg:
            for i in range(7):
                async def one(i: int = i) -> None:
                    results.append(await c.lookup("contacts", {"PrimaryEmail": f"r{i}@example.com"}, "s"))
                tg.start_soon(one)
        stats = c.request_stats()
    assert results == [None] * 7
    # each request over the window was refused once, then waited out Retry-After
    assert sim.stats.rate_limited == 3 and stats["retries"]["rate_limited"] == 3
    assert sim.window.max_in_window <= 4


async def test_wrong_secret_is_auth_error_naming_the_variables() -> None:
    sim = make("spark", seed=2)
    async with Sandbox({"spark": sim}):
        c = Spark({"system": "spark", "base_url": sim.base_url, "api_key": sim.credentials()["SPARK_API_KEY"],
                   "api_secret": "not-the-secret"}, Context())
        with pytest.raises(AuthError) as e:
            await c.lookup("contacts", {"PrimaryEmail": "a@example.com"}, "s")
        await c.close()
    assert "SPARK_API_KEY" in str(e.value) and "SPARK_API_SECRET" in str(e.value)
    assert "not-the-secret" not in str(e.value) and sim.sessions_opened == 0


# ---- dedup: the key index, on_merge and the write planner ------------------------------

def matching() -> Any:
    return type("SM", (), {"target_stream": "contacts", "match_on": ("PrimaryEmail",), "fields": {}})()


async def plan_then_write(sim: Any, c: Spark, records: list[dict[str, Any]],
                          on_merge: str) -> tuple[dict[str, int], dict[str, int], list[Any], str]:
    """The planner's counts for ``records``, then what a fresh connector sends writing them."""
    c.on_merge = on_merge
    planner = await c.write_planner("contacts", matching())
    for r in records:
        planner.add(r)
    counts = planner.requests()
    run = Spark({"system": "spark", "base_url": sim.base_url, "rate_limit": "off",
                 "access_token": sim.credentials()["SPARK_ACCESS_TOKEN"]}, Context(role="target"))
    run.on_merge = on_merge
    run.expected_records = {"contacts": len(records)}   # the plan's count, which decides as the plan did
    results: list[Any] = []
    try:
        await run.prepare([matching()])
        for i, r in enumerate(records):
            try:
                results.append(await run.write("contacts", r, source_id=str(i)))
            except RecordError as e:
                results.append(e)
        sent = dict(run.http.stats.requests)
    finally:
        await run.close()
    return counts, sent, results, planner.dedup


@pytest.mark.parametrize(("on_merge", "planned"), [
    ("update", {"index": 4, "create": 2, "update": 2, "read": 2}),   # read first: what undo puts back
    ("skip", {"index": 4, "create": 2}),
    ("fail", {"index": 4, "create": 2}),
])
async def test_write_planner_counts_what_writing_sends_under_each_on_merge(on_merge, planned) -> None:
    async with sandbox(60, auth="bearer") as (sim, c):
        seeded = sim.inspect_records("contacts")[0]
        records = [{"DisplayName": "Seeded", "PrimaryEmail": seeded["PrimaryEmail"].upper()},
                   {"DisplayName": "New", "PrimaryEmail": "new1@example.com", "Note": "first"},
                   {"DisplayName": "Again", "PrimaryEmail": "NEW1@example.com", "Note": "second"},
                   {"DisplayName": "Other", "PrimaryEmail": "new2@example.com"}]
        counts, sent, results, dedup = await plan_then_write(sim, c, records, on_merge)
        stored = {r["Id"]: r for r in sim.inspect_records("contacts")}
    assert counts == sent == planned   # 60 connected contacts: 3 pages, and 1 of unconnected ones
    assert "reads the account's contacts once" in dedup and "60 contacts" in dedup
    assert len(stored) == 62 and sim.duplicates() == {}
    first = results[1].target_id
    if on_merge == "fail":
        assert [(e.rule, e.field) for e in (results[0], results[2])] == [("merge", "PrimaryEmail")] * 2
        assert seeded["Id"] in results[0].reason and first in results[2].reason
        return
    action = "updated" if on_merge == "update" else "matched"
    assert [(r.action, r.target_id) for r in (results[0], results[2])] == \
        [(action, seeded["Id"]), (action, first)]
    assert [n["Note"] for n in stored[first]["Notes"]] == (["first", "second"] if on_merge == "update" else ["first"])
    assert stored[seeded["Id"]]["DisplayName"] == ("Seeded" if on_merge == "update" else seeded["DisplayName"])


async def test_a_large_account_and_few_records_create_optimistically_and_resolve_1055() -> None:
    async with sandbox(60, auth="bearer") as (sim, c):
        seeded = sim.inspect_records("contacts")[0]
        records = [{"DisplayName": "Seeded", "PrimaryEmail": seeded["PrimaryEmail"]}]
        counts, sent, [result], dedup = await plan_then_write(sim, c, records, "update")
    # Reading 2 more pages would cost more than the one lookup a refused create needs.
    assert counts == sent == {"index": 2, "create": 1, "lookup": 1, "read": 1, "update": 1}
    assert "creates optimistically" in dedup
    assert (result.action, result.target_id, result.matched_key) == \
        ("updated", seeded["Id"], f"PrimaryEmail={seeded['PrimaryEmail']}")


# ---- issue 17: only what the doc promises ----------------------------------------------------

@pytest.mark.parametrize("answer,requests", [("id", {"create": 1}), ("uri", {"create": 1}),
                                             ("bare", {"create": 1, "id_lookup": 1})])
async def test_a_create_is_a_create_whatever_the_answer_names(answer: str, requests: dict) -> None:
    async with sandbox(3, auth="bearer", create_answer=answer) as (sim, c):
        res = await c.write("contacts", dict(DOC_POST), source_id="s1")
        stored = {r["PrimaryEmail"]: r["Id"] for r in sim.inspect_records("contacts")}
        assert res.action == "created" and res.matched_key is None
        assert res.target_id == stored[DOC_POST["PrimaryEmail"]] and res.requests == requests
        assert c.request_stats()["requests"] == requests
        assert c.id_lookups_needed is (answer == "bare")


def test_created_id_from_id_then_resource_uri() -> None:
    from migrator.connectors.spark import _created_id
    assert _created_id({"Results": [{"Id": "1", "ResourceUri": "/v1/contacts/2"}]}) == "1"
    assert _created_id({"Results": [{"ResourceUri": "/vX/contacts/201010122342756895000000"}]}) \
        == "201010122342756895000000"
    assert _created_id({"Success": True}) is None
    assert _created_id({"Results": [{"ResourceUri": "/v1/other/3"}]}) is None


async def test_oauth2_refresh_once_for_all_in_flight_requests() -> None:
    async with sandbox(5, auth="oauth2", limit=None, access_token_ttl=1.0, concurrency=16) as (sim, c):
        started = time.perf_counter()
        done = 0

        async def worker(i: int) -> None:
            nonlocal done
            while time.perf_counter() - started < 2.3:
                assert await c.lookup("contacts", {"PrimaryEmail": f"w{i}@example.com"}, "s") is None
                done += 1
                await anyio.sleep(0.005)

        async with anyio.create_task_group() as tg:
            for i in range(16):
                tg.start_soon(worker, i)
        stats = c.request_stats()
    assert done > 100
    assert 1 <= sim.grants <= 3                      # one per expiry, never one per worker
    assert stats["token_refreshes"] == sim.grants
    assert stats["requests"].get("auth") == sim.grants


async def test_oauth2_refresh_token_alone_gets_the_first_access_token() -> None:
    sim = make("spark", contacts=2, seed=11)
    async with Sandbox({"spark": sim}):
        env = sim.credentials()
        c = Spark({"system": "spark", "base_url": sim.base_url, "refresh_token": env["SPARK_REFRESH_TOKEN"],
                   "client_id": env["SPARK_CLIENT_ID"], "client_secret": env["SPARK_CLIENT_SECRET"]},
                  Context(role="source"))
        await c.open()
        try:
            assert len([r async for p in c.pages("contacts", None) for r in p.records]) == 2
        finally:
            await c.close()
    assert sim.grants == 1


async def test_a_wrong_refresh_grant_is_one_auth_line_naming_the_variables() -> None:
    sim = make("spark", contacts=1, seed=11)
    async with Sandbox({"spark": sim}):
        c = Spark({"system": "spark", "base_url": sim.base_url, "refresh_token": "wrong-refresh",
                   "client_id": sim.credentials()["SPARK_CLIENT_ID"], "client_secret": "wrong-secret"},
                  Context(role="source"))
        await c.open()
        try:
            with pytest.raises(AuthError) as e:
                await c.info("contacts")
        finally:
            await c.close()
    msg = str(e.value)
    assert "SPARK_REFRESH_TOKEN" in msg and "wrong-secret" not in msg and "wrong-refresh" not in msg


def test_refresh_settings_come_all_three_or_none() -> None:
    with pytest.raises(ConfigError) as e:
        bearer(refresh_token="r")
    assert "SPARK_CLIENT_ID" in str(e.value) and "SPARK_CLIENT_SECRET" in str(e.value)


async def test_an_expiring_bearer_without_refresh_stops_the_run() -> None:
    async with sandbox(30, auth="bearer", access_token_ttl=0.3) as (sim, c):
        await c.info("contacts")
        await anyio.sleep(0.35)
        with pytest.raises(CredentialExpired) as e:
            await c.write("contacts", dict(DOC_POST), source_id="s1")
    assert e.value.stop and "SPARK_ACCESS_TOKEN" in str(e.value)
    assert sim.credentials()["SPARK_ACCESS_TOKEN"] not in str(e.value)
    assert DOC_POST["PrimaryEmail"] not in {r["PrimaryEmail"] for r in sim.inspect_records("contacts")}
