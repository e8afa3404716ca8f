"""``migrator verify JOB``: read back every record the job marked done and prove what the
target holds.

For each mapping stream: the records the checkpoint holds as ``done``, each with its target
id and what its write sent (``compare``'s docstring says why the body as sent); the
target's connector says how it reads them back and what that costs (``plan_read_back``:
by id, or its whole list when that is fewer requests) — the bill is printed before the
first read. Then each record is compared with the target's copy after the target's own
normalisation, and the verdict lists, per stream: records equal, fields that drifted
(value sent, value held), records done but missing, and natural keys of the job's
records that the target holds twice. A record that a list showing only some records
(``ReadBack.partial``: Realeflow's newest 25) lacks is unchecked, never missing; a stream
whose every done record went unchecked (Brokerkit: no read API) proves nothing, so the
verdict is not clean.

It only reads: it opens the checkpoint read-only and takes no job lock, so it can run
beside a ``run`` (what that run settles after verify's read is not in the verdict).
"""
from __future__ import annotations

import sqlite3
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import anyio
import orjson

from ..checkpoint import read_only
from ..connectors.dedup import keys_of
from ..plan import Side, bill, duration
from ..progress import open_bar
from .compare import Drift, drifts, held_twice, shown

CHUNK = 500   # checkpoint rows read at a time
COMPARE_SECONDS = 55e-6   # parse + compare one record read back (measured: bench/verify_cost.py)


@dataclass
class Done:
    """One record the checkpoint holds as done."""

    source_id: str
    target_id: str
    action: str | None
    body: dict[str, Any] | None      # what its write sent; None: written before verify existed
    placed: frozenset[str] = frozenset()   # fields a combined merge put elsewhere
    grew: frozenset[str] = frozenset()     # fields a combined merge appended this record's values to


@dataclass
class StreamVerdict:
    stream: str
    target_stream: str
    how: str = "none"
    why: str = ""
    records: int = 0                 # done in the checkpoint (and asked for)
    equal: int = 0
    drift: list[dict[str, Any]] = field(default_factory=list)      # one per field
    drifted: int = 0                 # records with drift
    missing: list[dict[str, Any]] = field(default_factory=list)
    twice: list[dict[str, Any]] = field(default_factory=list)
    unchecked: int = 0               # records that could not be read back
    existence_only: int = 0          # present; nothing sent to compare with (or merge: skip)
    planned: dict[str, int] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not (self.drift or self.missing or self.twice)

    @property
    def proven(self) -> bool:
        """Something was read back (or nothing was done): a stream whose every record went
        unchecked proves nothing, and ``verify`` does not exit 0 for it."""
        return not self.records or self.unchecked < self.records

    def as_dict(self) -> dict[str, Any]:
        return {"stream": self.stream, "target_stream": self.target_stream, "read_back": self.how,
                "why": self.why, "records": self.records, "equal": self.equal, "drifted": self.drifted,
                "missing": len(self.missing), "held_twice": len(self.twice), "unchecked": self.unchecked,
                "existence_only": self.existence_only, "planned_requests": self.planned,
                "drift": self.drift, "missing_records": self.missing, "held_twice_keys": self.twice}


@dataclass
class VerifyOutcome:
    job: str
    target: str
    streams: list[StreamVerdict]
    started: float
    ended: float = 0.0
    eta_seconds: float = 0.0
    planned: dict[str, int] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False

    @property
    def clean(self) -> bool:
        """Exit 0: nothing found wrong, and each stream with done records had some of them
        read back (Realeflow's newest 25 may hold only some; Brokerkit none)."""
        return not self.interrupted and all(s.clean and s.proven for s in self.streams)

    @property
    def unproven(self) -> list[str]:
        """Streams with done records of which none could be read back."""
        return [s.stream for s in self.streams if not s.proven]

    def total(self, name: str) -> int:
        return sum(len(v) if isinstance(v := getattr(s, name), list) else v for s in self.streams)

    def as_dict(self) -> dict[str, Any]:
        return {"mode": "verify", "job": self.job, "target": self.target, "started": self.started,
                "ended": self.ended, "seconds": round(self.ended - self.started, 3),
                "eta_seconds": round(self.eta_seconds, 3), "interrupted": self.interrupted,
                "clean": self.clean, "unproven": self.unproven, "planned_requests": self.planned,
                "requests": self.requests,
                "streams": [s.as_dict() for s in self.streams]}


