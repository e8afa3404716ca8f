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
from ..errors import ConnectError, JobError, QuotaExhausted, RecordError, Retryable
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
    # ``write(target_id=…)`` updates that record: a delta run (--since) writes a record an
    # earlier run migrated onto its target id. False: a delta leaves such records as they are.
    updates_by_id: ClassVar[bool] = True
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
    # The cheapest authenticated request the vendor's doc offers, as (method, path, params,
    # JSON body): `validate` and `run` make it first, so a refused key, an unreachable host
    # or a base_url that is not the vendor's API stops them before anything is read.
    probe_request: ClassVar[tuple[str, str, dict[str, str] | None, Any] | None] = None

    def __init__(self, settings: Mapping[str, Any], ctx: Context):
        self.settings = dict(settings)
        self.ctx = ctx
        self.http: HttpClient | None = None
        self.checkpoint: Any = None     # the run's checkpoint (the engine sets it): a key index lives there
        self.settled: Counter[str] = Counter()   # lost answers settled from a list: landed, not_landed, undecided
        self.on_merge = ctx.on_merge    # what a record that matches an earlier one does
        # Records each target stream will be sent, when the plan knows (validate's count):
        # a target that chooses how to dedup by it chooses as the plan did.
        self.expected_records: dict[str, int] = {}
        self.access_checked = False     # the probe is made once a run, whoever asks first

    # ---- facts ----------------------------------------------------------------
    @classmethod
    def all_settings(cls) -> dict[str, Setting]:
        return {**COMMON_SETTINGS, **cls.settings_spec}

    @classmethod
    def schemas(cls) -> dict[str, StreamSchema]:
        """Target streams and what each accepts. Empty for a read-only system."""
        return {}

    @classmethod
    def can_filter_since(cls, settings: Mapping[str, Any]) -> bool:
        """Whether, with these settings, ``pages`` lists only records changed since
        ``--since`` (a file can when the job names its ``updated_column``)."""
        return cls.filters_since

    def filters_since_stream(self, stream: str) -> bool:
        """Whether ``pages(stream)`` leaves out what did not change since ``--since``: a
        delta updates the records of such a stream; of another it only creates new ones."""
        return self.can_filter_since(self.settings)

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
        return parse_rate_limit(raw, self.ctx.where)

    def make_http(self, auth: Auth | None = None, **kwargs: Any) -> HttpClient:
        self.http = HttpClient(
            self.system, self.settings.get("base_url") or self.default_base_url,
            limit=self.rate_limit(), auth=auth, allow_insecure_http=self.ctx.allow_insecure_http,
            timeout=parse_timeout(self.setting("timeout"), self.ctx.where), connections=max(16, self.ctx.concurrency * 2),
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
    async def check_access(self, streams: list[str]) -> None:
        """The probe, once per run: ``validate`` makes it before planning, the engine
        before reading; whichever comes second spends nothing."""
        if not self.access_checked:
            await self.probe(streams)
            self.access_checked = True

    async def probe(self, streams: list[str]) -> None:
        """Make ``probe_request`` (kind ``probe``): the key, the host and the base_url are
        proven before anything is read or written. A refusal, an unreachable host or an
        answer that is not the vendor's API (a 404, an HTML page, a body that is not
        JSON) raises the same typed error a run would meet, as one line."""
        if self.probe_request is None or self.http is None:
            return
        method, path, params, body = self.probe_request
        http = self.http
        try:
            resp = await http.request(method, path, params=params, json=body, kind="probe")
        except RecordError as e:
            raise ConnectError(f"{self.system}: {method} {path} answered HTTP {e.status or '?'} ({e.reason}) — "
                               f"is base_url {http.base_url} right?") from None
        except QuotaExhausted:
            raise
        except Retryable as e:   # every attempt failed: a server that is down, or not the API
            raise ConnectError(f"{e} (after {http.max_attempts} attempts)" if str(e).startswith(self.system)
                               else f"{self.system}: {method} {path} at {http.base_url} kept failing "
                                    f"({e}); try again later, or check base_url") from None
        if not resp.body.strip():
            raise ConnectError(f"{self.system}: {method} {path} answered HTTP {resp.status} with an empty body, "
                               f"not the {self.system} API — is base_url {http.base_url} right?")

    async def open(self) -> None:
        if self.http is not None:
            await self.http.open()

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()

    def request_stats(self) -> dict[str, Any]:
        stats = self.http.stats.as_dict() if self.http else {}
        if self.settled:   # writes whose answer was lost, settled from the target's list
            stats["settled"] = dict(self.settled)
        return stats

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

    def picks_before_fetch(self, stream: str) -> bool:
        """Whether a trial of ``stream`` is picked from the listed rows before what each
        costs is fetched (``sample_rows``): its plan then counts those reads for the
        trial's records only."""
        return False

    def sample_rows(self, stream: str, keep: Callable[[], bool]) -> bool:
        """``run --sample``: a source that fetches more for each record it lists (a detail
        call each) may ask ``keep()`` once per listed row, in order, and fetch only the
        rows kept — a trial then costs its records, not the whole source's. True when
        ``pages(stream)`` will; False (the default): the engine picks from the pages."""
        return False

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

    # the kind of the one request ``undo_open`` makes (counted in the undo's plan)
    undo_open_kind: ClassVar[str | None] = None

    def undo_back(self, previous: dict[str, Any], now: dict[str, Any],
                  wrote: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """What putting a record back sends — each previous value that differs from what
        the target holds ``now`` — and, in words, what cannot be put back. A target whose
        API cannot empty a field or remove a note says so here (``undo_restore`` sends
        ``back``; the plan asks this of the record as the job left it)."""
        return {k: previous.get(k) for k in sorted(set(previous) | set(now)) if previous.get(k) != now.get(k)}, []

    def undo_requests(self, created: int, restored: int, puts: int | None = None) -> dict[str, int]:
        """Requests undoing ``created`` deletes and ``restored`` write-backs costs (the plan):
        ``undo_open``'s, then a read of each record (changed since?) and its delete, or
        its PUT where one is needed (``puts`` of them; default all)."""
        out = Counter({"read": created + restored, "delete": created,
                       "update": restored if puts is None else puts})
        if self.undo_open_kind:
            out[self.undo_open_kind] += 1
        return dict(out)

    async def lookup(self, stream: str, record: Mapping[str, Any], source_id: str) -> str | None:
        return None

    async def write(self, stream: str, record: dict[str, Any], *, source_id: str,
                    target_id: str | None = None) -> WriteResult:
        raise JobError(f"{self.system} cannot be written to")

    async def write_batch(self, stream: str, batch: list[tuple[str, dict[str, Any]]]) -> list[WriteResult]:
        """Write ``(source_id, record)`` pairs in order; only for ``batch_writes`` targets."""
        return [await self.write(stream, record, source_id=sid) for sid, record in batch]

    async def settler(self, stream: str, since: float, known: Any) -> Any:
        """For a target with no lookup: something with ``async settle(record, sent)`` that
        tells, from a list the target keeps, whether a write in flight when the last run
        ended landed (``connectors.settle.Settled``), or None when this stream cannot.
        Called once per stream before the run writes anything, so the list is read as
        the crash left it; ``since`` is the earliest send time among those writes, and
        ``known(target_ids)`` which ids the job already holds (and since when)."""
        return None

    def writers(self, stream: str, concurrency: int) -> int:
        """How many writers the engine runs for ``stream`` (a target whose list must
        still show every write a crash can cut off bounds them)."""
        return concurrency

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

    # ---- verify (issue 18): reading back what a run wrote ----------------------------------
    # Per target stream, field -> the name of the normalisation the target applies to it
    # (``verify.compare.RULES``: casefold, e164, date, tags…); other fields compare as text
    # with whitespace trimmed. ``"*"`` names a rule for every field.
    verify_rules: ClassVar[dict[str, dict[str, str]]] = {}

    def natural_keys(self, stream: str) -> tuple[str, ...]:
        """The fields the target treats as a record's identity (what two copies of one
        person share): ``verify`` reports a key held by two target records."""
        return ()

    def comparable(self, stream: str, field: str, value: Any) -> Any:
        """``value`` of ``field`` as the target compares it (what was sent and what is held
        go through the same door); a connector whose storage changes values overrides it."""
        from ..verify.compare import comparable
        rules = self.verify_rules.get(stream, {})
        return comparable(value, rules.get(field) or rules.get("*"))

    async def plan_read_back(self, stream: str, records: int) -> "ReadBack":
        """How ``verify`` reads ``records`` records of ``stream`` back and what it costs."""
        return ReadBack("none", {}, f"{self.title or self.system} has no way to read {stream} back: "
                                    "verify checks only what the checkpoint holds")

    def read_back(self, stream: str, ids: list[str], how: "ReadBack",
                  fields: frozenset[str]) -> AsyncIterator[tuple[str, dict[str, Any] | None]]:
        """``(target id, the record as the target holds it, in the names a mapped record
        uses)``. By id: one pair per id asked, None when the target no longer holds it.
        By list: every record the target holds (``ids`` unused)."""
        raise JobError(f"{self.system} cannot be read back")

    async def quota(self, probe: bool = False) -> "Quota | None":
        """The key's daily request quota, if the system has one, with what is left today
        when known. ``probe`` allows one cheap request the run spends anyway (it is
        cached) to learn what is left."""
        return None


def parse_rate_limit(raw: Any, where: str) -> RateLimit | None:
    """``{requests: N, per: SECONDS}`` (N a whole number >= 1, SECONDS > 0), or
    ``none``/``off``/``false`` for no limit. A zero or negative value would divide by zero
    or never admit a request (a hang), so it is refused here, naming the job's line."""
    if raw in (False, "none", "off"):
        return None
    at = f"{where}: " if where else ""
    shape = "rate_limit must be {requests: N, per: SECONDS} (or none)"
    if not isinstance(raw, dict):
        raise JobError(f"{at}{shape}, not {raw!r}")
    extra = [k for k in raw if k not in ("requests", "per")]
    if extra or "requests" not in raw:
        what = f"unknown key {extra[0]!r}" if extra else "'requests' is missing"
        raise JobError(f"{at}{shape}: {what}")
    requests, per = number_setting(raw["requests"]), number_setting(raw.get("per", 1))
    if not isinstance(requests, int) or requests < 1:
        raise JobError(f"{at}rate_limit requests must be a whole number of at least 1, not {raw['requests']!r}")
    if per is None or not 0 < per < float("inf"):
        raise JobError(f"{at}rate_limit per must be a number of seconds above 0, not {raw.get('per')!r}")
    return RateLimit(requests, float(per))


def number_setting(value: Any) -> int | float | None:
    """A YAML number, or one that came from an environment variable as text."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        for kind in (int, float):
            try:
                return kind(value.strip())
            except ValueError:
                pass
    return None


def parse_timeout(raw: Any, where: str) -> float:
    """Seconds a request may take: a number above 0 (default 30)."""
    if raw in (None, ""):
        return 30.0
    value = number_setting(raw)
    if value is None or not 0 < value < float("inf"):
        at = f"{where}: " if where else ""
        raise JobError(f"{at}timeout must be a number of seconds above 0, not {raw!r}")
    return float(value)


@dataclass
class ReadBack:
    """How ``verify`` reads a target stream back: ``how`` is ``by_id`` (one request per
    record), ``list`` (the whole list, fewer requests) or ``none``; ``requests`` the
    bill by kind; ``why`` one line saying why this way or what cannot be seen;
    ``sequential``: the requests go one after another (a cursor); ``partial``: the list
    holds only some of the target's records (Realeflow's newest 25)."""

    how: str
    requests: dict[str, int]
    why: str = ""
    sequential: bool = False
    partial: bool = False   # the list shows only some records: one it lacks is unchecked, not missing


def choose_read_back(*, records: int, list_requests: int, vendor: str, existing: int,
                     spent: int = 0, sequential: bool = False) -> ReadBack:
    """By id or by list, whichever costs fewer requests (a tie goes to the list: it also
    shows duplicates the job's own records cannot). ``spent``: requests the list read
    has already made (the probe that told its size); the bill counts them either way."""
    more = max(0, list_requests - spent)
    if more <= records:
        return ReadBack("list", {"page": list_requests},
                        f"reads the {existing:,} records {vendor} holds, {list_requests:,} pages — "
                        f"fewer requests than one per record ({records:,})", sequential)
    return ReadBack("by_id", {"by_id": records},
                    f"reads each record by its id ({records:,} requests) — fewer than the "
                    f"{list_requests:,} pages of all {existing:,} records {vendor} holds")


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

    def update(self, record: dict[str, Any]) -> None:
        """A delta (``run --since``) writes ``record`` onto the record an earlier run
        migrated, by its target id: no lookup, no dedup — one update, unless the
        connector sends more."""
        self.counts["update"] += 1

    def requests(self) -> dict[str, int]:
        return dict(self.counts)
