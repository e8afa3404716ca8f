"""Start simulators on ephemeral loopback ports — in the caller's event loop
(``Sandbox``) or in a background thread (``SandboxThread``, for tests that drive the CLI
as a subprocess and inspect the simulators directly)."""
from __future__ import annotations

import asyncio
import importlib
import threading
from typing import Any

from aiohttp import web

from .base import Simulator

SIMULATORS: dict[str, str] = {
    "realvolve": "migrator.sandbox.realvolve:RealvolveSim",
    "realeflow": "migrator.sandbox.realeflow:RealeflowSim",
    "spark": "migrator.sandbox.spark:SparkSim",
    "rei": "migrator.sandbox.rei:ReiSim",
    "brokerkit": "migrator.sandbox.brokerkit:BrokerkitSim",
}


def simulator_class(vendor: str) -> type[Simulator]:
    module, _, name = SIMULATORS[vendor].partition(":")
    return getattr(importlib.import_module(module), name)


def make(vendor: str, **kwargs: Any) -> Simulator:
    return simulator_class(vendor)(**kwargs)


class Sandbox:
    """Serve the given simulators on 127.0.0.1, each on its own ephemeral port."""

    def __init__(self, sims: dict[str, Simulator], host: str = "127.0.0.1"):
        self.sims = sims
        self.host = host
        self._runners: list[web.AppRunner] = []

    async def start(self) -> "Sandbox":
        for vendor, sim in self.sims.items():
            runner = web.AppRunner(sim.build_app(), access_log=None, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, self.host, 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            sim.base_url = f"http://{self.host}:{port}"
            self._runners.append(runner)
        return self

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()

    async def __aenter__(self) -> "Sandbox":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def __getitem__(self, vendor: str) -> Simulator:
        return self.sims[vendor]

    def env(self) -> dict[str, str]:
        """Every credential variable and ``<VENDOR>_BASE_URL`` for each simulator."""
        out: dict[str, str] = {}
        for vendor, sim in self.sims.items():
            out.update(sim.credentials())
            out[f"{vendor.upper()}_BASE_URL"] = sim.base_url
        return out


class SandboxThread:
    """A ``Sandbox`` running in its own thread and event loop.

    Use as a context manager; ``call(fn)`` runs ``fn()`` on the sandbox's loop so tests
    can read simulator state without racing the server.
    """

    def __init__(self, sims: dict[str, Simulator]):
        self.sandbox = Sandbox(sims)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="sandbox")

    def __enter__(self) -> "SandboxThread":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.sandbox.start(), self.loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.sandbox.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def call(self, fn, *args: Any) -> Any:
        async def run() -> Any:
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(30)

    @property
    def sims(self) -> dict[str, Simulator]:
        return self.sandbox.sims

    def __getitem__(self, vendor: str) -> Simulator:
        return self.sandbox.sims[vendor]

    def env(self) -> dict[str, str]:
        return self.sandbox.env()
