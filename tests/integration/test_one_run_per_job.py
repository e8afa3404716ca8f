"""One run per job: a second `migrator run` (or `retry`) of a job that is running exits 2
naming the running one and touches nothing; `status` and `validate` work beside it; after
a `kill -9` of the holder the next run goes ahead with no clean-up.

Real CLI subprocesses, for a file job (CSV → JSONL) and for CSV → REI Software and
CSV → Realeflow on the sandbox. The holder is paused (SIGSTOP) mid-run while the others
try, so what they find does not depend on timing.
"""
from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import orjson
import pytest

from migrator.lock import lock_path
from migrator.sandbox.base import Faults
from migrator.sandbox.data import CLEAN
from tests.conftest import contacts_rows, file_job
from tests.integration.harness import ThreadPair

FILE_ROWS = 3000   # the file job writes fast: enough rows to be caught mid-run
API_RECORDS = 200
TARGETS = ["file", "rei", "realeflow"]


class Job:
    """One job of each kind, seen the same way: the CLI, what the target holds, how many
    requests it was sent."""

    def __init__(self, tmp: Path, kind: str, stack: list):
        self.tmp, self.kind = tmp, kind
        if kind == "file":
            self.n = FILE_ROWS
            self.path = file_job(tmp, contacts_rows(self.n), concurrency=16)
            self.env = dict(os.environ)
            self.pair = None
        else:
            self.n = API_RECORDS
            self.pair = ThreadPair(tmp, "csv", kind, n=self.n, dirt=CLEAN, concurrency=4,
                                   faults=Faults(latency=0.01))
            stack.append(self.pair.__enter__())
            self.path = tmp / "job.yaml"
            self.env = self.pair.subprocess_env()
        self.env.pop("MIGRATOR_CRASH_AT", None)

    def cli(self, command: str, *extra: str) -> list[str]:
        return [sys.executable, "-m", "migrator.cli", command, str(self.path), *extra]

    def run(self, command: str, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(self.cli(command, *extra), env=self.env, capture_output=True, text=True,
                              timeout=180)

    def start(self) -> subprocess.Popen:
        return subprocess.Popen(self.cli("run", "--no-progress"), env=self.env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)

    def held(self) -> list[str]:
        """The source id (file) or e-mail (API) of every record the target holds."""
        if self.pair is None:
            out = self.tmp / "out.jsonl"
            return [orjson.loads(line)["_source_id"] for line in out.read_bytes().splitlines()] \
                if out.exists() else []
        return [r["email"].lower() for r in self.pair.call(self.pair.target_records)]

    def requests(self) -> int:
        return 0 if self.pair is None else self.pair.call(lambda: sum(self.pair.target_sim.stats.requests.values()))

    def duplicates(self) -> dict:
        return {} if self.pair is None else self.pair.call(self.pair.target_sim.duplicates)

    def statuses(self) -> dict[str, int]:
        with sqlite3.connect(self.tmp / "ckpt.sqlite") as db:
            return dict(db.execute("SELECT status, count(*) FROM records GROUP BY status"))


@pytest.fixture
def job(request, tmp_path) -> Iterator[Job]:
    stack: list = []
    try:
        yield Job(tmp_path, request.param, stack)
    finally:
        for pair in stack:
            pair.__exit__(None, None, None)


def _holder_pid(path: Path) -> int | None:
    try:
        return orjson.loads(path.read_bytes()).get("pid")
    except (OSError, ValueError):
        return None


def _pause_mid_run(job: Job, proc: subprocess.Popen, written: int) -> None:
    """SIGSTOP ``proc`` once the target holds ``written`` records; return when the
    requests it had in flight have landed."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len(job.held()) >= written:
            proc.send_signal(signal.SIGSTOP)
            seen = None
            while seen != (seen := (job.requests(), len(job.held()))):
                time.sleep(0.2)
            return
        time.sleep(0.002)
    pytest.fail(f"the first run ended (exit {proc.poll()}) before it could be paused mid-run: "
                f"{proc.stderr.read()[-500:] if proc.poll() is not None else ''}")


def _files(root: Path, keep: Callable[[str], bool] = lambda name: True) -> dict[str, str]:
    """Every file under ``root`` (the checkpoint, its WAL, the output, the reports, the lock
    file) and a digest of its bytes and mode."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_file() and keep(rel):
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() + oct(p.stat().st_mode)
    return out


def _refusal(pid: int, command: str = "run") -> re.Pattern:
    return re.compile(rf"^migrator: \S*job\.yaml: another run of this job is in progress \(migrator {command}, "
                      rf"pid {pid} on host {re.escape(socket.gethostname())}, since "
                      r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d\); wait for it or stop it — "
                      r"the checkpoint is shared$")


