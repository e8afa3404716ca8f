"""Field-by-field comparison of a migrated record with the person it came from.

The pair tests build, for each clean person, the record the target should hold — every
field both sides can hold, after the normalisation the target applies (case, whitespace,
E.164, date forms) — and read the record it does hold. ``Tally.add`` compares the two
field by field. A difference is allowed only where the mapping's header declares it
(``[not carried: <shape>]``) and only on a person holding that seeded shape, in a field
that shape touches; every other difference is a miss. ``bench/field_equality.py`` prints
the same tally per pair.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from migrator.sandbox.data import Person

# The seeded shapes a header may declare, and the fields (by a part of their name) each
# may make differ.
AFFECTS = {"zip_plus4": ("zip", "postal"), "long_note": ("note",),
           "no_city": ("city", "locality"), "primary_phone": ("phone",),
           "script_name": ("name",)}
_DECLARED = re.compile(r"\[not carried: ([a-z0-9_, ]+)\]")


def declared(mapping: Path) -> frozenset[str]:
    """The shapes the mapping's header says do not carry over."""
    header = mapping.read_text(encoding="utf-8").split("\nsource:")[0]
    names = {n.strip() for m in _DECLARED.finditer(header) for n in m.group(1).split(",")}
    unknown = names - set(AFFECTS)
    assert not unknown, f"{mapping.name}: unknown shapes declared: {sorted(unknown)}"
    return frozenset(names)


def note_lines(source: str, p: Person) -> list[str]:
    """The person's notes as a text target holds them: dated where the source dates them."""
    if source == "realvolve":
        return [f"{p.created_at:%Y-%m-%d} — {n}" for n in p.notes]
    if source == "spark":  # the simulator dates the i-th note a minute after the one before
        return [f"{p.created_at + timedelta(minutes=i + 1):%Y-%m-%d} — {n}"
                for i, n in enumerate(p.notes)]
    return list(p.notes)


@dataclass(frozen=True)
class Miss:
    uid: int
    field: str
    want: Any
    got: Any

    def __str__(self) -> str:
        def short(v: Any) -> str:
            text = repr(v)
            return text if len(text) < 80 else text[:60] + f"… ({len(text)} chars)"
        return f"person {self.uid}: {self.field}: want {short(self.want)}, got {short(self.got)}"


@dataclass
class Tally:
    """Values compared, equal, and differing as declared, over a pair's clean people."""

    declared: frozenset[str] = frozenset()
    compared: int = 0
    equal: int = 0
    allowed: list[Miss] = field(default_factory=list)
    misses: list[Miss] = field(default_factory=list)
    shapes: set[str] = field(default_factory=set)

    def add(self, p: Person, want: dict[str, Any], got: dict[str, Any]) -> None:
        self.shapes |= p.shapes
        may_differ = [AFFECTS[s] for s in p.shapes & self.declared]
        for key, value in want.items():
            self.compared += 1
            if got.get(key) == value:
                self.equal += 1
                continue
            miss = Miss(p.uid, key, value, got.get(key))
            if any(part in key.lower() for parts in may_differ for part in parts):
                self.allowed.append(miss)
            else:
                self.misses.append(miss)

    @property
    def holdable(self) -> int:
        """Values both sides can hold: all compared but the declared differences."""
        return self.compared - len(self.allowed)

    def report(self) -> str:
        return "\n".join(str(m) for m in self.misses[:20])
