"""The small contracts between the engine and the connectors.

The engine imports only this module (never a connector); connectors implement it. A
source yields pages of records with the cursor that resumes *after* the page; a target
writes one mapped record and says what became of it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Mapping, Protocol, Sequence, runtime_checkable


@dataclass(slots=True)
class Record:
    """One source record. ``error`` marks a row that could not be parsed: it fails alone."""

    source_id: str
    data: dict[str, Any] | None
    error: str | None = None
    line: int | None = None


@dataclass(slots=True)
class Page:
    """A page of records and the cursor to resume from once all of them are settled.

    ``cursor`` is plain JSON; ``None`` means the stream has nothing after this page.
    ``total`` is the stream's record count when the source knows it (for ETA).
    """

    records: list[Record]
    cursor: Any
    total: int | None = None
    older: int = 0   # records the source left out as older than --since (a file's updated_column)


@dataclass(slots=True)
class WriteResult:
    """What a target did with a record.

    ``action``: ``created``; ``updated`` (an explicit update of a known id); ``matched``
    (the target already held it — found by lookup, prefetched index, a duplicate answer
    such as Spark's 1055, or a server-side upsert). ``matched_key`` says which natural key
    matched, for the merge report; ``placements`` what a combined merge put where
    (``on_merge: combine``: ``{field, value, to, how}`` each).
    """

    target_id: str
    action: str = "created"
    matched_key: str | None = None
    requests: dict[str, int] = field(default_factory=dict)
    placements: list[dict[str, Any]] = field(default_factory=list)
    # For `migrator undo`: the record as the target held it before this write (a merge, an
    # update; in the mapped record's names), and what the write sent when that is not the
    # mapped record itself (a combine sends only what it adds).
    previous: dict[str, Any] | None = None
    wrote: dict[str, Any] | None = None


@dataclass(slots=True)
class StreamInfo:
    """What a source says about a stream before reading it."""

    name: str
    total: int | None = None
    notice: str | None = None  # e.g. Realeflow: "the API returns only the 25 newest"


@runtime_checkable
class Source(Protocol):
    system: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def streams(self) -> Sequence[str]: ...

    async def info(self, stream: str) -> StreamInfo: ...

    def pages(self, stream: str, cursor: Any) -> AsyncIterator[Page]: ...


@runtime_checkable
class Target(Protocol):
    system: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def schema(self, stream: str) -> Any: ...

    def can_lookup(self, stream: str) -> bool: ...

    async def lookup(self, stream: str, record: Mapping[str, Any]) -> str | None: ...

    async def write(self, stream: str, record: dict[str, Any], *,
                    target_id: str | None = None) -> WriteResult: ...
