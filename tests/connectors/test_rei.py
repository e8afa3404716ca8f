"""REI Software connector: request shapes against the doc's samples (aioresponses), and
reads, writes, merges, lookups and rate-limit headers against the simulator over HTTP."""
from __future__ import annotations

import math
from collections import Counter
import re
import time
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any, AsyncIterator

import anyio
import orjson
import pytest

from migrator.connectors.base import Context
from migrator.connectors.rei import CursorLoop, Rei
from migrator.errors import AuthError, JobError, MappingError, QuotaExhausted, RateLimited, RecordError
from migrator.http import Request, Response
from migrator.limits import RateLimit
from migrator.sandbox.server import Sandbox, make
from tests.aioresp import _Response, aioresponses
from aioresponses import CallbackResult

BASE = "https://rest.reisoftware.com"
KEY = "doc-location-key-123"
CF_SPOUSE, CF_SCORE = "3r6dEOnsApNaKIhnFM6u", "MgobCB14YMVKuE4Ka8p1"
DOC_CONTACT = {
    "id": "ocQHyuzHvysMo5N5VsXc", "locationId": "C2QujeCh8ZnC7al2InWR",
    "email": "JohnDeo@gmail.com", "emailLowerCase": "johndeo@gmail.com",
    "fingerprint": "91f4f0e0-e2dd-11ea-9b16-53b2d72e8a24", "timezone": "Asia/Calcutta",
    "country": "DE", "source": "xyz form", "dateAdded": "2020-10-29T09:31:30.255Z",
    "customField": [{"id": CF_SPOUSE, "value": "Value 1"}, {"id": CF_SCORE, "value": "Value 2"}],
}
DOC_BODY = {
    "email": "john@deo.com", "phone": "+18887324197", "firstName": "John", "lastName": "Deo",
    "name": "John Deo", "dateOfBirth": "1990-09-25", "address1": "3535 1st St N",
    "city": "Dolomite", "state": "AL", "country": "US",
}
CUSTOM_FIELDS = {"customFields": [
    {"id": CF_SPOUSE, "name": "Spouse Name", "fieldKey": "contact.spouse_name", "dataType": "TEXT"},
    {"id": CF_SCORE, "name": "Lead Score", "fieldKey": "contact.lead_score", "dataType": "TEXT"},
]}
LIST_URL = re.compile(r"^https://rest\.reisoftware\.com/v1/contacts/\?.*$")


def connector(base_url: str = BASE, key: str = KEY, ctx: Context | None = None, **settings: Any) -> Rei:
    return Rei({"system": "rei", "api_key": key, "base_url": base_url, **settings},
               ctx or Context(role="target", concurrency=8))


def sent(m: aioresponses, method: str, path: str) -> list[tuple[Any, Any]]:
    """(url, call) of every request made with ``method`` to ``path``, in order."""
    return [(url, call) for (meth, url), calls in m.requests.items()
            if meth == method and url.path == path for call in calls]


def body_of(call: Any) -> Any:
    return orjson.loads(call.kwargs["data"])


def mapping(*fields: str) -> SimpleNamespace:
    return SimpleNamespace(target_stream="contacts", fields={f: None for f in fields})


def page_body(contacts: list[dict], after: Any, after_id: Any, total: int = 3) -> dict:
    return {"contacts": contacts, "meta": {
        "total": total, "nextPageUrl": None, "startAfterId": after_id, "startAfter": after,
        "currentPage": 1, "nextPage": 2 if after else None, "prevPage": None}}


# ---- unit: request shapes ---------------------------------------------------------------

async def test_the_docs_own_create_answer_is_a_merge_its_date_gives_away() -> None:
    """The doc's create answer names a contact added in 2020: without match_on that is a
    contact the location held before, merged into — reported as such, never as a create."""
    c = connector()
    await c.open()
    try:
        with aioresponses() as m:
            m.get(f"{BASE}/v1/custom-fields/", payload=CUSTOM_FIELDS)
            m.post(f"{BASE}/v1/contacts/", payload={"contact": DOC_CONTACT})
            await c.prepare([mapping("email")])
            res = await c.write("contacts", DOC_BODY, source_id="s1")
        assert (res.target_id, res.action, res.matched_key) == ("ocQHyuzHvysMo5N5VsXc", "matched", "email=john@deo.com")
        assert res.requests == {"create": 1}
    finally:
        await c.close()


async def test_create_sends_bearer_json_and_custom_field_ids() -> None:
    c = connector()
    await c.open()
    try:
        with aioresponses() as m:
            m.get(f"{BASE}/v1/custom-fields/", payload=CUSTOM_FIELDS)
            just_now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            m.post(f"{BASE}/v1/contacts/", payload={"contact": {**DOC_CONTACT, "dateAdded": just_now}})
            await c.prepare([mapping("email", "custom.Spouse Name", "custom.lead score")])
            res = await c.write("contacts", {**DOC_BODY, "tags": ["tag1", "tag2"],
                                             "custom.Spouse Name": "Value 1", "custom.lead score": "7"},
                                source_id="s1")
        assert (res.target_id, res.action, res.requests) == ("ocQHyuzHvysMo5N5VsXc", "created", {"create": 1})
        [(_, call)] = sent(m, "POST", "/v1/contacts/")
        assert call.kwargs["headers"]["Authorization"] == f"Bearer {KEY}"
        assert call.kwargs["headers"]["Content-Type"] == "application/json"
        assert body_of(call) == {**DOC_BODY, "tags": ["tag1", "tag2"],
                                 "customField": {CF_SPOUSE: "Value 1", CF_SCORE: "7"}}
        assert len(sent(m, "GET", "/v1/custom-fields/")) == 1
    finally:
        await c.close()


