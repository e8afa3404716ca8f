"""The job lock: one holder; a refusal names it and changes nothing; the kernel frees it
when the holder dies, whatever is left on disk."""
import datetime as dt
import os
import signal
import socket
import stat
import subprocess
import sys

import orjson
import pytest

from migrator.errors import RunInProgress, UserError
from migrator.lock import JobLock, lock_path

HOLD = """
import sys, time
from migrator.lock import JobLock
with JobLock(sys.argv[1], "job.yaml", "retry"):
    print("held", flush=True)
    time.sleep(60)
"""


def _holder(path):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_lock_file_sits_beside_the_checkpoint(tmp_path):
    assert lock_path(tmp_path / "job.ckpt.sqlite") == tmp_path / "job.ckpt.sqlite.lock"


def test_second_acquire_refuses_naming_the_holder_and_changes_nothing(tmp_path):
    path = tmp_path / "ckpt.sqlite.lock"
    with JobLock(path, "job.yaml", "run"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        line = path.read_bytes()
        with pytest.raises(RunInProgress) as refused:
            JobLock(path, "my/job.yaml", "run").acquire()
        assert path.read_bytes() == line, "the refused acquire touched the holder's line"
    err = refused.value
    assert isinstance(err, UserError) and err.exit_code == 2
    assert err.holder["pid"] == os.getpid() and err.holder["host"] == socket.gethostname()
    since = dt.datetime.fromisoformat(err.holder["since"])
    assert since.tzinfo is not None
    assert abs((dt.datetime.now(dt.timezone.utc) - since).total_seconds()) < 60
    msg = str(err)
    assert "\n" not in msg
    assert msg.startswith("my/job.yaml: another run of this job is in progress")
    assert f"pid {os.getpid()} on host {socket.gethostname()}, since {err.holder['since']}" in msg


def test_released_on_exit_and_the_file_left_behind_never_blocks(tmp_path):
    path = tmp_path / "ckpt.sqlite.lock"
    with JobLock(path, "job.yaml", "run"):
        pass
    assert path.exists()  # the stale line stays; only the kernel's lock counts
    with JobLock(path, "job.yaml", "retry"):
        assert orjson.loads(path.read_bytes())["command"] == "retry"


def test_a_holder_in_another_process_is_named_and_its_death_frees_the_lock(tmp_path):
    path = tmp_path / "deep" / "ckpt.sqlite.lock"   # its folder is created, as the checkpoint's is
    proc = _holder(path)
    try:
        with pytest.raises(RunInProgress) as refused:
            JobLock(path, "job.yaml", "run").acquire()
        assert refused.value.holder["pid"] == proc.pid
        assert refused.value.holder["command"] == "retry"
        assert "migrator retry, pid" in str(refused.value)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert orjson.loads(path.read_bytes())["pid"] == proc.pid   # the dead holder's line is still there
    with JobLock(path, "job.yaml", "run"):
        assert orjson.loads(path.read_bytes())["pid"] == os.getpid()


def test_a_holder_line_that_cannot_be_read_still_gives_one_line(tmp_path):
    path = tmp_path / "ckpt.sqlite.lock"
    proc = _holder(path)
    try:
        path.write_bytes(b"garbage")
        with pytest.raises(RunInProgress) as refused:
            JobLock(path, "job.yaml", "run").acquire()
    finally:
        proc.kill()
        proc.wait(10)
    assert "another run of this job is in progress (its pid was not recorded)" in str(refused.value)


def test_an_unwritable_folder_is_a_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="cannot write there"):
        JobLock(blocker / "ckpt.sqlite.lock", "job.yaml", "run").acquire()


def test_running_names_the_holder_and_never_blocks_it(tmp_path):
    from migrator.lock import running
    path = tmp_path / "ckpt.sqlite.lock"
    assert running(path) is None
    with JobLock(path, "job.yaml", "run"):
        holder = running(path)
        assert holder is not None and holder["pid"] == os.getpid() and holder["command"] == "run"
    assert running(path) is None


def test_a_writer_starting_while_status_looks_waits_out_the_instant(tmp_path):
    import threading
    import portalocker
    path = tmp_path / "ckpt.sqlite.lock"
    path.write_bytes(b"")
    reader = open(path, "rb")   # what `status` holds for an instant
    portalocker.lock(reader, portalocker.LOCK_SH | portalocker.LOCK_NB)
    threading.Timer(0.15, lambda: (portalocker.unlock(reader), reader.close())).start()
    with JobLock(path, "job.yaml", "run"):
        pass
