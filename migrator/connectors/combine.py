"""``on_merge: combine``: a record written onto one the target already holds keeps both.

Pure logic, no I/O. A connector describes where its target can hold a second value
(``Slots``), hands in the record as the target holds it (in the target's field names) and
the incoming mapped record, and gets back what to send and where each value went:

- a field the target lacks is filled;
- a list field (tags, secondary e-mails) gets the incoming items it does not hold;
- the note field gets the incoming note appended, never replaced;
- a value both hold that differs keeps the existing one, and the incoming one goes to the
  first free secondary slot of that field (another phone field, a secondary e-mail
  list), else into a line of the note: ``Also firstName: Jane (source record 123)``;
- with no note field to hold it, the value is reported as having no place (``lost``).

A value already held anywhere in its field's slots (or already written into the note,
as after a retry) is not placed twice.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Mapping

from .dedup import normalize

# How a value was placed, in the report.
FILLED, ADDED, APPENDED, SECOND, LINE, LOST = "filled", "added", "appended", "second", "line", "lost"


@dataclass(frozen=True)
class Slots:
    """Where a target can hold what two records both carry.

    ``lists``: fields holding several values (unioned). ``second``: per field, the fields
    a differing second value may go to, in order (a list field there is appended to).
    ``note``: the free-text field notes are appended to and overflow lines go into;
    ``note_appends``: the target adds a sent note to the ones it holds (send only the new
    text). ``separator`` goes between the existing note and what is appended.
    """

    lists: frozenset[str] = frozenset()
    second: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    note: str | None = None
    note_appends: bool = False
    separator: str = "\n\n"


@dataclass(frozen=True)
class Placement:
    """Where one incoming value went: ``to`` a field, ``how`` (filled, added, appended,
    second, line, lost)."""

    field: str
    value: Any
    to: str | None
    how: str

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "value": _text(self.value), "to": self.to, "how": self.how}


@dataclass
class Combined:
    """``changes``: only the fields to send (for a note the target appends itself, only
    the new text); ``record``: the whole record the target then holds; ``placements``:
    what went where."""

    changes: dict[str, Any]
    record: dict[str, Any]
    placements: list[Placement]


def slots_for_group(names: tuple[str, ...], lists: tuple[str, ...] = ()) -> dict[str, tuple[str, ...]]:
    """Each field of a group (the phones of a contact) overflowing into the others, in order;
    the group's list fields take what no scalar slot can."""
    return {n: tuple(o for o in (*names, *lists) if o != n) for n in names}


def empty(value: Any) -> bool:
    return value is None or (isinstance(value, (str, list, tuple, dict)) and not (
        value.strip() if isinstance(value, str) else value))


def _text(value: Any) -> Any:
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value


def _norm(name: str, value: Any) -> str:
    value = _text(value)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return repr(value)
    return normalize(name, value) or ""


def contains(note: str, text: str, separator: str) -> bool:
    """``text`` is already a whole paragraph (or run of paragraphs) of ``note``."""
    def tidy(t: str) -> str:
        return separator.join(part.strip() for part in t.strip().split(separator))
    return f"{separator}{tidy(text)}{separator}" in f"{separator}{tidy(note)}{separator}"


def _items(value: Any) -> list[Any]:
    if empty(value):
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def combine(existing: Mapping[str, Any], incoming: Mapping[str, Any], slots: Slots, *,
            source_id: str) -> Combined:
    """Both records in one: see the module's docstring. ``source_id`` names the incoming
    record in the note lines it adds."""
    record: dict[str, Any] = {k: v for k, v in existing.items()}
    changes: dict[str, Any] = {}
    placements: list[Placement] = []
    lines: list[str] = []
    note_name = slots.note

    def held(name: str, value: Any) -> bool:
        """The value is already in ``name`` or in one of its second slots."""
        want = _norm(name, value)
        for where in (name, *slots.second.get(name, ())):
            if any(_norm(name, v) == want for v in _items(record.get(where))):
                return True
        return False

    def put(name: str, value: Any) -> None:
        record[name] = value
        changes[name] = value

    def add_to_list(name: str, value: Any) -> None:
        put(name, [*_items(record.get(name)), value])

    for name, value in incoming.items():
        if empty(value) or name == note_name:
            continue
        if name in slots.lists:
            for item in _items(value):
                if not empty(item) and not held(name, item):
                    add_to_list(name, item)
                    placements.append(Placement(name, item, name, ADDED))
            continue
        current = record.get(name)
        if empty(current):
            put(name, value)
            placements.append(Placement(name, value, name, FILLED))
            continue
        if held(name, value):
            continue
        for slot in slots.second.get(name, ()):
            if slot in slots.lists:
                add_to_list(slot, value)
            elif empty(record.get(slot)):
                put(slot, value)
            else:
                continue
            placements.append(Placement(name, value, slot, SECOND))
            break
        else:
            line = f"Also {name}: {_text(value)} (source record {source_id})"
            if note_name is None:
                placements.append(Placement(name, value, None, LOST))
            elif line not in str(record.get(note_name) or "").splitlines():
                lines.append(line)
                placements.append(Placement(name, value, note_name, LINE))

    if note_name is not None:
        note = incoming.get(note_name)
        before = str(record.get(note_name) or "")
        added: list[str] = []
        if not empty(note) and not contains(before, str(note).strip(), slots.separator):
            added.append(str(note).strip())
            placements.append(Placement(note_name, note, note_name,
                                        APPENDED if before or slots.note_appends else FILLED))
        if lines:
            added.append("\n".join(lines))
        if added:
            new = slots.separator.join(added)
            whole = slots.separator.join([before, new]) if before.strip() else new
            record[note_name] = whole
            changes[note_name] = new if slots.note_appends else whole
    return Combined(changes, record, placements)
