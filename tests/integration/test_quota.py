"""Issue 10, parts 1 and 2, end to end: the limiter follows REI Software's rate-limit
headers down to the server's window, and a spent daily quota is waited for (or, asked
to, stopped at) — never a record failure, never a record written twice.

The simulator's day is test-sized (``day_seconds``) and its quota small, so a run of a
few dozen records spends it mid-way."""
from __future__ import annotations

import signal
import subprocess
import time

import orjson
import pytest

from migrator.cli import build_parser
from migrator.engine import Engine
from migrator.limits import RateLimit
from migrator.sandbox.base import DailyQuota
from migrator.sandbox.data import CLEAN
from tests.integration.harness import Pair, ThreadPair, checkpoint_rows

SPENT = "REI Software: the daily request quota of REI_API_KEY is spent"
LONG_DAY = 1e9  # a "day" that will not turn during the test (days turn at multiples of it)


def emails(records: list[dict]) -> list[str]:
    return sorted(r["email"].lower() for r in records)


def assert_exactly_once(pair: Pair, records: list[dict]) -> None:
    """Every source person is in the target once, and the checkpoint says so."""
    assert emails(records) == sorted(p.email.lower() for p in pair.people)
    rows = checkpoint_rows(pair)
    assert len(rows) == len(pair.people) and {status for status, _, _ in rows} == {"done"}, rows


# ---- part 1: rate-limit headers ----------------------------------------------------------
async def test_the_servers_lower_window_is_followed_no_429_after_the_first_window(tmp_path):
    server = (10, 0.5)  # 20 requests/s; the job allows 200/s
    async with Pair(tmp_path, "csv", "rei", n=40, dirt=CLEAN, concurrency=16, target_sim={"limit": server},
                    target_settings={"rate_limit": "{requests: 200, per: 1}"}) as pair:
        sim = pair.target_sim
        admitted: list[float] = []
        refused: list[float] = []
        hit = sim.window.hit

        def counted(key: str) -> float | None:
            wait = hit(key)
            (refused if wait is not None else admitted).append(time.monotonic())
            return wait

        sim.window.hit = counted
        engine = Engine(pair.job(), progress=False)
        outcome = await engine.run()
        assert outcome.streams[0].counts["done"] == 40 and not outcome.streams[0].counts["failed"]
        first_window_ends = admitted[0] + server[1]
        assert [t for t in refused if t >= first_window_ends] == [], f"{len(refused)} refused"
        assert sim.window.max_in_window <= server[0]
        limiter = engine.target.http.limiter
        assert limiter.limit == limiter.ceiling == RateLimit(*server), \
            "it ends at the server's advertised rate: lowered to it, not left below it"
        assert_exactly_once(pair, pair.target_records())


# ---- part 2: the daily quota ---------------------------------------------------------------
async def test_a_run_that_spends_the_quota_waits_for_the_day_to_turn_and_completes_exactly_once(tmp_path):
    n, quota, concurrency = 20, 8, 8   # 21+ requests, 8 a day: the quota runs out at least twice
    async with Pair(tmp_path, "csv", "rei", n=n, dirt=CLEAN, concurrency=concurrency,
                    target_sim={"daily_quota": quota, "day_seconds": 1.0}) as pair:
        lines: list[str] = []
        outcome = await pair.run(out=lines.append)
        sim = pair.target_sim
        counts = outcome.streams[0].counts
        assert outcome.stopped_reason is None and not outcome.interrupted
        assert counts["done"] == n and not counts["failed"]
        waits = [line for line in lines if line.startswith(SPENT + "; waiting until ")]
        assert waits and all(" UTC (in " in w and "Ctrl-C stops" in w for w in waits), lines
        assert sim.quota.refused >= 2
        assert sim.quota.refused <= concurrency * len(waits), \
            "one wait for every writer: none sends again into a quota it was told is spent"
        assert outcome.target_requests["retries"]["quota"] == sim.quota.refused, \
            "every refusal was waited out and sent again"
        assert sim.duplicates() == {}
        assert_exactly_once(pair, pair.target_records())


