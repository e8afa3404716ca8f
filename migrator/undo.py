"""``migrator undo JOB``: take back what a job wrote — delete what it created, put back what
it changed — through the target's documented endpoints only.

Each record's undo is planned before anything is sent (requests, ETA), checkpointed like a
write (``inflight`` is durable before its request goes out, ``undone`` after), so a
crashed undo resumes and does nothing twice: a delete of a record already gone and a
write-back of values already back are no-ops. A record someone changed in the target after
the migration (what it holds now differs from what the job wrote) is listed and left
alone, unless ``--force``. A file target is cut back to its size before the job (or
before the trial). Records that end undone become free again: a later ``run`` writes them.
"""
from __future__ import annotations

import math
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import anyio
import orjson

from . import crashpoints
from .checkpoint import Checkpoint
from .errors import ConfigError, QuotaExhausted, RecordError, Retryable, UserError
from .plan import comparison_lines, duration, kinds_beside, side_seconds
from .report import write_report

SAMPLE_RUNS = "SELECT run FROM runs WHERE mode='sample'"


@dataclass
class Group:
    """Every record of one stream settled onto one target record, in the order written."""

    stream: str
    target_stream: str
    target_id: str
    source_ids: list[str]
    kind: str                         # delete | restore | keep
    previous: dict[str, Any] | None = None
    wrote: dict[str, Any] | None = None
    state: str | None = None          # the undo state a crashed or earlier undo left
    why: str = ""


@dataclass
class UndoOutcome:
    counts: dict[str, int] = field(default_factory=dict)
    listed: list[dict[str, Any]] = field(default_factory=list)   # changed since: left alone
    kept: list[dict[str, Any]] = field(default_factory=list)     # cannot be undone: why
    partly: list[dict[str, Any]] = field(default_factory=list)   # put back but for some fields
    files: list[dict[str, Any]] = field(default_factory=list)
    report: Any = None
    # planned beside actual: the requests the plan counted, its ETA, and what was spent
    system: str = ""
    planned: dict[str, int] = field(default_factory=dict)
    eta_seconds: float = 0.0
    requests: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def comparison(self) -> dict[str, Any]:
        """The undo's plan beside what it spent, as a run's report sets them (``plan`` section)."""
        return {"basis": "undo", "eta_seconds": round(self.eta_seconds, 3), "seconds": round(self.seconds, 3),
                "resumed": False,   # the plan counts only what is left to undo
                "requests": {"target": {"system": self.system,
                                        "kinds": kinds_beside(self.planned, self.requests)}}}

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n


# ---- what to undo (pure) -------------------------------------------------------------------

def plan_groups(rows: list[tuple], target_stream: Callable[[str], str]) -> list[Group]:
    """Rows ``(stream, source_id, target_id, action, matched_key, previous, wrote, state,
    in_trial, at)`` in the order of their last write → one group per target record:
    deleted when this job created it (then whatever else the job put on it goes with it),
    else put back to the values it held before the job's first write onto it, else kept
    with the reason."""
    groups: dict[tuple[str, str], Group] = {}
    actions: dict[tuple[str, str], list[tuple]] = {}
    for row in rows:
        key = (row[0], str(row[2]))
        actions.setdefault(key, []).append(row)
    out = []
    for (stream, tid), rs in actions.items():
        ids = [r[1] for r in rs]
        states = {r[7] for r in rs}
        state = "inflight" if "inflight" in states else ("undone" if states == {"undone"} else
                                                          next((s for s in states if s), None))
        wrote: dict[str, Any] = {}
        for r in rs:   # what the target should hold of the job's writes, the latest value of each field
            wrote.update(_load(r[6]) or {})
        created = [r for r in rs if r[3] == "created"]
        first = _first_write(rs)
        g = Group(stream, target_stream(stream), tid, ids, "keep", state=state, wrote=wrote)
        if created:
            g.kind = "delete"
        elif first[3] == "updated" and first[5] is not None:
            g.kind, g.previous = "restore", _load(first[5])
        elif first[4] == "lookup after interruption" or first[4] == "lookup after lost response":
            g.why = ("settled by a lookup after an interruption: it may be this job's create or a record the "
                     "target held before; check it and delete it by hand if it is the job's")
        elif first[3] == "updated":
            g.why = "the target merged the record into one it held, and its previous values were not read"
        else:
            g.why = f"the target already held it ({first[4] or 'matched'}); nothing this job kept says what it changed"
        groups[(stream, tid)] = g
        out.append(g)
    return out


