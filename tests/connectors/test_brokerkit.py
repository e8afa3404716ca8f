"""Brokerkit connector: request shapes and answers against the doc (aioresponses), then
upserts, dry runs and refusals against the simulator over real HTTP."""
from __future__ import annotations

import sqlite3
from typing import Any

import aiohttp
import anyio
import orjson
import pytest
from tests.aioresp import aioresponses
from yarl import URL

from migrator.connectors.base import Context
from migrator.connectors.brokerkit import Brokerkit
from migrator.errors import AuthError, JobError, RecordError, UncertainWrite
from migrator.limits import RateLimit
from migrator.sandbox.server import Sandbox, make

API = "https://api.getbrokerkit.com"
LEADS = API + "/v2/leads"
KEY = "bk-unit-key-0001"
# The doc's recruiting sample, typed as the schema wants it (its placeholder phones are
# not valid numbers, so real ones stand in).
DOC_LEAD = {
    "first_name": "Peet", "last_name": "Peeter", "birthday": "24/03/1975", "phone": "+12025550166",
    "email": "peet@example.com", "agent_id": "a68d4b23", "bucket": "default", "status": "new_lead",
    "note": "#NOTE", "source": "Abstrakt", "currently_at": "RE-MAX United",
    "alt_address": "1111 A Shangri, New York, NY 11111, USA", "alt_city": "New York",
    "alt_state": "NY", "alt_zip": "1111", "office_address": "1111 N Tatum, New York, NY 11111, USA",
    "office_city": "New York", "office_state": "NY", "office_zip": "11111", "kpa_taken": True,
    "active_listings_count": 111, "rating": 4, "production_ytd": 10000, "production_label": "mega",
    "owner_email": "test@brokerkit.com", "referrer_email": "test@brokerkit.com",
    "other_phone": "+12125551234", "office_phone": "+13125550100",
}
DOC_ANSWER = {"id": 200001, "team_id": 4100, "status": "new_lead", "bucket": "default",
              "first_name": "Peet", "last_name": "Peeter", "email": "peet@example.com",
              "kpa_taken": True, "active_listings_count": "111", "agent_id": "a68d4b23"}


def connector(**settings: Any) -> Brokerkit:
    base = {"system": "brokerkit", "api_key": KEY, "rate_limit": "off"}
    return Brokerkit({**base, **settings}, Context(role="target", concurrency=8))


def sent(m: aioresponses, n: int = 0) -> dict[str, Any]:
    return m.requests[("POST", URL(LEADS))][n].kwargs


def sent_json(m: aioresponses, n: int = 0) -> Any:
    return orjson.loads(sent(m, n)["data"])


@pytest.fixture
async def bk():
    c = connector()
    await c.open()
    yield c
    await c.close()


# ---- facts ---------------------------------------------------------------------------

def test_declared_facts():
    assert Brokerkit.default_limit == RateLimit(5, 1.0)
    assert Brokerkit.credential_envs() == ["BROKERKIT_API_KEY"]
    assert Brokerkit.reads == "export" and "csv" in Brokerkit.notes
    leads = Brokerkit.schemas()["leads"]
    assert leads.validate(DOC_LEAD) == []
    bad = leads.validate({"email": "peet", "phone": "555-CALL", "birthday": "1975-03-24",
                          "bucket": "normal", "status": "lead", "production_label": "huge",
                          "rating": 11, "kpa_taken": "true", "active_listings_count": "111",
                          "owner_email": "boss"})
    assert {v.field for v in bad} == {"email", "phone", "birthday", "bucket", "status",
                                      "production_label", "rating", "kpa_taken",
                                      "active_listings_count", "owner_email"}
    assert leads.validate({"rating": 3, "first_name": "A"})[0].rule == "range"
    [rule] = leads.validate({"agent_id": "a1", "source": "x"})
    assert rule.rule == "any_of" and rule.field == "first_name|last_name|email|phone"


@pytest.mark.parametrize("settings, needle", [
    ({"product": "recruiting"}, "retention"),
    ({"test_mode": "maybe"}, "test_mode"),
])
def test_bad_settings_are_refused(settings, needle):
    with pytest.raises(JobError, match=needle):
        connector(**settings)


async def test_cannot_be_read_and_points_to_the_csv_export(bk):
    with pytest.raises(JobError, match="system: csv"):
        await bk.info("leads")
    with pytest.raises(JobError, match="system: csv"):
        bk.pages("leads", None)
    assert bk.streams() == () and bk.can_lookup("leads") is False


