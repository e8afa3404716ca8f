"""One writer per job: an exclusive lock, held through the operating system, on a file
beside the checkpoint.

Two runs of one job at once share a checkpoint and a target and double records; nothing
else stops them. The lock is the kernel's (``flock`` through portalocker), so it dies with
its process — a ``kill -9`` or a power cut leaves no lock behind, only a file, and a file
never blocks anyone. The file holds the holder's pid, host, command and start time so a
refused run can name it. The holder writes them after it has the lock; the refused one
reads them and changes nothing.
"""
from __future__ import annotations

import datetime as dt
import os
import socket
import time
from pathlib import Path
from typing import IO, Any

import orjson
import portalocker

from .errors import ConfigError, RunInProgress

SUFFIX = ".lock"
SETTLE = 0.5   # seconds a writer keeps trying before it names the holder


def lock_path(checkpoint: str | Path) -> Path:
    """The lock file of the job whose checkpoint is ``checkpoint``."""
    return Path(str(checkpoint) + SUFFIX)


class JobLock:
    """``with JobLock(lock_path(job.checkpoint), job_file, "run"):`` — the job's only writer.

    Entering takes the lock without waiting: when another process holds it,
    ``RunInProgress`` names that process and nothing has been written. Leaving (or the
    process dying) releases it; the file stays, harmless.
    """

    def __init__(self, path: str | Path, job_file: str | Path, command: str):
        self.path = Path(path)
        self.job_file = str(job_file)
        self.command = command
        self._fh: IO[bytes] | None = None

    def acquire(self) -> "JobLock":
        fh = self._open()
        deadline = time.monotonic() + SETTLE
        try:
            while True:
                try:
                    portalocker.lock(fh, portalocker.LOCK_EX | portalocker.LOCK_NB)
                    break
                except portalocker.exceptions.LockException:
                    # `status` looks with a shared lock for an instant, and a run that is
                    # ending lets go in a moment: only a holder that stays is another run.
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(0.05)
        except portalocker.exceptions.LockException:
            holder = _read_holder(fh)
            fh.close()
            raise RunInProgress(self.job_file, holder) from None
        except BaseException:
            fh.close()
            raise
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                  "since": dt.datetime.now().astimezone().isoformat(timespec="seconds")}
        fh.truncate(0)
        fh.write(orjson.dumps(holder) + b"\n")
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        """Let the next writer in. The holder line stays: only the kernel's lock counts."""
        if self._fh is not None:
            fh, self._fh = self._fh, None
            try:
                portalocker.unlock(fh)
            finally:
                fh.close()

    def _open(self) -> IO[bytes]:
        # 0600 like the checkpoint; opened without truncation, or a refused run would
        # erase the holder's line before reading it.
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise ConfigError(f"checkpoint lock {self.path}: cannot write there ({e.strerror or e})") from None
        try:
            if os.fstat(fd).st_uid == os.getuid():
                os.fchmod(fd, 0o600)
        except OSError:
            pass
        return os.fdopen(fd, "r+b")

    def __enter__(self) -> "JobLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def running(path: str | Path) -> dict[str, Any] | None:
    """The writer holding the job's lock right now (its pid, host, command, since), or None.
    For ``status``: it takes a shared lock for an instant, which never blocks the holder;
    a writer starting in that instant retries for ``SETTLE`` seconds."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        fh = open(path, "rb")
    except OSError:
        return None
    with fh:
        try:
            portalocker.lock(fh, portalocker.LOCK_SH | portalocker.LOCK_NB)
        except portalocker.exceptions.LockException:
            return _read_holder(fh) or {}
        portalocker.unlock(fh)
        return None


def _read_holder(fh: IO[bytes], wait: float = 1.0) -> dict[str, Any] | None:
    """The holder's line. It writes it just after it takes the lock, so a refusal in that
    instant waits a moment for it rather than naming nobody."""
    deadline = time.monotonic() + wait
    while True:
        fh.seek(0)
        try:
            holder = orjson.loads(fh.readline())
            if isinstance(holder, dict):
                return holder
        except (OSError, ValueError):
            pass
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.02)