async def test_update_puts_fields_then_adds_tags_through_the_tags_endpoint() -> None:
    c = connector()
    await c.open()
    try:
        with aioresponses() as m:
            m.put(f"{BASE}/v1/contacts/ocQHyuzHvysMo5N5VsXc", payload={"contact": DOC_CONTACT})
            m.post(f"{BASE}/v1/contacts/ocQHyuzHvysMo5N5VsXc/tags/", payload={"tags": ["velit exer", "sed ad"]})
            res = await c.write("contacts", {**DOC_BODY, "tags": ["velit exer", "sed ad"]},
                                source_id="s1", target_id="ocQHyuzHvysMo5N5VsXc")
        assert (res.target_id, res.action, res.requests) == ("ocQHyuzHvysMo5N5VsXc", "updated",
                                                             {"update": 1, "tags": 1})
        [(_, put)] = sent(m, "PUT", "/v1/contacts/ocQHyuzHvysMo5N5VsXc")
        assert body_of(put) == DOC_BODY
        [(_, tags)] = sent(m, "POST", "/v1/contacts/ocQHyuzHvysMo5N5VsXc/tags/")
        assert body_of(tags) == {"tags": ["velit exer", "sed ad"]}
    finally:
        await c.close()


async def test_lookup_sends_email_then_phone_and_returns_first_id() -> None:
    c = connector()
    await c.open()
    try:
        with aioresponses() as m:
            m.get(re.compile(r".*/v1/contacts/lookup\?.*"), payload={"contacts": [DOC_CONTACT]})
            m.get(re.compile(r".*/v1/contacts/lookup\?.*"), payload={"contacts": []})
            found = await c.lookup("contacts", {"email": "john@deo.com", "phone": "+491971259866"}, "s1")
            missing = await c.lookup("contacts", {"phone": "+18887324197"}, "s2")
            nothing = await c.lookup("contacts", {"firstName": "John"}, "s3")
        assert (found, missing, nothing) == ("ocQHyuzHvysMo5N5VsXc", None, None)
        calls = sent(m, "GET", "/v1/contacts/lookup")
        assert [call.kwargs["params"] for _, call in calls] == [
            {"email": "john@deo.com", "phone": "+491971259866"}, {"phone": "+18887324197"}]
        assert list(calls[0][1].kwargs["params"]) == ["email", "phone"]
        assert c.can_lookup("contacts")
    finally:
        await c.close()


async def test_pages_sort_oldest_first_follow_the_cursor_and_name_custom_fields() -> None:
    c = connector(page_size=2)
    await c.open()
    second = {**DOC_CONTACT, "id": "UIaE1WjAwWKdlyD7osQI", "customField": []}
    third = {**DOC_CONTACT, "id": "zz3", "customField": [{"id": "unknownFieldId", "value": "x"}]}
    try:
        with aioresponses() as m:
            m.get(f"{BASE}/v1/custom-fields/", payload=CUSTOM_FIELDS)
            m.get(LIST_URL, payload=page_body([DOC_CONTACT, second], 1603870249758, "UIaE1WjAwWKdlyD7osQI"))
            m.get(LIST_URL, payload=page_body([third], None, None))
            info = await c.info("contacts")
            pages = [p async for p in c.pages("contacts", None)]
        assert info.total == 3
        assert [[r.source_id for r in p.records] for p in pages] == [
            ["ocQHyuzHvysMo5N5VsXc", "UIaE1WjAwWKdlyD7osQI"], ["zz3"]]
        assert pages[0].cursor == {"startAfter": 1603870249758, "startAfterId": "UIaE1WjAwWKdlyD7osQI"}
        assert pages[1].cursor is None
        first = pages[0].records[0].data
        assert first["customFields"] == {"Spouse Name": "Value 1", "Lead Score": "Value 2"}
        assert first["email"] == "JohnDeo@gmail.com" and first["customField"] == DOC_CONTACT["customField"]
        assert pages[1].records[0].data["customFields"] == {"unknownFieldId": "x"}
        lists = sent(m, "GET", "/v1/contacts/")
        assert len(lists) == 2, "info() and pages() share the first page"
        assert lists[0][1].kwargs["params"] == {"limit": 2, "sortBy": "date_added", "order": "asc"}
        assert lists[1][1].kwargs["params"] == {"limit": 2, "sortBy": "date_added", "order": "asc",
                                                "startAfter": "1603870249758",
                                                "startAfterId": "UIaE1WjAwWKdlyD7osQI"}
    finally:
        await c.close()


