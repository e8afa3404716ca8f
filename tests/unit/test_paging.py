import time

import anyio

from migrator.paging import in_order


async def test_in_order_keeps_a_rolling_window_and_yields_in_order():
    started: list[float] = []

    async def fetch(n: int) -> int:
        started.append(time.monotonic())
        await anyio.sleep(0.05 if n % 3 else 0.15)   # every third page is slow
        return n * 10

    t0 = time.monotonic()
    got = [x async for x in in_order(fetch, iter(range(1, 25)), 8)]
    elapsed = time.monotonic() - t0
    assert got == [(n, n * 10) for n in range(1, 25)]
    # 24 pages, 8 at a time: batches would take ~3 x 0.15 s; a rolling window stays close to that
    # or better, and never runs more than 8 fetches at once.
    assert elapsed < 0.6


async def test_numbers_may_grow_while_reading():
    last = 3

    def numbers():
        n = 1
        while n <= last:
            yield n
            n += 1

    async def fetch(n: int) -> int:
        await anyio.sleep(0)
        return n

    out = []
    async for n, v in in_order(fetch, numbers(), 2):
        out.append(n)
        if n == 2:
            last = 5
    assert out == [1, 2, 3, 4, 5]


async def test_closing_early_cancels_fetches_in_flight():
    from contextlib import aclosing
    cancelled = []

    async def fetch(n: int) -> int:
        try:
            await anyio.sleep(0.01 if n == 1 else 10)
        except anyio.get_cancelled_exc_class():
            cancelled.append(n)
            raise
        return n

    async with aclosing(in_order(fetch, iter(range(1, 6)), 4)) as pages:
        async for n, _ in pages:
            break
    assert sorted(cancelled) == [2, 3, 4]       # page 5 was never started: the window is 4
