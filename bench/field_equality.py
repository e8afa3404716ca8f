"""Issue 15, part 5: every field both sides can hold arrives equal.

    python bench/field_equality.py [--contacts 500] [--api-only] [--mappings DIR]

Runs every shipped pair on the sandbox — the source simulator (or its CSV export)
seeded with --contacts people, with the hard shapes among them (ZIP+4, addresses without
a city, a primary phone apart from the mobile, CJK and other non-Latin names, notes over
10,000 characters, dated notes) — through the real job loader and engine into an empty
target, then compares each clean person's record field by field, exactly as the pair
tests do (tests/integration/fields.py). Prints per pair and overall: values equal ÷
values both sides can hold, the differences the mapping's header declares, and the first
undeclared misses. --mappings runs another folder of mappings (e.g. an older version) for
a before/after figure. Goal: 100%, every exception declared in a mapping header.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from migrator.resources import shipped_pairs  # noqa: E402
from tests.integration import harness  # noqa: E402
from tests.integration import test_pairs_brokerkit as into_brokerkit  # noqa: E402
from tests.integration import test_pairs_realvolve_realeflow as into_rv_rf  # noqa: E402
from tests.integration import test_pairs_rei_spark as into_rei_spark  # noqa: E402
from tests.integration.fields import Tally  # noqa: E402

API = {"realvolve", "realeflow", "spark", "rei"}


async def one_pair(source: str, target: str, n: int) -> Tally:
    with tempfile.TemporaryDirectory(prefix="field-equality-") as tmp:
        if target in ("rei", "spark"):
            _, pair, contacts, tally, _ = await into_rei_spark.run_pair(Path(tmp), source, target, n)
        elif target == "brokerkit":
            _, pair, leads, _ = await into_brokerkit.run_pair(Path(tmp), source, n)
            tally, _ = into_brokerkit.field_tally(pair, leads)
        else:
            _, pair, _, got = await into_rv_rf.run_pair(Path(tmp), source, target, n)
            tally, _ = into_rv_rf.field_tally(pair, got)
    return tally


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--contacts", type=int, default=500)
    ap.add_argument("--api-only", action="store_true", help="only pairs whose source is an API")
    ap.add_argument("--mappings", type=Path, help="a folder of <source>-to-<target>.yaml to run instead")
    args = ap.parse_args()
    if args.mappings:
        harness.MAPPINGS = args.mappings.resolve()
    pairs = [(s, t) for s, t in shipped_pairs() if not args.api_only or s in API]
    totals = {"api": Tally(), "all": Tally()}
    print(f"{'pair':32} {'equal':>7} / {'holdable':>8} {'share':>8}  declared  misses")
    for source, target in pairs:
        tally = asyncio.run(one_pair(source, target, args.contacts))
        share = tally.equal / tally.holdable if tally.holdable else 1.0
        print(f"{source + ' -> ' + target:32} {tally.equal:7d} / {tally.holdable:8d} {share:8.2%}"
              f"  {len(tally.allowed):8d}  {len(tally.misses):6d}", flush=True)
        for miss in tally.misses[:3]:
            print(f"    {miss}")
        for key in ("all",) + (("api",) if source in API else ()):
            t = totals[key]
            t.compared += tally.compared
            t.equal += tally.equal
            t.allowed += tally.allowed
            t.misses += tally.misses
    for key, label in (("api", "API pairs"), ("all", "all pairs")):
        t = totals[key]
        if t.compared:
            print(f"=> {label}: {t.equal:,} of {t.holdable:,} values both sides can hold arrive equal "
                  f"({t.equal / t.holdable:.2%}); {len(t.allowed)} declared differences; "
                  f"{len(t.misses)} undeclared misses")


if __name__ == "__main__":
    main()