async def test_a_repeated_cursor_stops_the_read_with_a_clear_error() -> None:
    c = connector(page_size=1)
    await c.open()
    try:
        with aioresponses() as m:
            m.get(f"{BASE}/v1/custom-fields/", payload=CUSTOM_FIELDS)
            for _ in range(5):
                m.get(LIST_URL, payload=page_body([DOC_CONTACT], 1603870249758, "UIaE1WjAwWKdlyD7osQI"))
            m.get(LIST_URL, payload=page_body([], None, None))
            got = []
            with pytest.raises(CursorLoop, match="startAfterId=UIaE1WjAwWKdlyD7osQI a second time"):
                async for page in c.pages("contacts", None):
                    got.append(page)
        assert len(got) == 1
        assert len(sent(m, "GET", "/v1/contacts/")) == 2
    finally:
        await c.close()


async def test_resuming_at_a_cursor_the_server_repeats_is_also_caught() -> None:
    c = connector(page_size=1)
    await c.open()
    cursor = {"startAfter": 1603870249758, "startAfterId": "UIaE1WjAwWKdlyD7osQI"}
    try:
        with aioresponses() as m:
            m.get(f"{BASE}/v1/custom-fields/", payload=CUSTOM_FIELDS)
            m.get(LIST_URL, payload=page_body([DOC_CONTACT], 1603870249758, "UIaE1WjAwWKdlyD7osQI"))
            with pytest.raises(CursorLoop):
                async for _ in c.pages("contacts", cursor):
                    pass
    finally:
        await c.close()


def updated(cid: str, stamp: str | None) -> dict[str, Any]:
    contact = {**DOC_CONTACT, "id": cid, "customField": []}
    if stamp is not None:
        contact["dateUpdated"] = stamp
    return contact


def delta_connector(since: str, **settings: Any) -> Rei:
    return connector(ctx=Context(role="source", since=since), **settings)


async def test_a_delta_reads_newest_updated_first_and_stops_at_the_first_older_contact() -> None:
    """``--since``: sortBy=date_updated, order=desc; the page holding the first contact
    updated before TIME is the last one asked for, cut there (one at TIME is kept, one
    without a readable dateUpdated too: it might have changed)."""
    c = delta_connector("2026-12-01T10:00:00Z", page_size=2)
    await c.open()
    try:
        with aioresponses() as m:
            m.get(f"{BASE}/v1/custom-fields/", payload=CUSTOM_FIELDS)
            m.get(LIST_URL, payload=page_body([updated("a", "2026-12-03T08:00:00.000Z"), updated("b", None)],
                                              1764748800000, "b", total=40))
            m.get(LIST_URL, payload=page_body([updated("c", "2026-12-01T10:00:00.000Z"),
                                               updated("d", "2026-12-01T09:59:59.999Z")],
                                              1764583199999, "d", total=40))
            m.get(LIST_URL, payload=page_body([updated("e", "2026-11-01T00:00:00.000Z")], None, None))
            info = await c.info("contacts")
            pages = [p async for p in c.pages("contacts", None)]
        assert info.total is None, "meta.total counts every contact, not the changed ones"
        assert [[r.source_id for r in p.records] for p in pages] == [["a", "b"], ["c"]]
        assert pages[0].cursor == {"startAfter": 1764748800000, "startAfterId": "b"}
        assert pages[1].cursor is None and pages[1].total is None
        lists = sent(m, "GET", "/v1/contacts/")
        assert len(lists) == 2, "no page is asked for after the one holding the first older contact"
        assert lists[0][1].kwargs["params"] == {"limit": 2, "sortBy": "date_updated", "order": "desc"}
        assert lists[1][1].kwargs["params"] == {"limit": 2, "sortBy": "date_updated", "order": "desc",
                                                "startAfter": "1764748800000", "startAfterId": "b"}
    finally:
        await c.close()


def test_a_since_that_is_no_time_is_one_clear_error() -> None:
    from migrator.errors import ConfigError
    with pytest.raises(ConfigError, match="--since 'last tuesdayish' is not a date or date-time"):
        delta_connector("last tuesdayish")


async def test_a_delta_resumed_at_its_cursor_neither_skips_nor_repeats() -> None:
    """On the simulator: contacts changed through its PUT (which stamps dateUpdated) are
    what a delta lists, newest first; resumed at a page's cursor it goes on right after."""
    sim = make("rei", contacts=30, seed=5)
    async with Sandbox({"rei": sim}):
        key = sim.credentials()["REI_API_KEY"]
        api = connector(sim.base_url, key)
        await api.open()
        try:
            stored = sim.inspect_records("contacts")
            since = datetime.now(timezone.utc).isoformat()
            changed = [s for s in stored if s.get("email")][:5]
            for s in changed:
                await api.write("contacts", {"firstName": "Changed", "email": s["email"]},
                                source_id=s["id"], target_id=s["id"])
        finally:
            await api.close()
        now = {s["id"]: s["dateUpdated"] for s in sim.inspect_records("contacts")}
        expected = sorted((s["id"] for s in changed), key=lambda i: (now[i], i), reverse=True)  # ties: by id
        c = connector(sim.base_url, key, ctx=Context(role="source", since=since), page_size=2)
        await c.open()
        try:
            await c.info("contacts")
            pages = [p async for p in c.pages("contacts", None)]
            rest = [p async for p in c.pages("contacts", pages[0].cursor)]
        finally:
            await c.close()
    ids = [r.source_id for p in pages for r in p.records]
    assert ids == expected, "newest-updated first, only those changed"
    assert [len(p.records) for p in pages] == [2, 2, 1] and pages[-1].cursor is None
    assert [r.source_id for p in rest for r in p.records] == ids[2:]
    assert sim.stats.requests["GET /v1/contacts/"] == 3 + 2   # 3 pages, then the 2 after the cursor


