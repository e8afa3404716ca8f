"""``migrator sandbox``: serve all five simulators until Ctrl-C."""
from __future__ import annotations

import argparse
from dataclasses import replace

import anyio

from .base import faults_profile
from .data import CLEAN, DIRTY
from .server import SIMULATORS, Sandbox, make


def build(contacts: int, seed: int, faults: str = "none", dirty: bool = False,
          limits: bool = True, latency: float | None = None, vendors: list[str] | None = None,
          **overrides) -> dict:
    profile = faults_profile(faults)
    if latency is not None:
        profile = replace(profile, latency=latency)
    sims = {}
    for vendor in vendors or list(SIMULATORS):
        kwargs = dict(contacts=contacts, seed=seed, dirt=DIRTY if dirty else CLEAN, faults=profile)
        if not limits:
            kwargs["limit"] = None
        kwargs.update(overrides.get(vendor, {}))
        sims[vendor] = make(vendor, **kwargs)
    return sims


def serve(args: argparse.Namespace) -> int:
    try:
        sims = build(args.contacts, args.seed, args.faults, args.dirty, limits=not args.no_limits,
                     latency=args.latency, vendors=args.only)
    except ValueError as e:
        from ..errors import UserError
        raise UserError(str(e)) from None

    async def main() -> None:
        async with Sandbox(sims) as sb:
            print(f"sandbox: {args.contacts} seeded contacts per system (seed {args.seed}, faults {args.faults})")
            for vendor, sim in sims.items():
                print(f"  {vendor:<10} {sim.base_url}")
            print("\nexport these for a job file (they are sandbox credentials, not real ones):")
            for key, value in sb.env().items():
                print(f"  export {key}={value}")
            print("\nCtrl-C to stop.", flush=True)
            await anyio.sleep_forever()

    try:
        anyio.run(main)
    except KeyboardInterrupt:
        pass
    return 0
