"""Issue 20 figures: the migration as a consultant runs it, step by step, through the real CLI.

    python bench/workflow.py [--contacts 1000] [--changed 50] [--trial 100]

A Flexmls (Spark) account of ``--contacts`` clean contacts moves into an empty REI
Software location, both simulators under their vendors' own limits (Spark 1,500
requests / 5 min, REI 100 / 10 s; the jobs name none, so each connector keeps its
default). Each step is ``python -m migrator.cli …`` as a user types it:

  backup       init spark jsonl, run                  every contact kept, field for field
  validate     the whole migration's plan
  trial        run --sample N                         N written, verified
  undo trial   undo --sample-only                     the location empty again
  run          the rest                               each contact once
  verify       read back                              equal, none missing or doubled
  change       ``--changed`` contacts edited in Spark through its API, one added
  plan delta   validate --since T                     updates and creates counted
  delta        run --since T                          planned = actual, exactly those updated
  ids          the crosswalk                          one row per done record
  undo         undo                                   the location as it was: empty

Printed per step: its wall time, REI's requests, the least time REI's window allows
for them (its first 100 at once, then 100 a window: ``plan.window_seconds``; each step
that writes starts with a fresh window, as the bench waits one out before it), their
ratio, and the step's check. Run by hand;
the suite's tests prove the behaviour (tests/integration/test_{backup,trial,undo,delta,
crosswalk}.py), this prints what it costs.
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from migrator.connectors.base import Context  # noqa: E402
from migrator.limits import RateLimit  # noqa: E402
from migrator.plan import window_seconds  # noqa: E402
from migrator.registry import connector_class  # noqa: E402
from migrator.sandbox.data import CLEAN  # noqa: E402
from migrator.sandbox.server import SandboxThread, make  # noqa: E402

REI = RateLimit(100, 10.0)   # REI Software: 100 requests in any 10 s


def fresh() -> None:
    """Wait out REI's window, so that a step's figure is its own, not its predecessor's."""
    time.sleep(REI.per + 0.5)


def cli(env: dict[str, str], cwd: Path, *args: str) -> tuple[int, str, float]:
    t0 = time.perf_counter()
    quiet = ["--no-progress"] if args[0] not in ("init", "ids") else []
    res = subprocess.run([sys.executable, "-m", "migrator.cli", *args, *quiet], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=3600)
    return res.returncode, res.stderr, time.perf_counter() - t0


def rei_requests(report: Path) -> dict[str, int]:
    r = json.loads(report.read_text())
    side = (r.get("requests") or {}).get("target") or {}
    return dict(side.get("requests") or r.get("requests_by_kind") or {})


def planned_line(report: dict[str, Any]) -> str:
    """REI's requests as the run's plan counted them, beside what it sent."""
    kinds = report["plan"]["requests"]["target"]["kinds"] if "requests" in report.get("plan", {}) else {}
    if not kinds:
        return "no plan"
    same = all(v["planned"] == v["actual"] for v in kinds.values())
    return (f"planned {'=' if same else '≠'} actual "
            + ", ".join(f"{k} {v['planned']}→{v['actual']}" for k, v in kinds.items()))


def undo_requests(reports: Path) -> int:
    """What the last undo sent to REI (its report sets them beside its plan)."""
    plan = json.loads(newest(reports, "*-undo-report.json").read_text())["plan"]
    return sum(v["actual"] for v in plan["requests"]["target"]["kinds"].values())


def newest(folder: Path, pattern: str) -> Path:
    return max(folder.glob(pattern), key=lambda p: p.stat().st_mtime)


