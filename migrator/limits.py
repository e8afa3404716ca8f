"""Client-side rate limiting that spends exactly what a vendor's sliding window allows.

Vendors count "N requests in any T seconds" — a sliding window, counted from when each
request reaches them. A client inside that rule may send a burst of N at once, then one
request each time the oldest of the last N leaves the window; pacing at the average rate
N/T instead wastes the burst, and a job smaller than one window (most Spark jobs) is then
slowed many times over. So a request goes whenever every window in force has room
(``SendLog``): the vendor's window, a stricter one a server advertises in its headers,
and any more a job or a vendor's burst rule adds. Each window is lengthened by a margin
(``window_margin``) for the jitter between the moment a request leaves and the moment it
reaches the vendor, and each send is stamped when it goes on the wire (``sent_now``), not
when its slot was granted: a busy event loop between the two must not let the request N
later reach the vendor inside the same window. Its answer moves the stamp again, to
the answer's time less the fastest round trip (``answered_in``): a burst of N reaches a
server together and queues there, and the last of it is counted from when the server got
to it, later than it left us. (A leaky bucket alone —
``aiolimiter.AsyncLimiter(N, T)`` — admits close to 2N in one window; the log never does.)

A 429 pauses every caller of the system until ``Retry-After`` has passed and lowers the
strictest window's N; it climbs back towards the ceiling as requests succeed. Headers
such as REI's ``X-RateLimit-*`` add a window, so they can only lower what is sent.

With no limit, the only ceiling is ``spread`` (the run's concurrency) requests in flight,
and nothing stopped them all leaving at once. They did: every request went out in the
same instant after a batch of answers, reached the server together, queued behind each
other there and came back together, so a 50 ms round trip took 62 ms. Such sends are now
spaced ``latency / (spread × PACE_HEADROOM)`` apart, the latency being the fastest answer
seen lately. At ``spread`` in flight the rate cannot exceed spread / latency, so the
spacing holds back only bursts, never the rate.

A spent daily quota *holds* every caller until the wall-clock time it returns (``hold``):
one wait shared by the whole system, looked at in short steps so that it follows the wall
clock across a machine's sleep and ends at once when the run is stopping (Ctrl-C).
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable

import anyio

from .errors import QuotaExhausted

HOLD_STEP = 0.2  # seconds between looks at the wall clock (and at Ctrl-C) during a hold
PACE_HEADROOM = 1.1  # unlimited sends are spaced to allow 10% more than spread / latency


@dataclass(frozen=True)
class RateLimit:
    """``requests`` per ``per`` seconds, as the vendor states it."""

    requests: int
    per: float

    @property
    def rate(self) -> float:
        return self.requests / self.per

    def __str__(self) -> str:
        per = f"{self.per:g} s"
        return f"{self.requests} requests / {per}"


def window_margin(period: float) -> float:
    """How much longer than the vendor's period our own window is: the arrival jitter a
    send may have (2% of the period, between 20 ms and 0.5 s)."""
    return min(max(0.02, 0.02 * period), 0.5)


def strictest(limits: Iterable[RateLimit | None]) -> RateLimit | None:
    """The window of the lowest average rate (the one a 429 eases and success restores)."""
    found = [w for w in limits if w is not None]
    return min(found, key=lambda w: (w.rate, w.per)) if found else None


class SendLog:
    """The sliding-window arithmetic, with no I/O and no clock of its own: when may the
    next request go so that every window holds, given the times of the last sends.

    A window (N, T) has room at ``now`` when fewer than N sends lie in the last T + margin
    seconds: when the N-th latest send is at least that old. The log stays in send order
    (``restamp`` moves a late send to the end), so that send is ``log[-N]``.
    """

    def __init__(self, windows: Iterable[RateLimit] = ()):
        self._log: deque[list[float]] = deque()   # [send time] cells, oldest first
        self.set(windows)

    def set(self, windows: Iterable[RateLimit]) -> None:
        self.windows = tuple(windows)
        self._spans = [(w.requests, w.per + window_margin(w.per)) for w in self.windows]
        self._keep = max((n for n, _ in self._spans), default=0)
        self._span = max((s for _, s in self._spans), default=0.0)

    def _prune(self, now: float) -> None:
        log = self._log
        while log and (len(log) > self._keep or log[0][0] <= now - self._span):
            log.popleft()

    def due(self, now: float) -> float:
        """The earliest time, ``now`` or later, at which every window has room."""
        self._prune(now)
        log, at = self._log, now
        for n, span in self._spans:
            if len(log) >= n:
                at = max(at, log[-n][0] + span)
        return at

    def take(self, now: float) -> list[float]:
        """Log a send at ``now``; the cell is what ``restamp`` later moves."""
        cell = [now]
        self._log.append(cell)
        return cell

    def restamp(self, cell: list[float], at: float) -> None:
        """The send of ``cell`` reached the vendor no earlier than ``at``, later than
        logged: its window starts there. A stamp only ever moves later, and the cell
        moves with it so that the log stays in time order."""
        if at <= cell[0]:
            return
        cell[0] = at
        log = self._log
        for i in range(len(log) - 1, -1, -1):
            if log[i] is cell:
                if i + 1 < len(log) and log[i + 1][0] < at:
                    del log[i]
                    j = len(log)
                    while j > i and log[j - 1][0] > at:
                        j -= 1
                    log.insert(j, cell)
                return

    def recent(self, now: float, seconds: float) -> int:
        """Sends in the last ``seconds`` (as far back as the log reaches)."""
        since = now - seconds
        return sum(1 for cell in self._log if cell[0] > since)


class Limiter:
    """One per system per run; every request to that system awaits ``acquire()``.

    ``limit`` is the vendor's window as configured; ``windows`` are more that must hold
    at the same time (a job's own lower limit, a vendor's documented burst rule)."""

    def __init__(self, limit: RateLimit | None, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, spread: int | None = None,
                 windows: Iterable[RateLimit] = ()):
        self.configured = limit
        self.extra = tuple(windows)
        self.advertised: RateLimit | None = None   # what a server's headers say
        self.spread = spread        # requests in flight at most (the run's concurrency)
        self.latency: float | None = None   # the fastest answer lately (seconds)
        self._next_send = 0.0
        self.clock = clock
        self._pause_until = 0.0
        self._log = SendLog()
        self._queued = 0            # callers waiting their turn for the window
        self._gate = anyio.Lock()   # first come, first served: one caller waits on the window
        self.ceiling = strictest((limit, *self.extra))
        self.limit = self.ceiling   # the ceiling, or lower while easing after a 429
        self._apply()
        self.sent = 0
        self.waited_429 = 0.0
        self._ok_streak = 0
        self._last_ease = float("-inf")
        self.wall = wall
        self._held_until = 0.0      # wall clock: a spent quota holds every caller until then
        self._held_reason = ""      # what a caller stopped during the hold is told
        self._held_stop = False     # the run stops rather than waits: callers raise at once
        self.stopping: Callable[[], bool] | None = None  # the run is stopping (Ctrl-C)
        self.waited_quota = 0.0

    # -- windows -----------------------------------------------------------------
    def _apply(self) -> None:
        """Every window in force: the (eased) strictest one and all the others."""
        others = [w for w in (self.configured, *self.extra, self.advertised)
                  if w is not None and w != self.ceiling]
        windows = ([self.limit] if self.limit is not None else []) + others
        self._log.set(dict.fromkeys(windows))

    @property
    def windows(self) -> tuple[RateLimit, ...]:
        return self._log.windows

    def _set(self, limit: RateLimit | None) -> None:
        self.limit = limit
        self._apply()

    def follow(self, advertised: RateLimit) -> bool:
        """Hold the window a server advertises (e.g. REI's X-RateLimit-* headers) as well
        as the configured ones: one more window can only lower what is sent. Returns True
        when the windows in force changed."""
        if advertised == self.advertised:
            return False
        before = self.windows
        self.advertised = advertised
        ceiling = strictest((self.configured, *self.extra, advertised))
        if ceiling != self.ceiling:
            self.ceiling = ceiling
            current = self.limit
            if current is None or ceiling is None or ceiling.rate < current.rate or current.per != ceiling.per:
                self.limit = ceiling
        self._apply()
        return self.windows != before

    def lower_to(self, limit: RateLimit) -> bool:
        """Lower the rate now (never above the ceiling); it climbs back as requests succeed."""
        if self.limit is not None and limit.rate >= self.limit.rate:
            return False
        self._set(limit)
        return True

    # -- pauses ------------------------------------------------------------------
    def pause(self, seconds: float) -> None:
        """Every caller waits until ``seconds`` from now (a 429's Retry-After)."""
        until = self.clock() + max(seconds, 0.0)
        if until > self._pause_until:
            self._pause_until = until

    def on_rate_limited(self, retry_after: float | None) -> None:
        """Pause every caller until ``retry_after``; then ease the rate — at most once per
        period (the 429s of one burst arrive one after another and are one event), and
        never below an eighth of the ceiling, which still finds a server limit several
        times lower than the configured one without collapsing on a passing storm."""
        self.pause(retry_after if retry_after is not None else 1.0)
        self._ok_streak = 0
        current, ceiling = self.limit, self.ceiling
        if current is None or ceiling is None:
            return
        now = self.clock()
        if now - self._last_ease < current.per:
            return
        self._last_ease = now
        floor = max(1, ceiling.requests // 8)
        eased = RateLimit(max(floor, int(current.requests * 0.8)), current.per)
        if eased.requests < current.requests:
            self._set(eased)

    def on_success(self) -> None:
        """Climb back towards the ceiling, within its period, after a window of successes."""
        ceiling, current = self.ceiling, self.limit
        if current is None or ceiling is None or current == ceiling:
            return
        self._ok_streak += 1
        if self._ok_streak >= current.requests:
            self._ok_streak = 0
            up = min(ceiling.requests, max(current.requests + 1, int(current.requests * 1.1)))
            self._set(RateLimit(up, ceiling.per))

    def recent(self, seconds: float) -> int:
        """How many of our own requests went out in the last ``seconds`` (at most the
        log's window): what a server's "remaining" count is compared with."""
        return self._log.recent(self.clock(), seconds)

    @property
    def paused_for(self) -> float:
        return max(0.0, self._pause_until - self.clock())

    def hold(self, until: float, reason: str, *, stop: bool = False) -> bool:
        """Hold every caller until the wall-clock time ``until`` (epoch seconds: when a
        spent daily quota returns). ``reason`` is the message of the ``QuotaExhausted``
        a caller gets instead when the run stops meanwhile; ``stop`` means it stops now.
        Returns True when this starts a hold (or moves it more than a second later):
        the concurrent refusals of one spent quota are one wait, announced once."""
        now = self.wall()
        fresh = self._held_until <= now or until > self._held_until + 1.0
        if self._held_until <= now:
            self._held_stop = False
        if until > self._held_until:
            self._held_until = until
        if fresh or stop:
            self._held_reason = reason
        self._held_stop = self._held_stop or stop
        return fresh and until > now

    @property
    def held_until(self) -> float | None:
        """Wall-clock end of the current hold, or None."""
        return self._held_until if self._held_until > self.wall() else None

    # -- admission ---------------------------------------------------------------
    def _blocked(self) -> float:
        """Seconds a hold or a pause keeps every caller back (0: none). Raises
        ``QuotaExhausted(stop=True)`` when a hold is on and the run stops instead."""
        held = self._held_until - self.wall()
        if held > 0:
            if self._held_stop or (self.stopping is not None and self.stopping()):
                raise QuotaExhausted(self._held_reason, reset_at=self._held_until, stop=True)
            step = min(held, HOLD_STEP)
            self.waited_quota += step
            return step
        wait = self._pause_until - self.clock()
        if wait > 0:
            self.waited_429 += wait
            return wait
        return 0.0

    async def acquire(self) -> list[float] | None:
        """Wait for a slot. Raises ``QuotaExhausted(stop=True)`` when a hold is on and
        the run is stopping instead of waiting for it. Returns the slot's log cell for
        ``sent_now`` (None when there is no limit)."""
        while True:
            wait = self._blocked()
            if wait > 0:
                await anyio.sleep(wait)
                continue
            if not self._log.windows:
                wait = self._pace()
                if wait > 0:
                    await anyio.sleep(wait)
                self.sent += 1
                return None
            if not self._queued:   # room now and nobody ahead: no loop trip
                now = self.clock()
                if self._log.due(now) <= now:
                    return self._take(now)
            self._queued += 1
            try:
                async with self._gate:
                    cell = await self._wait_for_room()
            finally:
                self._queued -= 1
            if cell is not None:
                return cell

    async def _wait_for_room(self) -> list[float] | None:
        """At the head of the queue: wait until every window has room, and take it. None
        when a hold or pause began meanwhile (the caller waits it out, then queues again)."""
        while True:
            if self._blocked_now():
                return None
            now = self.clock()
            due = self._log.due(now)
            if due <= now:
                return self._take(now)
            await anyio.sleep(due - now)

    def _blocked_now(self) -> bool:
        return self._held_until > self.wall() or self._pause_until > self.clock()

    def _take(self, now: float) -> list[float]:
        self.sent += 1
        return self._log.take(now)

    def answered_in(self, seconds: float, cell: list[float] | None = None) -> None:
        """A request's round trip: the latency estimate drops to a faster one at once and
        rises towards slower ones slowly (a queue at the server is not the latency).

        The answer also tells when the request of ``cell`` reached the server at the
        latest: the fastest round trip before the answer. A request that queued on its
        way (a burst of N arriving together, a busy server) reached it later than it left
        us, by more than the margin perhaps; its window starts there, so that the request
        N later cannot reach the server inside the same window."""
        est = self.latency
        self.latency = seconds if est is None or seconds < est else est + (seconds - est) * 0.01
        if cell is not None:
            self._log.restamp(cell, self.clock() - self.latency)

    def _pace(self) -> float:
        """Reserve the next unlimited send's slot; how long to wait for it."""
        if not self.spread or not self.latency:
            return 0.0
        gap = self.latency / (self.spread * PACE_HEADROOM)
        now = self.clock()
        slot = self._next_send
        if slot <= now:
            self._next_send = now + gap
            return 0.0
        self._next_send = slot + gap
        return slot - now

    def sent_now(self, cell: list[float] | None) -> None:
        """The request of ``cell`` is on the wire now: its window starts here, not when
        its slot was granted. Between the two, a busy event loop (a page being mapped)
        can hold a request back for tens of milliseconds; counted from the grant, the
        request N later could then reach the vendor inside the same window (a 429)."""
        if cell is not None:
            self._log.restamp(cell, self.clock())
