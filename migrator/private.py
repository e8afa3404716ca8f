"""Files that hold personal data — checkpoints, reports, plans — are created readable by
their owner only (0600), before a byte is written to them."""
from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any


def create_private(path: Path) -> None:
    """Create ``path`` with mode 0600 if it does not exist (it will hold PII)."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


def private_open(path: Path, mode: str = "w") -> IO[Any]:
    """``open`` for a file that holds PII: its folder made if needed, the file 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    create_private(path)
    if "b" in mode:
        return open(path, mode)
    return open(path, mode, newline="", encoding="utf-8")
