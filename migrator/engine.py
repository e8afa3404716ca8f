"""The pipeline: read pages → map and validate → bounded stream → N writers → checkpoint.

Every record ends ``done`` (with its target id), ``failed`` (with a reason a person can
act on) or ``skipped`` (by a rule the user wrote). The rules that make that true across
crashes:

- a page's new records are marked ``pending`` in one transaction before any is written;
- a record is marked ``inflight`` durably before its write is sent (group commit, so
  concurrent writers share transactions), and ``done``/``failed`` after;
- after a crash, ``inflight`` records are the only uncertain ones: the target's
  natural-key lookup decides; a target without one may settle them from a list it keeps
  (``settler``, read before the run writes anything); else the job's ``on_uncertain``
  policy (reported);
- the stream's watermark moves past a page only when every record in it is settled.

The engine knows connectors only through ``protocols`` and the connector base's methods.
"""
from __future__ import annotations

import signal
import sys
import time
from collections import Counter, OrderedDict
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Callable

import anyio
import orjson
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from . import crashpoints
from .checkpoint import Checkpoint, Snapshot
from .errors import QuotaExhausted, RecordError, Retryable, SourceError, UncertainWrite, UserError
from .mapping import Ref
from .mapping.fill import FillCounter, dead_lines
from .plan import feed, load_plan, probe_access
from .identity import value_excerpt
from .progress import open_bar
from .protocols import Page, Record, StreamInfo
from .schema import Violation, excerpt

READ_AHEAD = 2  # pages fetched ahead of the writers

UNCERTAIN_SKIP = ("the previous run was interrupted while this record was being written and the "
                  "target has no lookup; check whether it exists there, then `migrator retry`")


@dataclass(slots=True)
class Item:
    seq: int
    source_id: str
    data: dict[str, Any]
    uncertain: bool = False
    marked: bool = False   # already durable as in flight (see Engine._marker)
    raw: dict[str, Any] | None = None   # the source record: who it is, should it fail
    target_id: str | None = None   # a delta: the record the target already holds, updated by id


@dataclass
class StreamResult:
    stream: str
    target_stream: str
    total: int | None = None
    counts: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)       # "field: rule — message" -> n
    examples: dict[str, list[str]] = field(default_factory=dict)
    notice: str | None = None
    fill: FillCounter | None = None   # validate: every record; run: the first page
    preview: list[dict[str, Any]] = field(default_factory=list)   # validate --show N


@dataclass
class Outcome:
    mode: str
    streams: list[StreamResult]
    started: float
    ended: float = 0.0
    interrupted: bool = False
    stopped_reason: str | None = None
    run: int | None = None   # the checkpoint's run number (run, retry): names this run's report
    source_requests: dict[str, Any] = field(default_factory=dict)
    target_requests: dict[str, Any] = field(default_factory=dict)

    def total(self, key: str) -> int:
        return sum(s.counts[key] for s in self.streams)


class _Pages:
    """Settlement bookkeeping for one stream: which pages still have open records."""

    def __init__(self, ckpt: Checkpoint | None, stream: str):
        self.ckpt, self.stream = ckpt, stream
        self.open: OrderedDict[int, list[Any]] = OrderedDict()  # seq -> [remaining, cursor]

    def add(self, seq: int, remaining: int, cursor: Any) -> None:
        self.open[seq] = [remaining, cursor]
        self._advance()

    def settle(self, seq: int, n: int = 1) -> None:
        self.open[seq][0] -= n
        self._advance()

    def _advance(self) -> None:
        while self.open:
            seq, (remaining, cursor) = next(iter(self.open.items()))
            if remaining > 0:
                return
            self.open.popitem(last=False)
            if self.ckpt is not None:
                self.ckpt.advance(self.stream, cursor, finished=cursor is None)


