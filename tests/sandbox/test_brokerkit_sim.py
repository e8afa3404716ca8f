"""The Brokerkit simulator over real HTTP: the doc's samples, the 422 field errors, the
``test`` dry run and its string trap, the e-mail / agent_id upsert (204, no body), no
read endpoint, unknown keys dropped, auth, the rate limit and every fault."""
from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import aiohttp
import orjson
import pytest

from migrator.sandbox.base import Faults
from migrator.sandbox.brokerkit import BrokerkitSim
from migrator.sandbox.server import Sandbox

# The doc's recruiting sample, with its placeholder phones (+11111111111, which no
# phone library accepts) swapped for valid numbers.
DOC_LEAD = {
    "test": False, "first_name": "Peet", "last_name": "Peeter", "birthday": "24/03/1975",
    "phone": "+12025550166", "email": "peet@example.com", "agent_id": "a68d4b23",
    "bucket": "default", "status": "new_lead", "note": "#NOTE", "source": "Abstrakt",
    "currently_at": "RE-MAX United", "alt_address": "1111 A Shangri, New York, NY 11111, USA",
    "alt_city": "New York", "alt_state": "NY", "alt_zip": "1111",
    "office_address": "1111 N Tatum, New York, NY 11111, USA", "office_city": "New York",
    "office_state": "NY", "office_zip": "11111", "kpa_taken": "true",
    "active_listings_count": "111", "rating": "4", "production_ytd": "10000",
    "production_label": "mega", "owner_email": "test@brokerkit.com",
    "referrer_email": "test@brokerkit.com", "other_phone": "+12125551234",
    "office_phone": "+13125550100",
}
DOC_RESPONSE_KEYS = {
    "id", "team_id", "status", "bucket", "photo_url", "first_name", "last_name", "name",
    "birthday", "email", "phone", "production_label", "production_ytd", "currently_at",
    "source", "rating", "kpa_taken", "active_listings_count", "referred_at",
    "anniversary_month", "joined_at", "last_activity_at", "first_appointment_at",
    "last_appointment_at", "updated_at", "created_at", "note", "links", "alt_address",
    "alt_city", "alt_state", "alt_zip", "alt_lat", "alt_lng", "office_address", "office_city",
    "office_state", "office_zip", "office_lat", "office_lng", "office_phone", "other_phone",
    "agent_id", "recruiting", "retention", "archived", "backlogged", "owner", "referrer",
}
USER_KEYS = {"id", "email", "title", "first_name", "last_name", "name", "avatar_url", "admin",
             "signature", "timezone", "phone", "last_sign_in_at", "updated_at", "created_at", "avatar"}


class Client:
    def __init__(self, sim: BrokerkitSim, session: aiohttp.ClientSession):
        self.sim, self.session = sim, session
        self.auth = f"Token token={sim.credentials()['BROKERKIT_API_KEY']}"

    async def call(self, method: str, path: str, body: Any = None, auth: str | None = "default",
                   content_type: str | None = "application/json") -> tuple[int, Any, aiohttp.ClientResponse]:
        headers = {}
        if auth is not None:
            headers["Authorization"] = self.auth if auth == "default" else auth
        if content_type is not None:
            headers["Content-Type"] = content_type
        data = orjson.dumps(body) if body is not None else None
        async with self.session.request(method, self.sim.base_url + path, data=data,
                                        headers=headers) as r:
            raw = await r.read()
            return r.status, orjson.loads(raw) if raw else None, r

    async def lead(self, body: dict[str, Any]) -> tuple[int, Any]:
        status, data, _ = await self.call("POST", "/v2/leads", body)
        return status, data

    async def held(self) -> list[dict[str, Any]]:
        """What the team holds, through the test-only inspection route (Brokerkit has no read)."""
        async with self.session.get(self.sim.base_url + "/_sandbox/records/leads") as r:
            assert r.status == 200
            return orjson.loads(await r.read())


