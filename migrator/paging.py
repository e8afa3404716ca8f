"""Page arithmetic shared by connectors.

``in_order`` keeps up to ``width`` page fetches in flight and hands results back
strictly in page order, so a source whose page count is known (Realvolve ``pages``,
Spark ``TotalPages``) hides latency without the engine ever seeing pages out of order.
A rolling window, not batches: a slow page holds back only the pages after it, never
the fetches already under way.

It is an async generator that holds a task group across ``yield``; callers must close
it in the task that iterates it (``contextlib.aclosing``) — the engine does.
"""
from __future__ import annotations

from collections import deque
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator

import anyio


async def in_order(fetch: Callable[[int], Awaitable[Any]], numbers: Iterator[int],
                   width: int) -> AsyncIterator[tuple[int, Any]]:
    """Yield ``(n, await fetch(n))`` for each n of ``numbers``, in that order.

    ``numbers`` is consumed lazily, after each yield, so a caller may extend it as it
    learns more (e.g. a page count that grew during the read).
    """
    width = max(1, width)
    in_flight: deque[int] = deque()
    done: dict[int, Any] = {}
    wake = anyio.Event()

    async with anyio.create_task_group() as tg:
        async def run(n: int) -> None:
            nonlocal wake
            done[n] = await fetch(n)
            wake.set()

        def top_up() -> None:
            while len(in_flight) < width:
                n = next(numbers, None)
                if n is None:
                    return
                in_flight.append(n)
                tg.start_soon(run, n)

        top_up()
        while in_flight:
            head = in_flight[0]
            while head not in done:
                await wake.wait()
                wake = anyio.Event()
            in_flight.popleft()
            result = done.pop(head)
            try:
                yield head, result
            except GeneratorExit:
                # Closed early: cancel the fetches in flight and leave the task group
                # normally (a GeneratorExit must not escape it wrapped in a group).
                tg.cancel_scope.cancel()
                break
            top_up()
