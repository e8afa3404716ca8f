"""Client-side rate limiting that never exceeds what a vendor counts.

Vendors count "N requests in any T seconds" — a sliding window. A leaky bucket alone
(``aiolimiter.AsyncLimiter(N, T)``) lets a full bucket through at once and then drains,
so it can admit close to 2N in one window. Here the bucket drains at N/(T + margin) and
holds a small burst (a tenth of N, at most 8): enough that a caller woken late by a busy
event loop does not lose its slot — with room for one request only, every late wake-up
is time lost for good, and the rate settles some 7% under the limit. A log of the last N
send times then guarantees that no window of T + margin seconds ever holds more than N,
even when the rate changes mid-run. The margin absorbs the jitter between our clock and
the moment a request reaches the vendor.

A 429 pauses every caller of the system until ``Retry-After`` has passed and lowers the
rate; the rate climbs back towards the configured one as requests succeed. Headers such
as REI's ``X-RateLimit-*`` may lower the rate further; nothing raises it above the
configured limit.

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
from typing import Callable

import anyio
from aiolimiter import AsyncLimiter

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


BURST_MAX = 8


def window_margin(period: float) -> float:
    return min(max(0.02, 0.02 * period), 0.5)


class Limiter:
    """One per system per run; every request to that system awaits ``acquire()``."""

    def __init__(self, limit: RateLimit | None, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, spread: int | None = None):
        self.configured = limit
        self.spread = spread        # requests in flight at most (the run's concurrency)
        self.latency: float | None = None   # the fastest answer lately (seconds)
        self._next_send = 0.0
        self.ceiling = limit   # the configured limit, or the stricter window a server advertises
        self.clock = clock
        self._pause_until = 0.0
        self._log: deque[list[float]] = deque()   # [send time] cells, oldest first
        self._set(limit)
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

    # -- rate --------------------------------------------------------------------
    def _set(self, limit: RateLimit | None) -> None:
        self.limit = limit
        if limit is None:
            self._bucket = None
            return
        margin = window_margin(limit.per)
        self._window = limit.per + margin
        burst = max(1, min(limit.requests // 10, BURST_MAX))
        self._bucket = AsyncLimiter(burst, burst * self._window / limit.requests)

    def follow(self, advertised: RateLimit) -> bool:
        """Adopt the window a server advertises (e.g. REI's X-RateLimit-* headers) as the
        ceiling when it is stricter than the configured limit. Never raises the rate above
        the configured limit; returns True when the ceiling changed."""
        stricter = self.configured is None or advertised.rate < self.configured.rate
        ceiling = advertised if stricter else self.configured
        if ceiling == self.ceiling:
            return False
        self.ceiling = ceiling
        current = self.limit
        if current is None or ceiling is None or ceiling.rate < current.rate or current.per != ceiling.per:
            self._set(ceiling)
        return True

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
        since = self.clock() - seconds
        return sum(1 for cell in self._log if cell[0] > since)

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
    async def acquire(self) -> list[float] | None:
        """Wait for a slot. Raises ``QuotaExhausted(stop=True)`` when a hold is on and
        the run is stopping instead of waiting for it. Returns the slot's log cell for
        ``sent_now`` (None when there is no limit)."""
        while True:
            held = self._held_until - self.wall()
            if held > 0:
                if self._held_stop or (self.stopping is not None and self.stopping()):
                    raise QuotaExhausted(self._held_reason, reset_at=self._held_until, stop=True)
                step = min(held, HOLD_STEP)
                self.waited_quota += step
                await anyio.sleep(step)
                continue
            wait = self._pause_until - self.clock()
            if wait > 0:
                self.waited_429 += wait
                await anyio.sleep(wait)
                continue
            if self._bucket is None:
                wait = self._pace()
                if wait > 0:
                    await anyio.sleep(wait)
                self.sent += 1
                return None
            await self._bucket.acquire()
            log = self._log
            while True:  # the bucket's slot is kept while the log makes room (no second token)
                assert self.limit is not None
                now = self.clock()
                while log and log[0][0] <= now - self._window:
                    log.popleft()
                if len(log) < self.limit.requests:
                    break
                await anyio.sleep(log[0][0] + self._window - now)
            if self._pause_until > now or self._held_until > self.wall():
                continue
            cell = [now]
            log.append(cell)
            self.sent += 1
            return cell

    def answered_in(self, seconds: float) -> None:
        """A request's round trip: the latency estimate drops to a faster one at once and
        rises towards slower ones slowly (a queue at the server is not the latency)."""
        est = self.latency
        self.latency = seconds if est is None or seconds < est else est + (seconds - est) * 0.01

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
            now = self.clock()
            if now > cell[0]:
                cell[0] = now