# ---- unit: rate-limit headers and errors -----------------------------------------------

def response(status: int, headers: dict[str, str], body: Any = None) -> Response:
    raw = orjson.dumps(body) if body is not None else b""
    return Response(status, headers, raw, Request("GET", "/v1/contacts/"))


async def test_headers_lower_the_limiter_but_never_raise_it() -> None:
    c = connector()
    limiter = c.http.limiter
    c._observe(response(200, {"X-RateLimit-Max": "500", "X-RateLimit-Interval-Milliseconds": "10000",
                              "X-RateLimit-Remaining": "499"}))
    assert limiter.limit == RateLimit(100, 10)
    c._observe(response(200, {"X-RateLimit-Max": "10", "X-RateLimit-Interval-Milliseconds": "10000",
                              "X-RateLimit-Remaining": "9"}))
    assert limiter.limit == RateLimit(10, 10.0)
    assert limiter.paused_for == 0
    for _ in range(50):
        limiter.on_success()
    assert limiter.limit == RateLimit(10, 10.0), "successes never climb past the server's window"
    limiter.on_rate_limited(0)
    assert limiter.limit == RateLimit(8, 10.0)
    for _ in range(40):
        limiter.on_success()
    assert limiter.limit == RateLimit(10, 10.0), "eased, then climbed back in the server's period"
    c._observe(response(200, {"X-RateLimit-Max": "100", "X-RateLimit-Interval-Milliseconds": "10000",
                              "X-RateLimit-Remaining": "99"}))
    assert limiter.limit == RateLimit(10, 10.0), "a header never raises the rate"


async def test_headers_lower_the_limiter_through_a_real_response() -> None:
    c = connector()
    await c.open()
    try:
        with aioresponses() as m:
            m.get(f"{BASE}/v1/custom-fields/", payload=CUSTOM_FIELDS, headers={
                "X-RateLimit-Max": "10", "X-RateLimit-Interval-Milliseconds": "10000",
                "X-RateLimit-Remaining": "0", "X-RateLimit-Limit-Daily": "200000",
                "X-RateLimit-Daily-Remaining": "199876"})
            await c.prepare([mapping("email")])
        assert c.http.limiter.limit == RateLimit(10, 10.0)
        assert 0.5 < c.http.limiter.paused_for <= 1.0, "an exhausted window pauses the limiter"
        assert (c.daily_remaining, c.daily_limit) == (199876, 200000)
    finally:
        await c.close()


def test_a_spent_window_pauses_only_when_our_own_sends_do_not_explain_it() -> None:
    """Paced at the limit, we are told "Remaining: 0" after nearly every request; our own
    log already keeps that window, so pausing would only put each send behind the last
    response. A "0" with few sends of our own means another client spends the key."""
    c = connector(rate_limit="off")
    limiter = c.http.limiter
    spent = {"X-RateLimit-Max": "50", "X-RateLimit-Interval-Milliseconds": "1000", "X-RateLimit-Remaining": "0"}
    c._observe(response(200, spent))
    assert 0.015 < limiter.paused_for <= 0.02, "someone else filled the window: wait one slot's share"
    limiter._pause_until = 0.0
    now = limiter.clock()
    for i in range(49):                                                # our own 49 sends this second
        limiter._log.take(now - 0.9 + i * 0.018)
    c._observe(response(200, spent))
    assert limiter.paused_for == 0, "our own pacing at the limit is no reason to pause"


def test_a_429_with_the_daily_quota_spent_is_quota_exhausted() -> None:
    c = connector()
    before = time.time()
    spent = c._classify(response(429, {"Retry-After": "3600", "X-RateLimit-Daily-Remaining": "0"},
                                 {"msg": "Too many requests, please try again later."}))
    assert isinstance(spent, QuotaExhausted)
    assert before + 3600 <= spent.reset_at <= time.time() + 3600
    burst = c._classify(response(429, {"Retry-After": "2", "X-RateLimit-Daily-Remaining": "1500"},
                                 {"msg": "Too many requests, please try again later."}))
    assert isinstance(burst, RateLimited) and not isinstance(burst, QuotaExhausted)
    assert burst.retry_after == 2


async def test_with_stop_at_quota_a_spent_quota_is_raised_at_once_not_retried() -> None:
    c = connector(ctx=Context(role="target", concurrency=8, stop_at_quota=True))
    await c.open()
    try:
        with aioresponses() as m:
            m.get(f"{BASE}/v1/custom-fields/", status=429, payload={"msg": "Too many requests, please try again later."},
                  headers={"Retry-After": "50", "X-RateLimit-Daily-Remaining": "0"}, repeat=True)
            with pytest.raises(QuotaExhausted) as e:
                await c.prepare([])
            with pytest.raises(QuotaExhausted):    # nothing more is sent into the spent quota
                await c.info("contacts")
        assert len(sent(m, "GET", "/v1/custom-fields/")) == 1 and len(m.requests) == 1
        assert c.daily_remaining == 0
        assert e.value.stop and "stopped at the quota, as asked; it returns at" in str(e.value)
    finally:
        await c.close()


