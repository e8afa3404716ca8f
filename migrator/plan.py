"""The plan: what a run will spend, by system and request kind, how long it will take,
and whether it fits in a daily quota — known before the run starts.

Where the numbers come from. ``validate`` reads, maps and validates the whole source
(the same reading a run does), so it knows every stream's exact record count, and it
hands each valid mapped record to the target's ``WritePlanner`` (``feed``), which counts
what writing it costs: creates, children such as notes and tags, lookups. The source's
side comes from ``plan_reads`` (pages, detail fan-out) given the count read, and each
connector adds what it spends once per run (``plan_setup``: logins, name lists). The
plan is kept beside the reports (``<job>-plan.json``, 0600) under the job id and the
mapping digest, so ``run`` can check the quota before it starts and its report can set
planned beside actual requests.

The ETA, and why. Each system's requests wait on its limiter, which lets a request go
whenever the vendor's sliding window has room (``limits.py``): the window's N at once,
then the next N one window (``per`` plus a margin) later. At most ``concurrency`` are in
flight, each taking ``latency``. So one side of one stream takes the longer of

    full windows × (per + margin)                      (the window binds: every N beyond
        + the last window's requests × latency / concurrency      the first wait a window)
    setup × latency + sequential × latency             (one after another: logins,
        + (requests − sequential) × latency / concurrency   cursor pages; the rest overlap)

A job that fits in one window is therefore planned at its latency bound.

Reading and writing overlap page by page (the engine reads ahead of its writers), so a
stream takes the longer of "read everything, then write the last page" and "read the
first page, then write everything" — a Realvolve page of 1,000 contacts with their
details is a long wait before the first write. The target prepares first (a login, an
index of its contacts read page after page), and streams run one after another, so
those times add up. What is not modelled: the server refusing
records (a refused create still costs its request; its children are then not sent),
429s and retries, local CPU, and a token expiring mid-run. A plan made by ``run``
without an earlier ``validate`` is an estimate — one create per record and no children —
and says so.
"""
from __future__ import annotations

import math
import textwrap
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Mapping

import anyio
import orjson

from .limits import RateLimit, window_margin
from .private import private_open
from .timeparse import utc_time
from .mapping import Ref

KIND_ORDER = ("auth", "probe", "meta", "page", "detail", "index", "lookup", "create", "fill", "update", "note",
              "tags", "relation")
PRE_KINDS = ("index",)   # target reads made before any write (REI's contact index, in prepare)
NO_PLAN = "no plan (run `migrator validate` first)"
PROBE_SECONDS = 10.0   # a quota probe that takes longer is given up: the plan goes without it
VERSION = 1
WIDTH = 80   # the plan and the comparison are read in a terminal: short lines


def _wrap(text: str, indent: str, more: str | None = None) -> list[str]:
    """A line broken between words to fit WIDTH, continued ``more`` (two deeper)."""
    return textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=more or indent + "  ",
                         break_long_words=False, break_on_hyphens=False) or [indent.rstrip()]


# ---- the model ---------------------------------------------------------------------
def effective_rate(limit: RateLimit | None) -> float | None:
    """Requests per second the limiter admits over many windows: N per ``per`` plus a margin."""
    if limit is None:
        return None
    return limit.requests / (limit.per + window_margin(limit.per))


def window_seconds(requests: int, limit: RateLimit | None, latency: float, concurrency: int) -> float:
    """When the last of ``requests`` is answered if only the window held them back: each
    window's N go as fast as latency and concurrency allow, the next N a window later."""
    if limit is None or requests <= 0:
        return 0.0
    full = (requests - 1) // limit.requests
    last = requests - full * limit.requests
    return full * (limit.per + window_margin(limit.per)) + last * latency / max(1, concurrency)


def side_seconds(requests: int, *, sequential: int = 0, setup: int = 0, limit: RateLimit | None,
                 latency: float, concurrency: int) -> float:
    """Time one system spends on ``setup + requests`` requests: the slower of the window
    bound and the latency bound (see the module docstring)."""
    total = setup + requests
    if total <= 0:
        return 0.0
    by_window = window_seconds(total, limit, latency, concurrency)
    parallel = max(0, requests - sequential)
    by_latency = (setup + sequential) * latency + parallel * latency / max(1, concurrency)
    return max(by_window, by_latency)