def _first_write(rs: list[tuple]) -> tuple:
    """The row of the job's first write onto a target record (``undo_log.at``; rows that
    lack it, in the order given): its ``previous`` is what the record held before the job.
    A later write onto it (another source record, a delta) moves the rows' order, not this."""
    return min(enumerate(rs), key=lambda ir: (ir[1][9] if len(ir[1]) > 9 and ir[1][9] is not None
                                              else math.inf, ir[0]))[1]


def changed(now: dict[str, Any], wrote: dict[str, Any] | None) -> list[str]:
    """Fields whose value in the target differs from what the job wrote (only fields the
    target reads back; e-mails by case, phones by their digits, lists by containment)."""
    if not wrote:
        return []
    return [k for k, v in wrote.items() if k in now and v not in (None, "", []) and not _same(now[k], v)]


def _same(now: Any, wrote: Any) -> bool:
    if isinstance(wrote, (list, tuple)):
        held = {_norm(x) for x in now} if isinstance(now, (list, tuple)) else {_norm(now)}
        return all(_norm(x) in held for x in wrote)
    if isinstance(wrote, dict):
        return isinstance(now, dict) and all(_same(now.get(k), v) for k, v in wrote.items() if k in now)
    a, b = _norm(now), _norm(wrote)
    if a == b:
        return True
    da, db = "".join(c for c in a if c.isdigit()), "".join(c for c in b if c.isdigit())
    return len(db) >= 7 and len(da) >= 7 and (da.endswith(db) or db.endswith(da)) and \
        not any(c.isalpha() for c in a + b)


def _norm(v: Any) -> str:
    return " ".join(str(v).split()).casefold() if v is not None else ""


def _load(text: str | bytes | None) -> Any:
    return None if text is None else orjson.loads(text)


# ---- the run ------------------------------------------------------------------------------