SPENT = {"Retry-After": "1", "X-RateLimit-Daily-Remaining": "0", "X-RateLimit-Limit-Daily": "200000"}
TOO_MANY = {"msg": "Too many requests, please try again later."}
LOOKUP_URL = re.compile(r"^https://rest\.reisoftware\.com/v1/contacts/lookup\?.*$")


async def test_a_spent_quota_holds_every_request_once_then_each_goes_through() -> None:
    c = connector(rate_limit="off")
    notices: list[str] = []
    c.watch_waits(notices.append)
    returns = time.time() + 1.0
    refused: list[float] = []
    served: list[float] = []

    async def server(url: Any, **kw: Any) -> CallbackResult:
        """Spent until ``returns``, as the platform would be; slow enough that all four
        requests are in flight when the first refusal comes back."""
        now = time.time()
        await anyio.sleep(0.05)
        if now < returns:
            refused.append(now)
            return CallbackResult(status=429, payload=TOO_MANY, response_class=_Response,
                                  headers={**SPENT, "Retry-After": str(math.ceil(returns - now))})
        served.append(now)
        return CallbackResult(payload={"contacts": [{"id": "c1"}]}, response_class=_Response)

    await c.open()
    try:
        with aioresponses() as m:
            m.get(LOOKUP_URL, callback=server, repeat=True)
            found: list[str | None] = []

            async def one(i: int) -> None:
                found.append(await c.lookup("contacts", {"email": f"p{i}@example.com"}, str(i)))

            async with anyio.create_task_group() as tg:
                for i in range(4):
                    tg.start_soon(one, i)
    finally:
        await c.close()
    assert found == ["c1"] * 4, "every refused request went through after the wait"
    assert len(refused) == 4 and len(served) == 4, "each refused once, then sent again once the quota returned"
    assert len(notices) == 1, "the writers' refusals of one spent quota are one wait, told once"
    assert re.fullmatch(r"REI Software: the daily request quota of REI_API_KEY is spent; waiting until "
                        r"\d\d:\d\d:\d\d UTC \(in 1s\) — Ctrl-C stops, and running the same command again "
                        r"resumes", notices[0]), notices[0]
    assert c.http.stats.retries["quota"] == 4
    assert KEY not in notices[0]


async def test_a_quota_that_does_not_say_when_it_returns_is_retried_with_a_bounded_backoff() -> None:
    c = connector()
    notices: list[str] = []
    c.watch_waits(notices.append)
    c.http.quota_backoff, c.http.quota_backoff_cap = 0.2, 0.3
    unknown = {"X-RateLimit-Daily-Remaining": "0"}
    await c.open()
    try:
        with aioresponses() as m:
            for _ in range(3):
                m.get(LOOKUP_URL, status=429, payload=TOO_MANY, headers=unknown)
            m.get(LOOKUP_URL, payload={"contacts": [{"id": "c9"}]})
            t0 = time.monotonic()
            assert await c.lookup("contacts", {"email": "a@example.com"}, "a") == "c9"
            waited = time.monotonic() - t0
    finally:
        await c.close()
    assert len(notices) == 3 and all("does not say when it returns; trying again at" in n for n in notices)
    assert waited >= 0.2 + 0.3 + 0.3 - 0.05, "0.2 s, then doubled but capped at 0.3 s"


async def test_a_quota_wait_longer_than_max_quota_wait_stops_instead() -> None:
    c = connector(ctx=Context(role="target", concurrency=8, max_quota_wait=600))
    notices: list[str] = []
    c.watch_waits(notices.append)
    await c.open()
    try:
        with aioresponses() as m:
            m.get(LOOKUP_URL, status=429, payload=TOO_MANY, headers={**SPENT, "Retry-After": "7200"}, repeat=True)
            with anyio.fail_after(5), pytest.raises(QuotaExhausted) as e:
                await c.lookup("contacts", {"email": "a@example.com"}, "a")
        assert len(m.requests) == 1
    finally:
        await c.close()
    assert e.value.stop and not notices
    assert re.search(r"it returns at .* \(in 2h\), a longer wait than max_quota_wait \(10m\) allows; stopped$",
                     str(e.value)), str(e.value)


async def test_ctrl_c_during_a_quota_wait_stops_it_promptly() -> None:
    c = connector()
    notices: list[str] = []
    stopping = [False]
    c.watch_waits(notices.append, lambda: stopping[0])
    await c.open()
    try:
        with aioresponses() as m:
            m.get(LOOKUP_URL, status=429, payload=TOO_MANY, headers={**SPENT, "Retry-After": "3600"}, repeat=True)
            with anyio.fail_after(5):
                async with anyio.create_task_group() as tg:
                    errors: list[QuotaExhausted] = []

                    async def one() -> None:
                        try:
                            await c.lookup("contacts", {"email": "a@example.com"}, "a")
                        except QuotaExhausted as e:
                            errors.append(e)

                    tg.start_soon(one)
                    while not notices:
                        await anyio.sleep(0.01)
                    await anyio.sleep(0.3)
                    assert not errors, "it waits"
                    stopping[0] = True
        assert len(m.requests) == 1
    finally:
        await c.close()
    assert "waiting until" in notices[0] and "(in 1h)" in notices[0]
    assert len(errors) == 1 and errors[0].stop
    assert "quota of REI_API_KEY is spent; stopped while waiting for it; it returns at" in str(errors[0])