@asynccontextmanager
async def running(**kwargs: Any) -> AsyncIterator[Client]:
    kwargs.setdefault("limit", False)
    sim = BrokerkitSim(**kwargs)
    async with Sandbox({"brokerkit": sim}):
        async with aiohttp.ClientSession() as session:
            yield Client(sim, session)


async def test_doc_recruiting_sample_answers_201_in_the_doc_shape():
    async with running() as c:
        status, lead = await c.lead(DOC_LEAD)
        assert status == 201
        assert set(lead) == DOC_RESPONSE_KEYS
        assert isinstance(lead["id"], int) and lead["team_id"] == c.sim.team_id
        assert (lead["name"], lead["birthday"], lead["email"]) == ("Peet Peeter", "1975-03-24", "peet@example.com")
        assert (lead["rating"], lead["production_ytd"], lead["active_listings_count"]) == (4, 10000, "111")
        assert lead["kpa_taken"] is True and lead["alt_state"] == "New York"
        assert (lead["recruiting"], lead["retention"], lead["archived"], lead["backlogged"]) == \
            (True, False, False, False)
        assert set(lead["owner"]) == USER_KEYS and lead["owner"]["email"] == "test@brokerkit.com"
        assert lead["referrer"]["id"] == lead["owner"]["id"] and lead["referred_at"]
        assert lead["created_at"].endswith("Z") and lead["links"] == {}
        assert [x["id"] for x in c.sim.inspect_records("leads")] == [lead["id"]]
        assert c.sim.stats.creates_by_key == {"peet@example.com": 1}


async def test_doc_retention_sample_makes_a_team_member():
    async with running() as c:
        status, lead = await c.lead({**DOC_LEAD, "product": "retention", "status": "onboarding"})
        assert status == 201
        assert (lead["recruiting"], lead["retention"], lead["status"]) == (False, True, "onboarding")
        assert set(lead) == DOC_RESPONSE_KEYS | {"team_member"}
        assert set(lead["team_member"]) == USER_KEYS | {"role"}
        assert lead["team_member"]["role"] == {"name": "agent", "invited_at": None, "joined_at": None}
        assert lead["team_member"]["email"] == "peet@example.com"
        status, body = await c.lead({"first_name": "X", "product": "recruiting"})
        assert status == 422 and body == {"product": ["is not included in the list"]}


async def test_defaults_for_a_minimal_lead():
    async with running() as c:
        status, lead = await c.lead({"first_name": "Solo", "bucket": "archived"})
        assert status == 201
        assert (lead["status"], lead["bucket"], lead["archived"], lead["kpa_taken"]) == \
            ("new_lead", "archived", True, False)
        assert lead["owner"] is None and lead["email"] is None


async def test_the_doc_error_sample_is_what_a_bad_email_and_the_docs_placeholder_phone_get():
    """The doc's error list, ``{ "email": [ "is invalid" ], "phone": [ "is an invalid number" ] }``."""
    async with running() as c:
        status, body = await c.lead({**DOC_LEAD, "email": "peet@", "phone": "+11111111111"})
        assert (status, body) == (422, {"email": ["is invalid"], "phone": ["is an invalid number"]})


async def test_422_names_every_failing_field_at_once():
    async with running() as c:
        status, body = await c.lead({
            **DOC_LEAD, "email": "not-an-email", "phone": "+11111111111", "other_phone": "555-CALL-NOW",
            "birthday": "1975-03-24", "bucket": "normal", "status": "lead", "production_label": "huge",
            "rating": "abc", "kpa_taken": "yes", "active_listings_count": "lots", "production_ytd": "1e4x",
            "owner_email": "boss", "first_name": 7,
        })
        assert status == 422
        assert body == {
            "email": ["is invalid"], "phone": ["is an invalid number"],
            "other_phone": ["is an invalid number"], "birthday": ["is invalid"],
            "bucket": ["is not included in the list"], "status": ["is not included in the list"],
            "production_label": ["is not included in the list"], "rating": ["is not a number"],
            "kpa_taken": ["is invalid"], "active_listings_count": ["is not a number"],
            "production_ytd": ["is not a number"], "owner_email": ["is invalid"], "first_name": ["is invalid"],
        }
        assert c.sim.inspect_records("leads") == [] and not c.sim.stats.creates_by_key