def order_kinds(kinds: Iterable[str]) -> list[str]:
    return sorted(set(kinds), key=lambda k: (KIND_ORDER.index(k) if k in KIND_ORDER else len(KIND_ORDER), k))


def bill(counts: Mapping[str, int]) -> str:
    """``page 3, detail 200 = 203 requests``"""
    kinds = [k for k in order_kinds(counts) if counts[k]]
    if not kinds:
        return "no requests"
    total = sum(counts[k] for k in kinds)
    return ", ".join(f"{k} {counts[k]:,}" for k in kinds) + f" = {total:,} request{'s' if total != 1 else ''}"


def duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3 h 5 min``: an ETA as a person reads it."""
    s = max(0, round(seconds))
    if s < 120:
        return f"{s} s"
    m = round(s / 60)
    if m < 120:
        return f"{m} min"
    h, m = divmod(m, 60)
    return f"{h} h {m} min" if m else f"{h} h"


@dataclass
class Side:
    """One system in one role, with what the ETA and the quota check need."""

    role: str                       # source | target
    system: str
    title: str
    limit: list[float] | None       # [requests, per seconds], as configured
    latency: float
    concurrency: int
    setup: dict[str, int] = field(default_factory=dict)
    sequential: list[str] = field(default_factory=list)  # read kinds that cannot overlap
    quota_limit: int | None = None
    quota_remaining: int | None = None

    @property
    def window(self) -> RateLimit | None:
        return RateLimit(int(self.limit[0]), self.limit[1]) if self.limit else None

    @property
    def rate(self) -> float | None:
        return effective_rate(self.window)

    def seconds(self, counts: Mapping[str, int], setup: bool) -> float:
        seq = sum(n for k, n in counts.items() if k in self.sequential) if self.role == "source" else 0
        return side_seconds(sum(counts.values()), sequential=seq,
                            setup=sum(self.setup.values()) if setup else 0, limit=self.window,
                            latency=self.latency, concurrency=self.concurrency)

    def one_by_one(self, requests: int) -> float:
        """Requests sent one after another: each waits for its answer, and for the window."""
        return max(requests * self.latency, window_seconds(requests, self.window, self.latency, 1))

    def describe_pace(self) -> str:
        limit = f"{RateLimit(int(self.limit[0]), self.limit[1])}" if self.limit else "no rate limit"
        return f"{limit}, {self.latency:g} s a request, {self.concurrency} at a time"


@dataclass
class StreamPlan:
    stream: str
    source_stream: str
    target_stream: str
    read: int | None
    valid: int | None
    source: dict[str, int]
    target: dict[str, int]
    dedup: str = ""
    pages: int = 1                  # the source pages the records arrive in
    seconds: float = 0.0
    # a delta (validate --since): of the valid records, those it writes onto the record an
    # earlier run migrated; and those an earlier run migrated that it leaves as they are
    updates: int | None = None
    left: int = 0


@dataclass
class Plan:
    job: str
    job_id: str
    mapping_digest: str
    basis: str                      # "validate" (exact counts) | "estimate"
    created: float
    source: Side
    target: Side
    streams: list[StreamPlan]
    eta_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    version: int = VERSION
    since: str | None = None        # a delta's plan: what changed since then (UTC, ISO 8601)
    sample: int | None = None       # a trial's share of the plan (run --sample N); never stored

    # -- totals ------------------------------------------------------------------
    def requests(self, role: str) -> dict[str, int]:
        side = self.source if role == "source" else self.target
        total: Counter[str] = Counter(side.setup)
        for s in self.streams:
            total.update(s.source if role == "source" else s.target)
        return {k: n for k, n in total.items() if n}

    def total(self, role: str) -> int:
        return sum(self.requests(role).values())

    def compute_eta(self) -> float:
        """The target's preparation (its once-per-run requests and index reads) comes
        first, one request after another; then the streams, one after another. Within a
        stream reading and writing overlap page by page, so it takes the longer of: all
        the reading and then the last page's writes, or the first page's reading and then
        all the writing."""
        pre = sum(self.target.setup.values()) + sum(
            n for s in self.streams for k, n in s.target.items() if k in PRE_KINDS)
        eta = self.target.one_by_one(pre)
        for i, s in enumerate(self.streams):
            src = self.source.seconds(s.source, setup=i == 0)
            tgt = self.target.seconds({k: n for k, n in s.target.items() if k not in PRE_KINDS}, setup=False)
            pages = max(1, s.pages)
            s.seconds = max(src + tgt / pages, src / pages + tgt)
            eta += s.seconds
        # One window per system holds all of its requests, whatever stage sends them: the
        # target's preparation and its writes share it (203 REI requests are three windows
        # of 100, not one of 3 and then two of 100).
        for side in (self.source, self.target):
            eta = max(eta, window_seconds(self.total(side.role), side.window, side.latency, side.concurrency))
        self.eta_seconds = eta
        return eta

    # -- the quota -----------------------------------------------------------------
    def shortfalls(self) -> list[tuple[Side, int, int]]:
        """``(side, requests needed, days of waiting)`` for each daily quota this plan does
        not fit in: what is left today, then a whole quota a day. Each side has its own
        key (two REI locations are two keys)."""
        out = []
        for side in (self.source, self.target):
            if not side.quota_limit:
                continue
            needed = self.total(side.role)
            left = side.quota_remaining if side.quota_remaining is not None else side.quota_limit
            if needed > left:
                out.append((side, needed, math.ceil((needed - left) / side.quota_limit)))
        return out

    def quota_problems(self) -> list[str]:
        """One line, with the numbers, per daily quota this plan does not fit in."""
        out = []
        for side, needed, days in self.shortfalls():
            today = (f"{side.quota_remaining:,} remaining today" if side.quota_remaining is not None
                     else "what remains today is not known")
            est = " (an estimate)" if self.basis == "estimate" else ""
            out.append(f"{side.title}: the plan needs {needed:,} requests{est}; the key's daily quota is "
                       f"{side.quota_limit:,} ({today}): the run will wait for the quota to reset "
                       f"(about {days} day{'s' if days != 1 else ''}) — or use --stop-at-quota")
        return out

    # -- words ---------------------------------------------------------------------
    def render(self) -> str:
        """The plan in short lines (at most WIDTH, but for a quota problem, one line to grep):
        per stream its counts and each side's requests; per system its total, what it
        spends once, its pace and its quota; the ETA."""
        src, tgt = self.source, self.target
        basis = ("exact record counts from validate" if self.basis == "validate" else
                 "an estimate: one create per record, no children — run `migrator validate` for exact counts")
        what = (f"the delta since {self.since}" if self.since else
                f"a trial of {self.sample:,} records a stream" if self.sample else self.job)
        lines = _wrap(f"plan for {what}: {src.system} → {tgt.system} ({basis})", "")
        for s in self.streams:
            counts = (f"{s.read:,} read, {s.valid:,} valid" if s.valid is not None else
                      f"{s.read:,} records" if s.read is not None else "record count unknown")
            if s.updates is not None and s.valid is not None:
                counts += f" ({s.updates:,} to update, {s.valid - s.updates:,} to create)"
                if s.left:
                    counts += f", {s.left:,} migrated before and left as they are"
            lines += _wrap(f"{s.stream} → {s.target_stream}: {counts}; about {duration(s.seconds)}", "  ")
            lines += _wrap(f"{src.system} (source): {bill(s.source)}", "    ")
            lines += _wrap(f"{tgt.system} (target): {bill(s.target)}", "    ")
            if s.dedup:
                lines += _wrap(f"dedup: {s.dedup}", "    ")
        for side in (src, tgt):
            if not self.total(side.role):
                lines.append(f"  {side.title} ({side.role}): no requests")
                continue
            lines += _wrap(f"{side.title} ({side.role}): {bill(self.requests(side.role))}", "  ")
            if sum(side.setup.values()):
                lines += _wrap(f"once per run: {bill(side.setup)}", "    ")
            lines += _wrap(f"pace: {side.describe_pace()}", "    ")
            if side.quota_limit:
                left = f", {side.quota_remaining:,} left today" if side.quota_remaining is not None else ""
                lines += _wrap(f"daily quota {side.quota_limit:,}{left}", "    ")
        wait = max((days for _, _, days in self.shortfalls()), default=0)
        plus = f", plus about {wait} day{'s' if wait != 1 else ''} waiting for the daily quota" if wait else ""
        lines += _wrap(f"ETA: {duration(self.eta_seconds)}{plus} (reading and writing overlap: "
                       "the slower side sets the pace)", "  ")
        for n in self.notes:
            lines += _wrap(f"note: {n}", "  ")
        lines += [f"  {p}" for p in self.quota_problems()]
        return "\n".join(lines)

    # -- storage -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["requests"] = {"source": self.requests("source"), "target": self.requests("target")}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Plan":
        d = dict(d)
        d.pop("requests", None)
        d["source"], d["target"] = Side(**d["source"]), Side(**d["target"])
        d["streams"] = [StreamPlan(**s) for s in d["streams"]]
        return cls(**d)


# ---- building one ------------------------------------------------------------------
class Planners(dict):
    """Stream -> the target's ``WritePlanner``, and the valid source ids of each stream
    another links to: a record whose link points at a record that will not be migrated
    fails before any request in the run, so it is not counted."""

    def __init__(self, planners: Mapping[str, Any], linked: Iterable[str] = (), notes: Iterable[str] = ()):
        super().__init__(planners)
        self.valid_ids: dict[str, set[str]] = {s: set() for s in linked}
        self.notes = list(notes)
        self.seen: Counter[str] = Counter()   # records handed over, per stream (a self-check)


def feed(planners: Mapping[str, Any] | None, stream: str,
         records: Iterable[tuple[str, dict[str, Any], bool]]) -> None:
    """The engine's hook in ``validate``: each valid mapped record of ``stream`` as
    ``(source_id, record, update)``, in source order; ``update``: a delta writes it onto
    the record an earlier run migrated (``validate --since``)."""
    planner = planners.get(stream) if planners else None
    if planner is None:
        return
    ids: dict[str, set[str]] = getattr(planners, "valid_ids", {})
    seen: Counter[str] | None = getattr(planners, "seen", None)
    own = ids.get(stream)
    for sid, record, update in records:
        if seen is not None:
            seen[stream] += 1
        if ids and any(isinstance(v, Ref) and v.stream in ids and v.source_id not in ids[v.stream]
                       for v in record.values()):
            continue
        if own is not None:
            own.add(sid)
        if update:
            planner.update(record)
        else:
            planner.add(record)


async def make_planners(job, target) -> Planners:
    """One planner per stream. A planner may ask the target something (how many records
    it holds, to choose how to dedup); if the target cannot answer, validate still runs
    and the plan counts one create per record, and says so."""
    from .connectors.base import WritePlanner
    streams = list(job.mapping.streams.values())
    linked = {s for sm in streams for s in (getattr(sm, "refs", None) or {}).values()}
    planners: dict[str, Any] = {}
    notes: list[str] = []
    for sm in streams:
        planner = None
        with anyio.move_on_after(PROBE_SECONDS):
            try:
                planner = await target.write_planner(sm.target_stream, sm)
            except Exception as e:  # validate must not depend on reaching the target
                notes.append(f"{sm.name}: {target.system} could not be asked how it will dedup "
                             f"({str(e).splitlines()[0] if str(e) else type(e).__name__}); one create per record is assumed")
        if planner is None:
            if not notes or not notes[-1].startswith(f"{sm.name}:"):
                notes.append(f"{sm.name}: {target.system} did not answer in time; one create per record is assumed")
            planner = WritePlanner()
        planners[sm.name] = planner
    return Planners(planners, linked, notes)


def _side(role: str, conn, job, latency: float | None) -> Side:
    limit = conn.rate_limit()
    streams = [sm.source_stream if role == "source" else sm.target_stream for sm in job.mapping.streams.values()]
    return Side(role=role, system=conn.system, title=conn.title or conn.system,
                limit=[limit.requests, limit.per] if limit else None,
                latency=float(latency if latency is not None else type(conn).typical_latency),
                concurrency=job.concurrency,
                setup={k: n for k, n in {**probe_setup(conn), **conn.plan_setup(role, list(dict.fromkeys(streams)))}.items()
                       if n},
                sequential=list(type(conn).sequential_reads) if role == "source" else [])


def build_plan(job, source, target, outcome, planners: Mapping[str, Any],
               latency: float | None = None, since: str | None = None) -> Plan:
    """The plan from a finished ``validate``: its record counts and its fed planners;
    with ``since``, of the delta from that time (``validate --since``)."""
    results = {r.stream: r for r in outcome.streams}
    streams = []
    notes = list(getattr(planners, "notes", ()))
    for sm in job.mapping.streams.values():
        r = results.get(sm.name)
        read = r.counts.get("read", 0) if r is not None else 0
        valid = r.counts.get("valid", 0) if r is not None else 0
        planner = planners.get(sm.name)
        seen = getattr(planners, "seen", None)
        if seen is not None and seen[sm.name] < valid:
            notes.append(f"{sm.name}: the target's planner saw {seen[sm.name]:,} of the {valid:,} valid "
                         "records, so its request counts are short (the engine did not feed the plan)")
        streams.append(StreamPlan(
            sm.name, sm.source_stream, sm.target_stream, read, valid,
            {k: n for k, n in source.plan_reads(sm.source_stream, read).items() if n},
            {k: n for k, n in (planner.requests() if planner else {}).items() if n},
            dedup=getattr(planner, "dedup", "") or "", pages=source.plan_pages(sm.source_stream, read),
            updates=r.counts.get("to_update", 0) if since and r is not None else None,
            left=(r.counts.get("already_settled", 0) + r.counts.get("not_updatable", 0)) if r is not None else 0))
    plan = Plan(job.name, job.job_id, job.mapping.digest, "validate", time.time(),
                _side("source", source, job, latency), _side("target", target, job, latency), streams,
                notes=notes, since=since_key(since) if since else None)
    plan.compute_eta()
    return plan


async def estimate_plan(job, source, target, latency: float | None = None) -> Plan | None:
    """A plan without a validate pass: the source's own totals (``info``, which the run
    reads anyway — most sources keep that page), ``plan_reads``, and one create per
    record. ``None`` when the source does not say how many records it holds."""
    streams = []
    for sm in job.mapping.streams.values():
        total = (await source.info(sm.source_stream)).total
        if total is None:
            return None
        streams.append(StreamPlan(sm.name, sm.source_stream, sm.target_stream, total, None,
                                  {k: n for k, n in source.plan_reads(sm.source_stream, total).items() if n},
                                  {"create": total} if total else {},
                                  pages=source.plan_pages(sm.source_stream, total)))
    plan = Plan(job.name, job.job_id, job.mapping.digest, "estimate", time.time(),
                _side("source", source, job, latency), _side("target", target, job, latency), streams)
    plan.compute_eta()
    return plan


async def probe_quotas(plan: Plan, source, target, *, probe: bool = True) -> None:
    """Fill in each side's daily quota and what is left today. The probe is one cheap
    request at most, given up after PROBE_SECONDS or on any error: the plan then
    compares with the whole daily quota."""
    for side, conn in ((plan.source, source), (plan.target, target)):
        quota = None
        if probe:
            with anyio.move_on_after(PROBE_SECONDS):
                try:
                    quota = await conn.quota(probe=True)
                except Exception:  # a plan never fails a run: the run meets the error itself
                    quota = None
        if quota is None:
            quota = await conn.quota(probe=False)
        if quota is not None:
            side.quota_limit, side.quota_remaining = quota.limit, quota.remaining


def probe_setup(conn) -> dict[str, int]:
    """The plan counts the check request each side makes before a run (``probe``)."""
    return {"probe": 1} if getattr(type(conn), "probe_request", None) else {}


async def probe_access(job, source, target) -> None:
    """Before anything is read: the target, then the source, make their cheapest
    authenticated request (a file: is it readable, can its folder be written), so that a
    refused key, an unreachable host or a base_url that is not the vendor's API stops
    ``validate`` as it would stop ``run`` — one line, exit 2."""
    streams = list(job.mapping.streams.values())
    await target.check_access(list(dict.fromkeys(sm.target_stream for sm in streams)))
    await source.check_access(list(dict.fromkeys(sm.source_stream for sm in streams)))


async def validate_with_plan(engine, latency: float | None = None):
    """Run ``validate`` with the target's planners fed, then make the plan."""
    job, source, target = engine.job, engine.source, engine.target
    try:
        await probe_access(job, source, target)
        planners = await make_planners(job, target)
        engine.planners = planners
        outcome = await engine.run()
        if outcome.interrupted or outcome.stopped_reason:
            return outcome, None
        plan = build_plan(job, source, target, outcome, planners, latency, engine.since)
        await probe_quotas(plan, source, target)
    finally:
        with anyio.CancelScope(shield=True):
            await source.close()
            await target.close()
    return outcome, plan