async def test_401_names_the_variable_never_the_key() -> None:
    c = connector()
    await c.open()
    try:
        with aioresponses() as m:
            m.get(f"{BASE}/v1/custom-fields/", status=401, payload={"msg": "Api key is invalid."})
            with pytest.raises(AuthError) as e:
                await c.prepare([])
        assert "REI_API_KEY" in str(e.value) and KEY not in str(e.value)
    finally:
        await c.close()


def test_422_becomes_a_record_error_with_the_servers_message_and_field() -> None:
    c = connector()
    either = c._classify(response(422, {}, {"msg": "Email or Phone are required to create contact"}))
    assert isinstance(either, RecordError)
    assert (either.reason, either.field, either.status) == (
        "Email or Phone are required to create contact", None, 422)
    field = c._classify(response(422, {}, {"phone": {"message": "Invalid phone number", "rule": "phone"}}))
    assert isinstance(field, RecordError)
    assert (field.reason, field.field) == ("phone: Invalid phone number", "phone")
    dup = c._classify(response(400, {}, {"msg": "This location does not allow duplicated contacts.",
                                         "meta": {"contactId": "abc", "matchingField": "email"}}))
    assert isinstance(dup, RecordError) and dup.field == "email" and "contact abc" in dup.reason


async def test_unknown_custom_field_name_is_a_mapping_error_listing_the_names() -> None:
    c = connector()
    await c.open()
    try:
        with aioresponses() as m:
            m.get(f"{BASE}/v1/custom-fields/", payload=CUSTOM_FIELDS)
            with pytest.raises(MappingError, match="'Spouse Nmae'.*Lead Score, Spouse Name"):
                await c.prepare([mapping("email", "custom.Spouse Nmae")])
    finally:
        await c.close()


def test_settings_and_schema() -> None:
    with pytest.raises(JobError, match="page_size"):
        connector(page_size=250)
    assert Rei.credential_envs() == ["REI_API_KEY"]
    assert Rei.default_limit == RateLimit(100, 10)
    schema = Rei.schemas()["contacts"]
    assert schema.validate({"firstName": "John", "custom.Spouse Name": "Jane", "phone": "+18887324197"}) == []
    assert [v.rule for v in schema.validate({"firstName": "John"})] == ["any_of"]
    bad = {v.field: v.rule for v in schema.validate(
        {"email": "nope", "dateOfBirth": "25/09/1990", "dnd": "yes", "shoeSize": "9"})}
    assert bad == {"email": "format:email", "dateOfBirth": "format:date", "dnd": "type", "shoeSize": "unknown"}


# ---- integration: the simulator over HTTP --------------------------------------------

@asynccontextmanager
async def simulated(**kw: Any) -> AsyncIterator[tuple[Any, Rei]]:
    sim = make("rei", **kw)
    async with Sandbox({"rei": sim}):
        c = connector(sim.base_url, sim.credentials()["REI_API_KEY"])
        await c.open()
        try:
            yield sim, c
        finally:
            await c.close()


async def test_reads_every_seeded_contact_once_and_resumes_from_a_cursor() -> None:
    async with simulated(contacts=250, seed=3) as (sim, c):
        info = await c.info("contacts")
        pages = [p async for p in c.pages("contacts", None)]
        rest = [p async for p in c.pages("contacts", pages[0].cursor)]
        stored = sim.inspect_records("contacts")
    assert info.total == 250
    assert [len(p.records) for p in pages] == [100, 100, 50]
    assert pages[-1].cursor is None and all(p.cursor for p in pages[:-1])
    ids = [r.source_id for p in pages for r in p.records]
    assert ids == [s["id"] for s in stored]
    added = [r.data["dateAdded"] for p in pages for r in p.records]
    assert len(set(added)) < len(added), "the seed has timestamp ties for the cursor to get through"
    names = {f["id"]: f["name"] for f in sim.custom_fields}
    for p in pages:
        for r in p.records:
            assert r.data["customFields"] == {names[f["id"]]: f["value"] for f in r.data["customField"]}
    assert any(r.data["customFields"] for p in pages for r in p.records)
    assert [r.source_id for p in rest for r in p.records] == ids[100:]
    assert sim.stats.requests["GET /v1/contacts/"] == 5
    assert sim.stats.requests["GET /v1/custom-fields/"] == 1