@pytest.mark.parametrize("birthday", ["31/02/1980", "24/3/1975", "03/24/1975", "1975-03-24"])
async def test_birthday_must_be_a_real_dd_mm_yyyy_date(birthday):
    async with running() as c:
        assert await c.lead({"first_name": "B", "birthday": birthday}) == (422, {"birthday": ["is invalid"]})


@pytest.mark.parametrize("rating, error", [
    (3, "must be greater than or equal to 4"), ("3", "must be greater than or equal to 4"),
    (11, "must be less than or equal to 10"), ("11", "must be less than or equal to 10"),
    (4.5, "must be an integer"), ("7.0", "must be an integer"), (True, "is not a number"),
])
async def test_rating_outside_4_to_10_is_refused(rating, error):
    async with running() as c:
        assert await c.lead({"first_name": "R", "rating": rating}) == (422, {"rating": [error]})


async def test_rating_bounds_and_numeric_strings_pass():
    async with running() as c:
        assert [(await c.lead({"first_name": f"R{r}", "rating": r}))[1]["rating"]
                for r in (4, "10", " 7 ")] == [4, 10, 7]


async def test_test_true_saves_nothing_and_returns_email_null():
    async with running() as c:
        status, lead = await c.lead({**DOC_LEAD, "test": True})
        assert status == 200 and lead["email"] is None and lead["id"] is None
        assert lead["first_name"] == "Peet"
        assert c.sim.inspect_records("leads") == [] and not c.sim.stats.creates_by_key
        status, body = await c.lead({**DOC_LEAD, "test": True, "email": "bad"})
        assert status == 422 and body == {"email": ["is invalid"]}


async def test_test_string_true_is_not_a_dry_run():
    async with running() as c:
        status, lead = await c.lead({**DOC_LEAD, "test": "true"})
        assert status == 201 and lead["email"] == "peet@example.com"
        assert len(c.sim.inspect_records("leads")) == 1


async def test_doc_sample_sent_again_is_an_update_answering_204_with_no_body():
    """"204 No Content | The resource has been successfully updated": no id, no lead."""
    async with running() as c:
        _, first = await c.lead(DOC_LEAD)
        status, body, r = await c.call("POST", "/v2/leads", {**DOC_LEAD, "rating": "9"})
        assert (status, body) == (204, None) and "Content-Type" not in r.headers
        (held,) = await c.held()
        assert held["id"] == first["id"] and held["rating"] == 9
        assert c.sim.merged_writes == 1 and c.sim.duplicates() == {}


async def test_upsert_on_email_updates_the_existing_lead():
    async with running() as c:
        _, first = await c.lead(DOC_LEAD)
        status, second = await c.lead({"email": "PEET@Example.com", "last_name": "Updated", "rating": 9})
        assert (status, second) == (204, None)
        (held,) = await c.held()
        assert held["id"] == first["id"]
        assert (held["first_name"], held["last_name"], held["rating"]) == ("Peet", "Updated", 9)
        assert c.sim.merged_writes == 1 and c.sim.duplicates() == {}


async def test_any_of_a_leads_e_mails_matches_and_agent_id_matches_exactly():
    """"Records will match on any "email" addresses. 2) Or ... on any "agent_id"": an
    address a lead was once sent still finds it after another became its main one."""
    async with running() as c:
        _, first = await c.lead(DOC_LEAD)
        assert await c.lead({"agent_id": "a68d4b23", "email": "new@example.com"}) == (204, None)
        (held,) = await c.held()
        assert held["email"] == "new@example.com"
        assert c.sim.emails_of(first["id"]) == ["new@example.com", "peet@example.com"]
        assert await c.lead({"email": "NEW@example.com", "first_name": "Again"}) == (204, None)
        assert await c.lead({"email": "peet@example.com", "first_name": "Other"}) == (204, None)
        status, other = await c.lead({"agent_id": "A68D4B23", "first_name": "Case"})
        assert status == 201 and other["id"] != first["id"]
        leads = {x["id"]: x for x in await c.held()}
        assert len(leads) == 2 and leads[first["id"]]["first_name"] == "Other"
        assert c.sim.merged_writes == 3