async def before_run(job, source, target, out: Callable[[str], None],
                     latency: float | None = None, since: str | None = None,
                     sample: int | None = None) -> Plan | None:
    """Before ``run`` writes anything: the plan the last ``validate`` stored for this job
    and mapping (else, when a system has a daily quota, an estimate), and a line for
    each quota it does not fit in. Requests spent here are ones the run spends anyway
    (kept pages, REI's custom-field list), except Realvolve's ``info``, which it repeats.
    A delta (``since``) has only the plan ``validate --since`` made of it: an estimate
    from the source's totals would count the whole migration, not what changed. A trial
    (``sample``) prints its share of the plan (``trial_plan``)."""
    plan = load_plan(job, since)
    if since and plan is None:
        out(f"plan: {no_plan(since)}")
        return None
    expected = getattr(target, "expected_records", None)
    if plan is not None and plan.basis == "validate" and isinstance(expected, dict):
        # A target that chooses how to dedup by the record count chooses as the plan did:
        # by the records that will be matched — a delta's updates go by their target id.
        for s in plan.streams:
            expected[s.target_stream] = expected.get(s.target_stream, 0) + (s.valid or 0) - (s.updates or 0)
    quotas = [await source.quota(), await target.quota()]
    if plan is None and not any(quotas):
        return None
    try:
        if plan is None:
            with anyio.move_on_after(PROBE_SECONDS * 3):
                plan = await estimate_plan(job, source, target, latency)
            if plan is None:  # the source does not say how many: only validate can tell
                return None
        await probe_quotas(plan, source, target)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await source.close()
            await target.close()
        raise
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(plan.created))
    made = f"validate at {when}" if plan.basis == "validate" else "an estimate"
    if since:
        made += f", of the delta since {plan.since}"
    if sample:
        plan = trial_plan(plan, sample, source)
        made += f", a trial of {sample:,} records a stream"
    out(f"plan ({made}): {plan.source.system} {plan.total('source'):,} requests, "
        f"{plan.target.system} {plan.total('target'):,} requests; ETA {duration(plan.eta_seconds)}")
    for problem in plan.quota_problems():
        out(problem)
    return plan