async def test_writes_merges_lookups_and_updates() -> None:
    async with simulated(contacts=5, seed=1) as (sim, c):
        await c.prepare([mapping("email", "custom.Spouse Name")])
        rec = {"firstName": "Ada", "lastName": "Lovelace", "email": "ada@example.com",
               "phone": "+14155550123", "tags": ["Buyer"], "custom.Spouse Name": "William",
               "dnd": False, "dateOfBirth": "1815-12-10"}
        first = await c.write("contacts", rec, source_id="a")
        again = await c.write("contacts", {"firstName": "Augusta", "email": "ADA@example.com"}, source_id="b")
        by_phone = await c.lookup("contacts", {"phone": "+14155550123"}, "a")
        by_email = await c.lookup("contacts", {"email": "ada@example.com", "phone": "+14155550999"}, "a")
        await c.write("contacts", {"email": "ada@example.com", "tags": ["seller"]}, source_id="a",
                      target_id=first.target_id)
        stored = {s["id"]: s for s in sim.inspect_records("contacts")}
        spouse = next(f["id"] for f in sim.custom_fields if f["name"] == "Spouse Name")
        with pytest.raises(RecordError) as refused:
            await c.write("contacts", {"email": "bob@example.com", "timezone": "Mars/Olympus"}, source_id="c")
    assert (first.action, first.matched_key) == ("created", None)
    assert again.target_id == first.target_id
    assert (again.action, again.matched_key) == ("matched", "email=ADA@example.com")   # the location merged it
    assert sim.merged_writes == 1
    assert by_phone == by_email == first.target_id
    ada = stored[first.target_id]
    assert (ada["firstName"], ada["lastName"], ada["phone"]) == ("Augusta", "Lovelace", "+14155550123")
    assert ada["customField"] == [{"id": spouse, "value": "William"}]
    assert ada["tags"] == ["buyer", "seller"], "tags are added on update, not replaced"
    assert len(stored) == 6
    assert refused.value.field == "timezone" and refused.value.status == 422


async def test_a_wrong_key_is_an_auth_error_naming_the_variable() -> None:
    sim = make("rei", contacts=2, seed=1)
    async with Sandbox({"rei": sim}):
        c = connector(sim.base_url, "wrong-key")
        await c.open()
        try:
            with pytest.raises(AuthError, match="REI_API_KEY") as e:
                await c.info("contacts")
        finally:
            await c.close()
    assert "wrong-key" not in str(e.value)


async def test_headers_bring_the_rate_down_to_a_stricter_server() -> None:
    async with simulated(contacts=3, seed=1, limit=(10, 2.0)) as (sim, c):
        done = 0

        async def worker() -> None:
            nonlocal done
            for _ in range(5):
                await c.lookup("contacts", {"email": "nobody@example.com"}, "x")
                done += 1

        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(worker)
        assert done == 40
        assert c.http.limiter.limit == RateLimit(10, 2.0)
        assert sim.stats.rate_limited <= 1 and c.http.stats.retries["rate_limited"] == sim.stats.rate_limited
        assert sim.window.max_in_window <= 10
        assert c.daily_remaining == 200_000 - 40, "429s from the burst window do not spend the quota"


async def test_the_simulators_spent_quota_is_waited_for_until_its_day_turns() -> None:
    async with simulated(contacts=3, seed=1, limit=False, daily_quota=2, day_seconds=1.0) as (sim, c):
        notices: list[str] = []
        c.watch_waits(notices.append)
        for i in range(5):  # five requests, two a day: at least one refusal, whatever the start
            assert await c.lookup("contacts", {"email": f"nobody{i}@example.com"}, str(i)) is None
        assert sim.quota.refused >= 1
        assert c.http.stats.retries["quota"] == sim.quota.refused
        assert len(notices) == sim.quota.refused, "one refusal at a time: each is one wait"
        assert sim.stats.requests["GET /v1/contacts/lookup"] == 5 + sim.quota.refused


# ---- dedup: the key index, on_merge and the write planner ------------------------------

def matching(*fields: str) -> SimpleNamespace:
    return SimpleNamespace(target_stream="contacts", fields={}, match_on=fields or ("email", "phone"))


