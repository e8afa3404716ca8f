"""Matching records to the target's own by natural key (``match_on``), shared by targets.

Two ways to know whether a record is already in the target, and a rule to choose:

- **index**: read the target's whole list once per run (``ceil(existing / page)``
  requests), keep each contact's normalized keys → target id in the checkpoint, and match
  every record locally — no request per record;
- **per record**: one lookup per record (REI), or a create trusted to refuse a duplicate
  (Spark's Code 1055, resolved by one lookup — at most one per existing contact).

A first page tells the target's size (and is the index's first page). The index wins
when the rest of the list costs no more than the per-record way would: ``records``
lookups, or for a create-that-refuses ``min(existing, records)``. When the number of
records to write is not known (the run was not told the plan's count) the index is
chosen: a full read costs one request per page of existing contacts, and a migration
usually writes more records than that.

Two records with a key in common never race: ``KeyLocks`` makes the second wait for the
first, so it matches what the first created (this is where merges within one run come
from). What a match does is the job's ``on_merge``: ``combine`` (the default) writes onto
the matched target record what it lacks and keeps both where both hold a value
(``combine.py``), ``update`` writes the record onto the matched target record, ``skip`` settles it on that record without a request, ``fail``
fails it with a reason naming the key and the target id.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Protocol, Sequence

import anyio

from ..errors import RecordError
from ..protocols import WriteResult

ON_MERGE = ("combine", "update", "skip", "fail")
_NON_DIGIT = re.compile(r"\D")


def normalize(name: str, value: Any) -> str | None:
    """The value as the target compares it: e-mails case-insensitively, phones as E.164."""
    if value is None or isinstance(value, (list, tuple, dict, bool)):
        return None
    text = str(value).strip()
    if not text:
        return None
    if "phone" in name.lower():
        digits = _NON_DIGIT.sub("", text)
        if not digits:
            return None
        if text.startswith("+"):
            return "+" + digits
        if len(digits) == 10:
            return "+1" + digits
        if len(digits) == 11 and digits.startswith("1"):
            return "+" + digits
        return digits
    return text.casefold()


def keys_of(record: Mapping[str, Any], fields: Sequence[str]) -> list[tuple[str, str]]:
    """``(field, "field=normalized")`` for each key field the record carries, in order."""
    out: list[tuple[str, str]] = []
    for name in fields:
        norm = normalize(name, record.get(name))
        if norm is not None:
            out.append((name, f"{name}={norm}"))
    return out


def shown_key(name: str, record: Mapping[str, Any]) -> str:
    """The key that matched, for the merge report: ``email=ann@example.com``."""
    return f"{name}={str(record.get(name)).strip()}"


class KeyStore(Protocol):
    """Natural key → target id for one target stream (the checkpoint's, or in memory)."""

    async def reset(self) -> None: ...

    def add(self, pairs: Iterable[tuple[str, str]], *, durable: bool = False) -> None: ...

    async def get(self, keys: Sequence[str]) -> dict[str, str]: ...

    async def flush(self) -> None: ...


class MemoryKeys:
    """A ``KeyStore`` in a dict: for a plan, or a connector used without a checkpoint."""

    def __init__(self) -> None:
        self.keys: dict[str, str] = {}

    async def reset(self) -> None:
        self.keys.clear()

    def add(self, pairs: Iterable[tuple[str, str]], *, durable: bool = False) -> None:
        for key, target_id in pairs:
            self.keys.setdefault(key, target_id)

    async def get(self, keys: Sequence[str]) -> dict[str, str]:
        return {k: self.keys[k] for k in keys if k in self.keys}

    async def flush(self) -> None:
        return None

    def __len__(self) -> int:
        return len(self.keys)


class KeyLocks:
    """One lock per key in use; a record holds all of its keys (in sorted order, so two
    records sharing two keys cannot deadlock) while it is matched and written.

    Nearly every key is held by one record only: a free lock is taken without a trip
    through the event loop (``anyio.Lock.acquire`` always yields once, a task switch per
    key per record), and a record waits only where another holds one of its keys."""

    def __init__(self) -> None:
        self._locks: dict[str, list[Any]] = {}   # key -> [lock, holders + waiters]

    def hold(self, keys: Iterable[str]) -> "_Held":
        return _Held(self._locks, sorted(set(keys)))

    def __len__(self) -> int:
        return len(self._locks)


class _Held:
    __slots__ = ("locks", "entries", "held")

    def __init__(self, locks: dict[str, list[Any]], keys: list[str]):
        self.locks = locks
        self.entries = []
        for key in keys:
            entry = locks.setdefault(key, [anyio.Lock(), 0])
            entry[1] += 1
            self.entries.append((key, entry))
        self.held: list[anyio.Lock] = []

    async def __aenter__(self) -> None:
        try:
            for _, entry in self.entries:
                lock = entry[0]
                try:
                    lock.acquire_nowait()
                except anyio.WouldBlock:
                    await lock.acquire()
                self.held.append(lock)
        except BaseException:
            self._release()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._release()

    def _release(self) -> None:
        for lock in reversed(self.held):
            lock.release()
        self.held.clear()
        for key, entry in self.entries:
            entry[1] -= 1
            if entry[1] == 0:
                self.locks.pop(key, None)
        self.entries = []


@dataclass
class Choice:
    """Which way a target stream dedups this run, and why (shown in the plan)."""

    mode: str                       # "index" | "lookup" | "optimistic"
    existing: int                   # contacts the target holds
    pages: int                      # requests a full read of them costs
    records: int | None             # records to write, when known
    reason: str = ""

    @property
    def indexed(self) -> bool:
        return self.mode == "index"


@dataclass
class Dedup:
    """How one target stream dedups this run: the index of its keys, or the vendor's
    per-record way (``choice`` says which, and why)."""

    choice: Choice
    fields: tuple[str, ...]
    index: KeyStore | None


async def fresh_index(checkpoint: Any, stream: str) -> KeyStore:
    """An empty key store for ``stream``, about to be filled from the target: in the
    checkpoint when the run has one (memory stays flat), else in memory."""
    store: KeyStore = checkpoint.key_index(stream) if checkpoint is not None else MemoryKeys()
    await store.reset()
    return store


def choose(*, existing: int, pages: int, probes: int, records: int | None, per_record: str,
           vendor: str) -> Choice:
    """The cheaper way for ``records`` records into a target holding ``existing``.

    ``pages``: requests a full read of the target's list costs, of which the ``probes``
    that told its size are already spent. ``per_record`` is the alternative: ``"lookup"``
    (one lookup per record) or ``"optimistic"`` (a create the target refuses as a
    duplicate, then one lookup — at most one per existing contact). A tie goes to the
    index: it also matches duplicates within the run without a request.
    """
    more = max(0, pages - probes)
    if per_record == "lookup":
        dearer, what = records, "a lookup per record"
    else:
        dearer = min(existing, records) if records is not None else None
        what = "one lookup per create the target refuses as a duplicate"
    read = f"{vendor} holds {existing} contacts: reading them all costs {pages} requests, once"
    if records is None:
        return Choice("index", existing, pages, None,
                      f"{read}; the number of records to write is not known before the run, so the list "
                      f"is read rather than spending {what}")
    if more <= (dearer or 0):
        return Choice("index", existing, pages, records,
                      f"{read} — no more than {what} (up to {dearer} for {records} records)")
    return Choice(per_record, existing, pages, records,
                  f"{read} — more than {what} (up to {dearer} for {records} records)")


def merge_without_writing(on_merge: str, vendor: str, name: str, record: Mapping[str, Any],
                          target_id: str) -> WriteResult | None:
    """A record matched ``target_id`` by ``name``. ``skip``: settled against it with
    nothing sent; ``fail``: refused with a reason naming the key and the target record;
    ``combine``, ``update``: None — the connector writes the record onto the match its own way."""
    if on_merge == "skip":
        return WriteResult(target_id, "matched", shown_key(name, record))
    if on_merge == "fail":
        raise RecordError(f"{shown_key(name, record)} matches {vendor} record {target_id}, which is already "
                          f"in the target (on_merge: fail)", field=name, rule="merge")
    return None


@dataclass
class PlanState:
    """What a plan learnt of one target stream, shared by the stream's planners and
    handed to the run when the same connector goes on to run (so nothing is read twice)."""

    choice: Choice
    fields: tuple[str, ...]
    existing: MemoryKeys | None = None      # the target's keys, when the plan read them
    created: dict[str, str] = field(default_factory=dict)   # keys of records the plan "created"
    probes: int = 0                          # list requests the probe spent
    probe_owner: Any = None                  # the planner that counts the list reads (once)
    records: int = 0                         # records fed to the stream's planners
    new_ids: int = 0

    def match(self, keys: list[tuple[str, str]]) -> tuple[str, str, str] | None:
        """``(field, key, target id)`` of the first key found, else None."""
        for name, key in keys:
            tid = self.created.get(key)
            if tid is None and self.existing is not None:
                tid = self.existing.keys.get(key)
            if tid is not None:
                return name, key, tid
        return None

    def remember(self, keys: list[tuple[str, str]], target_id: str | None = None) -> str:
        if target_id is None:
            self.new_ids += 1
            target_id = f"planned:{self.new_ids}"
        for _, key in keys:
            if key not in self.created and (self.existing is None or key not in self.existing.keys):
                self.created[key] = target_id
        return target_id