class Undo:
    def __init__(self, job: Any, *, sample_only: bool = False, force: bool = False,
                 out: Callable[[str], None] | None = None, latency: float | None = None):
        self.job, self.sample_only, self.force = job, sample_only, force
        self.out = out or (lambda s: print(s, file=sys.stderr))
        self.latency = latency
        self.outcome = UndoOutcome()
        self.target: Any = None
        self.ckpt: Checkpoint | None = None

    async def run(self) -> UndoOutcome:
        job = self.job
        target = job.connector("target")
        why = target.cannot_undo()
        if why is not None:
            raise UserError(f"{job.path}: this job cannot be undone: {why}; nothing was changed")
        meta = _meta(job.checkpoint)
        if self.sample_only and not meta.get("sample_runs"):
            raise UserError(f"{job.path}: no trial (`run --sample N`) has run for this job; "
                            "undo without --sample-only takes back the whole job")
        digest = meta.get("mapping_digest", job.mapping.digest)
        self.target = target
        self.ckpt = await Checkpoint.open(job.checkpoint, job_id=job.job_id, mapping_digest=digest,
                                          mode="undo-sample" if self.sample_only else "undo", create=False)
        started = time.time()
        stopped = "interrupted"
        try:
            await target.open()
            target.checkpoint = self.ckpt
            await target.undo_open()
            if getattr(target, "batch_writes", False):
                await self._cut_files()
            else:
                await self._undo_records()
            stopped = "finished"
        except UserError:
            stopped = "refused"
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await target.close()
                stats = target.request_stats()
                await self.ckpt.close(stopped, {"undo": self.outcome.counts, "target": stats})
        self.outcome.system = job.target.system
        self.outcome.requests = {k: int(n) for k, n in (stats.get("requests") or {}).items() if n}
        self.outcome.seconds = time.time() - started
        self.outcome.report = self._report(started, stopped)
        return self.outcome

    # ---- files ------------------------------------------------------------------------------
    async def _cut_files(self) -> None:
        ckpt, target = self.ckpt, self.target
        assert ckpt is not None
        sample_run = await self._sample_run() if self.sample_only else None
        for sm in self.job.mapping.streams.values():
            key = target.undo_mark(sm.target_stream)
            settled = await ckpt.mark(key)
            if settled is None:
                continue   # nothing of this stream was written
            if sample_run is None:
                size = await ckpt.mark("before:" + key)
                where = "its size before the job"
                ids = "SELECT source_id FROM records WHERE stream=? AND status='done'"
                args: tuple = (sm.name,)
            else:
                later = await ckpt.query("SELECT count(*) FROM records WHERE stream=? AND status='done' AND run>?",
                                         (sm.name, sample_run))
                if later[0][0]:
                    raise UserError(f"{target.path_for(sm.target_stream)}: runs after the trial appended after its "
                                    f"lines; undo the whole job (without --sample-only) or start over")
                size = await ckpt.mark(f"start:{sample_run}:" + key)
                where = "its size before the trial"
                ids = "SELECT source_id FROM records WHERE stream=? AND status='done' AND run=?"
                args = (sm.name, sample_run)
            if size is None:
                raise ConfigError(f"checkpoint {ckpt.path} does not say how large "
                                  f"{target.path_for(sm.target_stream)} was before; it cannot be cut back")
            rows = await ckpt.query(ids, args)
            # The mark first: a crash before the cut leaves a file longer than its mark,
            # which the next run or undo cuts — never a mark past the file's end.
            ckpt.set_mark(key, int(size))
            for (sid,) in rows:
                ckpt.undo_state(sm.name, sid, "undone", "cut from the file")
            ckpt.reset_stream(sm.name)
            await ckpt.commit()
            crashpoints.reached("undo")
            cut = await target.undo_cut(sm.target_stream, int(size))
            self.outcome.add("undone", len(rows))
            self.outcome.files.append({"stream": sm.name, "path": str(target.path_for(sm.target_stream)),
                                       "cut_to_bytes": int(size), "bytes_removed": cut, "to": where,
                                       "records": len(rows)})
            self.out(f"{target.path_for(sm.target_stream)}: cut back to {where} ({int(size):,} bytes; "
                     f"{cut:,} bytes, {len(rows)} records removed)")

    async def _sample_run(self) -> int:
        rows = await self.ckpt.query(SAMPLE_RUNS + " ORDER BY run DESC")  # type: ignore[union-attr]
        if not rows:
            raise UserError(f"{self.job.path}: no trial (`run --sample N`) has run for this job; "
                            "undo without --sample-only takes back the whole job")
        return int(rows[0][0])

    # ---- API targets ------------------------------------------------------------------------
    async def _undo_records(self) -> None:
        ckpt = self.ckpt
        assert ckpt is not None
        if self.sample_only:
            await self._sample_run()
        rows = await ckpt.query(
            "SELECT r.stream, r.source_id, r.target_id, r.action, r.matched_key, l.previous, "
            "CASE WHEN l.stream IS NULL THEN NULL ELSE coalesce(l.wrote, s.body) END, "
            # an undo state older than the record's last write is of a copy undone before it
            "CASE WHEN u.run >= r.run THEN u.state END, "
            # the trial's: written by it — or first written by it and since by a delta
            f"(r.run IN ({SAMPLE_RUNS}) OR EXISTS (SELECT 1 FROM runs t WHERE t.mode='sample' "
            "AND l.at >= t.started AND (t.ended IS NULL OR l.at <= t.ended))), l.at FROM records r "
            "LEFT JOIN undo_log l ON l.stream=r.stream AND l.source_id=r.source_id "
            "LEFT JOIN sent s ON s.stream=r.stream AND s.source_id=r.source_id "
            "LEFT JOIN undo_state u ON u.stream=r.stream AND u.source_id=r.source_id "
            "WHERE r.status='done' AND r.target_id IS NOT NULL ORDER BY r.updated, r.source_id")
        streams = self.job.mapping.streams
        groups = plan_groups(rows, lambda s: streams[s].target_stream if s in streams else s)
        if self.sample_only:
            # A target record the trial wrote goes back whole, with what later runs merged onto it.
            trial = {(r[0], str(r[2])) for r in rows if r[8]}
            groups = [g for g in groups if (g.stream, g.target_id) in trial]
        todo = [g for g in groups if g.kind != "keep"]
        for g in groups:
            if g.kind == "keep":
                self.outcome.add("kept", len(g.source_ids))
                self.outcome.kept.append(self._row(g, g.why))
        self._say_plan(todo)
        send, receive = anyio.create_memory_object_stream[Group](self.job.concurrency * 2)
        async with anyio.create_task_group() as tg:
            for _ in range(max(1, self.job.concurrency)):
                tg.start_soon(self._worker, receive.clone())
            receive.close()
            async with send:
                for g in todo:
                    await send.send(g)
        for stream in {g.stream for g in todo}:
            ckpt.reset_stream(stream)   # a later run reads the stream again and writes what was undone
        ckpt.forget_target_keys()
        await ckpt.commit()

    def _say_plan(self, todo: list[Group]) -> None:
        deletes = sum(1 for g in todo if g.kind == "delete" and g.state != "undone")
        restoring = [g for g in todo if g.kind == "restore" and g.state != "undone"]
        restores = len(restoring)
        # A PUT only where something can be put back: asked of the record as the job left it.
        puts = sum(1 for g in restoring if g.previous is not None and self.target.undo_back(
            g.previous, {**g.previous, **(g.wrote or {})}, g.wrote or {})[0])
        requests = self.target.undo_requests(deletes, restores, puts)
        latency = self.latency or getattr(self.target, "typical_latency", 0.3)
        # The plan's model: the target's window, or latency over concurrency, whichever binds.
        seconds = side_seconds(sum(requests.values()), limit=self.target.rate_limit(), latency=latency,
                               concurrency=self.job.concurrency)
        self.outcome.planned = {k: v for k, v in requests.items() if v}
        self.outcome.eta_seconds = seconds
        kinds = ", ".join(f"{k} {v:,}" for k, v in requests.items() if v)
        self.out(f"undo plan: delete {deletes:,} records this job created, put back {restores:,} it changed, "
                 f"leave {self.outcome.counts.get('kept', 0):,} (listed in the report); "
                 f"{self.target.system} requests: {kinds or 'none'}; ETA {duration(seconds)}")

    async def _worker(self, receive: Any) -> None:
        async with receive:
            async for g in receive:
                if g.state == "undone":
                    self.outcome.add("already_undone", len(g.source_ids))
                    continue
                for attempt in range(4):
                    try:
                        await self._one(g)
                        break
                    except QuotaExhausted:
                        raise
                    except Retryable:
                        await anyio.sleep(0.5 * 2 ** attempt)
                    except RecordError as e:
                        self._mark(g, "failed", e.reason)
                        self.outcome.add("failed", len(g.source_ids))
                        self.outcome.kept.append(self._row(g, f"the target refused: {e.reason}"))
                        break
                else:
                    self._mark(g, "failed", "the target kept failing")
                    self.outcome.add("failed", len(g.source_ids))
                    self.outcome.kept.append(self._row(g, "the target kept failing; run undo again"))
                await self.ckpt.commit()  # type: ignore[union-attr]

    async def _go(self, g: Group, now: dict[str, Any], resumed: bool) -> bool:
        """Whether to take ``g`` back: not when someone changed the record in the target
        since the job wrote it (listed instead), unless forced or already decided before a
        crash; if so, ``g`` is marked in flight, durably, before its request."""
        diff = [] if resumed or self.force else changed(now, g.wrote)
        if diff:
            self._listed(g, diff)
            return False
        await self._inflight(g)
        return True

    async def _one(self, g: Group) -> None:
        target, ckpt = self.target, self.ckpt
        assert ckpt is not None
        now = await target.undo_read(g.target_stream, g.target_id)
        resumed = g.state == "inflight"   # decided before a crash: carry it out
        if g.kind == "delete":
            if now is None:
                self._mark(g, "undone", "already gone")
                self.outcome.add("undone", len(g.source_ids))
                return
            if not await self._go(g, now, resumed):
                return
            await target.undo_delete(g.target_stream, g.target_id)
            self._mark(g, "undone", "deleted")
            self.outcome.add("deleted", len(g.source_ids))
            self.outcome.add("undone", len(g.source_ids))
            return
        assert g.previous is not None
        if now is None:
            self._mark(g, "listed", "deleted from the target since the migration")
            self.outcome.add("listed", len(g.source_ids))
            self.outcome.listed.append(self._row(g, "deleted from the target since the migration"))
            return
        if not await self._go(g, now, resumed):
            return
        lost = await target.undo_restore(g.target_stream, g.target_id, g.previous, now, g.wrote or {})
        self._mark(g, "undone", "; ".join(lost) or "put back")
        self.outcome.add("restored", len(g.source_ids))
        self.outcome.add("undone", len(g.source_ids))
        if lost:
            self.outcome.partly.append(self._row(g, "put back except: " + "; ".join(lost)))

    async def _inflight(self, g: Group) -> None:
        """Durable before the request: a crash after it is carried out on resume."""
        self._mark(g, "inflight")
        await self.ckpt.commit()  # type: ignore[union-attr]
        crashpoints.reached("undo")

    def _listed(self, g: Group, diff: list[str]) -> None:
        why = f"changed in the target since the migration ({', '.join(diff)}); left as it is (--force undoes it)"
        self._mark(g, "listed", why)
        self.outcome.add("listed", len(g.source_ids))
        self.outcome.listed.append(self._row(g, why))

    def _mark(self, g: Group, state: str, note: str | None = None) -> None:
        for sid in g.source_ids:
            self.ckpt.undo_state(g.stream, sid, state, note)  # type: ignore[union-attr]

    @staticmethod
    def _row(g: Group, why: str) -> dict[str, Any]:
        return {"stream": g.stream, "source_ids": g.source_ids, "target_id": g.target_id, "why": why}

    def _report(self, started: float, stopped: str) -> Any:
        job = self.job
        report = {"job": str(job.path), "mode": "undo", "sample_only": self.sample_only, "force": self.force,
                  "target": job.target.system, "started": started, "ended": time.time(), "outcome": stopped,
                  "counts": self.outcome.counts, "listed": self.outcome.listed, "kept": self.outcome.kept,
                  "put_back_partly": self.outcome.partly, "files": self.outcome.files,
                  "plan": self.outcome.comparison()}
        path = job.reports / f"{job.name}-undo-report.json"
        write_report(path, report)
        return path


def _meta(path: Any) -> dict[str, str]:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            meta["sample_runs"] = str(conn.execute(f"SELECT count(*) FROM ({SAMPLE_RUNS})").fetchone()[0] or "")
            return meta
    except sqlite3.Error:
        raise ConfigError(f"no checkpoint at {path}: nothing has run for this job, so there is nothing to undo") \
            from None


def summary(outcome: UndoOutcome) -> list[str]:
    c = outcome.counts
    lines = [f"undo: {c.get('undone', 0)} records undone ({c.get('deleted', 0)} deleted, "
             f"{c.get('restored', 0)} put back), {c.get('already_undone', 0)} already undone, "
             f"{c.get('listed', 0)} changed since the migration and left alone, {c.get('kept', 0)} cannot be "
             f"undone, {c.get('failed', 0)} failed"]
    for row in (outcome.listed + outcome.kept + outcome.partly)[:10]:
        lines.append(f"  {row['stream']} {row['target_id']} (source {', '.join(row['source_ids'][:3])}): {row['why']}")
    lines += comparison_lines(outcome.comparison())
    if outcome.report is not None:
        lines.append(f"report: {outcome.report}")
    return lines