class Engine:
    def __init__(self, job, *, mode: str = "run", source=None, target=None,
                 progress: bool | None = None, since: str | None = None,
                 accept_mapping_change: bool = False,
                 out: Callable[[str], None] | None = None,
                 sink: Callable[..., None] | None = None,
                 stop_after: int | None = None, server: bool = False,
                 planners: dict[str, Any] | None = None, show: int = 0, sample: int | None = None):
        self.job = job
        self.mode = mode  # run | validate | retry
        dry = job.target.cls.dry_run_setting
        if server and not dry:
            raise UserError(f"{job.target.system} has no server-side dry run; `validate --server` "
                            "works with Brokerkit (test: true)")
        if dry and mode != "validate" and str(job.target.settings.get(dry, "")).lower() in ("true", "1", "yes"):
            raise UserError(f"{job.target.where}: {dry} makes {job.target.system} save nothing; it is for "
                            "`migrator validate --server`, not for run or retry")
        self.server = server  # validate: also send each valid record to the target's dry run
        self.planners = planners  # validate: stream -> the target's WritePlanner (the plan's counts)
        self.show = show  # validate --show N: keep each stream's first N records as read and as mapped
        self.source = source if source is not None else job.connector("source", since=since)
        # run --since: a delta after cutover. A record done before this delta began is
        # written again as an update of its target id (``_delta_from``: the delta's first run).
        # validate --since plans that delta from the checkpoint as it stands (``_snapshot``).
        self.since = since if mode in ("run", "validate") else None
        self._delta_from: int | None = None
        self._snapshot: Any = None
        self._unfiltered: set[str] = set()   # streams a delta reads whole: it only creates
        if target is not None:
            self.target = target
        elif server:
            job.target.settings[dry] = True
            self.target = job.connector("target")
        else:
            self.target = job.connector("target")
        self.progress = progress
        self.accept_mapping_change = accept_mapping_change
        self.ckpt: Checkpoint | None = None
        self.out = out or (lambda s: print(s, file=sys.stderr))
        # (stream, source_id, field, rule, message, value=, name=, email=) per failure, as it happens
        self.sink = sink
        self.stop_after = stop_after  # behave as if Ctrl-C came after this many writes (demo, tests)
        if sample is not None and (mode != "run" or sample < 1):
            raise UserError("--sample needs a positive number of records, and only `run` takes it")
        self.sample = sample  # run --sample N: a trial of N records spread over each stream
        self._written = 0
        self._admitted = 0   # writes sent or done, not failed: stop_after stops at exactly its count
        self._settled: Any = None   # an anyio.Event, made in run(): set when a write settles
        self._plan: Any = False   # the stored plan, read once (False: not read yet)
        self._tg: Any = None   # the run's task group: progress totals are counted in it
        self._cheap_lookup = bool(getattr(self.target, "cheap_lookup", False))
        self._batched = bool(getattr(self.target, "batch_writes", False))
        # What `migrator undo` needs of each write is kept only where undo can use it.
        self._undo_log = not self._batched and self.target.cannot_undo() is None
        self._stopping = False
        self._bars: list[Any] = []
        # stream -> (the target's settler, source id -> send time) for the writes the last
        # run left in flight, on a target with no lookup (see _open_settlers)
        self._settlers: dict[str, tuple[Any, dict[str, float]]] = {}

    # ---- entry ------------------------------------------------------------------
    async def run(self) -> Outcome:
        outcome = Outcome(self.mode, [], time.time())
        self._settled = anyio.Event()
        writing = self.mode in ("run", "retry") or self.server
        opened_target = writing or not self.target.access_checked  # validate's caller keeps it open
        try:
            await probe_access(self.job, self.source, self.target)  # before anything is read
            await self._check_columns()
            if self.mode in ("run", "retry"):
                self.ckpt = await Checkpoint.open(
                    self.job.checkpoint, job_id=self.job.job_id, mapping_digest=self.job.mapping.digest,
                    accept_mapping_change=self.accept_mapping_change,
                    mode="sample" if self.sample else self.mode)
                outcome.run = self.ckpt.run
                if self.since:
                    self._delta_from = await self._delta_start()
            elif self.since:
                self._snapshot = await Snapshot.open(self.job.checkpoint, self.job.job_id)
                if self._snapshot is not None:
                    self._delta_from = await self._snapshot.delta_from(self.since)
            await self.source.open()
            for c in (self.source, self.target):  # a quota wait is told on the progress line; Ctrl-C ends it
                c.watch_waits(self.out, lambda: self._stopping)
            self.source.use_mapping(list(self.job.mapping.streams.values()))
            if self.mode in ("run", "validate") and (why := self.target.cannot_undo()) is not None:
                self.out(f"note: this run cannot be undone: {why}")
            if writing:
                await self.target.open()
                self.target.checkpoint = self.ckpt  # dedup's key index lives there
                await self.target.prepare(list(self.job.mapping.streams.values()))
                if self.ckpt is not None:
                    await self._open_settlers()
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._watch_signals, tg.cancel_scope)
                for sm in self.job.mapping.streams.values():
                    if self._stopping:
                        break
                    result = StreamResult(sm.name, sm.target_stream)
                    outcome.streams.append(result)
                    await self._stream(sm, result)
                tg.cancel_scope.cancel()
        except QuotaExhausted as e:
            outcome.stopped_reason = str(e)
        except BaseExceptionGroup as group:
            # Task groups wrap what their tasks raise; callers deal in one error.
            error = _one_error(group)
            if not isinstance(error, QuotaExhausted):
                raise error from None
            outcome.stopped_reason = str(error)
        finally:
            with anyio.CancelScope(shield=True):
                for bar in self._bars:
                    bar.close()
                outcome.interrupted = self._stopping
                outcome.ended = time.time()
                outcome.source_requests = self.source.request_stats()
                if writing:
                    outcome.target_requests = self.target.request_stats()
                if self.ckpt is not None:
                    await self.ckpt.close("interrupted" if self._stopping else "finished",
                                          {"source": outcome.source_requests, "target": outcome.target_requests})
                if self._snapshot is not None:
                    self._snapshot.close()
                await self.source.close()
                if opened_target:
                    await self.target.close()
        return outcome

    async def _open_settlers(self) -> None:
        """Before anything is written, for each stream the last run left writes in flight
        on, with a target that has no lookup: let the target read the list that can tell
        whether they landed, as the crash left it (a write of this run could push them
        out of a list of the newest few)."""
        ckpt = self.ckpt
        assert ckpt is not None
        for sm in self.job.mapping.streams.values():
            if self._cheap_lookup or self.target.can_lookup(sm.target_stream):
                continue
            sent = await ckpt.inflight_sent(sm.name)
            if not sent:
                continue

            async def known(ids: list[str], stream: str = sm.name) -> dict[str, float]:
                return await ckpt.done_since(stream, ids)
            settler = await self.target.settler(sm.target_stream, min(sent.values()), known)
            if settler is not None:
                self._settlers[sm.name] = (settler, sent)

    async def _delta_start(self) -> int:
        """The first run of this delta (``--since`` TIME), kept in the checkpoint so that a
        resumed delta does not update again what it already updated."""
        assert self.ckpt is not None
        key = f"delta:{self.since}"
        start = await self.ckpt.mark(key)
        if start is None:
            start = self.ckpt.run
            self.ckpt.set_mark(key, start)
            await self.ckpt.commit()
        return int(start)

    def _cursor_key(self, sm) -> str:
        """A delta reads its own listing (changed since TIME), so it keeps its own watermark."""
        return f"{sm.name} since {self.since}" if self.since else sm.name

    async def _check_columns(self) -> None:
        """Before the checkpoint or the target is touched: a source that knows its columns
        as it opens (a file's header) refuses a mapping path that names none of them."""
        columns = getattr(self.source, "columns", None)
        for sm in self.job.mapping.streams.values() if columns is not None else ():
            known = await columns(sm.source_stream)
            if known is not None:
                sm.check_columns(*known)

    async def _watch_signals(self, scope: anyio.CancelScope) -> None:
        """First Ctrl-C: stop reading, let in-flight writes finish. Second: abandon them."""
        try:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    if not self._stopping:
                        self._stopping = True
                        self.out("\ninterrupted: finishing the writes in flight (Ctrl-C again to abandon them)…")
                    else:
                        self.out("abandoning in-flight writes; they will be reconciled on resume")
                        scope.cancel()
                        return
        except (NotImplementedError, ValueError, RuntimeError):
            # Not on the main thread (tests) or no signal support: nothing to watch.
            await anyio.sleep_forever()

    # ---- one stream ----------------------------------------------------------------
    async def _stream(self, sm, result: StreamResult) -> None:
        reader = None
        if self.mode == "retry" and self.ckpt is not None:
            ids = await self.ckpt.to_retry(sm.name)
            if not ids:
                return  # nothing of this stream to retry: not read at all
            why = self.source.cannot_read_by_id(sm.source_stream)
            if why is None:
                reader = self.source.read_records(sm.source_stream, ids)
                info = StreamInfo(sm.source_stream, total=len(ids))
            else:
                self.out(f"note: retry reads all of {sm.source_stream} to find its {len(ids)} records "
                         f"to retry: {why}")
        if reader is None:
            info = await self.source.info(sm.source_stream)
        if self._delta_from is not None and not self.source.filters_since_stream(sm.source_stream):
            self._unfiltered.add(sm.name)
            self.out(f"note: {self.job.source.system} lists every {sm.source_stream} record whatever --since "
                     f"says: those an earlier run migrated are left as they are; new ones are created")
        result.total, result.notice = info.total, info.notice
        if self.mode in ("run", "validate"):
            result.fill = FillCounter.for_stream(sm)
        if info.notice:
            self.out(f"note: {info.notice}")
        schema = self.target.schema(sm.target_stream)
        cursor, finished = None, False
        if self.ckpt is not None and self.mode == "run":
            cursor, finished, _ = await self.ckpt.cursor(self._cursor_key(sm))
            if finished:
                result.counts["stream_already_finished"] = 1
                return
        picker = None
        if self.sample:
            # A trial reads from the start and moves no watermark: the next run reads
            # every page again and passes over the records the trial settled.
            cursor = None
            picker = await self._sampler(sm, info.total)
            picker.upstream = self.source.sample_rows(sm.source_stream, picker.wants)
        pages = _Pages(self.ckpt if self.mode == "run" and picker is None else None, self._cursor_key(sm))
        bar = self._bar(sm.name, info.total, result)
        writing = self.mode != "validate" or self.server
        batched = writing and self._batched and self.mode != "validate"
        send, receive = anyio.create_memory_object_stream[Any](READ_AHEAD if batched else max(16, self.job.concurrency * 4))
        completed_reading = False
        # A local target's records get no pending mark (its own mark settles them); the
        # ids handed to its writer but not yet committed are kept here instead, so that a
        # source id seen again a page later is still known as a duplicate.
        unsettled: set[str] | None = set() if batched else None
        async with anyio.create_task_group() as tg:
            if batched:
                tg.start_soon(self._batch_writer, sm, receive.clone(), pages, result, bar, unsettled)
            else:
                feed = receive
                if (writing and self.ckpt is not None and not self._cheap_lookup
                        and self.target.can_lookup(sm.target_stream)):
                    marked_send, feed = anyio.create_memory_object_stream[Item](max(1, self.job.concurrency // 2))
                    tg.start_soon(self._marker, sm, receive.clone(), marked_send)
                for _ in range(self.target.writers(sm.target_stream, self.job.concurrency) if writing else 0):
                    tg.start_soon(self._writer, sm, feed.clone(), pages, result, bar)
                if feed is not receive:
                    feed.close()
            receive.close()
            try:
                completed_reading = await self._read(sm, schema, cursor, send, pages, result, bar, unsettled,
                                                     reader, picker)
            finally:
                send.close()
        if self.ckpt is not None:
            if (completed_reading and self.mode == "run" and not self._stopping and not pages.open
                    and picker is None):
                self.ckpt.advance(self._cursor_key(sm), None, finished=True)
            await self.ckpt.commit()

    def _bar(self, stream: str, total: int | None, result: StreamResult):
        """The stream's progress line. A source that does not say how many records it holds
        (a file) takes its total from the stored plan, else counts them on a worker thread
        while the run goes on; the bar shows a percentage and an ETA once it knows."""
        enabled = sys.stderr.isatty() if self.progress is None else self.progress
        if total is None and enabled:
            total = self._planned_total(stream)
        bar = open_bar(self.mode, stream, total, result.counts, enabled)
        self._bars.append(bar)
        count = getattr(self.source, "count_records", None)
        if total is None and enabled and count is not None and self._tg is not None:
            source_stream = self.job.mapping.streams[stream].source_stream
            self._tg.start_soon(self._count_total, count, source_stream, bar)
        return bar

    async def _sampler(self, sm, total: int | None) -> "Sampler":
        """Every k-th record of the stream, k its count over N: spread over the whole
        source, the same records each time it is read in the same order, and nothing held
        in memory but a counter."""
        if total is None:
            count = getattr(self.source, "count_records", None)
            total = await count(sm.source_stream) if count is not None else None
        if total is None:
            total = self._planned_total(sm.name)
        if total is None:
            raise UserError(f"{self.source.system} does not say how many {sm.source_stream} records it holds, "
                            f"so --sample cannot spread a trial over them; run `migrator validate` first "
                            "(its plan counts them)")
        return Sampler(self.sample or 0, total)

    def _planned_total(self, stream: str) -> int | None:
        if self._plan is False:
            self._plan = load_plan(self.job)
        for s in getattr(self._plan, "streams", None) or ():
            if s.stream == stream and s.read:
                return int(s.read)
        return None

    async def _count_total(self, count: Callable[..., Any], source_stream: str, bar) -> None:
        try:
            total = await count(source_stream)
        except Exception:  # a progress total is never worth failing a run for
            return
        if total and bar.total is None and not bar.disable:
            bar.total = total
            bar.refresh()

    async def _read(self, sm, schema, cursor: Any, send: MemoryObjectSendStream[Any],
                    pages: _Pages, result: StreamResult, bar, unsettled: set[str] | None = None,
                    reader: Any = None, picker: "Sampler | None" = None) -> bool:
        """Fetch pages in a task of their own, READ_AHEAD pages ahead of the writers, so
        reading and writing overlap; sort each page, then hand its work to the writers."""
        seq = 0
        seen_this_run: set[str] | None = set() if self.ckpt is None else None
        fetched_send, fetched = anyio.create_memory_object_stream[Page](READ_AHEAD)

        async def fetch() -> None:
            # aclosing: a source generator may hold a task group across its yields; it
            # must be closed in this task, never left to the garbage collector.
            seen_cursors: set[bytes] = set()
            source = reader if reader is not None else self.source.pages(sm.source_stream, cursor)
            async with fetched_send, aclosing(source) as source_pages:
                async for page in source_pages:
                    if self._stopping:
                        return
                    if page.cursor is not None:
                        key = orjson.dumps(page.cursor, option=orjson.OPT_SORT_KEYS)
                        if key in seen_cursors:
                            raise SourceError(f"{self.source.system} {sm.source_stream}: the source gave the "
                                              f"cursor {page.cursor} twice; stopped rather than read in a loop "
                                              "(everything settled so far is kept)")
                        seen_cursors.add(key)
                    await fetched_send.send(page)

        async with anyio.create_task_group() as tg:
            tg.start_soon(fetch)
            async with fetched:
                async for page in fetched:
                    if self._stopping:
                        tg.cancel_scope.cancel()
                        break
                    crashpoints.reached("read")
                    if picker is not None:
                        page = picker.pick(page) if not picker.upstream else page
                        picker.handed += len(page.records)
                    seq += 1
                    counting = result.fill is not None and not result.fill.checked
                    if counting:
                        self._count_fill(result.fill, page)
                    items = await self._prepare_page(sm, schema, page, result, seen_this_run, unsettled,
                                                     counting)
                    pages.add(seq, len(items), page.cursor)
                    if self.ckpt is not None:
                        await self.ckpt.commit()
                        crashpoints.reached("pending")
                    bar.update(len(page.records) - len(items))
                    for item in items:
                        item.seq = seq
                    if unsettled is not None:
                        if items:
                            unsettled.update(item.source_id for item in items)
                            await send.send(items)
                    else:
                        for item in items:
                            await send.send(item)
                    if picker is not None and picker.done:
                        tg.cancel_scope.cancel()   # the trial has its N: the rest waits for the next run
                        break
        return not self._stopping

    def _count_fill(self, fill: FillCounter, page: Page) -> None:
        """validate counts every page; run only its first page with records, and warns at
        once of a path that gave nothing there (a value may still come later: it goes on)."""
        fill.feed([r.data for r in page.records if r.data is not None])
        if self.mode == "run" and fill.records:
            fill.checked = True
            report = {"streams": [{"stream": fill.stream, "fill": fill.to_dict("first page")}]}
            for line in dead_lines(report):
                self.out(f"warning: {line}; the run goes on")

    async def _prepare_page(self, sm, schema, page: Page, result: StreamResult,
                            seen: set[str] | None, unsettled: set[str] | None = None,
                            counting: bool = False) -> list[Item]:
        """Map, validate and sort a page's records into work, settled and skipped.
        ``counting``: the page's source fill was counted, so its valid records' is too."""
        counts = result.counts
        stream = sm.name
        ckpt = self.ckpt
        # Looked at before the statuses are read: an id leaves ``unsettled`` only once its
        # page is committed, and then the read below finds it.
        handed = {r.source_id for r in page.records if r.source_id in unsettled} if unsettled else ()
        statuses = ckpt or self._snapshot
        known = await statuses.statuses(stream, [r.source_id for r in page.records]) if statuses else {}
        if ckpt is not None and self.mode == "run" and unsettled is None:
            fresh = list(dict.fromkeys(r.source_id for r in page.records if r.source_id not in known))
            if fresh:
                ckpt.add_pending(stream, fresh)
        candidates: list[tuple[Record, dict[str, Any], bool, str | None]] = []
        in_page: set[str] = set()
        counts["read"] += len(page.records)
        if page.older:
            counts["older_than_since"] += page.older   # left out by the source: not read as changed
        for rec in page.records:
            sid = rec.source_id
            st = known.get(sid)
            if sid in in_page or (seen is not None and sid in seen) or sid in handed or (
                    st is not None and ckpt is not None and st.run == ckpt.run):
                counts["duplicate_source_id"] += 1
                self._note(result, "source", "duplicate_id", f"source id {sid} appears more than once; the first was kept", sid)
                continue
            in_page.add(sid)
            if seen is not None:
                seen.add(sid)
            uncertain = False
            update_of = self._update_of(st, stream)
            if update_of is not None:
                if not getattr(self.target, "updates_by_id", True):
                    counts["not_updatable"] += 1   # said once per stream, below
                    continue
            elif st is not None:
                if st.status in ("done", "skipped"):
                    counts["already_settled"] += 1
                    continue
                if st.status == "failed" and self.mode != "retry":
                    counts["previously_failed"] += 1
                    continue
                uncertain = st.status == "inflight" or (self._cheap_lookup and st.status == "pending")
            elif self.mode == "retry":
                continue
            if rec.error is not None or rec.data is None:
                self._fail(result, sid, rec.error or "unreadable record", "source", "parse", raw=rec.data)
                continue
            mapped = sm.apply(rec.data)
            if self.show and len(result.preview) < self.show:
                result.preview.append(_preview(sid, rec.data, mapped, schema))
            if mapped.skipped is not None:
                counts["skipped"] += 1
                if ckpt is not None:
                    ckpt.skipped(stream, sid, mapped.skipped)
                continue
            problems: list[Violation] = mapped.errors
            if not problems and schema is not None:
                problems = schema.validate(mapped.data)
            if problems:
                counts["invalid"] += 1
                msg = "; ".join(f"{p.field}: {p.message}" for p in problems)
                self._fail(result, sid, msg, problems[0].field, problems[0].rule, problems=problems,
                           raw=rec.data)
                continue
            candidates.append((rec, mapped.data, uncertain, update_of))
        if counts["not_updatable"] and not result.notice:
            result.notice = (f"{self.job.target.system} cannot update a record by its id: records changed since "
                             f"{self.since} that an earlier run migrated are left as that run wrote them")
            self.out(f"note: {result.notice}")
        if counting:
            result.fill.feed_written([c[1] for c in candidates])  # type: ignore[union-attr]
        if self.mode == "validate" and self.planners:
            feed(self.planners, stream, [(rec.source_id, data, tid is not None)
                                         for rec, data, _, tid in candidates])
        if self.mode == "validate" and not self.server:
            counts["valid"] += len(candidates)
            if self._snapshot is not None:   # validate --since: what the delta will update
                counts["to_update"] += sum(1 for c in candidates if c[3] is not None)
            return []
        if sm.refs and candidates:
            candidates = await self._resolve_refs(sm, candidates, result)
        return [Item(0, rec.source_id, data, uncertain, raw=rec.data, target_id=tid)
                for rec, data, uncertain, tid in candidates]

    def _update_of(self, st: Any, stream: str) -> str | None:
        """The target id a record is written onto as an update: one an earlier run settled
        ``done`` before this delta began — or one whose update was cut off or failed (it
        has a target id but is not done; an update is sent again, never a create)."""
        if st is None or not st.target_id or (self.ckpt is None and self._snapshot is None):
            return None
        if st.status == "done":
            return st.target_id if (self._delta_from is not None and st.run < self._delta_from
                                    and stream not in self._unfiltered) else None
        if st.status == "failed":   # like any failed record: only a retry or a delta writes it again
            return st.target_id if self.mode == "retry" or self._delta_from is not None else None
        return st.target_id if st.status in ("pending", "inflight") else None

    async def _resolve_refs(self, sm, candidates, result: StreamResult):
        wanted: dict[str, set[str]] = {}
        for _, data, _, _ in candidates:
            for fname, stream in sm.refs.items():
                ref = data.get(fname)
                if isinstance(ref, Ref):
                    wanted.setdefault(ref.stream, set()).add(ref.source_id)
        resolved = {s: await self.ckpt.target_ids(s, sorted(ids)) for s, ids in wanted.items()}  # type: ignore[union-attr]
        kept = []
        for rec, data, uncertain, tid in candidates:
            missing = None
            for fname in sm.refs:
                ref = data.get(fname)
                if isinstance(ref, Ref):
                    tid = resolved.get(ref.stream, {}).get(ref.source_id)
                    if tid is None:
                        missing = (fname, ref)
                        break
                    data[fname] = tid
            if missing and self.sample:
                result.counts["sample_waits_for_link"] += 1   # its link is not in the trial: the next run writes both
                continue
            if missing:
                fname, ref = missing
                self._fail(result, rec.source_id,
                           f"{ref.stream} record {ref.source_id} was not migrated, so this cannot link to it",
                           fname, "ref", raw=rec.data, value=ref.source_id)
                continue
            kept.append((rec, data, uncertain, tid))
        return kept

    def _note(self, result: StreamResult, fieldname: str, rule: str, message: str, sid: str) -> None:
        key = f"{fieldname}: {message}" if rule in ("duplicate_id",) else f"{fieldname}: {rule} — {message}"
        result.failures[key] += 1
        ex = result.examples.setdefault(key, [])
        if len(ex) < 5:
            ex.append(sid)

    def _fail(self, result: StreamResult, sid: str, message: str, fieldname: str | None, rule: str, *,
              problems: list[Violation] | None = None, uncertain: bool = False,
              raw: dict[str, Any] | None = None, value: Any = None) -> None:
        """``raw``: the source record, for who it is; ``value``: what was wrong, when the
        problems (which carry their own excerpts) do not say."""
        result.counts["failed"] += 1
        who = getattr(self.source, "who", None)
        name, email = who(result.stream, raw) if who is not None and raw is not None else ("", "")
        shown = "" if value is None else excerpt(value)
        for p in problems or [Violation(fieldname or "record", rule, message, shown)]:
            self._note(result, p.field, p.rule, p.message, sid)
            if self.sink is not None:
                self.sink(result.stream, sid, p.field, p.rule, p.message,
                          value=value_excerpt(p.field, p.excerpt), name=name, email=email)
        if self.ckpt is not None:
            first = problems[0].excerpt if problems else shown
            self.ckpt.failed(result.stream, sid, message, field=fieldname, rule=rule, uncertain=uncertain,
                             context=(value_excerpt(fieldname, first), name, email))

    # ---- writers --------------------------------------------------------------------
    async def _marker(self, sm, receive: MemoryObjectReceiveStream[Item],
                      send: MemoryObjectSendStream[Item]) -> None:
        """For a target that can look a record up: make records durable as in flight a
        batch at a time, ahead of the writers, so that a writer sends at once instead of
        waiting for its own mark's commit (a twelfth of each write's time at 50 ms).

        The price is paid only after a crash: a record marked but not yet sent is looked
        up on resume and, not found, written — at most a batch and the writers' queue,
        half of ``concurrency`` each: as many as could be in flight anyway. A stopping run
        (Ctrl-C) puts them back to pending. A target without a lookup keeps marking in
        the writer, where a mark means the write is about to go out."""
        ckpt = self.ckpt
        assert ckpt is not None
        stream = sm.name
        async with receive, send:
            while True:
                try:
                    batch = [await receive.receive()]
                except anyio.EndOfStream:
                    return
                while len(batch) < max(1, self.job.concurrency // 2):
                    try:
                        batch.append(receive.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                if self._stopping:
                    continue  # not marked: pending, written on resume
                for item in batch:
                    ckpt.inflight(stream, item.source_id)
                    item.marked = True
                await ckpt.commit()
                for item in batch:
                    if self._stopping:
                        ckpt.unmark(stream, item.source_id)
                        continue
                    crashpoints.reached("inflight")
                    await send.send(item)

    async def _writer(self, sm, receive: MemoryObjectReceiveStream[Item], pages: _Pages,
                      result: StreamResult, bar) -> None:
        async with receive:
            async for item in receive:
                if self._stopping:
                    # Not sent: it stays pending and is simply written on resume.
                    if item.marked:
                        self.ckpt.unmark(sm.name, item.source_id)  # type: ignore[union-attr]
                    continue
                if not await self._admit(1):
                    if item.marked:
                        self.ckpt.unmark(sm.name, item.source_id)  # type: ignore[union-attr]
                    continue
                written = self._written
                await self._write_one(sm, item, result)
                self._release(1 - (self._written - written))
                if self.mode == "run":
                    pages.settle(item.seq)
                bar.update(1)

    async def _batch_writer(self, sm, receive: MemoryObjectReceiveStream[list[Item]], pages: _Pages,
                            result: StreamResult, bar, unsettled: set[str]) -> None:
        """Local targets (files): one call per page, not one task hop per record."""
        async with receive:
            async for items in receive:
                if self._stopping:
                    continue
                # stop_after: only as many as are left; the rest stay unsettled, so the
                # page's watermark holds and the resume writes them.
                items = items[:await self._admit(len(items))]
                if not items:
                    continue
                written = self._written
                await self._write_page(sm, items, result)
                self._release(len(items) - (self._written - written))
                if self.mode == "run":
                    pages.settle(items[0].seq, len(items))
                await self.ckpt.commit()  # type: ignore[union-attr]
                unsettled.difference_update(item.source_id for item in items)
                bar.update(len(items))

    async def _write_page(self, sm, items: list[Item], result: StreamResult) -> None:
        assert self.ckpt is not None
        plain: list[Item] = []
        for item in items:
            if item.uncertain:  # after a crash: settled one by one, by lookup
                await self._write_one(sm, item, result)
            else:
                plain.append(item)
        if not plain:
            return
        try:
            results = await self.target.write_batch(sm.target_stream, [(i.source_id, i.data) for i in plain])
            for item, res in zip(plain, results):
                if item.target_id is not None:   # a delta: the record's new version, appended
                    res.action, res.target_id = "updated", item.target_id
        except RecordError:
            for item in plain:  # a local target that refuses one record: find which, alone
                await self._write_one(sm, item, result)
            return
        # _done, for a page at once: the counts and the stop_after check once per page.
        stream, counts, done, reached = sm.name, result.counts, self.ckpt.done, crashpoints.reached
        actions: Counter[str] = Counter()
        for item, res in zip(plain, results):
            reached("written")
            done(stream, item.source_id, str(res.target_id), action=res.action, matched_key=res.matched_key,
                 delta=item.target_id is not None)
            actions[res.action] += 1
        sent = self.ckpt.sent   # after the done marks: one executemany each
        for item in plain:
            sent(stream, item.source_id, item.data)
        counts["done"] += len(results)
        counts.update(actions)
        self._written += len(results)
        self._check_stop_after()

    async def _server_check(self, sm, item: Item, result: StreamResult) -> None:
        """validate --server: the target checks the record in its dry run and saves nothing."""
        try:
            await self.target.write(sm.target_stream, item.data, source_id=item.source_id)
        except RecordError as e:
            result.counts["invalid"] += 1
            self._fail(result, item.source_id, e.reason, e.field, "server", raw=item.raw,
                       value=item.data.get(e.field) if e.field else None)
            return
        result.counts["valid"] += 1

    async def _write_one(self, sm, item: Item, result: StreamResult) -> None:
        if self.ckpt is None:
            await self._server_check(sm, item, result)
            return
        ckpt = self.ckpt
        assert ckpt is not None
        stream, tstream, sid = sm.name, sm.target_stream, item.source_id
        target = self.target
        uncertain = False
        if item.target_id is not None and self.job.on_merge in ("skip", "fail"):
            # A delta of a record already migrated follows on_merge like any other match.
            if self.job.on_merge == "skip":
                await self._done(result, stream, sid, item.target_id, "matched", "on_merge: skip", False,
                                 delta=True)
            else:
                self._fail(result, sid, f"changed in the source, but {self.job.target.system} record "
                           f"{item.target_id} already holds it (on_merge: fail)", None, "merge", raw=item.raw)
            return
        if item.uncertain:
            result.counts["reconciled"] += 1
            if target.can_lookup(tstream):
                found = await self._lookup(tstream, item, result)
                if found is not None:
                    await self._done(result, stream, sid, found, "matched", "lookup after interruption", False,
                                         item.data)
                    return
            else:
                try:
                    settled = await self._settle(stream, item)
                except RecordError as e:   # found, but what the write left undone failed
                    self._fail(result, sid, e.reason, e.field, e.rule, raw=item.raw,
                               value=item.data.get(e.field) if e.field else None)
                    return
                if settled is not None and settled.found:
                    result.counts["settled"] += 1
                    await self._done(result, stream, sid, settled.target_id, "created", None, False)
                    return
                if settled is not None and settled.decided:
                    result.counts["not_landed"] += 1   # the list shows it never landed: written below
                elif self.job.on_uncertain == "skip":
                    result.counts["uncertain"] += 1
                    why = f" ({settled.why})" if settled is not None and settled.why else ""
                    self._fail(result, sid, UNCERTAIN_SKIP + why, None, "uncertain", uncertain=True, raw=item.raw)
                    return
                else:
                    uncertain = True
        if not self._cheap_lookup and not item.marked:
            ckpt.inflight(stream, sid)
            await ckpt.commit()
            crashpoints.reached("inflight")
        for attempt in range(6):
            try:
                res = (await target.write(tstream, item.data, source_id=sid) if item.target_id is None else
                       await target.write(tstream, item.data, source_id=sid, target_id=item.target_id))
            except RecordError as e:
                self._fail(result, sid, e.reason, e.field, e.rule, raw=item.raw,
                           value=item.data.get(e.field) if e.field else None)
                return
            except UncertainWrite as e:
                if item.target_id is not None:   # a delta's update by id: sent again, never looked up
                    continue
                if target.can_lookup(tstream):
                    found = await self._lookup(tstream, item, result)
                    if found is not None:
                        await self._done(result, stream, sid, found, "matched", "lookup after lost response",
                                         uncertain, item.data)
                        return
                    continue
                if self.job.on_uncertain == "skip":
                    result.counts["uncertain"] += 1
                    self._fail(result, sid, f"{e}; the target has no lookup, so it may or may not "
                               "hold this record — check it, then `migrator retry`", None, "uncertain",
                               uncertain=True, raw=item.raw)
                    return
                uncertain = True
                continue
            except QuotaExhausted:
                raise
            except Retryable as e:
                self._fail(result, sid, f"{e} (gave up after retries; `migrator retry` tries again)",
                           None, "transient", raw=item.raw)
                return
            crashpoints.reached("written")
            if res.placements:   # what a combined merge put where: committed with its done
                ckpt.placed(stream, sid, res.placements)
            delta = item.target_id is not None
            if self._undo_log and delta:
                ckpt.undo_after_delta(stream, sid)
            elif self._undo_log and res.action in ("created", "updated"):
                # What was sent is kept once, in ``sent`` (below); the log keeps only a body
                # the connector wrote instead of it (a merge's changes).
                ckpt.undo_log(stream, sid, str(res.target_id), res.previous, res.wrote)
            await self._done(result, stream, sid, res.target_id, res.action, res.matched_key, uncertain,
                             item.data, delta=delta)
            return
        self._fail(result, sid, "the write's outcome stayed unknown after several attempts",
                   None, "uncertain", uncertain=True, raw=item.raw)

    async def _settle(self, stream: str, item: Item) -> Any:
        """What the target's list says of a record the last run left in flight (a
        ``Settled``), or None when nothing can tell."""
        entry = self._settlers.get(stream)
        sent = entry[1].get(item.source_id) if entry is not None else None
        if entry is None or sent is None:
            return None
        for attempt in range(4):
            try:
                return await entry[0].settle(item.data, sent)
            except QuotaExhausted:
                raise
            except Retryable:
                await anyio.sleep(0.5 * 2 ** attempt)
        return None

    async def _lookup(self, tstream: str, item: Item, result: StreamResult) -> str | None:
        for attempt in range(4):
            try:
                return await self.target.lookup(tstream, item.data, item.source_id)
            except QuotaExhausted:
                raise
            except Retryable:
                await anyio.sleep(0.5 * 2 ** attempt)
        return None

    async def _done(self, result: StreamResult, stream: str, sid: str, target_id: str, action: str,
                    matched_key: str | None, uncertain: bool, data: dict[str, Any] | None = None,
                    delta: bool = False) -> None:
        assert self.ckpt is not None
        if data is not None:   # what verify compares the target's copy with
            self.ckpt.sent(stream, sid, data)
        counts = result.counts
        counts["done"] += 1
        counts[action] += 1
        if uncertain:
            counts["uncertain"] += 1
        self.ckpt.done(stream, sid, str(target_id), action=action, matched_key=matched_key,
                       uncertain=uncertain, delta=delta)
        self._written += 1
        self._check_stop_after()

    async def _admit(self, n: int) -> int:
        """How many of ``n`` writes may go out now. With ``stop_after`` (the demo's and the
        tests' Ctrl-C), no more are sent than would reach it: a write waits while the
        ones in flight could still make the count, and goes if one of them fails — so
        the run stops at exactly ``stop_after`` written, as it says."""
        if self.stop_after is None:
            return n
        while not self._stopping:
            room = self.stop_after - self._admitted
            if room > 0:
                self._admitted += min(n, room)
                return min(n, room)
            settled = self._settled
            await settled.wait()
        return 0

    def _release(self, n: int) -> None:
        """Admitted writes that did not end written (failed) give their place back."""
        if self.stop_after is None:
            return
        self._admitted -= max(0, n)
        self._settled.set()
        self._settled = anyio.Event()

    def _check_stop_after(self) -> None:
        if self.stop_after is not None and self._written >= self.stop_after and not self._stopping:
            self._stopping = True
            self._settled.set()   # writers waiting for room: there is none left
            self.out(f"stopping after {self._written} writes, as asked")


def _preview(sid: str, raw: dict[str, Any], mapped: Any, schema: Any) -> dict[str, Any]:
    """One record for ``validate --show``: as read, as it will be sent, and why not if not."""
    problems = mapped.errors or (schema.validate(mapped.data) if schema is not None and
                                 mapped.skipped is None else [])
    note = (f"skipped: {mapped.skipped}" if mapped.skipped is not None else
            "invalid: " + "; ".join(f"{p.field}: {p.message}" for p in problems) if problems else None)
    sent = {k: (f"→ {v.stream} {v.source_id}" if isinstance(v, Ref) else v)
            for k, v in mapped.data.items()} if mapped.data is not None else None
    return {"source_id": sid, "source": raw, "sent": sent, "note": note}


class Sampler:
    """``run --sample N``: picks every k-th record read (k = total // N, the first at
    position 0) until N are picked. Positions count every record the source gives, in
    its order, so the same source gives the same trial."""

    def __init__(self, n: int, total: int):
        self.n, self.step = n, max(1, total // max(1, n))
        self.position = 0
        self.picked = 0
        self.upstream = False   # the source asks ``wants`` per row it lists (``sample_rows``)
        self.handed = 0         # picked records that reached the engine (a source reads ahead)

    @property
    def done(self) -> bool:
        """The trial has its N, and each has reached the engine."""
        return self.picked >= self.n and self.handed >= self.picked

    def wants(self) -> bool:
        """Whether the next record in the source's order is in the trial."""
        take = self.picked < self.n and self.position % self.step == 0
        self.picked += take
        self.position += 1
        return take

    def pick(self, page: Page) -> Page:
        return Page([rec for rec in page.records if self.wants()], page.cursor, page.total)


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    out: list[BaseException] = []
    for e in group.exceptions:
        out.extend(_leaves(e) if isinstance(e, BaseExceptionGroup) else [e])
    return out


def _one_error(group: BaseExceptionGroup) -> BaseException:
    """The error a person should see: the first UserError, else the first of the rest
    (a group of one is just its error)."""
    leaves = _leaves(group)
    for e in leaves:
        if isinstance(e, UserError):
            return e
    for e in leaves:
        if not isinstance(e, anyio.get_cancelled_exc_class()):
            return e
    return group


def run_engine(job, **kwargs: Any) -> Outcome:
    engine = Engine(job, **kwargs)
    return anyio.run(engine.run)
