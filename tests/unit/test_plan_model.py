"""The plan's arithmetic and its connectors' counts, without a server.

The integration tests (tests/integration/test_plan.py) prove the counts equal a real run's;
these pin the model, the messages and the storage, case by case.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from migrator import plan as planning
from migrator.connectors.base import Context, Quota, WritePlanner
from migrator.connectors.brokerkit import Brokerkit
from migrator.connectors.files import CsvConnector
from migrator.connectors.realeflow import Realeflow
from migrator.connectors.realvolve import CHUNK, Realvolve
from migrator.connectors.rei import Rei
from migrator.connectors.spark import Spark
from migrator.limits import RateLimit, window_margin
from migrator.schema import Ref

URL = {"base_url": "http://127.0.0.1:9"}


def realvolve() -> Realvolve:
    return Realvolve({**URL, "client_id": "i", "client_secret": "s", "utility_api_key": "k"}, Context())


def rei(**settings) -> Rei:
    return Rei({**URL, "api_key": "k", **settings}, Context())


def side(role: str, *, limit=(10, 1.0), latency=0.1, concurrency=4, setup=None, sequential=(),
         system="sys", quota=None, remaining=None) -> planning.Side:
    return planning.Side(role, system, system.upper(), list(limit) if limit else None, latency, concurrency,
                         dict(setup or {}), list(sequential), quota, remaining)


def plan_of(streams, source=None, target=None, basis="validate") -> planning.Plan:
    p = planning.Plan("job", "id", "digest", basis, 0.0, source or side("source", system="src"),
                      target or side("target", system="tgt"), streams)
    p.compute_eta()
    return p


def stream(source=None, target=None, pages=1, read=10, valid=10) -> planning.StreamPlan:
    return planning.StreamPlan("contacts", "contacts", "contacts", read, valid, dict(source or {}),
                               dict(target or {}), pages=pages)


# ---- the model ----------------------------------------------------------------------
def test_effective_rate_counts_the_limiters_margin():
    # 100 per 10 s is spaced over 10 s plus the limiter's margin, not 10.
    margin = window_margin(10)
    assert margin > 0
    assert planning.effective_rate(RateLimit(100, 10)) == pytest.approx(100 / (10 + margin))
    assert planning.effective_rate(None) is None


def test_side_time_is_the_slower_of_window_and_latency():
    # 100 requests at 10 in any 1 s: nine full windows (1 s plus the margin), then the last ten.
    by_window = planning.side_seconds(100, limit=RateLimit(10, 1.0), latency=0.1, concurrency=4)
    assert by_window == pytest.approx(9 * (1 + window_margin(1)) + 10 * 0.1 / 4)
    by_latency = planning.side_seconds(100, limit=RateLimit(1000, 1.0), latency=1.0, concurrency=4)
    assert by_latency == pytest.approx(25.0)
    # Sequential requests (a cursor) cannot overlap: each takes the whole latency.
    cursor = planning.side_seconds(100, sequential=100, limit=RateLimit(1000, 1.0), latency=1.0, concurrency=4)
    assert cursor == pytest.approx(100.0)
    assert planning.side_seconds(0, limit=RateLimit(10, 1.0), latency=1, concurrency=1) == 0.0


def test_a_job_that_fits_in_one_window_is_planned_at_its_latency_bound():
    # 400 Spark pages under 1,500 in any 5 min, 100 ms each, 8 at a time: 5 s, not 80 s.
    spark = RateLimit(1500, 300)
    assert planning.side_seconds(400, limit=spark, latency=0.1, concurrency=8) == pytest.approx(5.0)
    # One request past the window waits for the window to turn.
    assert planning.side_seconds(1501, limit=spark, latency=0.1, concurrency=8) == pytest.approx(300.5 + 0.1 / 8)
    assert planning.window_seconds(10, None, 0.1, 1) == 0.0


def test_reading_and_writing_overlap_page_by_page():
    src = side("source", limit=(10, 1.0), latency=0.001, setup={})
    tgt = side("target", limit=(10, 1.0), latency=0.001, setup={})
    one_page = plan_of([stream({"page": 50}, {"create": 50}, pages=1)], src, tgt)
    many = plan_of([stream({"page": 50}, {"create": 50}, pages=50)], src, tgt)
    fifty = planning.window_seconds(50, RateLimit(10, 1.0), 0.001, 4)
    assert fifty == pytest.approx(4 * (1 + window_margin(1)) + 10 * 0.001 / 4)
    # One page: everything is read before the first write.
    assert one_page.eta_seconds == pytest.approx(2 * fifty)
    # Fifty pages: the two sides run side by side, plus one page of either.
    assert many.eta_seconds == pytest.approx(fifty + fifty / 50)


def test_a_systems_window_holds_its_preparation_and_its_writes_together():
    """REI, 100 requests in any 10 s: a probe, a meta and an index page, then 200
    creates, are 203 requests — three windows' worth (measured: 20.9 s), not one window
    of 3 then two of 200 (the plan said 15 s)."""
    tgt = side("target", limit=(100, 10.0), latency=0.3, concurrency=8, setup={"probe": 1, "meta": 1})
    src = side("source", limit=None, latency=0.0)
    p = plan_of([stream({}, {"index": 1, "create": 200})], src, tgt)
    assert p.eta_seconds == pytest.approx(planning.window_seconds(203, RateLimit(100, 10.0), 0.3, 8))
    assert p.eta_seconds > 20


def test_a_trials_share_of_the_plan():
    """run --sample 10 of 100 valid: a tenth of the writes (rounded up), the target's index
    whole; Realvolve lists every page but fetches a detail for the trial's 10 only; a
    source that cannot pick before it fetches reads as for the whole run."""
    whole = plan_of([stream({"page": 1, "detail": 100}, {"index": 3, "create": 100, "note": 41},
                            read=100, valid=100)])
    trial = planning.trial_plan(whole, 10, realvolve())
    (s,) = trial.streams
    assert s.target == {"index": 3, "create": 10, "note": 5} and s.source == {"page": 1, "detail": 10}
    assert s.valid == 10 and trial.sample == 10 and "a trial of 10 records" in trial.render()
    assert trial.eta_seconds < whole.eta_seconds
    files = planning.trial_plan(whole, 10, CsvConnector({"path": "x.csv"}, Context()))
    assert files.streams[0].source == {"page": 1, "detail": 100}


def test_target_preparation_and_streams_add_up():
    tgt = side("target", limit=None, latency=0.5, setup={"meta": 1})
    src = side("source", limit=None, latency=0.0)
    p = plan_of([stream({}, {"index": 3, "create": 8}), stream({}, {"create": 4})], src, tgt)
    # meta + 3 index pages one after another, then 8 and 4 creates 4 at a time.
    assert p.eta_seconds == pytest.approx(4 * 0.5 + 2 * 0.5 + 1 * 0.5)
    assert p.requests("target") == {"meta": 1, "index": 3, "create": 12}
    assert p.total("target") == 16


# ---- the quota ----------------------------------------------------------------------
def test_quota_shortfall_is_said_with_the_numbers():
    tgt = side("target", system="rei", setup={"meta": 1}, quota=200_000, remaining=12_345)
    tgt.title = "REI Software"
    p = plan_of([stream({}, {"create": 180_000, "tags": 50_399})], target=tgt)
    assert p.total("target") == 230_400
    [line] = p.quota_problems()
    assert line == ("REI Software: the plan needs 230,400 requests; the key's daily quota is 200,000 "
                    "(12,345 remaining today): the run will wait for the quota to reset (about 2 days) "
                    "— or use --stop-at-quota")
    assert "plus about 2 days waiting for the daily quota" in p.render()


def test_a_plan_that_fits_says_nothing_and_unknown_remaining_uses_the_whole_quota():
    tgt = side("target", system="rei", quota=1000, remaining=None)
    assert plan_of([stream({}, {"create": 1000})], target=tgt).quota_problems() == []
    [line] = plan_of([stream({}, {"create": 1001})], target=tgt, basis="estimate").quota_problems()
    assert "needs 1,001 requests (an estimate)" in line and "what remains today is not known" in line
    assert "(about 1 day)" in line


# ---- connectors' counts -------------------------------------------------------------
@pytest.mark.parametrize("total,pages", [(0, 1), (99, 1), (100, 2), (250, 3), (300, 4)])
def test_rei_cursor_pages_end_only_on_a_short_page(total, pages):
    r = rei()
    assert r.plan_reads("contacts", total) == {"page": pages}
    assert r.plan_setup("source", ["contacts"]) == {"meta": 1}
    assert type(r).sequential_reads == ("page",)


def test_rei_quota_prefers_what_the_server_announces_unless_the_job_sets_less():
    r = rei()
    assert anyio_run(r.quota()) == Quota(200_000, None)
    r.daily_limit, r.daily_remaining = 50, 7
    assert anyio_run(r.quota()) == Quota(50, 7)
    shared = rei(daily_quota=20)
    shared.daily_limit = 50
    assert anyio_run(shared.quota()) == Quota(20, None)


def test_spark_pages_of_25_and_a_login_only_for_session_auth():
    token = Spark({**URL, "access_token": "t", "user_agent": "ua"}, Context())
    assert [token.plan_reads("contacts", n) for n in (0, 25, 26)] == [{"page": 1}, {"page": 1}, {"page": 2}]
    assert token.plan_setup("source", ["contacts"]) == {}
    session = Spark({**URL, "api_key": "k", "api_secret": "s", "user_agent": "ua"}, Context())
    assert session.plan_setup("target", ["contacts"]) == {"auth": 1}


def test_realvolve_reads_a_detail_per_contact_and_the_last_page_twice():
    rv = realvolve()
    assert rv.plan_reads("contacts", 0) == {"page": 1, "detail": 0}
    assert rv.plan_reads("contacts", 1000) == {"page": 1, "detail": 1000}
    # info reads page 1 (kept) and the last page; reading then fetches pages 2..3.
    assert rv.plan_reads("contacts", 2500) == {"page": 4, "detail": 2500}
    assert rv.plan_reads("properties", 40) == {"page": 1}
    assert rv.plan_setup("source", ["contacts"]) == {"auth": 1, "meta": 2}
    assert rv.plan_setup("source", ["properties"]) == {"auth": 1}
    assert rv.plan_setup("target", ["contacts"]) == {"auth": 1, "meta": 1}
    assert rv.plan_pages("contacts", 2500) == -(-2500 // CHUNK)  # handed on as details arrive


def test_realvolve_contact_costs_its_create_and_a_note_each():
    planner = anyio_run(realvolve().write_planner("contacts", None))
    planner.add({"first_name": "A", "notes": ["one", " ", "two"], "tags": ["x", "y"]})
    planner.add({"first_name": "B"})
    planner.add({"first_name": "C", "tags": ["has, comma"]})  # refused before any request
    assert planner.requests() == {"create": 2, "note": 2}
    assert "does not dedup" in planner.dedup
    notes = anyio_run(realvolve().write_planner("notes", None))
    notes.add({"contact_id": "1", "note_content": "hi"})
    notes.add({"contact_id": "1", "note_content": "  "})
    assert notes.requests() == {"note": 1}


def test_realeflow_brokerkit_and_files():
    ref = Realeflow({**URL, "api_key": "k"}, Context())
    assert ref.plan_reads("contacts", 500) == {"page": 1}
    assert ref.plan_setup("target", ["contacts"]) == {"meta": 1, "list": 1}  # what was there before
    contacts = anyio_run(ref.write_planner("contacts", None))
    contacts.add({"FullName": "A"})
    contacts.add({"FullName": "B", "custom_1": "x", "custom.Nope": "y"})  # unknown label: no request
    relations = anyio_run(ref.write_planner("relations", None))
    relations.add({"PropertyId": "1", "ContactId": "2"})
    # Each create's GUID is read back from contact/list: one read per create in flight (8).
    assert contacts.requests() == {"create": 1, "list": 1} and relations.requests() == {"relation": 1}
    for n in range(16):
        contacts.add({"FullName": f"C {n}"})
    assert contacts.requests() == {"create": 17, "list": 3}
    assert "read back from contact/list" in contacts.dedup and "list" not in relations.dedup

    bk = anyio_run(Brokerkit({**URL, "api_key": "k"}, Context()).write_planner("leads", None))
    for email in ("a@x.com", "A@X.com", "b@x.com", None):
        bk.add({"email": email, "first_name": "n"})
    assert bk.requests() == {"create": 4}
    assert "1 leads share a key" in bk.dedup

    csv = CsvConnector({"path": "x.csv"}, Context())
    files = anyio_run(csv.write_planner("contacts", None))
    files.add({"a": 1})
    assert files.requests() == {} and csv.plan_reads("contacts", 10_000) == {}
    assert csv.plan_pages("contacts", 2500) == -(-2500 // csv.page_size())


# ---- feeding ------------------------------------------------------------------------
def test_feed_leaves_out_records_linked_to_records_that_will_not_migrate():
    contacts, owners = WritePlanner(), WritePlanner()
    planners = planning.Planners({"contacts": contacts, "owners": owners}, linked={"contacts"})
    planning.feed(planners, "contacts", [("c1", {"n": 1}, False), ("c2", {"n": 2}, False), ("c4", {}, True)])
    planning.feed(planners, "owners", [("o1", {"ContactId": Ref("contacts", "c1")}, False),
                                       ("o2", {"ContactId": Ref("contacts", "c9")}, False)])
    planning.feed(planners, "unknown", [("x", {}, False)])
    planning.feed(None, "contacts", [("c3", {}, False)])
    assert contacts.requests() == {"create": 2, "update": 1}   # c4: a delta writes it onto its record
    assert owners.requests() == {"create": 1}


def test_a_delta_update_costs_what_each_target_sends_for_it():
    """``validate --since``: a record an earlier run migrated is planned as its update by
    id, as each connector sends it (``write(target_id=…)``)."""
    contacts = anyio_run(realvolve().write_planner("contacts", None))
    contacts.update({"first_name": "A", "notes": ["one", " ", "two"]})
    contacts.update({"first_name": "B"})
    contacts.update({"first_name": "C", "tags": ["has, comma"]})   # refused before any request
    assert contacts.requests() == {"update": 2, "detail": 1, "note": 2}
    assert contacts.dedup.count("planned at most") == 1
    notes = anyio_run(realvolve().write_planner("notes", None))
    notes.update({"contact_id": "1", "note_content": "edited"})    # cannot be edited: fails, no request
    assert notes.requests() == {}

    plain = anyio_run(rei().write_planner("contacts", SimpleNamespace(match_on=())))
    plain.update({"firstName": "A", "tags": ["x"]})
    plain.update({"firstName": "B", "tags": []})
    assert plain.requests() == {"update": 2, "tags": 1}            # a PUT replaces tags: added after it

    from migrator.connectors.spark import _SparkPlanner
    from migrator.connectors.dedup import Choice, PlanState
    spark = Spark({**URL, "access_token": "t"}, Context())
    planner = _SparkPlanner(spark, PlanState(Choice("optimistic", 0, 1, 0, ""), ()), False)
    planner.update({"GivenName": "A", "Note": "called"})
    planner.update({"GivenName": "B"})
    assert planner.requests() == {"update": 2, "read": 1}          # a Note: read first, not added twice

    files = anyio_run(CsvConnector({"path": "x.csv"}, Context()).write_planner("contacts", None))
    files.update({"a": 1})
    assert files.requests() == {}


def test_a_plan_whose_planners_were_not_fed_says_so(tmp_path):
    """If the engine stops handing valid records to the planners, the plan must not pass
    off a target with no requests as the truth."""
    sm = SimpleNamespace(name="contacts", source_stream="contacts", target_stream="leads", refs={})
    job = SimpleNamespace(name="j", job_id="i", concurrency=4, mapping=SimpleNamespace(digest="d", streams={"contacts": sm}))
    source = CsvConnector({"path": "x.csv"}, Context())
    target = Brokerkit({**URL, "api_key": "k"}, Context())
    planners = anyio_run(planning.make_planners(job, target))
    outcome = SimpleNamespace(streams=[SimpleNamespace(stream="contacts", counts={"read": 3, "valid": 3})])
    planning.feed(planners, "contacts", [("1", {"email": "a@x.com"}, False), ("2", {"email": "b@x.com"}, False)])
    short = planning.build_plan(job, source, target, outcome, planners)
    assert short.requests("target") == {"probe": 1, "create": 2}
    assert any("saw 2 of the 3 valid records" in n for n in short.notes)
    planning.feed(planners, "contacts", [("3", {"email": "c@x.com"}, False)])
    whole = planning.build_plan(job, source, target, outcome, planners)
    assert whole.requests("target") == {"probe": 1, "create": 3} and whole.notes == []


# ---- keeping it -----------------------------------------------------------------------
def fake_job(tmp_path: Path, job_id="id", digest="digest"):
    return SimpleNamespace(name="job", job_id=job_id, mapping=SimpleNamespace(digest=digest),
                           reports=tmp_path / "reports")


def test_plan_is_kept_private_and_only_for_its_job_and_mapping(tmp_path):
    p = plan_of([stream({"page": 2}, {"create": 10})])
    planning.save_plan(fake_job(tmp_path), p)
    path = planning.plan_path(fake_job(tmp_path))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = planning.load_plan(fake_job(tmp_path))
    assert again is not None and again.to_dict() == p.to_dict()
    assert planning.load_plan(fake_job(tmp_path, digest="other")) is None
    assert planning.load_plan(fake_job(tmp_path, job_id="other")) is None
    path.write_text("{not json")
    assert planning.load_plan(fake_job(tmp_path)) is None


def test_report_sets_planned_beside_actual():
    p = plan_of([stream({"page": 2}, {"create": 10, "note": 3})])
    outcome = SimpleNamespace(started=0.0, ended=12.0,
                              source_requests={"requests": {"page": 2}},
                              target_requests={"requests": {"create": 10, "note": 2, "detail": 1}})
    section = planning.planned_vs_actual(p, outcome)
    kinds = section["requests"]["target"]["kinds"]
    assert kinds == {"detail": {"planned": 0, "actual": 1}, "create": {"planned": 10, "actual": 10},
                     "note": {"planned": 3, "actual": 2}}
    lines = planning.comparison_lines(section)
    assert lines[2:4] == ["requests planned → actual, tgt (target):", "  detail 0 → 1, create 10 → 10, note 3 → 2"]
    assert lines[-1].startswith("time: planned ")
    assert section["resumed"] is False and "resumed" not in lines[-1]
    outcome.streams = [SimpleNamespace(counts={"already_settled": 4})]
    resumed = planning.comparison_lines(planning.planned_vs_actual(p, outcome))
    assert "this run resumed an earlier one" in " ".join(resumed)
    assert planning.planned_vs_actual(None, outcome) == {"note": planning.NO_PLAN}
    assert planning.comparison_lines({"note": planning.NO_PLAN}) == [
        "plan: no plan (run `migrator validate` first)"]


def anyio_run(coro):
    import anyio

    async def go():
        return await coro
    return anyio.run(go)


def test_an_index_read_again_by_a_resumed_run_is_explained_in_short_lines():
    p = plan_of([stream({"page": 3}, {"index": 1, "create": 1858})])
    outcome = SimpleNamespace(started=0.0, ended=10.0, source_requests={"requests": {"page": 3}},
                              target_requests={"requests": {"index": 8, "create": 1062}},
                              streams=[SimpleNamespace(counts={"already_settled": 815})])
    lines = planning.comparison_lines(planning.planned_vs_actual(p, outcome))
    text = " ".join(" ".join(lines).split())
    assert "index 1 → 8: every run first reads the records the target holds, to match against them; " \
           "this run resumed, so it read them again, with what the earlier run wrote" in text
    assert all(len(line) <= 78 for line in lines), lines   # the summary indents them by 2
