"""SIGKILL `migrator run` mid-run, again and again; resuming loses and doubles nothing.

CI runs 6 kill points over 6,000 rows. The full-size proof (20 points, 50,000 rows):
    MIGRATOR_CRASH_POINTS=20 MIGRATOR_CRASH_ROWS=50000 pytest tests/integration/test_crash_files.py
"""
import os
import signal
import sqlite3
import subprocess
import sys
import time

import orjson
import pytest

from tests.conftest import contacts_rows, file_job

POINTS = int(os.environ.get("MIGRATOR_CRASH_POINTS", "6"))
ROWS = int(os.environ.get("MIGRATOR_CRASH_ROWS", "6000"))


def _lines(path) -> int:
    try:
        with open(path, "rb") as fh:
            return fh.read().count(b"\n")
    except FileNotFoundError:
        return 0


def _start(job):
    return subprocess.Popen([sys.executable, "-m", "migrator.cli", "run", str(job), "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_sigkill_at_many_points_then_resume(tmp):
    job = file_job(tmp, contacts_rows(ROWS), concurrency=16)
    out = tmp / "out.jsonl"
    kills = 0
    for i in range(1, POINTS + 1):
        goal = ROWS * i // (POINTS + 1)
        proc = _start(job)
        deadline = time.monotonic() + 60
        while proc.poll() is None and _lines(out) < goal and time.monotonic() < deadline:
            time.sleep(0.005)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(30)
    assert kills >= POINTS // 2, "the runs finished before they could be killed"
    print(f"\n{kills} of {POINTS} runs killed with SIGKILL mid-run over {ROWS} rows")
    final = subprocess.run([sys.executable, "-m", "migrator.cli", "run", str(job), "--no-progress"],
                           capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    ids = [orjson.loads(l)["_source_id"] for l in out.read_bytes().splitlines()]
    assert len(ids) == ROWS, f"{len(ids) - len(set(ids))} duplicates, {ROWS - len(set(ids))} lost"
    assert len(set(ids)) == ROWS
    conn = sqlite3.connect(tmp / "ckpt.sqlite")
    assert conn.execute("SELECT status, count(*) FROM records GROUP BY status").fetchall() == [("done", ROWS)]
    assert conn.execute("SELECT finished FROM cursors").fetchone() == (1,)


def _run_crash(job, crash: str | None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("MIGRATOR_CRASH_AT", None)
    if crash:
        env["MIGRATOR_CRASH_AT"] = crash
    return subprocess.run([sys.executable, "-m", "migrator.cli", "run", str(job), "--no-progress"],
                          capture_output=True, text=True, timeout=120, env=env)


def _source_ids(out, kind: str) -> list[str]:
    if kind == "csv":
        import csv
        with open(out, newline="", encoding="utf-8") as fh:
            return [row["_source_id"] for row in csv.DictReader(fh)]
    return [orjson.loads(line)["_source_id"] for line in out.read_bytes().splitlines()]


FILE_POINTS = [("read", 2), ("pending", 3), ("written", 1), ("written", 1200), ("commit", 2), ("commit", 5)]


@pytest.mark.parametrize("kind", ["jsonl", "csv"])
@pytest.mark.parametrize("point,n", FILE_POINTS, ids=[f"{p}-{n}" for p, n in FILE_POINTS])
def test_a_kill_at_each_point_of_a_page_then_resume_leaves_each_row_once(tmp, kind, point, n):
    """A file target writes no pending mark: lines appended past the committed mark (a
    page whose ``done`` never committed) are cut on resume, then written again."""
    rows = 1800                                     # four pages of 500
    job = file_job(tmp, contacts_rows(rows), target=f"{{system: {kind}, path: out.{kind}}}")
    out = tmp / f"out.{kind}"
    crashed = _run_crash(job, f"{point}:{n}")
    assert crashed.returncode == -9, f"never reached {point} #{n}: {crashed.stderr[-500:]}"
    conn = sqlite3.connect(tmp / "ckpt.sqlite")
    done = conn.execute("SELECT count(*) FROM records WHERE status='done'").fetchone()[0]
    assert conn.execute("SELECT count(*) FROM records WHERE status NOT IN ('done', 'failed', 'skipped')"
                        ).fetchone()[0] == 0, "a file target's records need no pending or inflight mark"
    conn.close()
    on_disk = len(_source_ids(out, kind)) if out.exists() else 0
    if point == "written":
        assert on_disk > done, "the kill came between a page's append and its commit"
    final = _run_crash(job, None)
    assert final.returncode == 0, final.stderr
    ids = _source_ids(out, kind)
    assert sorted(ids, key=int) == [str(i) for i in range(1, rows + 1)], \
        f"{len(ids) - len(set(ids))} doubled, {rows - len(set(ids))} lost"
    conn = sqlite3.connect(tmp / "ckpt.sqlite")
    assert conn.execute("SELECT status, count(*) FROM records GROUP BY status").fetchall() == [("done", rows)]


def test_an_output_file_cut_short_after_a_run_is_one_clear_line_not_a_silent_gap(tmp):
    job = file_job(tmp, contacts_rows(1800))
    assert _run_crash(job, "pending:3").returncode == -9
    out = tmp / "out.jsonl"
    out.write_bytes(out.read_bytes()[:100])
    again = _run_crash(job, None)
    assert again.returncode == 2
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in again.stderr
    assert "out.jsonl holds 100 bytes" in lines[0] and "changed after the last run" in lines[0]
