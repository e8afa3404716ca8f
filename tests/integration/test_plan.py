"""Issue 10 part 3: the plan's request counts equal a deterministic sandbox run's, kind by
kind, and a run whose plan does not fit the daily quota is told so before it starts.

Each test runs the real CLI (in-process, the simulators in a thread) or the real engine:
``validate`` (or ``run --plan``) makes and stores the plan, ``run`` migrates, and its
report sets planned beside actual requests. MIGRATOR_PLAN_CONTACTS sets the number of
people (default 60; 2,500 makes Realvolve list several pages of 1,000).
"""
from __future__ import annotations

import os
import stat
from typing import Any

import orjson

from migrator import plan as planning
from migrator.engine import Engine
from tests.integration.harness import Pair, ThreadPair, mapping_path

N = int(os.environ.get("MIGRATOR_PLAN_CONTACTS", "60"))


def cli(pair: ThreadPair, monkeypatch, capsys, *args: str) -> tuple[int, str]:
    return pair.main(monkeypatch, capsys, *args)


def report(pair: Pair, mode: str) -> dict[str, Any]:
    name = f"{pair.source}-to-{pair.target}"
    return orjson.loads((pair.tmp / "reports" / f"{name}-{mode}-report.json").read_bytes())


def assert_plan_equals_actual(section: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Every kind, both systems: planned == actual. Returns the actual counts."""
    out = {}
    for role in ("source", "target"):
        kinds = section["requests"][role]["kinds"]
        wrong = {k: v for k, v in kinds.items() if v["planned"] != v["actual"]}
        assert not wrong, f"{role}: planned ≠ actual for {wrong}"
        out[role] = {k: v["actual"] for k, v in kinds.items()}
    return out


def test_realvolve_to_rei_plan_equals_the_run_kind_by_kind(tmp_path, monkeypatch, capsys):
    with ThreadPair(tmp_path, "realvolve", "rei", n=N, concurrency=8) as pair:
        code, err = cli(pair, monkeypatch, capsys, "validate", "--max-invalid", str(N))
        assert code == 0, err
        assert "plan for realvolve-to-rei: realvolve → rei (exact record counts from validate)" in err
        assert f"detail {N:,}" in err and "ETA:" in err
        stored = pair.tmp / "reports" / "realvolve-to-rei-plan.json"
        assert stat.S_IMODE(os.stat(stored).st_mode) == 0o600
        assert report(pair, "validate")["plan"]["requests"]["source"]["detail"] == N

        code, err = cli(pair, monkeypatch, capsys, "run")
        assert code in (0, 1), err
        assert "plan (validate at" in err  # told before the run, from the stored plan
        assert "requests planned → actual, realvolve (source):" in err
        run = report(pair, "run")
        actual = assert_plan_equals_actual(run["plan"])
        # The source side is the whole fan-out: a token, two name lists, the list pages
        # (page 1 and the last page twice when there are several) and a detail per contact.
        pages = -(-N // 1000)
        assert actual["source"] == {"auth": 1, "probe": 1, "meta": 2, "page": pages + (1 if pages > 1 else 0), "detail": N}
        # …and those are the counts the HTTP clients kept, not the plan's own echo.
        assert actual["source"] == run["requests"]["source"]["requests"]
        assert {k: n for k, n in actual["target"].items() if n} == run["requests"]["target"]["requests"]


def test_csv_to_realvolve_with_notes_via_run_plan(tmp_path, monkeypatch, capsys):
    with ThreadPair(tmp_path, "csv", "realvolve", n=N, concurrency=8) as pair:
        code, err = cli(pair, monkeypatch, capsys, "run", "--plan")
        assert code == 0, err  # --plan exits 0 even with invalid records
        assert "plan for csv-to-realvolve" in err and "note " in err
        assert pair.target_count() == 0, "run --plan wrote records"
        assert not (pair.tmp / "ckpt.sqlite").exists()

        code, err = cli(pair, monkeypatch, capsys, "run")
        actual = assert_plan_equals_actual(report(pair, "run")["plan"])
        assert actual["source"] == {}
        notes = actual["target"]["note"]
        assert notes > 0 and actual["target"]["create"] == pair.target_count()
        # Each note the plan counted is a note the target now holds.
        held = pair.call(lambda: len(pair.target_sim.inspect_records("notes")))
        assert held == notes


async def test_links_to_records_that_fail_are_not_planned(tmp_path):
    """Realvolve → Realeflow: relations link to contacts; one whose contact is invalid
    fails before its request in the run, and the plan leaves it out too. Realvolve names
    no property's owner, so this test's own mapping links every contact to the first
    property (the shipped mapping carries no relations)."""
    mapping = tmp_path / "with-links.yaml"
    mapping.write_text(mapping_path("realvolve", "realeflow").read_text() + """
  owners:
    from: contacts
    to: relations
    fields:
      PropertyId: {ref: properties, path: "`43501`"}
      ContactId: {ref: contacts, path: id}
""")
    # Seed 2: among the first 60 people, some whose phone is invalid (Realeflow refuses them).
    async with Pair(tmp_path, "realvolve", "realeflow", n=N, seed=2, mapping=mapping) as pair:
        outcome, plan = await planning.validate_with_plan(Engine(pair.job(), mode="validate", progress=False))
        assert plan is not None
        run = await Engine(pair.job(), mode="run", progress=False).run()
        assert plan.requests("source") == run.source_requests["requests"]
        planned, actual = plan.requests("target"), dict(run.target_requests["requests"])
        # Realeflow's GUID read-backs depend on timing: one per create at most, one per
        # create in flight at least (what the plan counts); every other kind is exact.
        creates, slots = actual["create"], pair_slots(pair)
        # (the plan counts per stream: ceil(contacts / slots) + ceil(properties / slots))
        assert -(-creates // slots) <= planned.pop("list") <= actual.pop("list") <= creates
        assert planned == actual
        owners = next(s for s in run.streams if s.target_stream == "relations")
        assert owners.counts["failed"] > 0, "the seed no longer has a relation to an invalid contact"


def pair_slots(pair) -> int:
    from migrator.connectors.realeflow import READBACK_SLOTS
    return min(pair.concurrency, READBACK_SLOTS)


def test_a_run_beyond_the_daily_quota_is_told_before_it_starts(tmp_path, monkeypatch, capsys):
    # A day of one second keeps the run short: it waits for the quota as it would overnight.
    with ThreadPair(tmp_path, "csv", "rei", n=N, concurrency=8,
                    target_sim={"daily_quota": 40, "day_seconds": 1.0}) as pair:
        code, err = cli(pair, monkeypatch, capsys, "validate", "--max-invalid", str(N))
        line = next(x for x in err.splitlines() if "the plan needs" in x)
        assert line.strip().startswith("REI Software: the plan needs ")
        assert "the key's daily quota is 40 (" in line and "remaining today)" in line
        assert "the run will wait for the quota to reset (about" in line

        code, err = cli(pair, monkeypatch, capsys, "run")
        lines = err.splitlines()
        told = next(i for i, x in enumerate(lines) if x.startswith("REI Software: the plan needs "))
        summary = next(i for i, x in enumerate(lines) if x.startswith("run csv-to-rei:"))
        assert told < summary
        assert code in (0, 1), err
        # The run waited for the quota; each request it refused was sent again, and the
        # client counts every send: actual = planned + the refusals, nothing else.
        run = report(pair, "run")
        kinds = run["plan"]["requests"]["target"]["kinds"]
        extra = {k: v["actual"] - v["planned"] for k, v in kinds.items() if v["actual"] != v["planned"]}
        refused = run["requests"]["target"]["retries"].get("quota", 0)
        assert refused > 0 and all(n > 0 for n in extra.values()) and sum(extra.values()) == refused
        assert kinds["create"]["planned"] > 40


async def test_the_quota_line_comes_before_any_write(tmp_path):
    async with Pair(tmp_path, "csv", "rei", n=N, target_sim={"daily_quota": 40}) as pair:
        engine = Engine(pair.job(), mode="validate", progress=False)
        _, plan = await planning.validate_with_plan(engine)
        planning.save_plan(pair.job(), plan)
        job = pair.job()
        run = Engine(job, mode="run", progress=False, stop_after=1)
        told: list[tuple[str, int]] = []
        await planning.before_run(job, run.source, run.target,
                                  lambda line: told.append((line, len(pair.target_records()))))
        await run.source.close()
        await run.target.close()
        quota_lines = [(line, held) for line, held in told if "the plan needs" in line]
        assert quota_lines and all(held == 0 for _, held in quota_lines)
        needed = plan.total("target")
        assert f"the plan needs {needed:,} requests; the key's daily quota is 40" in quota_lines[0][0]


async def test_without_validate_a_quota_source_gets_an_estimate(tmp_path):
    """REI as the source: its first page (kept for the read) says how many contacts there
    are, so ``run`` can estimate without a validate pass, and says it is an estimate."""
    async with Pair(tmp_path, "rei", "realvolve", n=N, source_sim={"daily_quota": 1}) as pair:
        job = pair.job()
        run = Engine(job, mode="run", progress=False)
        told: list[str] = []
        plan = await planning.before_run(job, run.source, run.target, told.append)
        await run.source.close()
        await run.target.close()
        assert plan is not None and plan.basis == "estimate"
        assert plan.requests("source") == {"probe": 1, "meta": 1, "page": N // 100 + 1}
        needed = N // 100 + 3
        assert any(line.startswith(f"REI Software: the plan needs {needed:,} requests (an estimate); the "
                                   "key's daily quota is 1 (0 remaining today)") for line in told), told


def test_a_run_without_a_plan_says_so(tmp_path, monkeypatch, capsys):
    with ThreadPair(tmp_path, "csv", "realeflow", n=10) as pair:
        code, err = cli(pair, monkeypatch, capsys, "run")
        assert code in (0, 1), err
        assert report(pair, "run")["plan"] == {"note": "no plan (run `migrator validate` first)"}
        assert "plan: no plan (run `migrator validate` first)" in err