# ---- request shapes ----------------------------------------------------------------

async def test_token_header_json_body_and_booleans_not_strings():
    c = connector(test_mode=True, product="retention")
    await c.open()
    try:
        with aioresponses() as m:
            m.post(LEADS, status=200, payload={**DOC_ANSWER, "id": None, "email": None})
            res = await c.write("leads", DOC_LEAD, source_id="s1")
    finally:
        await c.close()
    kw = sent(m)
    assert kw["headers"]["Authorization"] == f"Token token={KEY}"
    assert kw["headers"]["Content-Type"] == "application/json"
    body = orjson.loads(kw["data"])
    assert body == {"test": True, "product": "retention", **DOC_LEAD}
    assert body["test"] is True and body["kpa_taken"] is True
    assert isinstance(body["rating"], int) and isinstance(body["active_listings_count"], int)
    assert (res.action, res.target_id) == ("tested", "")


async def test_201_is_created_with_the_lead_id(bk):
    with aioresponses() as m:
        m.post(LEADS, status=201, payload=DOC_ANSWER)
        res = await bk.write("leads", DOC_LEAD, source_id="s1")
    assert (res.target_id, res.action, res.matched_key) == ("200001", "created", None)
    assert "test" not in sent_json(m) and "product" not in sent_json(m)


async def test_200_is_a_match_on_email_first_then_agent_id(bk):
    bk.on_merge = "update"   # combine would send the second lead with the first one's e-mail
    with aioresponses() as m:
        m.post(LEADS, status=200, payload=DOC_ANSWER, repeat=True)
        by_email = await bk.write("leads", DOC_LEAD, source_id="s1")
        by_agent = await bk.write("leads", {"first_name": "Peet", "agent_id": "a68d4b23"}, source_id="s2")
    assert (by_email.target_id, by_email.action, by_email.matched_key) == \
        ("200001", "matched", "email=peet@example.com")
    assert (by_agent.target_id, by_agent.action, by_agent.matched_key) == \
        ("200001", "matched", "agent_id=a68d4b23")


async def test_204_for_a_lead_from_before_the_job_names_it_by_the_key_that_matched(bk):
    """No body, no id, and this job never created the lead: its name is the matched key,
    the same for every later lead that matches it (on any of its keys)."""
    bk.on_merge = "update"   # combine would send the second lead with the first one's e-mail
    with aioresponses() as m:
        m.post(LEADS, status=204, body=b"", repeat=True)
        by_email = await bk.write("leads", {**DOC_LEAD, "email": "Peet@Example.com"}, source_id="s1")
        by_agent = await bk.write("leads", {"last_name": "P", "agent_id": "a68d4b23"}, source_id="s2")
        agent_only = await bk.write("leads", {"last_name": "Q", "agent_id": "zz1"}, source_id="s3")
    assert (by_email.target_id, by_email.action, by_email.matched_key) == \
        ("email:peet@example.com", "matched", "email=Peet@Example.com")
    assert (by_agent.target_id, by_agent.matched_key) == ("email:peet@example.com", "agent_id=a68d4b23")
    assert (agent_only.target_id, agent_only.matched_key) == ("agent_id:zz1", "agent_id=zz1")


async def test_204_takes_the_id_this_job_created_for_the_key_the_server_matched(bk):
    """The server tries the e-mail (any the lead was sent), then the agent_id: so does the
    connector when it names the lead a 204 updated."""
    bk.on_merge = "update"
    with aioresponses() as m:
        m.post(LEADS, status=201, payload=DOC_ANSWER)
        m.post(LEADS, status=201, payload={**DOC_ANSWER, "id": 200002})
        m.post(LEADS, status=204, body=b"", repeat=True)
        made = await bk.write("leads", DOC_LEAD, source_id="s1")
        other = await bk.write("leads", {"first_name": "O", "email": "o@example.com", "agent_id": "o1"},
                               source_id="s2")
        by_agent = await bk.write("leads", {"first_name": "P", "email": "new@example.com",
                                            "agent_id": "a68d4b23"}, source_id="s3")
        by_new_email = await bk.write("leads", {"first_name": "Q", "email": "NEW@example.com"}, source_id="s4")
        email_first = await bk.write("leads", {"first_name": "R", "email": "peet@example.com",
                                               "agent_id": "o1"}, source_id="s5")
    assert (made.target_id, made.action, other.target_id) == ("200001", "created", "200002")
    assert (by_agent.target_id, by_agent.action, by_agent.matched_key) == ("200001", "matched", "agent_id=a68d4b23")
    assert (by_new_email.target_id, by_new_email.matched_key) == ("200001", "email=NEW@example.com")
    assert (email_first.target_id, email_first.matched_key) == ("200001", "email=peet@example.com")


