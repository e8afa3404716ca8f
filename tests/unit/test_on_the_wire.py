"""The limiter counts a request's window from when it goes on the wire, not from when its
slot was granted: a busy event loop between the two must not let the request N later
reach the vendor inside the same window."""
import time

import anyio
from aiohttp import web

from migrator.http import Auth, HttpClient
from migrator.limits import RateLimit
from migrator.sandbox.base import SlidingWindow


class BusyOnce(Auth):
    """Signs requests; the first signing blocks the loop as mapping a large page would."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def apply(self, client, req) -> None:
        self.calls += 1
        if self.calls == 1:
            time.sleep(0.08)


async def test_a_request_held_back_after_its_slot_counts_from_when_it_was_sent(unused_tcp_port):
    window = SlidingWindow(5, 0.5)
    refused = 0

    async def hit(request: web.Request) -> web.Response:
        nonlocal refused
        if window.hit("k") is not None:
            refused += 1
            return web.json_response({}, status=429, headers={"Retry-After": "1"})
        return web.json_response({})

    async def post(request: web.Request) -> web.Response:
        await request.read()
        return await hit(request)

    app = web.Application()
    app.router.add_get("/x", hit)
    app.router.add_post("/x", post)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", unused_tcp_port)
    await site.start()
    client = HttpClient("test", f"http://127.0.0.1:{unused_tcp_port}", limit=RateLimit(5, 0.5),
                        auth=BusyOnce(), allow_insecure_http=True)
    try:
        async with anyio.create_task_group() as tg:
            for i in range(12):
                if i % 2:
                    tg.start_soon(lambda: client.request("POST", "/x", json={"n": 1}, write=True))
                else:
                    tg.start_soon(lambda: client.request("GET", "/x"))
        assert refused == 0 and window.max_in_window <= 5
        assert client.limiter.sent == 12
    finally:
        await client.close()
        await runner.cleanup()
