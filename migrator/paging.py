"""Page arithmetic shared by connectors.

``in_order`` keeps up to ``width`` page fetches in flight and hands results back
strictly in page order, so a source whose page count is known (Realvolve ``pages``,
Spark ``TotalPages``) hides latency without the engine ever seeing pages out of order.
A new fetch starts the moment any fetch finishes — not when the oldest page is handed
over — so pages that arrive together do not wait for each other's processing. Finished
pages wait in a buffer of at most ``4 × width``.

It is an async generator that holds a task group across ``yield``; callers must close
it in the task that iterates it (``contextlib.aclosing``) — the engine does.
"""
from __future__ import annotations

from collections import deque
from typing import Any, AsyncIterator, Awaitable, Callable

import anyio

BUFFER = 4  # finished-but-not-yet-taken pages, in multiples of width


async def in_order(fetch: Callable[[int], Awaitable[Any]], next_number: Callable[[], int | None],
                   width: int) -> AsyncIterator[tuple[int, Any]]:
    """Yield ``(n, await fetch(n))`` for each n that ``next_number()`` gives, in that order.

    ``next_number`` is asked each time a fetch can start and returns None when there is
    nothing more to fetch *for now*; it is asked again later, so a caller may extend the
    range as it learns more (a page count that grew during the read).
    """
    width = max(1, width)
    in_flight: deque[int] = deque()
    done: dict[int, Any] = {}
    running = 0
    wake = anyio.Event()

    async with anyio.create_task_group() as tg:
        def top_up() -> None:
            nonlocal running
            while running < width and len(in_flight) < width * BUFFER:
                n = next_number()
                if n is None:
                    return
                in_flight.append(n)
                running += 1
                tg.start_soon(run, n)

        async def run(n: int) -> None:
            nonlocal running
            done[n] = await fetch(n)
            running -= 1
            top_up()
            wake.set()

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