def trial_plan(plan: Plan, n: int, source) -> Plan:
    """``run --sample N``: the share of the whole migration's plan that a trial of N
    records a stream spends. Its writes are the plan's, scaled by N over the stream's
    valid records (rounded up; the target's index is read whole all the same); it lists
    the whole source, since its records are spread over it, and fetches what each record
    costs (Realvolve's detail) for its own records only where the source picks before it
    fetches — else for every record it lists."""
    streams = []
    for s in plan.streams:
        records = s.valid if s.valid is not None else s.read
        share = min(1.0, n / records) if records else 1.0
        target = {k: v if k in PRE_KINDS else math.ceil(v * share) for k, v in s.target.items()}
        reads = dict(s.source)
        if source.picks_before_fetch(s.source_stream) and s.read:
            own = source.plan_reads(s.source_stream, min(n, s.read))
            reads = {k: v if k == "page" else own.get(k, 0) for k, v in reads.items()}
        streams.append(StreamPlan(s.stream, s.source_stream, s.target_stream, s.read,
                                  min(n, records) if records is not None else None, reads,
                                  {k: v for k, v in target.items() if v}, dedup=s.dedup, pages=s.pages))
    trial = Plan(plan.job, plan.job_id, plan.mapping_digest, plan.basis, plan.created, plan.source, plan.target,
                 streams, notes=list(plan.notes), sample=n)
    trial.compute_eta()
    return trial