async def test_the_e_mail_wins_over_the_agent_id_and_a_new_agent_id_replaces_the_old():
    async with running() as c:
        _, a = await c.lead({"first_name": "A", "email": "a@example.com", "agent_id": "ag-a"})
        _, b = await c.lead({"first_name": "B", "email": "b@example.com", "agent_id": "ag-b"})
        assert await c.lead({"email": "a@example.com", "agent_id": "ag-b", "note": "x"}) == (204, None)
        leads = {x["id"]: x for x in await c.held()}
        assert leads[a["id"]]["note"] == "x" and leads[b["id"]]["note"] is None
        assert await c.lead({"email": "b@example.com", "agent_id": "ag-new"}) == (204, None)
        status, fresh = await c.lead({"first_name": "C", "agent_id": "ag-b"})
        assert status == 201 and fresh["id"] not in (a["id"], b["id"])


async def test_no_read_endpoint_the_doc_does_not_have():
    """The doc's one endpoint is POST /leads: a GET of the leads (or of one) is a 404."""
    async with running(contacts=5, seed=4, seed_existing=True) as c:
        for method, path in (("GET", "/v2/leads"), ("GET", "/v2/leads?page=1&per_page=10"),
                             ("GET", "/v2/leads/200001"), ("PUT", "/v2/leads/200001"),
                             ("DELETE", "/v2/leads/200001"), ("POST", "/v2/lead")):
            status, body, _ = await c.call(method, path, {} if method != "GET" else None)
            assert (status, body) == (404, {"error": "Not Found"}), (method, path)
        assert len(await c.held()) == 5


@pytest.mark.parametrize("body", [{"first_name": "X", "nickname": "Y"}, {"first_name": "X", "Email": "x@y.com"}])
async def test_unknown_fields_are_dropped_silently(body):
    async with running() as c:
        status, lead = await c.lead(body)
        assert status == 201 and set(lead) == DOC_RESPONSE_KEYS
        assert lead["email"] is None and lead["first_name"] == "X"
        (held,) = await c.held()
        assert "nickname" not in held and "Email" not in held and held["email"] is None


async def test_refuse_unknown_answers_400_naming_them():
    async with running(refuse_unknown=True) as c:
        status, out = await c.lead({"first_name": "X", "nickname": "Y", "Email": "x@y.com"})
        assert status == 400 and out == {"error": "found unpermitted parameters: Email, nickname"}
        assert await c.held() == []


async def test_content_type_and_body_shape_are_checked():
    async with running() as c:
        for ct in (None, "text/plain", "application/x-www-form-urlencoded"):
            status, body, _ = await c.call("POST", "/v2/leads", DOC_LEAD, content_type=ct)
            assert status == 400 and "error" in body
        status, _, _ = await c.call("POST", "/v2/leads", DOC_LEAD, content_type="application/json; charset=utf-8")
        assert status == 201
        assert (await c.call("POST", "/v2/leads", ["x"]))[0] == 400
        async with c.session.post(c.sim.base_url + "/v2/leads", data=b"{oops",
                                  headers={"Authorization": c.auth, "Content-Type": "application/json"}) as r:
            assert r.status == 400
        assert await c.lead({"note": "nobody"}) == (422, {"base": ["a lead needs a name, an email or a phone"]})


