"""Ctrl-C: finish what is in flight, commit, print how to resume; the resume completes."""
import signal
import subprocess
import sys
import time

import orjson

from tests.conftest import contacts_rows, file_job


def test_ctrl_c_then_resume(tmp):
    job = file_job(tmp, contacts_rows(20000), concurrency=8)
    out = tmp / "out.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "migrator.cli", "run", str(job), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if out.exists() and out.stat().st_size > 200_000:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert f"Resume with:  migrator run {job}" in err
    written = len(out.read_bytes().splitlines())
    assert 0 < written < 20000
    again = subprocess.run([sys.executable, "-m", "migrator.cli", "run", str(job), "--no-progress"],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    ids = [orjson.loads(l)["_source_id"] for l in out.read_bytes().splitlines()]
    assert len(ids) == len(set(ids)) == 20000
