"""Named places where a test can make the process die as a crash would.

``MIGRATOR_CRASH_AT=written:7`` SIGKILLs the process the 7th time it reaches the point
named ``written``. Unset — always, outside the crash-matrix tests — ``reached`` is one
comparison with None. The points are the moments that matter to exactly-once: a page
read, a page marked pending, a record marked in flight, a write applied but not yet
checkpointed, a checkpoint transaction half done, a token being refreshed.
"""
from __future__ import annotations

import os
import signal

POINTS = ("read", "pending", "inflight", "written", "commit", "refresh", "undo")


def _parse(spec: str | None) -> tuple[str, int] | None:
    if not spec:
        return None
    name, _, n = spec.partition(":")
    if name not in POINTS:
        raise ValueError(f"MIGRATOR_CRASH_AT: unknown point {name!r}; points: {', '.join(POINTS)}")
    return name, int(n or 1)


_target = _parse(os.environ.get("MIGRATOR_CRASH_AT"))
_count = 0


def reached(name: str) -> None:
    global _count
    if _target is None or name != _target[0]:
        return
    _count += 1
    if _count == _target[1]:
        os.kill(os.getpid(), signal.SIGKILL)
