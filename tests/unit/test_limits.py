"""The limiter never lets more than N requests into any window of the vendor's period."""
import time

import anyio

from migrator.errors import QuotaExhausted
from migrator.limits import Limiter, RateLimit, SendLog, window_margin
from migrator.sandbox.base import SlidingWindow
from migrator.sandbox.base import most_in_any_window as max_in_any_window


async def _fire(limiter: Limiter, n: int, concurrency: int = 32) -> list[float]:
    stamps: list[float] = []

    async def one() -> None:
        await limiter.acquire()
        stamps.append(time.monotonic())

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one)
    return sorted(stamps)


async def test_sliding_window_never_exceeded_and_rate_is_close():
    lim = Limiter(RateLimit(20, 0.5))
    t0 = time.monotonic()
    stamps = await _fire(lim, 80)
    elapsed = time.monotonic() - t0
    assert max_in_any_window(stamps, 0.5) <= 20
    # 80 requests at 40/s: the first 20 need no wait, so ~1.5 s; allow the window margin.
    assert 1.4 <= elapsed <= 2.2


async def test_naive_bucket_would_exceed_the_window():
    """Why the limiter exists: aiolimiter(N, T) alone lets ~2N through in one window."""
    from aiolimiter import AsyncLimiter
    bucket = AsyncLimiter(20, 0.5)
    stamps = []

    async def one():
        await bucket.acquire()
        stamps.append(time.monotonic())

    async with anyio.create_task_group() as tg:
        for _ in range(60):
            tg.start_soon(one)
    assert max_in_any_window(sorted(stamps), 0.5) > 20


async def test_pause_holds_every_caller():
    lim = Limiter(RateLimit(100, 1.0))
    lim.pause(0.3)
    t0 = time.monotonic()
    stamps = await _fire(lim, 5)
    assert min(stamps) - t0 >= 0.29


async def test_rate_limited_eases_and_recovers():
    lim = Limiter(RateLimit(10, 1.0))
    lim.on_rate_limited(0.0)
    assert lim.limit.requests == 8
    for _ in range(100):
        lim.on_success()
    assert lim.limit == RateLimit(10, 1.0)


def test_lower_to_only_lowers():
    lim = Limiter(RateLimit(100, 10.0))
    assert not lim.lower_to(RateLimit(200, 10.0))
    assert lim.lower_to(RateLimit(10, 10.0))
    assert lim.limit == RateLimit(10, 10.0)
    assert not lim.lower_to(RateLimit(50, 10.0))


def test_sandbox_window_counts_like_the_vendor():
    now = [0.0]
    w = SlidingWindow(3, 10.0, clock=lambda: now[0])
    assert [w.hit("k") for _ in range(3)] == [None, None, None]
    retry = w.hit("k")
    assert retry == 10.0
    now[0] = 10.01
    assert w.hit("k") is None
    assert w.max_in_window == 3 and w.refused == 1


def test_advertised_window_is_a_ceiling_recovered_within_its_period():
    lim = Limiter(RateLimit(100, 10.0))
    assert lim.follow(RateLimit(10, 2.0))          # server says 10 per 2 s: stricter
    assert lim.limit == RateLimit(10, 2.0)
    lim.on_rate_limited(0.0)                       # eased below the ceiling…
    assert lim.limit == RateLimit(8, 2.0)
    for _ in range(100):
        lim.on_success()
    assert lim.limit == RateLimit(10, 2.0)         # …climbs back to it, in its period, no further
    assert lim.follow(RateLimit(500, 10.0))        # a looser window: the configured limit rules again
    assert lim.ceiling == lim.limit == RateLimit(100, 10.0)


def test_a_burst_of_429s_eases_the_rate_once():
    lim = Limiter(RateLimit(100, 1.0))
    for _ in range(5):                 # five requests in flight all come back 429
        lim.on_rate_limited(1.0)
    assert lim.limit == RateLimit(80, 1.0)


