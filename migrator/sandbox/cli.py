"""``migrator sandbox``: serve all five simulators until Ctrl-C.

``--limit VENDOR=REQUESTS/SECONDS`` (repeatable; ``VENDOR=off`` for none) sets one
simulator's rate limit, so a benchmark can hold a target to a chosen R while the other
simulators stay unlimited. ``python -m migrator.sandbox.cli`` takes the same options.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import Sequence

import anyio

from .base import faults_profile
from .data import CLEAN, DIRTY
from .options import add_arguments, parse_limits
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
        limits = parse_limits(getattr(args, "limit", None))
        served = set(args.only or SIMULATORS)
        for option, names in (("--limit", limits), ("--empty", getattr(args, "empty", None) or ())):
            unserved = sorted(set(names) - served)
            if unserved:
                raise ValueError(f"{option} names {', '.join(unserved)}, which --only leaves out")
        overrides: dict[str, dict] = {v: dict(o) for v, o in limits.items()}
        for vendor in getattr(args, "empty", None) or ():
            overrides.setdefault(vendor, {})["contacts"] = 0
        sims = build(args.contacts, args.seed, args.faults, args.dirty, limits=not args.no_limits,
                     latency=args.latency, vendors=args.only, **overrides)
    except ValueError as e:
        from ..errors import UserError
        raise UserError(str(e)) from None

    async def main() -> None:
        async with Sandbox(sims) as sb:
            # Every line is a comment or an export, so the whole output pastes into a shell.
            empty = set(getattr(args, "empty", None) or ())
            print(f"# sandbox: {args.contacts} seeded contacts per system (seed {args.seed}, faults {args.faults})"
                  + (f"; empty: {', '.join(sorted(empty))}" if empty else ""))
            print("# Every system is seeded with the same people, so a target that is not empty already")
            print("# holds many of the source's contacts: a migration into it reports them as merges.")
            for vendor, sim in sims.items():
                print(f"#   {vendor:<10} {sim.base_url}")
            print("# Sandbox credentials, not real ones; paste these lines into the shell that runs migrator:")
            for key, value in sb.env().items():
                print(f"export {key}={value}")
            print("# Ctrl-C to stop.", flush=True)
            await anyio.sleep_forever()

    try:
        anyio.run(main)
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m migrator.sandbox.cli [options]``: ``migrator sandbox``."""
    from ..errors import UserError
    parser = argparse.ArgumentParser(prog="migrator sandbox", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return serve(args)
    except UserError as e:
        print(f"migrator: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