# ---- keeping it --------------------------------------------------------------------
def since_key(since: str) -> str:
    """``--since`` as one spelling (UTC, to the second): ``2026-12-01`` and
    ``2026-12-01T00:00Z`` name the same delta and so the same plan."""
    return utc_time(since).strftime("%Y-%m-%dT%H:%M:%SZ")


def plan_path(job, since: str | None = None):
    """The whole migration's plan, or a delta's (one file per ``--since`` time): a delta's
    plan never takes the place of the full one."""
    if not since:
        return job.reports / f"{job.name}-plan.json"
    return job.reports / f"{job.name}-plan-since-{since_key(since).replace(':', '')}.json"


def save_plan(job, plan: Plan) -> None:
    with private_open(plan_path(job, plan.since), "wb") as fh:
        fh.truncate(0)
        fh.write(orjson.dumps(plan.to_dict(), option=orjson.OPT_INDENT_2))


def load_plan(job, since: str | None = None) -> Plan | None:
    """The stored plan, if it was made for this job and this mapping (and this delta)."""
    try:
        d = orjson.loads(plan_path(job, since).read_bytes())
        if d.get("version") != VERSION or d.get("job_id") != job.job_id or \
                d.get("mapping_digest") != job.mapping.digest or \
                d.get("since") != (since_key(since) if since else None):
            return None
        return Plan.from_dict(d)
    except (OSError, ValueError, TypeError, KeyError, OverflowError):
        return None


