import time

import anyio

from migrator.paging import in_order


def _counter(first: int, last: int):
    numbers = iter(range(first, last + 1))
    return lambda: next(numbers, None)


async def test_a_finished_fetch_starts_the_next_even_while_the_head_is_slow():
    started = []

    async def fetch(n: int) -> int:
        started.append(n)
        await anyio.sleep(0.3 if n == 1 else 0.01)
        return n

    async with anyio.create_task_group():
        pages = in_order(fetch, _counter(1, 20), 4)
        first = await pages.__anext__()
        await pages.aclose()
    assert first == (1, 1)
    # While page 1 took 0.3 s, its neighbours kept finishing and new fetches kept starting.
    assert len(started) > 8


async def test_in_order_keeps_a_rolling_window_and_yields_in_order():
    started: list[float] = []

    async def fetch(n: int) -> int:
        started.append(time.monotonic())
        await anyio.sleep(0.05 if n % 3 else 0.15)   # every third page is slow
        return n * 10

    t0 = time.monotonic()
    got = [x async for x in in_order(fetch, _counter(1, 24), 8)]
    elapsed = time.monotonic() - t0
    assert got == [(n, n * 10) for n in range(1, 25)]
    # 24 pages, 8 at a time: batches would take ~3 x 0.15 s; a rolling window stays close to that
    # or better, and never runs more than 8 fetches at once.
    assert elapsed < 0.6


async def test_numbers_may_grow_while_reading():
    last = 3
    n = 0

    def next_number():
        nonlocal n
        if n >= last:
            return None
        n += 1
        return n

    async def fetch(n: int) -> int:
        await anyio.sleep(0)
        return n

    out = []
    async for page, v in in_order(fetch, next_number, 2):
        out.append(page)
        if page == 2:
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

    async with aclosing(in_order(fetch, _counter(1, 5), 4)) as pages:
        async for n, _ in pages:
            break
    # Page 1 finished first, so page 5 started at once: four fetches were in flight at close.
    assert sorted(cancelled) == [2, 3, 4, 5]
