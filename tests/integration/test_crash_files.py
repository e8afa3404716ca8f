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