def planner_records(seeded: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Two records that match seeded contacts (by e-mail, by phone alone), two new ones and
    two that repeat a key of an earlier record (its e-mail; its phone)."""
    by_phone = next(c for c in seeded[1:] if c["phone"] and c["email"])
    return [{"email": seeded[0]["email"].upper(), "firstName": "Seeded"},
            {"phone": by_phone["phone"], "firstName": "ByPhone"},
            {"email": "new1@example.com", "tags": ["a"]},
            {"email": "NEW1@example.com", "tags": ["b"]},
            {"email": "new2@example.com", "phone": "+14155550100"},
            {"email": "new3@example.com", "phone": "+1 (415) 555-0100"}]


@pytest.mark.parametrize(("on_merge", "planned"), [
    ("combine", {"index": 2, "create": 2, "read": 4, "update": 4}),
    ("update", {"index": 2, "create": 6, "read": 4}),   # read first: what undo puts back
    ("skip", {"index": 2, "create": 2}),
    ("fail", {"index": 2, "create": 2}),
])
async def test_write_planner_counts_what_writing_sends_under_each_on_merge(on_merge, planned) -> None:
    async with simulated(contacts=150, seed=3) as (sim, c):
        c.on_merge = on_merge
        records = planner_records(list(sim.contacts.values()))
        planner = await c.write_planner("contacts", matching())
        for r in records:
            planner.add(r)
        counts = planner.requests()
        plan_reads = dict(c.http.stats.requests)
        run = connector(sim.base_url, sim.credentials()["REI_API_KEY"])
        run.on_merge = on_merge
        try:
            await run.prepare([matching()])
            results: list[Any] = []
            for i, r in enumerate(records):
                try:
                    results.append(await run.write("contacts", r, source_id=str(i)))
                except RecordError as e:
                    results.append(e)
            sent = dict(run.http.stats.requests)
        finally:
            await run.close()
        held = len(sim.contacts)
    assert counts == planned
    assert sent == {**planned, "meta": 1}, "the plan is what the run sends (meta: plan_setup's)"
    # Under update too the plan reads the index: a match costs a read first (what undo puts back).
    assert plan_reads == {"index": 2}
    assert "reads REI Software's contacts once" in planner.dedup and "150 contacts" in planner.dedup
    assert held == 152
    matched = [results[i] for i in (0, 1, 3, 5)]
    if on_merge == "fail":
        assert all(isinstance(e, RecordError) and e.rule == "merge" for e in matched)
        assert matched[0].field == "email" and matched[1].field == "phone"
        return
    action = "matched" if on_merge == "skip" else "updated"
    assert [r.action for r in matched] == [action] * 4
    assert [r.matched_key.split("=")[0] for r in matched] == ["email", "phone", "email", "phone"]
    assert matched[2].target_id == results[2].target_id and matched[3].target_id == results[4].target_id
    assert (results[2].action, results[4].action) == ("created", "created")


async def test_a_match_is_updated_by_the_locations_own_create_or_update() -> None:
    async with simulated(contacts=3, seed=1) as (sim, c):
        c.on_merge = "update"   # the vendor's overwrite
        ann = next(iter(sim.contacts.values()))
        await c.prepare([matching("email")])
        res = await c.write("contacts", {"email": ann["email"], "firstName": "Annie", "tags": ["vip"]},
                            source_id="x")
        stored = sim.contacts[ann["id"]]
    assert (res.target_id, res.action, res.requests) == (ann["id"], "updated", {"read": 1, "create": 1})
    assert res.matched_key == f"email={ann['email']}"
    assert stored["firstName"] == "Annie" and "vip" in stored["tags"] and sim.merged_writes == 1


async def test_records_sharing_a_key_wait_for_each_other_so_one_contact_is_created() -> None:
    async with simulated(contacts=0, seed=1) as (sim, c):
        await c.prepare([matching()])
        results: list[Any] = [None] * 8

        async def write(i: int) -> None:
            results[i] = await c.write("contacts", {"email": "same@example.com", "firstName": f"N{i}"},
                                       source_id=str(i))
        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(write, i)
        stored = next(iter(sim.contacts.values()))
    assert len(sim.contacts) == 1 and sim.merged_writes == 0   # combine: read and PUT, no create
    assert Counter(r.action for r in results) == {"created": 1, "updated": 7}
    assert len({r.target_id for r in results}) == 1 and len(c._locks) == 0
    first = next(r for r in results if r.action == "created")
    notes = next(f["value"] for f in stored["customField"] if f["id"] == c._field_ids["Notes"])
    names = {stored["firstName"], *(line.split(": ")[1].split(" (")[0] for line in notes.splitlines() if line)}
    assert names == {f"N{i}" for i in range(8)} and stored["firstName"] == f"N{results.index(first)}"


async def test_a_match_is_combined_with_the_contact_it_matches() -> None:
    """on_merge: combine (the default): the contact is read, keeps its name and phone, and
    gains what the record adds — the tags (added), the note (appended), the other name and
    phone as lines of the Notes custom field; one read and one PUT, no create."""
    async with simulated(contacts=3, seed=1) as (sim, c):
        ann = next(c_ for c_ in sim.contacts.values() if c_["phone"] and c_["firstName"])
        await c.prepare([SimpleNamespace(target_stream="contacts", fields={"custom.Notes": None},
                                         match_on=("email",))])
        notes_id = c._field_ids["Notes"]
        before = {f["id"]: f["value"] for f in ann["customField"]}.get(notes_id)
        tags = list(ann["tags"])
        res = await c.write("contacts", {"email": ann["email"].upper(), "firstName": "Zed", "phone": "+14155550199",
                                         "tags": ["vip"], "custom.Notes": "Met at the open house"},
                            source_id="s9")
        stored = sim.contacts[ann["id"]]
    assert (res.target_id, res.action, res.requests) == (ann["id"], "updated", {"read": 1, "update": 1})
    assert stored["firstName"] == ann["firstName"] and stored["phone"] == ann["phone"]
    assert stored["tags"] == [*tags, "vip"] and sim.merged_writes == 0
    note = {f["id"]: f["value"] for f in stored["customField"]}[notes_id]
    assert note.startswith(before or "Met at the open house")
    assert "Met at the open house" in note and "Also firstName: Zed (source record s9)" in note
    assert "Also phone: +14155550199 (source record s9)" in note
    assert {(p["field"], p["how"]) for p in res.placements} >= {("tags", "added"), ("firstName", "line"),
                                                                ("phone", "line")}