# ---- the checkpoint ------------------------------------------------------------------------
def done_records(conn: sqlite3.Connection, stream: str, source_ids: Iterable[str] | None = None) -> list[Done]:
    """The stream's done records, with what was sent and what a merge placed elsewhere."""
    sql = ("SELECT r.source_id, r.target_id, r.action, s.body, p.placed FROM records r "
           "LEFT JOIN sent s ON s.stream=r.stream AND s.source_id=r.source_id "
           "LEFT JOIN placements p ON p.stream=r.stream AND p.source_id=r.source_id "
           "WHERE r.stream=? AND r.status='done' AND r.target_id IS NOT NULL")
    has_sent = bool(conn.execute("SELECT 1 FROM sqlite_master WHERE name='sent'").fetchone())
    if not has_sent:   # a checkpoint from before verify: existence only
        sql = sql.replace("s.body", "NULL").replace(
            "LEFT JOIN sent s ON s.stream=r.stream AND s.source_id=r.source_id ", "")
    rows: list[tuple] = []
    if source_ids is None:
        rows = conn.execute(sql + " ORDER BY r.source_id", (stream,)).fetchall()
    else:
        wanted = list(dict.fromkeys(source_ids))
        for i in range(0, len(wanted), CHUNK):
            chunk = wanted[i:i + CHUNK]
            rows += conn.execute(sql + f" AND r.source_id IN ({','.join('?' * len(chunk))})",
                                 (stream, *chunk)).fetchall()
    out = []
    for sid, tid, action, body, placed in rows:
        places = orjson.loads(placed) if placed else []
        # A value that went into its own field (filled, added to a list) is compared as any
        # other; one that went elsewhere (a second slot, a line of a note) is not.
        moved = frozenset(str(p.get("field")) for p in places
                          if p.get("to") != p.get("field") or p.get("how") not in ("filled", "added"))
        grew = frozenset(str(p["to"]) for p in places if p.get("to"))
        sent = orjson.loads(body) if body else None
        if sent and moved:   # a value a merge placed once stands for every field that sent it
            elsewhere = {str(p.get("value")) for p in places if str(p.get("field")) in moved}
            moved |= {k for k, v in sent.items() if isinstance(v, str) and v in elsewhere}
        out.append(Done(sid, str(tid), action, sent, moved, grew))
    return out


# ---- the bill ------------------------------------------------------------------------------
def target_side(job: Any, target: Any, latency: float | None) -> Side:
    limit = target.rate_limit()
    return Side(role="target", system=target.system, title=target.title or target.system,
                limit=[limit.requests, limit.per] if limit else None,
                latency=float(latency if latency is not None else type(target).typical_latency),
                concurrency=job.concurrency)


def eta(side: Side, verdicts: list[StreamVerdict], sequential: dict[str, bool]) -> float:
    """Reads one after another (a cursor) wait each for its answer; the others overlap.
    Parsing and comparing each record adds ``COMPARE_SECONDS``: when the window lets a
    read finish in a second (20,000 Spark contacts: 803 pages, 1.0 s of requests), that
    local work took as long again (2.1 s in all, 2026-12-06)."""
    total = 0.0
    for v in verdicts:
        n = sum(v.planned.values())
        total += side.one_by_one(n) if sequential.get(v.stream) else side.seconds(v.planned, setup=False)
        total += v.records * COMPARE_SECONDS if v.how != "none" else 0.0
    return total