def no_plan(since: str | None = None) -> str:
    if not since:
        return NO_PLAN
    return (f"none for this delta (run `migrator validate JOB --since {since}` first; the stored "
            "plan counts the whole migration)")


# ---- after the run -------------------------------------------------------------------
def planned_vs_actual(plan: Plan | None, outcome, since: str | None = None) -> dict[str, Any]:
    """For the run's report: per system, each kind's planned and actual requests."""
    if plan is None:
        return {"note": no_plan(since)}
    actual = {"source": (outcome.source_requests or {}).get("requests") or {},
              "target": (outcome.target_requests or {}).get("requests") or {}}
    # A run that resumes an earlier one spends only what was left: say so beside the numbers.
    resumed = any(s.counts.get("already_settled") or s.counts.get("stream_already_finished")
                  for s in getattr(outcome, "streams", ()))
    out: dict[str, Any] = {"basis": plan.basis, "made": plan.created,
                           "eta_seconds": round(plan.eta_seconds, 3),
                           "seconds": round(outcome.ended - outcome.started, 3), "resumed": resumed,
                           "requests": {}}
    for role in ("source", "target"):
        planned = plan.requests(role)
        system = (plan.source if role == "source" else plan.target).system
        out["requests"][role] = {"system": system, "kinds": kinds_beside(planned, actual[role])}
    return out


