"""``migrator sandbox``: serve all five simulators until Ctrl-C.

``--limit VENDOR=REQUESTS/SECONDS`` (repeatable; ``VENDOR=off`` for none) sets one
simulator's rate limit, so a benchmark can hold a target to a chosen R while the other
simulators stay unlimited. ``python -m migrator.sandbox.cli`` takes the same options.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import Any, Sequence

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


LIMIT_HELP = ("one simulator's rate limit, e.g. rei=50/1 (50 requests in any 1 s) or rei=off; "
              "repeatable; overrides the vendor's default and --no-limits for that system")


def add_limit_option(parser: argparse.ArgumentParser) -> None:
    """The ``--limit`` option, for whichever parser serves ``migrator sandbox``."""
    parser.add_argument("--limit", action="append", default=None, metavar="VENDOR=REQUESTS/SECONDS",
                        help=LIMIT_HELP)


def parse_limits(specs: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """``["rei=50/1"]`` -> ``{"rei": {"limit": (50, 1.0)}}``: overrides for ``build``.
    Raises ValueError with a one-line reason for a malformed spec or an unknown system."""
    out: dict[str, dict[str, Any]] = {}
    for spec in specs or []:
        vendor, eq, value = spec.partition("=")
        vendor, value = vendor.strip().lower(), value.strip().lower()
        if not eq or vendor not in SIMULATORS:
            raise ValueError(f"--limit {spec!r}: write VENDOR=REQUESTS/SECONDS, VENDOR one of "
                             f"{', '.join(SIMULATORS)}")
        if value in ("off", "none"):
            out[vendor] = {"limit": None}
            continue
        n, slash, per = value.partition("/")
        try:
            requests, seconds = int(n), float(per if slash else "1")
        except ValueError:
            requests, seconds = 0, 0.0
        if requests < 1 or not seconds > 0 or seconds == float("inf"):
            raise ValueError(f"--limit {spec!r}: REQUESTS must be a whole number >= 1 and SECONDS a "
                             "number > 0 (e.g. rei=50/1), or off")
        out[vendor] = {"limit": (requests, seconds)}
    return out


def serve(args: argparse.Namespace) -> int:
    try:
        limits = parse_limits(getattr(args, "limit", None))
        unserved = sorted(set(limits) - set(args.only or SIMULATORS))
        if unserved:
            raise ValueError(f"--limit names {', '.join(unserved)}, which --only leaves out")
        sims = build(args.contacts, args.seed, args.faults, args.dirty, limits=not args.no_limits,
                     latency=args.latency, vendors=args.only, **limits)
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


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m migrator.sandbox.cli [options]``: ``migrator sandbox`` with ``--limit``,
    whether or not the main parser offers it yet."""
    from ..cli import build_parser
    from ..errors import UserError
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sandbox = sub.choices["sandbox"]
    if not any("--limit" in a.option_strings for a in sandbox._actions):
        add_limit_option(sandbox)
    args = parser.parse_args(["sandbox", *(sys.argv[1:] if argv is None else argv)])
    try:
        return serve(args)
    except UserError as e:
        print(f"migrator: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