# ---- a spent daily quota: one hold for every caller ------------------------------------
async def test_a_hold_keeps_every_caller_waiting_until_its_wall_clock_end():
    lim = Limiter(RateLimit(100, 1.0))
    until = time.time() + 0.4
    assert lim.hold(until, "quota spent")
    assert lim.held_until == until
    stamps: list[float] = []

    async def one() -> None:
        await lim.acquire()
        stamps.append(time.time())

    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(one)
    assert len(stamps) == 6 and min(stamps) >= until
    assert lim.held_until is None and lim.waited_quota > 0


def test_concurrent_refusals_of_one_quota_start_one_hold():
    wall = [1000.0]
    lim = Limiter(RateLimit(100, 1.0), wall=lambda: wall[0])
    assert lim.hold(1060.0, "spent")            # the first refusal starts the wait: announce it
    assert not lim.hold(1060.4, "spent")        # the other writers' refusals join it
    assert not lim.hold(1030.0, "spent")        # an earlier end never shortens it
    assert lim.held_until == 1060.4
    assert lim.hold(1200.0, "spent")            # a much later end is news
    wall[0] = 1201.0
    assert lim.held_until is None
    assert lim.hold(1300.0, "spent")            # refused again after the hold: a new wait


async def test_a_stopping_run_leaves_the_hold_at_once_with_the_reason():
    lim = Limiter(RateLimit(100, 1.0))
    stopping = [False]
    lim.stopping = lambda: stopping[0]
    lim.hold(time.time() + 3600, "REI Software: quota spent; stopped while waiting for it")
    raised: list[QuotaExhausted] = []

    async def one() -> None:
        try:
            await lim.acquire()
        except QuotaExhausted as e:
            raised.append(e)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(one)
            await anyio.sleep(0.3)
            assert not raised, "they wait while the run goes on"
            stopping[0] = True
    assert len(raised) == 4 and all(e.stop for e in raised)
    assert str(raised[0]) == "REI Software: quota spent; stopped while waiting for it"
    assert lim.sent == 0


async def test_a_stop_hold_refuses_at_once_and_ends_with_the_hold():
    wall = [1000.0]
    lim = Limiter(None, wall=lambda: wall[0])
    lim.hold(1050.0, "stopped at the quota", stop=True)
    with anyio.fail_after(1):
        try:
            await lim.acquire()
            raise AssertionError("acquire went through a stop hold")
        except QuotaExhausted as e:
            assert e.stop and e.reset_at == 1050.0
    wall[0] = 1051.0
    await lim.acquire()
    assert lim.sent == 1


async def test_with_no_limit_sends_are_spaced_so_a_burst_does_not_leave_at_once():
    lim = Limiter(None, spread=4)
    burst = await _fire(lim, 8, concurrency=8)
    assert burst[-1] - burst[0] < 0.005, "no latency seen yet: nothing to pace by"
    lim.answered_in(0.044)                  # 4 in flight / 44 ms: 91/s at most; spaced for 100/s
    stamps = await _fire(lim, 9, concurrency=9)
    gap = 0.044 / (4 * 1.1)
    assert all(t - stamps[0] >= i * gap - 0.001 for i, t in enumerate(stamps)), "each waits for its slot"
    assert stamps[-1] - stamps[0] <= 0.2


def test_the_latency_estimate_drops_at_once_and_rises_slowly():
    lim = Limiter(None, spread=8)
    lim.answered_in(0.080)
    lim.answered_in(0.050)
    assert lim.latency == 0.050
    for _ in range(10):
        lim.answered_in(0.150)              # a queue at the server, not the latency
    assert 0.050 < lim.latency < 0.062


async def test_a_configured_limit_paces_by_its_own_bucket_only():
    lim = Limiter(RateLimit(100, 1.0), spread=2)
    lim.answered_in(0.5)                    # unlimited, 2 in flight would be spaced 227 ms apart
    stamps = await _fire(lim, 4)
    assert stamps[-1] - stamps[0] < 0.1


# ---- window-exact: the arithmetic on a simulated clock ---------------------------------
def _schedule(log: SendLog, n: int, start: float = 0.0) -> list[float]:
    """Send ``n`` requests, each as soon as every window has room (a simulated clock)."""
    now, times = start, []
    for _ in range(n):
        now = log.due(now)
        log.take(now)
        times.append(now)
    return times