@pytest.mark.parametrize("make_auth", [
    lambda key: None, lambda key: "Token token=wrong", lambda key: f"Bearer {key}",
    lambda key: f'Token token="{key}"', lambda key: key, lambda key: f"Token {key}",
], ids=["missing", "wrong", "bearer", "quoted", "bare", "no-token-label"])
async def test_bad_credentials_get_401_json(make_auth):
    async with running(seed_existing=True, contacts=2) as c:
        auth = make_auth(c.sim.credentials()["BROKERKIT_API_KEY"])
        for method in ("GET", "POST"):   # auth comes first: even the GET Brokerkit lacks is a 401
            status, body, r = await c.call(method, "/v2/leads", DOC_LEAD if method == "POST" else None, auth=auth)
            assert status == 401 and "error" in body and r.headers["WWW-Authenticate"].startswith("Token")
        assert len(c.sim.inspect_records("leads")) == 2


async def test_fresh_team_by_default_and_seeded_leads_once():
    async with running(contacts=30) as c:
        assert await c.held() == []
    async with running(contacts=53, seed=4, seed_existing=True) as c:
        leads = await c.held()
        emails = {p.email.lower() for p in c.sim.seed_people}
        assert len(leads) == len({x["id"] for x in leads}) == len(emails)
        assert {x["email"].lower() for x in leads} == emails
        assert all(set(x) == DOC_RESPONSE_KEYS for x in leads)
        seeded = c.sim.seed_people[0]
        assert await c.lead({"email": seeded.email, "note": "again"}) == (204, None)
        assert c.sim.merged_writes == 1 and len(await c.held()) == len(emails)


async def test_rate_limit_answers_429_with_retry_after():
    async with running(limit=(5, 1.0)) as c:
        for i in range(5):
            assert (await c.lead({"first_name": f"L{i}"}))[0] == 201
        status, body, r = await c.call("POST", "/v2/leads", {"first_name": "over"})
        assert status == 429 and "error" in body and int(r.headers["Retry-After"]) >= 1
        assert c.sim.window.max_in_window <= 5
    assert BrokerkitSim().window.limit == 10 and BrokerkitSim().window.period == 1.0


async def test_faults_latency_errors_and_bursts():
    async with running(faults=Faults(latency=0.08)) as c:
        t = time.perf_counter()
        assert (await c.lead(DOC_LEAD))[0] == 201
        assert time.perf_counter() - t >= 0.08
        c.sim.set_faults(Faults(error_rate=1.0))
        status, body = await c.lead({**DOC_LEAD, "email": "other@example.com", "agent_id": "zz"})
        assert status in (500, 502, 503) and "error" in body
        assert len(c.sim.inspect_records("leads")) == 1
        c.sim.set_faults(Faults(burst_429_rate=1.0))
        status, _, r = await c.call("POST", "/v2/leads", DOC_LEAD)
        assert status == 429 and "Retry-After" in r.headers


async def test_faults_drops_and_truncation():
    async with running(faults=Faults(drop_before_rate=1.0)) as c:
        with pytest.raises(aiohttp.ClientError):
            await c.lead(DOC_LEAD)
        assert c.sim.inspect_records("leads") == []
        c.sim.set_faults(Faults(drop_after_rate=1.0))
        with pytest.raises(aiohttp.ClientError):
            await c.lead(DOC_LEAD)
        assert len(c.sim.inspect_records("leads")) == 1
        c.sim.set_faults(Faults(truncate_rate=1.0))
        with pytest.raises(orjson.JSONDecodeError):
            await c.lead({**DOC_LEAD, "email": "second@example.com", "agent_id": "b2"})
        assert await c.lead(DOC_LEAD) == (204, None)   # no body to cut short
        assert len(c.sim.inspect_records("leads")) == 2 and c.sim.merged_writes == 1


async def test_token_ttl_does_not_expire_a_static_api_key():
    async with running(faults=Faults(token_ttl=0.01)) as c:
        assert (await c.lead(DOC_LEAD))[0] == 201
        await asyncio.sleep(0.05)
        assert (await c.lead(DOC_LEAD))[0] == 204
