"""Is what the target holds what the run sent? Pure: no I/O, tested directly.

Why the record as *sent*, and not the source read and mapped again: the checkpoint keeps,
with each record's ``done``, the mapped record its write sent (``sent`` table, orjson, nulls
left out; measured by ``bench/verify_cost.py``: about 0.3 KB a contact). A second reading
would compare the target with a source that may have changed since the run, through a
mapping that may have been edited since (``--accept-mapping-change``), and would cost the
source's requests again — a detail request per contact on Realvolve. What was sent is the
one thing the target was asked to keep.

Each value goes through the normalisation the target applies before the two are compared
(``comparable``): a rule the target's connector declares per field (``RULES``), the same
for the value sent and the value held. A list compares as a set and passes when every item
sent is held (a target may add tags of its own, a merge may add more): what is checked is
that nothing sent was lost.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Callable, Iterable, Mapping

import orjson
import phonenumbers
from dateutil import parser as dateparser

SKIP = object()   # a field the target cannot show back: not compared
_SPACE = re.compile(r"\s+")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, dict):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    text = _SPACE.sub(" ", str(value)).strip()
    return text or None


def _e164(value: Any) -> str | None:
    text = _text(value)
    if text is None:
        return None
    try:
        number = phonenumbers.parse(text, "US")
    except phonenumbers.NumberParseException:
        return text
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _date(value: Any) -> str | None:
    text = _text(value)
    if text is None:
        return None
    try:
        return dateparser.isoparse(text).date().isoformat()
    except (ValueError, OverflowError):
        try:
            return dateparser.parse(text).date().isoformat()
        except (ValueError, OverflowError):
            return text


def _casefold(value: Any) -> str | None:
    text = _text(value)
    return text.casefold() if text is not None else None


def _upper(value: Any) -> str | None:
    text = _text(value)
    return text.upper() if text is not None else None


def _set(item: Callable[[Any], str | None]) -> Callable[[Any], frozenset[str] | None]:
    def rule(value: Any) -> frozenset[str] | None:
        if value is None:
            return None
        items = value if isinstance(value, (list, tuple, set, frozenset)) else [value]
        out = frozenset(v for v in (item(x) for x in items) if v is not None)
        return out or None
    return rule


RULES: dict[str, Callable[[Any], Any]] = {
    "text": _text,                 # whitespace trimmed and runs of it made one space
    "casefold": _casefold,         # e-mails, and text a target stores in another case
    "upper": _upper,               # codes a target upper-cases (countries, states)
    "e164": _e164,                 # phones: the target stores E.164
    "date": _date,                 # a date in any form the target gives it back
    "list": _set(_text),           # a list (or one value) as a set: every item sent is held
    "tags": _set(_casefold),       # tags a target stores in lower case
    "emails": _set(_casefold),
    "skip": lambda value: SKIP,    # the target cannot show it back
}


def comparable(value: Any, rule: str | None = None) -> Any:
    """``value`` as the named rule (default ``text``) makes it; None when empty."""
    if isinstance(value, (list, tuple)) and rule in (None, "text"):
        rule = "list"
    return RULES[rule or "text"](value)


@dataclass(frozen=True, slots=True)
class Drift:
    """One field the target holds differently from what was sent."""

    field: str
    sent: Any
    held: Any


def drifts(sent: Mapping[str, Any], held: Mapping[str, Any], form: Callable[[str, Any], Any],
           skip: Iterable[str] = (), grew: Iterable[str] = ()) -> list[Drift]:
    """The fields of ``sent`` that ``held`` does not hold as sent, after ``form`` (the
    target's normalisation) on both sides; a field ``held`` gives as ``SKIP`` is one the
    target's read cannot show (not compared). ``skip``: fields a merge put elsewhere;
    ``grew``: text fields a merge appended to (the value sent must still be in them)."""
    passed, grown = set(skip), set(grew)
    out: list[Drift] = []
    for name, value in sent.items():
        if name in passed:
            continue
        mine = form(name, value)
        if mine is None or mine is SKIP or held.get(name) is SKIP:   # SKIP held: not shown back
            continue
        theirs = form(name, held.get(name))
        if isinstance(mine, frozenset):
            same = isinstance(theirs, frozenset) and mine <= theirs
        elif name in grown and isinstance(mine, str):
            same = isinstance(theirs, str) and mine in theirs
        else:
            same = mine == theirs
        if not same:
            out.append(Drift(name, value, held.get(name)))
    return out


def shown(value: Any) -> str:
    """A value for the drift file: text as is, a list joined, nothing as empty."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return "; ".join(shown(v) for v in value)
    if isinstance(value, dict):
        return orjson.dumps(value, default=str).decode()
    return str(value)


def held_twice(keys: Iterable[tuple[str, str]]) -> dict[str, set[str]]:
    """``(natural key, target id)`` pairs → each key held by more than one target record."""
    by_key: dict[str, set[str]] = {}
    for key, tid in keys:
        by_key.setdefault(key, set()).add(tid)
    return {k: ids for k, ids in by_key.items() if len(ids) > 1}