def kinds_beside(planned: Mapping[str, int], actual: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """Each request kind's planned and actual count, in the plan's order of kinds."""
    return {k: {"planned": planned.get(k, 0), "actual": int(actual.get(k, 0))}
            for k in order_kinds([*planned, *actual])}


def comparison_lines(section: Mapping[str, Any] | None) -> list[str]:
    """The terminal summary's lines for a report's ``plan`` section, in short lines (the
    summary indents them by two). A kind the target reads before every run's first
    write (its index) is read again by a resumed run, now holding what the earlier run
    wrote: that is said in words beside the numbers, not left as a puzzle."""
    if not section:
        return []
    if "note" in section:
        return [f"plan: {section['note']}"]
    width = WIDTH - 2
    lines = []
    resumed = bool(section.get("resumed"))
    for role in ("source", "target"):
        side = section["requests"].get(role)   # an undo has only its target
        kinds = side["kinds"] if side else None
        if not kinds:
            continue
        parts = ", ".join(f"{k} {v['planned']:,} → {v['actual']:,}" for k, v in kinds.items())
        lines.append(f"requests planned → actual, {side['system']} ({role}):")
        lines += textwrap.wrap(parts, width, initial_indent="  ", subsequent_indent="  ",
                               break_long_words=False, break_on_hyphens=False)
        if role == "target":
            for k in PRE_KINDS:
                v = kinds.get(k)
                if v and v["actual"] != v["planned"]:
                    why = (f"{k} {v['planned']:,} → {v['actual']:,}: every run first reads the records "
                           "the target holds, to match against them; "
                           + ("this run resumed, so it read them again, with what the earlier run wrote"
                              if resumed else "the target held more or fewer records than when the plan "
                              "was made"))
                    lines += textwrap.wrap(why, width, initial_indent="  ", subsequent_indent="    ",
                                           break_long_words=False, break_on_hyphens=False)
    time_line = (f"time: planned {duration(section['eta_seconds'])}, took {duration(section['seconds'])}"
                 + (" (the plan was an estimate)" if section.get("basis") == "estimate" else "")
                 + ("; this run resumed an earlier one, so it spent only what was left of the plan"
                    if resumed else ""))
    lines += textwrap.wrap(time_line, width, subsequent_indent="  ", break_long_words=False,
                           break_on_hyphens=False)
    return lines