def bill_lines(outcome: VerifyOutcome, side: Side, quota: Any) -> list[str]:
    lines = [f"verify {outcome.job}: read back from {side.title}"]
    for v in outcome.streams:
        if v.how == "none":
            lines.append(f"  {v.stream} → {v.target_stream}: {v.records:,} done; {v.why}")
            continue
        lines.append(f"  {v.stream} → {v.target_stream}: {v.records:,} done; {bill(v.planned)}")
        lines.append(f"    {v.why}")
    total = sum(outcome.planned.values())
    lines.append(f"  {side.title}: {bill(outcome.planned)}; pace: {side.describe_pace()}")
    if quota is not None:
        left = quota.remaining if quota.remaining is not None else quota.limit
        fits = "fits" if total <= left else f"does NOT fit: {total - left:,} requests over; verify will wait"
        known = f", {quota.remaining:,} left today" if quota.remaining is not None else ""
        lines.append(f"  daily quota {quota.limit:,}{known}: {fits}")
    lines.append(f"  ETA: {duration(outcome.eta_seconds)}")
    return lines


# ---- verifying -------------------------------------------------------------------------------
class _Stream:
    """Comparing one stream's records as the target's copies arrive."""

    def __init__(self, verdict: StreamVerdict, records: list[Done], target: Any, keys: tuple[str, ...],
                 on_merge: str, counts: Counter, bar: Any, partial: bool = False):
        self.v, self.target, self.keys, self.on_merge = verdict, target, keys, on_merge
        self.partial = partial   # the list shows only some records: one it lacks is unchecked
        self.counts, self.bar = counts, bar
        self.by_target: dict[str, list[Done]] = {}
        self.grew: dict[str, set[str]] = {}   # target id -> fields merges appended to
        for r in records:
            self.by_target.setdefault(r.target_id, []).append(r)
            if r.grew:
                self.grew.setdefault(r.target_id, set()).update(r.grew)
        self.job_keys: dict[str, list[str]] = {}   # natural key -> source ids of this job
        for r in records:
            for _, key in keys_of(r.body or {}, keys):
                self.job_keys.setdefault(key, []).append(r.source_id)
        self.held_keys: list[tuple[str, str]] = []
        self.seen: set[str] = set()

    def form(self, name: str, value: Any) -> Any:
        return self.target.comparable(self.v.target_stream, name, value)

    def held(self, tid: str, record: dict[str, Any] | None, *, listed: bool) -> None:
        if listed:   # every record the target holds: its keys show what is held twice
            self.held_keys += [(key, tid) for _, key in keys_of(record or {}, self.keys) if key in self.job_keys]
        mine = self.by_target.get(tid)
        if not mine or tid in self.seen:
            return
        self.seen.add(tid)
        for r in mine:
            self._one(r, record)

    def _one(self, r: Done, record: dict[str, Any] | None) -> None:
        v, counts = self.v, self.counts
        if record is None:
            v.missing.append({"source_id": r.source_id, "target_id": r.target_id})
            counts["missing"] += 1
        else:
            if r.body is None or (r.action == "matched" and self.on_merge == "skip" and not r.placed):
                v.existence_only += 1
                found: list[Drift] = []
            else:
                found = drifts(r.body, record, self.form, r.placed, self.grew.get(r.target_id, ()))
            if found:
                v.drifted += 1
                counts["drift"] += 1
                v.drift += [{"source_id": r.source_id, "target_id": r.target_id, "field": d.field,
                             "sent": shown(d.sent), "held": shown(d.held)} for d in found]
            else:
                v.equal += 1
                counts["equal"] += 1
            if not self.v.how == "list":
                self.held_keys += [(key, r.target_id) for _, key in keys_of(record, self.keys)
                                   if key in self.job_keys]
        counts["checked"] += 1
        self.bar.update(1)

    def finish(self) -> None:
        for tid, mine in self.by_target.items():
            if tid in self.seen:
                continue
            self.seen.add(tid)
            if self.partial:   # not in a list that shows only some: unseen, not missing
                self.v.unchecked += len(mine)
                self.counts["unchecked"] += len(mine)
                self.bar.update(len(mine))
                continue
            for r in mine:   # the whole list was read and it was not there
                self._one(r, None)
        for key, tids in sorted(held_twice(self.held_keys).items()):
            self.v.twice.append({"key": key, "target_ids": sorted(tids),
                                 "source_ids": sorted(set(self.job_keys.get(key, ())))})


