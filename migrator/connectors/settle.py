"""Settling writes a crash or a lost answer left in doubt, on targets with no lookup.

A target that cannot look a record up by natural key may still list what changed
recently (Realvolve's ``recent_contacts?updated_time=``, Realeflow's 25 newest). A write
in doubt is then settled by finding its record in that list: by the mapped name, e-mail
and phone, normalised the way the target stores them. Three answers:

- found: the write landed — the record is done with that id;
- absent: the list covers every record created since the write was sent, and none is
  it — it never landed, and is written;
- undecided: the list cannot tell (it may not reach back far enough; two records match;
  another write with the same name and e-mail is in flight) — the job's ``on_uncertain``
  decides, and the report lists the record.

This module holds the answers and the matching, which are pure; each connector reads
its own list.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable, TypeVar

import anyio

from ..errors import QuotaExhausted, Retryable

T = TypeVar("T")

# A checkpoint question a connector asks while settling: of these target ids, which are
# already the target id of a record done in this job, and when was it marked done.
Known = Callable[[list[str]], Awaitable[dict[str, float]]]

# How far before a write's recorded send time a time-based list is read from: the
# target's clock may differ from ours (a list read from further back only costs rows).
CLOCK_MARGIN = 120.0


@dataclass(frozen=True, slots=True)
class Settled:
    """What the list says about one write in doubt."""

    decided: bool
    target_id: str | None = None   # decided and found: the record's id in the target
    why: str = ""                  # undecided: why not, for the report

    @property
    def found(self) -> bool:
        return self.decided and self.target_id is not None


ABSENT = Settled(True)


def undecided(why: str) -> Settled:
    return Settled(False, None, why)


_WORD = re.compile(r"\w+")


def words(value: Any) -> tuple[str, ...]:
    """A name or an address as its words, case-folded and sorted: "Smith, John" and
    "john  smith" are one name (Realeflow's own sample lists "John, Smith")."""
    if value is None:
        return ()
    text = unicodedata.normalize("NFKC", str(value)).casefold()
    return tuple(sorted(_WORD.findall(text)))


def email(value: Any) -> str:
    return str(value or "").strip().casefold()


def phone(value: Any) -> str:
    """Digits, without the leading 1 of an eleven-digit North American number."""
    digits = "".join(c for c in str(value or "") if c.isdigit())
    return digits[1:] if len(digits) == 11 and digits.startswith("1") else digits


def one_match(candidates: Iterable[str], claimed: set[str] | frozenset[str] = frozenset()) -> Settled:
    """Of the ids whose row matches a write in doubt (and no other record already
    holds), exactly one settles it; none means absent — when the caller knows its list
    covers the write — and several cannot be told apart."""
    ids = list(dict.fromkeys(c for c in candidates if c not in claimed))
    if len(ids) == 1:
        return Settled(True, ids[0])
    if not ids:
        return ABSENT
    return undecided(f"{len(ids)} records in the target match it ({', '.join(ids[:5])})")


async def read_again(read: Callable[[], Awaitable[T]], attempts: int = 4) -> T:
    """A list read that settles writes, tried again when it fails in a way that passes
    (a body cut short is parsed after the client's own retries, so it reaches here): a
    read that fails for good leaves writes in doubt, so it is worth a few seconds."""
    for attempt in range(attempts):
        try:
            return await read()
        except QuotaExhausted:
            raise
        except Retryable:
            if attempt == attempts - 1:
                raise
            await anyio.sleep(0.25 * 2 ** attempt)
    raise AssertionError("unreachable")