def _assert_each_record_once(job: Job) -> None:
    held = job.held()
    assert len(held) == job.n, f"{len(held)} records held for {job.n}"
    assert len(set(held)) == job.n, f"{len(held) - len(set(held))} doubled"
    assert job.duplicates() == {}
    assert job.statuses() == {"done": job.n}


@pytest.mark.parametrize("job", TARGETS, indirect=True)
def test_a_second_run_is_refused_and_touches_nothing_while_status_and_validate_work(job):
    first = job.start()
    try:
        _pause_mid_run(job, first, written=10)
        before, requests, held = _files(job.tmp), job.requests(), len(job.held())
        assert 10 <= held < job.n

        second = job.run("run", "--no-progress")
        assert second.returncode == 2, second.stderr
        assert len(second.stderr.strip().splitlines()) == 1, second.stderr
        assert _refusal(first.pid).match(second.stderr.strip()), second.stderr
        if job.kind == "file":
            retry = job.run("retry", "--no-progress")
            assert retry.returncode == 2 and _refusal(first.pid).match(retry.stderr.strip()), retry.stderr
        assert _files(job.tmp) == before, "the refused run wrote something"
        assert (job.requests(), len(job.held())) == (requests, held), "the refused run reached the target"

        # Beside the run: status reads the checkpoint (SQLite's shared-memory index may
        # take a reader's mark), validate writes only its own report and the plan.
        status = job.run("status")
        assert status.returncode == 0, status.stderr
        assert "run 1: run at" in status.stdout, status.stdout
        assert f"in progress (pid {first.pid} on host" in status.stdout, status.stdout
        validate = job.run("validate", "--no-progress")
        assert validate.returncode == 0, validate.stderr
        assert "Traceback" not in status.stderr + validate.stderr
        if job.kind == "file":
            plan = job.run("run", "--plan", "--no-progress")   # the validate pass: no lock either
            assert plan.returncode == 0 and "another run" not in plan.stderr, plan.stderr
        untouched = lambda name: not name.endswith("-shm") and "-validate-" not in name \
            and not name.endswith("-plan.json")  # noqa: E731
        assert _files(job.tmp, untouched) == {k: v for k, v in before.items() if untouched(k)}
        assert len(job.held()) == held, "validate wrote into the target"
    finally:
        if first.poll() is None:
            first.send_signal(signal.SIGCONT)
    assert first.wait(120) == 0, first.stderr.read()[-1000:]
    _assert_each_record_once(job)


@pytest.mark.parametrize("job", TARGETS, indirect=True)
def test_after_kill_9_of_the_holder_the_next_run_proceeds(job):
    first = job.start()
    try:
        _pause_mid_run(job, first, written=job.n // 4)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    assert first.returncode == -signal.SIGKILL
    assert _holder_pid(lock_path(job.tmp / "ckpt.sqlite")) == first.pid  # its line is left behind
    status = job.run("status")
    assert "did not finish (crashed or killed)" in status.stdout and "in progress" not in status.stdout, \
        status.stdout

    again = job.run("run", "--no-progress")
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr and "another run" not in again.stderr
    if job.kind != "realeflow":
        _assert_each_record_once(job)
        return
    # Realeflow cannot be asked what it holds: a write the kill cut off is sent again
    # (on_uncertain: retry), and any copy that makes is one the report lists.
    assert job.statuses() == {"done": job.n}
    held = job.held()
    assert set(held) == {p.email.lower() for p in job.pair.people}
    report = orjson.loads((job.tmp / "reports" / "csv-to-realeflow-run-report.json").read_bytes())
    assert len(held) - job.n <= len(report["uncertain"]), (len(held), report["uncertain"])


def test_a_second_demo_in_the_same_folder_is_refused_before_it_clears_the_first(tmp_path):
    """The demo is a writer too: while one holds its folder, a second exits 2 in one line
    naming it, and the first one's checkpoint is left where it was."""
    from migrator.lock import JobLock

    ckpt = tmp_path / "demo.ckpt.sqlite"
    ckpt.write_bytes(b"the first demo's checkpoint")
    with JobLock(lock_path(ckpt), tmp_path / "job.yaml", "demo"):
        done = subprocess.run([sys.executable, "-m", "migrator.cli", "demo", "--dir", str(tmp_path),
                               "--no-progress", "--contacts", "20"],
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and _refusal(os.getpid(), "demo").search(lines[0]), done.stderr
    assert ckpt.read_bytes() == b"the first demo's checkpoint"