async def verify(job: Any, source_ids: Iterable[str] | Mapping[str, Iterable[str]] | None = None, *, progress: bool | None = None,
                 out: Callable[[str], None] | None = None, latency: float | None = None,
                 target: Any = None) -> VerifyOutcome:
    """Verify the job's done records (or only ``source_ids``, flat or by stream, e.g. a
    run's sample) against
    what the target holds. Prints the bill through ``out`` before the first read-back."""
    say = out or (lambda line: print(line, file=sys.stderr))
    enabled = sys.stderr.isatty() if progress is None else progress
    wanted: Any = (source_ids if isinstance(source_ids, Mapping) else
                   list(source_ids) if source_ids is not None else None)

    def ids_of(stream: str) -> list[str] | None:
        return list(wanted.get(stream, ())) if isinstance(wanted, Mapping) else wanted

    def load() -> list[tuple[Any, list[Done]]]:
        conn = read_only(job.checkpoint)
        try:
            return [(sm, done_records(conn, sm.name, ids_of(sm.name))) for sm in job.mapping.streams.values()]
        finally:
            conn.close()

    work = await anyio.to_thread.run_sync(load)
    target = target if target is not None else job.connector("target")
    outcome = VerifyOutcome(job.name, target.system, [], time.time())
    side = target_side(job, target, latency)
    sequential: dict[str, bool] = {}
    await target.open()
    try:
        plans = []
        for sm, records in work:
            v = StreamVerdict(sm.name, sm.target_stream, records=len(records))
            outcome.streams.append(v)
            if not records:
                v.why = "nothing done to verify"
                plans.append(None)
                continue
            how = await target.plan_read_back(sm.target_stream, len(records))
            v.how, v.why, v.planned = how.how, how.why, dict(how.requests)
            sequential[sm.name] = how.sequential
            plans.append(how)
        planned: Counter[str] = Counter()
        for v in outcome.streams:
            planned.update(v.planned)
        outcome.planned = {k: n for k, n in planned.items() if n}
        outcome.eta_seconds = eta(side, outcome.streams, sequential)
        quota = None
        try:
            quota = await target.quota(probe=False)
        except Exception:   # the bill never stops verify
            quota = None
        for line in bill_lines(outcome, side, quota):
            say(line)
        for (sm, records), v, how in zip(work, outcome.streams, plans):
            if how is None:
                continue
            if how.how == "none":
                v.unchecked = len(records)
                continue
            counts: Counter[str] = Counter()
            fields = frozenset(k for r in records if r.body for k in r.body)
            with open_bar("verify", sm.name, len(records), counts, enabled) as bar:
                s = _Stream(v, records, target, target.natural_keys(sm.target_stream), job.on_merge, counts, bar,
                            partial=how.partial)
                ids = list(s.by_target)
                async for tid, record in target.read_back(sm.target_stream, ids, how, fields):
                    s.held(tid, record, listed=how.how == "list")
                s.finish()
    except (KeyboardInterrupt, anyio.get_cancelled_exc_class()):
        outcome.interrupted = True
        raise
    finally:
        with anyio.CancelScope(shield=True):
            outcome.requests = dict(target.request_stats().get("requests") or {})
            await target.close()
        outcome.ended = time.time()
    return outcome


def verify_job(job: Any, source_ids: Iterable[str] | Mapping[str, Iterable[str]] | None = None, **kwargs: Any) -> VerifyOutcome:
    """``verify`` from synchronous code (the CLI, a workflow's ``run --sample N``)."""
    return anyio.run(lambda: verify(job, source_ids, **kwargs))