def test_a_burst_of_the_windows_size_goes_at_once():
    log = SendLog([RateLimit(100, 10.0)])
    times = _schedule(log, 100)
    assert times == [0.0] * 100
    assert log.due(0.0) == 10.0 + window_margin(10.0)


def test_the_next_request_waits_exactly_until_the_oldest_leaves_the_window():
    log = SendLog([RateLimit(3, 1.0)])
    for t in (0.0, 0.3, 0.5):
        log.take(t)
    span = 1.0 + window_margin(1.0)
    assert log.due(0.6) == 0.0 + span          # the oldest (t=0) leaves: room for one
    log.take(span)
    assert log.due(span) == 0.3 + span          # then the next oldest, and so on
    times = _schedule(SendLog([RateLimit(1500, 300.0)]), 3001)
    assert times[1499] == 0.0 and times[1500] == times[2999] == 300.5 and times[3000] == 601.0


def test_a_send_stamped_late_on_the_wire_moves_its_window():
    log = SendLog([RateLimit(2, 1.0)])
    first, _ = log.take(0.0), log.take(0.0)
    log.restamp(first, 0.08)                     # held back by a busy loop before it left
    assert log.due(0.1) == 0.0 + 1.02            # the other one leaves first
    log.take(1.02)
    assert log.due(1.02) == 0.08 + 1.02


def test_an_answer_later_than_the_fastest_round_trip_moves_the_send_it_answers():
    """A burst queued at the server: its last request arrived there later than it left us,
    by more than the margin. Counted from its answer less the fastest round trip, the
    request N later still cannot arrive inside its window."""
    now = [0.0]
    lim = Limiter(RateLimit(3, 1.0), clock=lambda: now[0])
    cells = [lim._take(0.0) for _ in range(3)]
    now[0] = 0.05
    lim.answered_in(0.05, cells[0])               # the fastest answer: no queue, no move
    assert cells[0][0] == 0.0
    now[0] = 0.15
    lim.answered_in(0.15, cells[2])               # queued 0.1 s at the server
    third = 0.15 - lim.latency
    assert 0.09 < cells[2][0] == third
    now[0] = 0.2
    lim.answered_in(0.2, cells[1])                # queued 0.15 s: it moves past the third
    second = 0.2 - lim.latency
    assert [c[0] for c in lim._log._log] == [0.0, third, second]
    span = 1.0 + window_margin(1.0)
    assert lim._log.due(1.0) == span
    lim._take(span)
    assert lim._log.due(span) == third + span     # the next waits for the late ones
    lim.answered_in(0.01, None)                    # no cell (unlimited): the estimate only
    assert lim.latency == 0.01


def test_every_window_holds_at_once():
    burst, long = RateLimit(20, 1.0), RateLimit(100, 10.0)
    times = _schedule(SendLog([burst, long]), 300)
    for w in (burst, long):
        assert max_in_any_window(times, w.per) <= w.requests
    assert times[:20] == [0.0] * 20 and times[20] == 1.0 + window_margin(1.0)
    assert times[99] < 5.0 and times[100] == 10.0 + window_margin(10.0)   # the long window binds


def test_headers_can_only_lower_what_is_sent():
    lim = Limiter(RateLimit(50, 1.0))
    alone = _schedule(SendLog(lim.windows), 200)
    assert not lim.follow(RateLimit(50, 1.0))     # the server says what we hold already
    lim.follow(RateLimit(500, 1.0))               # a looser window changes nothing
    assert _schedule(SendLog(lim.windows), 200) == alone
    assert lim.follow(RateLimit(100, 10.0))       # a stricter one holds as well
    assert set(lim.windows) == {RateLimit(50, 1.0), RateLimit(100, 10.0)}
    held = _schedule(SendLog(lim.windows), 200)
    assert max_in_any_window(held, 10.0) <= 100 and max_in_any_window(held, 1.0) <= 50
    assert held[-1] > alone[-1]


async def test_the_limiter_sends_the_burst_at_once_then_waits_for_the_oldest():
    lim = Limiter(RateLimit(20, 0.5))
    t0 = time.monotonic()
    stamps = await _fire(lim, 21)
    assert stamps[19] - t0 < 0.1, "the window's 20 go at once"
    assert stamps[20] - stamps[0] >= 0.5 + window_margin(0.5) - 0.005
