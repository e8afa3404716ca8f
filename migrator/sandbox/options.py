"""The options of ``migrator sandbox``, kept apart from the simulators so that the main
CLI can offer them without importing a server, and the sandbox never imports the CLI."""
from __future__ import annotations

import argparse
from typing import Any, Sequence

VENDORS = ("realvolve", "realeflow", "spark", "rei", "brokerkit")   # server.SIMULATORS' keys

LIMIT_HELP = ("one simulator's rate limit, e.g. rei=50/1 (50 requests in any 1 s) or rei=off; "
              "repeatable; overrides the vendor's default and --no-limits for that system")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``migrator sandbox``; the main CLI and ``python -m migrator.sandbox.cli``
    both take them from here, so the sandbox never imports the CLI."""
    parser.add_argument("--contacts", type=int, default=200, metavar="N",
                        help="people seeded into each simulator (default: 200)")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed of the synthetic data: the same seed gives the same people")
    parser.add_argument("--faults", default="none", help="fault profile: none, latency, flaky, soak, tokens, keepless "
                        "(some creates keep less than they acknowledge: for testing migrator verify)")
    parser.add_argument("--dirty", action="store_true", help="seed dirty data as real exports have")
    parser.add_argument("--no-limits", action="store_true",
                        help="serve without the vendors' rate limits (benchmarks)")
    parser.add_argument("--latency", type=float, default=None, help="seconds every request takes (benchmarks)")
    parser.add_argument("--only", action="append", choices=list(VENDORS),
                        help="serve only this system (repeatable)")
    parser.add_argument("--empty", action="append", choices=list(VENDORS), metavar="VENDOR",
                        help="seed this system with no records, e.g. a target to migrate into (repeatable)")
    parser.add_argument("--limit", action="append", default=None, metavar="VENDOR=REQUESTS/SECONDS",
                        help=LIMIT_HELP)


def parse_limits(specs: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """``["rei=50/1"]`` -> ``{"rei": {"limit": (50, 1.0)}}``: overrides for ``build``.
    Raises ValueError with a one-line reason for a malformed spec or an unknown system."""
    out: dict[str, dict[str, Any]] = {}
    for spec in specs or []:
        vendor, eq, value = spec.partition("=")
        vendor, value = vendor.strip().lower(), value.strip().lower()
        if not eq or vendor not in VENDORS:
            raise ValueError(f"--limit {spec!r}: write VENDOR=REQUESTS/SECONDS, VENDOR one of "
                             f"{', '.join(VENDORS)}")
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