async def test_a_create_resent_after_a_crash_is_its_own_create_with_its_id(tmp_path):
    """The 201's id is in the checkpoint before write() returns: a kill before the record's
    done makes the resumed run send it again, and its 204 is this record's own lead."""
    from migrator.checkpoint import Checkpoint
    for run, (status, answer) in enumerate(((201, DOC_ANSWER), (204, None))):
        ckpt = await Checkpoint.open(tmp_path / "k.sqlite", job_id="j", mapping_digest="m")
        c = connector()
        c.checkpoint = ckpt
        await c.open()
        try:
            with aioresponses() as m:
                m.post(LEADS, status=status, **({"payload": answer} if answer else {"body": b""}))
                res = await c.write("leads", DOC_LEAD, source_id="s1")
            with sqlite3.connect(tmp_path / "k.sqlite") as db:   # committed, as a kill would leave it
                held = dict(db.execute("SELECT key, target_id FROM target_keys"))
            assert held == {"email=peet@example.com": "200001", "agent_id=a68d4b23": "200001",
                            "source=s1": "200001"}
        finally:
            await c.close()
            await ckpt.close()   # no done was ever queued: as after a kill at "written"
        assert (res.target_id, res.action) == ("200001", "created"), run


async def test_a_201_cut_short_is_a_create_named_by_its_key(bk):
    with aioresponses() as m:
        m.post(LEADS, status=201, body=b'{"id": 2000', content_type="application/json")
        m.post(LEADS, status=204, body=b"")
        made = await bk.write("leads", DOC_LEAD, source_id="s1")
        again = await bk.write("leads", {"first_name": "P", "agent_id": "a68d4b23"}, source_id="s2")
    assert (made.target_id, made.action) == ("email:peet@example.com", "created")
    assert (again.target_id, again.action) == ("email:peet@example.com", "matched")


async def test_422_lists_every_field_and_names_the_first(bk):
    with aioresponses() as m:
        m.post(LEADS, status=422, payload={"email": ["is invalid"], "phone": ["is an invalid number"]})
        with pytest.raises(RecordError) as e:
            await bk.write("leads", DOC_LEAD, source_id="s1")
    assert e.value.reason == "email: is invalid; phone: is an invalid number"
    assert (e.value.field, e.value.status) == ("email", 422)
    with aioresponses() as m:
        m.post(LEADS, status=422, payload={"base": ["a lead needs a name, an email or a phone"],
                                           "rating": ["must be less than or equal to 10",
                                                      "is not a number"]})
        with pytest.raises(RecordError) as e:
            await bk.write("leads", {"agent_id": "x"}, source_id="s2")
    assert e.value.reason == ("a lead needs a name, an email or a phone; "
                              "rating: must be less than or equal to 10, is not a number")
    assert e.value.field == "rating"


async def test_401_and_403_name_the_variable_never_the_key(bk):
    for status, body in ((401, {"error": "HTTP Token: Access denied."}), (403, {"error": "Forbidden"})):
        with aioresponses() as m:
            m.post(LEADS, status=status, payload=body)
            with pytest.raises(AuthError) as e:
                await bk.write("leads", DOC_LEAD, source_id="s1")
        assert "BROKERKIT_API_KEY" in str(e.value) and KEY not in str(e.value)


async def test_lost_answer_is_retried_only_when_the_lead_has_an_upsert_key(bk):
    bk.http.backoff_base = 0.0
    with aioresponses() as m:
        m.post(LEADS, exception=aiohttp.ServerDisconnectedError())
        m.post(LEADS, status=200, payload=DOC_ANSWER)
        res = await bk.write("leads", DOC_LEAD, source_id="s1")
    assert res.action == "matched" and len(m.requests[("POST", URL(LEADS))]) == 2
    with aioresponses() as m:
        m.post(LEADS, exception=aiohttp.ServerDisconnectedError())
        with pytest.raises(UncertainWrite):
            await bk.write("leads", {"first_name": "No", "phone": "+12025550166"}, source_id="s2")


# ---- against the simulator -----------------------------------------------------------

