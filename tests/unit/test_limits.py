"""The limiter never lets more than N requests into any window of the vendor's period."""
import time

import anyio

from migrator.limits import Limiter, RateLimit
from migrator.sandbox.base import SlidingWindow


def max_in_any_window(stamps: list[float], period: float) -> int:
    best, j = 0, 0
    for i, t in enumerate(stamps):
        while stamps[j] <= t - period:
            j += 1
        best = max(best, i - j + 1)
    return best


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
