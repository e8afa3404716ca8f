"""What every connector shares: declared settings, the HTTP client built from them, and
default answers for the optional parts of the source and target protocols.

A connector declares its facts as class attributes — settings, default rate limit,
streams it reads, schemas it accepts — and keeps its vendor quirks in its own module.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable, ClassVar, Mapping

from .. import identity
from ..errors import JobError
from ..http import Auth, HttpClient
from ..limits import RateLimit
from ..protocols import Page, StreamInfo, WriteResult
from ..schema import StreamSchema


@dataclass(frozen=True)
class Setting:
    description: str
    required: bool = False
    secret: bool = False
    env: str | None = None        # the variable `migrator init` puts in the job file
    default: Any = None


@dataclass
class Context:
    """What a connector may know of the job around it."""

    job_dir: Path = Path(".")
    role: str = "source"                    # "source" | "target"
    concurrency: int = 8
    allow_insecure_http: bool = False
    origins: dict[str, str] = field(default_factory=dict)  # setting -> "${VAR}" it came from
    since: str | None = None                # --since: delta runs
    where: str = ""                         # "job.yaml:12" of the block, for messages
    stop_at_quota: bool = False             # a spent daily quota stops the run instead of waiting
    max_quota_wait: float | None = None     # seconds a spent quota may keep the run waiting
    on_merge: str = "combine"               # what a record matching an earlier one does


COMMON_SETTINGS: dict[str, Setting] = {
    "system": Setting("connector name", required=True),
    "base_url": Setting("API root; override for a sandbox or a regional host"),
    "rate_limit": Setting("{requests: N, per: SECONDS}; defaults to the vendor's published limit"),
    "timeout": Setting("seconds per request", default=30),
}


class Connector:
    """Base of all connectors. Subclasses override what their system supports."""

    system: ClassVar[str] = ""
    title: ClassVar[str] = ""
    reads: ClassVar[str] = "api"          # "api" | "export" (CSV from the vendor's UI) | "none"
    writes: ClassVar[bool] = True
    filters_since: ClassVar[bool] = False  # can list only records changed since a time (--since)
    settings_spec: ClassVar[dict[str, Setting]] = {}
    default_base_url: ClassVar[str] = ""
    default_limit: ClassVar[RateLimit | None] = None
    source_streams: ClassVar[tuple[str, ...]] = ()
    notes: ClassVar[str] = ""             # quirks shown by `migrator connectors`
    credentials_help: ClassVar[str] = ""  # where the vendor shows the credentials (for `init`)
    # The setting that makes the target check records and save nothing (`validate --server`).
    dry_run_setting: ClassVar[str | None] = None
    # A lookup that costs no request (a local file): then a write needs no durable
    # "in flight" mark before it is sent — after a crash every unsettled record is looked up.
    cheap_lookup: ClassVar[bool] = False
    # Writes that are local and cost no request (a file): the engine hands each page to
    # ``write_batch`` in one call instead of spreading its records over N writers.
    batch_writes: ClassVar[bool] = False
    # For the plan's ETA: what one request typically takes when the run is not told
    # (``--latency``), and the read kinds that go one after another (a cursor).
    typical_latency: ClassVar[float] = 0.3
    sequential_reads: ClassVar[tuple[str, ...]] = ()

    def __init__(self, settings: Mapping[str, Any], ctx: Context):
        self.settings = dict(settings)
        self.ctx = ctx
        self.http: HttpClient | None = None
        self.checkpoint: Any = None     # the run's checkpoint (the engine sets it): a key index lives there
        self.on_merge = ctx.on_merge    # what a record that matches an earlier one does
        # Records each target stream will be sent, when the plan knows (validate's count):
        # a target that chooses how to dedup by it chooses as the plan did.
        self.expected_records: dict[str, int] = {}

    # ---- facts ----------------------------------------------------------------
    @classmethod
    def all_settings(cls) -> dict[str, Setting]:
        return {**COMMON_SETTINGS, **cls.settings_spec}

    @classmethod
    def schemas(cls) -> dict[str, StreamSchema]:
        """Target streams and what each accepts. Empty for a read-only system."""
        return {}

    @classmethod
    def credential_envs(cls) -> list[str]:
        return [s.env for s in cls.settings_spec.values() if s.secret and s.env]

    def setting(self, name: str) -> Any:
        value = self.settings.get(name)
        if value in (None, ""):
            spec = self.all_settings().get(name)
            if spec is not None and spec.required:
                origin = self.ctx.origins.get(name)
                hint = f" (from {origin})" if origin else ""
                raise JobError(f"{self.ctx.where}: {self.system} needs '{name}'{hint}")
            return spec.default if spec else None
        return value

    def rate_limit(self) -> RateLimit | None:
        raw = self.settings.get("rate_limit")
        if raw is None:
            return self.default_limit
        if raw in (False, "none", "off"):
            return None
        try:
            return RateLimit(int(raw["requests"]), float(raw.get("per", 1)))
        except (TypeError, KeyError, ValueError):
            raise JobError(f"{self.ctx.where}: rate_limit must be {{requests: N, per: SECONDS}}") from None

    def make_http(self, auth: Auth | None = None, **kwargs: Any) -> HttpClient:
        self.http = HttpClient(
            self.system, self.settings.get("base_url") or self.default_base_url,
            limit=self.rate_limit(), auth=auth, allow_insecure_http=self.ctx.allow_insecure_http,
            timeout=float(self.setting("timeout") or 30), connections=max(16, self.ctx.concurrency * 2),
            spread=self.ctx.concurrency,
            stop_at_quota=self.ctx.stop_at_quota, max_quota_wait=self.ctx.max_quota_wait, **kwargs)
        return self.http

    def watch_waits(self, notify: Callable[[str], None] | None,
                    stopping: Callable[[], bool] | None = None) -> None:
        """Where a long wait (a spent daily quota) is announced — the run's progress
        line — and what ends it early: ``stopping()`` turning true (Ctrl-C)."""
        if self.http is not None:
            self.http.on_wait = notify
            self.http.limiter.stopping = stopping

    # ---- lifecycle ----------------------------------------------------------------
    async def open(self) -> None:
        if self.http is not None:
            await self.http.open()

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()

    def request_stats(self) -> dict[str, Any]:
        return self.http.stats.as_dict() if self.http else {}

    # ---- source side ----------------------------------------------------------------
    def streams(self) -> tuple[str, ...]:
        return self.source_streams

    async def info(self, stream: str) -> StreamInfo:
        return StreamInfo(stream)

    def use_mapping(self, streams: list[Any]) -> None:
        """Before reading: what the mapping uses (e.g. whether to expand notes)."""

    async def columns(self, stream: str) -> tuple[str, list[str]] | None:
        """``(what they are, names)`` of the top-level fields every record of ``stream``
        may hold, when known before reading (a file's header); None when not known."""
        return None

    def pages(self, stream: str, cursor: Any) -> AsyncIterator[Page]:
        raise JobError(f"{self.system} cannot be read from")

    def cannot_read_by_id(self, stream: str) -> str | None:
        """Why ``retry`` must read the whole of ``stream`` to find its failed records
        (one line), or None when ``read_records`` reads them by id."""
        return f"{self.system} has no way to read one {stream} record by its id"

    def read_records(self, stream: str, ids: list[str]) -> AsyncIterator[Page]:
        """Pages holding only the records of ``ids`` (``retry``); an id the source no
        longer holds comes back as a record with an ``error``. Pages carry no cursor."""
        raise JobError(f"{self.system} cannot read a record by its id")

    def who(self, stream: str, data: Mapping[str, Any] | None) -> tuple[str, str]:
        """``(name, email)`` of a source record as the source holds them, for the
        failures file; a connector whose keys the common names miss overrides it."""
        return identity.who(data)

    # ---- target side ----------------------------------------------------------------
    def schema(self, stream: str) -> StreamSchema | None:
        return self.schemas().get(stream)

    async def prepare(self, streams: list[Any]) -> None:
        """Before the first write: preflight checks, resolving custom field names…"""

    def can_lookup(self, stream: str) -> bool:
        return False

    # ---- undo (issue 20): only through endpoints the vendor documents ----------------------
    def cannot_undo(self) -> str | None:
        """Why a run into this target cannot be undone (one line), or None when it can."""
        return f"{self.title or self.system}'s API documents no way to delete a record"

    async def undo_open(self) -> None:
        """Before undo: one request that proves the credentials and ``base_url``, so that a
        404 afterwards means a record that is gone."""

    async def undo_read(self, stream: str, target_id: str) -> dict[str, Any] | None:
        """The record as the target holds it now, in the mapped record's names; None when
        it is gone."""
        raise JobError(f"{self.system} cannot be undone")

    async def undo_delete(self, stream: str, target_id: str) -> None:
        """Delete a record this job created (one already gone is no error)."""
        raise JobError(f"{self.system} cannot be undone")

    async def undo_restore(self, stream: str, target_id: str, previous: dict[str, Any],
                           now: dict[str, Any], wrote: dict[str, Any]) -> list[str]:
        """Write ``previous`` values back where ``now`` differs; the fields the API cannot
        put back (one it cannot clear, a note it cannot remove), each with why."""
        raise JobError(f"{self.system} cannot be undone")

    def undo_requests(self, created: int, restored: int) -> dict[str, int]:
        """Requests undoing ``created`` deletes and ``restored`` write-backs costs (the plan)."""
        return {"read": created + restored, "delete": created, "update": restored}

    async def lookup(self, stream: str, record: Mapping[str, Any], source_id: str) -> str | None:
        return None

    async def write(self, stream: str, record: dict[str, Any], *, source_id: str,
                    target_id: str | None = None) -> WriteResult:
        raise JobError(f"{self.system} cannot be written to")

    async def write_batch(self, stream: str, batch: list[tuple[str, dict[str, Any]]]) -> list[WriteResult]:
        """Write ``(source_id, record)`` pairs in order; only for ``batch_writes`` targets."""
        return [await self.write(stream, record, source_id=sid) for sid, record in batch]

    # ---- the plan (issue 10): requests a run will spend, by kind ------------------------
    def plan_reads(self, stream: str, total: int | None) -> dict[str, int]:
        """Requests reading ``total`` records of ``stream`` costs (pages, detail fan-out)."""
        return {}

    async def write_planner(self, stream: str, sm: Any) -> "WritePlanner":
        """A counter fed every valid mapped record of ``stream`` before the run."""
        return WritePlanner()

    def plan_pages(self, stream: str, total: int | None) -> int:
        """How many pages ``total`` records arrive in: the engine's unit of work, so the
        first page's read is what the writers wait for before they start (the ETA)."""
        return max(1, total or 0)

    def plan_setup(self, role: str, streams: list[str]) -> dict[str, int]:
        """Requests spent once per run in ``role`` ("source" or "target") whatever the
        record count — a login, a list of names, a preflight check — so that they are
        counted once and not per stream."""
        return {}

    async def quota(self, probe: bool = False) -> "Quota | None":
        """The key's daily request quota, if the system has one, with what is left today
        when known. ``probe`` allows one cheap request the run spends anyway (it is
        cached) to learn what is left."""
        return None


@dataclass(frozen=True)
class Quota:
    """A daily request quota: the key's allowance and, when known, what is left today."""

    limit: int
    remaining: int | None = None


class WritePlanner:
    """What writing one stream's records will cost a target, by request kind.

    ``add`` sees each valid mapped record (in source order) so a connector can count
    exactly: children such as notes and tags, duplicates its dedup will merge. ``dedup``
    says which way the target dedups and why (shown in the plan).
    """

    def __init__(self, dedup: str = "") -> None:
        self.counts: Counter[str] = Counter()
        self.dedup = dedup

    def add(self, record: dict[str, Any]) -> None:
        self.counts["create"] += 1

    def requests(self) -> dict[str, int]:
        return dict(self.counts)