def lead(i: int) -> dict[str, Any]:
    return {"first_name": f"Agent{i}", "last_name": "Recruit", "email": f"agent{i}@example.com",
            "phone": f"+1202555{100 + i:04d}", "agent_id": f"ag{i:04d}", "status": "contact_made",
            "bucket": "default", "birthday": "24/03/1975", "kpa_taken": i % 2 == 0,
            "active_listings_count": i, "production_ytd": 1000.5 * i, "rating": 4 + i % 7,
            "production_label": "mid", "alt_state": "NY", "source": "import"}


async def write_all(c: Brokerkit, records: list[dict[str, Any]], prefix: str = "") -> list[Any]:
    out: list[Any] = [None] * len(records)

    async def one(i: int) -> None:
        out[i] = await c.write("leads", records[i], source_id=f"{prefix}{i}")

    async with anyio.create_task_group() as tg:
        for i in range(len(records)):
            tg.start_soon(one, i)
    return out


def sim_connector(sim, **settings: Any) -> Brokerkit:
    return connector(**{"api_key": sim.credentials()["BROKERKIT_API_KEY"], "base_url": sim.base_url,
                        **settings})


async def test_100_leads_written_twice_are_created_then_matched_without_duplicates():
    sim = make("brokerkit", limit=False)
    records = [lead(i) for i in range(100)]
    async with Sandbox({"brokerkit": sim}):
        c = sim_connector(sim)
        await c.open()
        try:
            first = await write_all(c, records)
            second = await write_all(c, records, prefix="again-")
        finally:
            await c.close()
    assert {r.action for r in first} == {"created"} and {r.action for r in second} == {"matched"}
    assert [r.target_id for r in first] == [r.target_id for r in second]
    assert len({r.target_id for r in first}) == 100
    assert second[5].matched_key == "email=agent5@example.com"
    stored = {str(x["id"]): x for x in sim.inspect_records("leads")}
    assert len(stored) == 100 and sim.duplicates() == {} and sim.merged_writes == 100
    five = stored[first[5].target_id]
    assert (five["email"], five["kpa_taken"], five["rating"], five["birthday"]) == \
        ("agent5@example.com", False, 9, "1975-03-24")
    assert stored[first[4].target_id]["kpa_taken"] is True


async def test_agent_id_upsert_and_retention_product_against_the_simulator():
    sim = make("brokerkit", limit=False)
    async with Sandbox({"brokerkit": sim}):
        c = sim_connector(sim, product="retention")
        await c.open()
        try:
            made = await c.write("leads", {"first_name": "Ann", "agent_id": "zz9"}, source_id="1")
            again = await c.write("leads", {"last_name": "Lee", "agent_id": "zz9"}, source_id="2")
        finally:
            await c.close()
    assert made.action == "created" and (again.action, again.matched_key) == ("matched", "agent_id=zz9")
    [stored] = sim.inspect_records("leads")
    assert str(stored["id"]) == made.target_id == again.target_id
    assert stored["retention"] is True and stored["name"] == "Ann Lee"


async def test_test_mode_saves_nothing_but_still_reports_refusals():
    sim = make("brokerkit", limit=False)
    async with Sandbox({"brokerkit": sim}):
        c = sim_connector(sim, test_mode=True)
        await c.open()
        try:
            results = await write_all(c, [lead(i) for i in range(10)])
            with pytest.raises(RecordError) as e:
                await c.write("leads", {**lead(1), "rating": 11, "phone": "+11111111111"}, source_id="x")
        finally:
            await c.close()
    assert {r.action for r in results} == {"tested"}
    assert sim.inspect_records("leads") == [] and sim.duplicates() == {}
    assert e.value.field == "phone" and "rating: must be less than or equal to 10" in e.value.reason


async def test_simulator_auth_failure_names_the_variable():
    sim = make("brokerkit", limit=False)
    async with Sandbox({"brokerkit": sim}):
        c = sim_connector(sim, api_key="wrong-key")
        await c.open()
        try:
            with pytest.raises(AuthError) as e:
                await c.write("leads", lead(1), source_id="1")
        finally:
            await c.close()
    assert "BROKERKIT_API_KEY" in str(e.value) and "wrong-key" not in str(e.value)
    assert sim.inspect_records("leads") == []


async def test_the_plan_counts_a_repeat_on_any_key_as_the_server_matches(bk):
    planner = await bk.write_planner("leads", None)
    for record in ({"email": "a@x.com", "agent_id": "1"}, {"email": "b@x.com", "agent_id": "1"},
                   {"email": "B@X.com"}, {"agent_id": "2"}, {"first_name": "No key"}):
        planner.add(record)
    assert (planner.counts["create"], planner.repeats) == (5, 2)
    assert "2 leads share a key with an earlier one" in planner.dedup