async def change_in_spark(env: dict[str, str], ids: list[str]) -> None:
    """What a team does while it cuts over: edit contacts in Spark, add one."""
    api = connector_class("spark")({"system": "spark", "base_url": env["SPARK_BASE_URL"],
                                    "access_token": env["SPARK_ACCESS_TOKEN"]},
                                   Context(role="target", allow_insecure_http=True))
    await api.open()
    try:
        for sid in ids:
            await api.write("contacts", {"GivenName": f"Changed{sid[-4:]}"}, source_id=sid, target_id=sid)
        await api.write("contacts", {"GivenName": "Newcomer", "FamilyName": "Delta", "DisplayName": "Newcomer Delta",
                                     "PrimaryEmail": "newcomer.delta@example.com"}, source_id="new")
    finally:
        await api.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--contacts", type=int, default=1000)
    ap.add_argument("--changed", type=int, default=50)
    ap.add_argument("--trial", type=int, default=100)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-workflow-"))
    sims = {"spark": make("spark", contacts=args.contacts, seed=5, dirt=CLEAN),
            "rei": make("rei", contacts=0, seed=6)}
    rows: list[tuple[str, float, int | None, str]] = []

    def step(name: str, seconds: float, rei: int | None, check: str) -> None:
        rows.append((name, seconds, rei, check))
        least = window_seconds(rei, REI, 0.0, 8) if rei else 0.0
        bound = f"{least:7.1f}" if rei else "      -"
        ratio = f"{seconds / least:5.2f}" if rei and least >= 1 else "    -"
        print(f"{name:<11} {seconds:7.1f} s  {rei if rei is not None else '-':>6}  {bound} s  {ratio}  {check}",
              flush=True)

    with SandboxThread(sims) as sandbox:
        env = {**os.environ, **sandbox.sandbox.env()}
        rei_sim, spark_sim = sandbox.sims["rei"], sandbox.sims["spark"]
        count = lambda: sandbox.call(lambda: len(rei_sim.inspect_records("contacts")))  # noqa: E731
        print(f"{args.contacts:,} Spark contacts → an empty REI location; vendor limits on; in {work}")
        print(f"{'step':<11} {'wall':>9}  {'REI req':>6}  {'bound':>9}  ratio  check")

        code, err, s = cli(env, work, "init", "spark", "jsonl", "--out", "backup")
        assert code == 0, err
        code, err, s = cli(env, work, "run", "backup/job.yaml")
        kept = sum(1 for p in (work / "backup").glob("*.jsonl") for _ in p.open())
        step("backup", s, None, f"exit {code}; {kept:,} lines for {args.contacts:,} contacts")

        code, err, _ = cli(env, work, "init", "spark", "rei", "--out", "job")
        assert code == 0, err
        job = "job/job.yaml"
        reports = work / "job" / "reports"
        code, err, s = cli(env, work, "validate", job)
        eta = next((line for line in err.splitlines() if line.strip().startswith("ETA")), "").strip()
        step("validate", s, None, f"exit {code}; plan {eta}")

        fresh()
        code, err, s = cli(env, work, "run", job, "--sample", str(args.trial))
        held = count()
        report = json.loads(newest(reports, "*-run-*-report.json").read_text())
        step("trial", s, sum(rei_requests(newest(reports, "*-run-*-report.json")).values()),
             f"exit {code}; {held} held; {'verified equal' if 'everything read back is as sent' in err else 'NOT equal'}; "
             + planned_line(report))

        fresh()
        code, err, s = cli(env, work, "undo", job, "--sample-only")
        step("undo trial", s, undo_requests(reports), f"exit {code}; {count()} held")

        fresh()
        code, err, s = cli(env, work, "run", job)
        report = newest(reports, "*-run-*-report.json")
        step("run", s, sum(rei_requests(report).values()), f"exit {code}; {count():,} held")

        code, err, s = cli(env, work, "verify", job)
        line = next((x.strip() for x in err.splitlines() if "equal" in x and "drift" in x), "")
        step("verify", s, None, f"exit {code}; {line}")

        ids = [str(c["Id"]) for c in sandbox.call(lambda: spark_sim.inspect_records("contacts"))][::max(
            1, args.contacts // args.changed)][:args.changed]
        since = (datetime.now(timezone.utc) - timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
        time.sleep(2.5)
        anyio.run(change_in_spark, sandbox.sandbox.env(), ids)
        step("change", 0.0, None, f"{len(ids)} edited in Spark, 1 added")

        code, err, s = cli(env, work, "validate", job, "--since", since)
        planned = next((x.strip() for x in err.splitlines() if "to update" in x and "→" in x), "")
        step("plan delta", s, None, f"exit {code}; {planned}")

        before = count()
        fresh()
        code, err, s = cli(env, work, "run", job, "--since", since)
        report = json.loads(newest(reports, "*-run-*-report.json").read_text())
        counts = report["streams"][0]["counts"]
        kinds = report["plan"]["requests"]["target"]["kinds"] if "requests" in report.get("plan", {}) else {}
        step("delta", s, sum(v["actual"] for v in kinds.values()) if kinds else None,
             f"exit {code}; updated {counts.get('updated', 0)}, created {counts.get('created', 0)}; "
             f"{count() - before} added; " + planned_line(report))

        code, err, s = cli(env, work, "ids", job, "--out", "ids.csv")
        with sqlite3.connect(next((work / "job").glob("*.ckpt.sqlite"))) as db:
            done = db.execute("SELECT count(*) FROM records WHERE status='done'").fetchone()[0]
        lines = sum(1 for _ in (work / "ids.csv").open()) - 1
        step("ids", s, None, f"exit {code}; {lines:,} rows for {done:,} done records")

        fresh()
        code, err, s = cli(env, work, "undo", job)
        step("undo", s, undo_requests(reports), f"exit {code}; {count()} held")

if __name__ == "__main__":
    main()
