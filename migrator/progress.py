"""The live progress line: what a person watching a run needs, fitted to their terminal.

At any width the counts come first (read, written or valid, failed or invalid, skipped):
they are what tells a person whether to stop the run. What is left of the width then
goes, in order, to the stream's name, the percentage, the ETA, the time taken and, last,
the bar — so at 80 columns the bar is what is dropped, never the failed count.
``line`` is pure and tested directly; ``Bar`` is tqdm with ``line`` as its format.
"""
from __future__ import annotations

import sys
from collections import Counter
from typing import Any, Mapping

from tqdm import tqdm

MIN_BAR = 10   # a narrower bar says nothing the percentage does not


def counts_text(mode: str, counts: Mapping[str, int]) -> str:
    """``read 1,200 written 1,180 failed 3 skipped 0``; ``validate`` says valid and
    invalid, since it writes nothing."""
    c = counts
    if mode == "validate":
        middle = [("valid", c.get("valid", 0)), ("invalid", c.get("invalid", 0))]
        other = c.get("failed", 0) - c.get("invalid", 0)  # an unreadable record: failed, not invalid
        if other > 0:
            middle.append(("unreadable", other))
    elif mode == "verify":   # read back and compared: nothing is read from a source
        return " ".join(f"{word} {c.get(word, 0):,}" for word in ("checked", "equal", "drift", "missing"))
    else:
        middle = [("written", c.get("done", 0)), ("failed", c.get("failed", 0))]
    parts = [("read", c.get("read", 0)), *middle, ("skipped", c.get("skipped", 0))]
    return " ".join(f"{word} {n:,}" for word, n in parts)


def clock(seconds: float) -> str:
    """``0:42``, ``12:05``, ``1:02:09``."""
    s = max(0, int(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def line(width: int, label: str, counts: str, n: int, total: int | None, elapsed: float,
         rate: float | None = None) -> str:
    """One progress line of at most ``width - 1`` characters (the last column is left
    free: a terminal wraps a line that fills it). Without a total there is no
    percentage, ETA or bar: only the counts and the time taken."""
    room = max(1, width - 1)
    pct = eta = None
    if total:
        pct = f"{min(100, 100 * n // total):3d}%"
        left = max(0, total - n)
        eta = f"ETA {clock(left / rate)}" if rate and left else ("ETA 0:00" if not left else "ETA ?")
    took = clock(elapsed)
    # Optional pieces in the order they are given room: name, percentage, ETA, time taken.
    chosen = {"counts": counts}
    for key, text in (("label", f"{label}:"), ("pct", pct), ("eta", eta), ("took", took)):
        if text is None:
            continue
        trial = {**chosen, key: text}
        if len(_join(trial)) <= room:
            chosen = trial
    spare = room - len(_join(chosen)) - 3   # the bar's two edges and a space
    if pct is not None and "pct" in chosen and spare >= MIN_BAR:
        chosen["bar"] = _bar(n / total if total else 0.0, min(spare, 40))
    return _join(chosen).lstrip()[:room]


def _join(pieces: Mapping[str, str]) -> str:
    order = ("label", "pct", "bar", "counts", "eta", "took")
    out = []
    for key in order:
        if key in pieces:
            out.append(f"|{pieces[key]}|" if key == "bar" else pieces[key])
    return " ".join(out)


def _bar(frac: float, width: int) -> str:
    frac = min(1.0, max(0.0, frac))
    full = int(frac * width)
    return ("█" * full + ("▌" if frac * width - full >= 0.5 and full < width else "")).ljust(width)


class Bar(tqdm):
    """tqdm drawing ``line``: the counts are read live from the stream's counter."""

    def __init__(self, *args: Any, mode: str, counts: Counter, **kwargs: Any):
        self._mode, self._counts = mode, counts  # before tqdm's first draw
        super().__init__(*args, **kwargs)

    def format_meter(self, n: int, total: int | None, elapsed: float, ncols: int | None = None,  # type: ignore[override]
                     prefix: str = "", rate: float | None = None, **_: Any) -> str:
        return line(ncols or 80, prefix, counts_text(self._mode, self._counts), n, total, elapsed, rate)


def open_bar(mode: str, stream: str, total: int | None, counts: Counter, enabled: bool) -> Bar:
    return Bar(total=total, desc=f"{mode} {stream}", unit="rec", disable=not enabled, file=sys.stderr,
               mininterval=0.25, dynamic_ncols=True, mode=mode, counts=counts)