async def test_a_quota_wait_beyond_max_quota_wait_stops_cleanly_and_fails_nothing(tmp_path):
    async with Pair(tmp_path, "csv", "rei", n=12, dirt=CLEAN, concurrency=4,
                    target_sim={"daily_quota": 6, "day_seconds": LONG_DAY}) as pair:
        with open(tmp_path / "job.yaml", "a") as f:
            f.write("max_quota_wait: 10m\n")
        lines: list[str] = []
        outcome = await pair.run(out=lines.append)
        assert outcome.stopped_reason and outcome.stopped_reason.startswith(SPENT + "; it returns at ")
        assert outcome.stopped_reason.endswith("a longer wait than max_quota_wait (10m) allows; stopped")
        assert not outcome.streams[0].counts["failed"]
        assert not [line for line in lines if "waiting until" in line]
        rows = checkpoint_rows(pair)
        assert "failed" not in {status for status, _, _ in rows}
        assert 0 < sum(status == "done" for status, _, _ in rows) < 12


def test_stop_at_quota_exits_cleanly_and_the_resume_completes_exactly_once(tmp_path):
    n, quota = 30, 8
    with ThreadPair(tmp_path, "csv", "rei", n=n, dirt=CLEAN, concurrency=8,
                    target_sim={"daily_quota": quota, "day_seconds": 1.0}) as pair:
        job = tmp_path / "job.yaml"
        key = pair.env["REI_API_KEY"]
        first = subprocess.run(pair.cli("run") + ["--stop-at-quota"], env=pair.subprocess_env(),
                               capture_output=True, text=True, timeout=120)
        assert first.returncode == 130, first.stderr
        assert f"{SPENT}; stopped at the quota, as asked; it returns at " in first.stderr
        assert f"Resume with:  migrator run {job}" in first.stderr
        assert "Traceback" not in first.stderr and key not in first.stderr
        assert "waiting until" not in first.stderr
        rows = checkpoint_rows(pair)
        assert "failed" not in {status for status, _, _ in rows}, "a quota refusal is no record failure"
        done = sum(status == "done" for status, _, _ in rows)
        assert 0 < done < n
        report = orjson.loads((tmp_path / "reports" / "csv-to-rei-run-report.json").read_bytes())
        assert "stopped at the quota" in str(report)

        again = subprocess.run(pair.cli("run"), env=pair.subprocess_env(),
                               capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr
        assert "Traceback" not in again.stderr
        records = pair.call(pair.target_records)
        assert pair.call(pair.target_sim.duplicates) == {}
        assert_exactly_once(pair, records)


def test_ctrl_c_ends_a_quota_wait_promptly_and_the_resume_completes(tmp_path):
    n = 16
    with ThreadPair(tmp_path, "csv", "rei", n=n, dirt=CLEAN, concurrency=4,
                    target_sim={"daily_quota": 6, "day_seconds": LONG_DAY}) as pair:
        proc = subprocess.Popen(pair.cli("run"), env=pair.subprocess_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            seen = []
            for line in proc.stderr:
                seen.append(line)
                if "waiting until" in line:
                    break
            assert seen and seen[-1].startswith(SPENT + "; waiting until "), "".join(seen)
            proc.send_signal(signal.SIGINT)
            _, rest = proc.communicate(timeout=30)   # a wait of years, ended by Ctrl-C
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 130, rest
        assert f"{SPENT}; stopped while waiting for it; it returns at " in rest
        assert "Resume with:  migrator run" in rest and "Traceback" not in rest
        rows = checkpoint_rows(pair)
        assert "failed" not in {status for status, _, _ in rows}
        assert sum(status == "done" for status, _, _ in rows) < n

        def new_day() -> None:  # the day turns, with room for the rest
            pair.target_sim.quota = DailyQuota(1000, LONG_DAY)

        pair.call(new_day)
        again = subprocess.run(pair.cli("run"), env=pair.subprocess_env(),
                               capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr
        assert_exactly_once(pair, pair.call(pair.target_records))


def test_stop_at_quota_is_a_flag_of_run_and_retry():
    parser = build_parser()
    assert parser.parse_args(["run", "job.yaml", "--stop-at-quota"]).stop_at_quota
    assert parser.parse_args(["retry", "job.yaml", "--stop-at-quota"]).stop_at_quota
    assert not parser.parse_args(["run", "job.yaml"]).stop_at_quota
    with pytest.raises(SystemExit):
        parser.parse_args(["validate", "job.yaml", "--stop-at-quota"])
