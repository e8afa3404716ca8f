"""Issue 8: every benchmark in one go, then one table.

    python bench/run_all.py [--quick] [--only NAME ...]

Default sizes are the issue's (5,000 contacts, 200k / 1M rows, ...; about 20 minutes on
a quiet machine, most of it the 1M-row memory run and the 100k-contact sandbox seeding).
--quick runs each at a small size, in about three minutes: a smoke check that every
bench still runs, not a measurement (fixed start-up costs dominate small runs, so several
ratios miss their goal there by construction). Figures taken on a loaded machine are
indicative only. Each script also runs alone; see its docstring.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _bench import Figure  # noqa: E402

BENCHES = ["rate_bound", "latency_hiding", "read_throughput", "end_to_end", "engine_overhead", "memory_flat",
           "resume", "side_by_side"]


def table(figs: list[Figure]) -> str:
    rows = [("benchmark", "figure", "bound / goal", "ratio", "pass/fail")]
    for f in figs:
        rows.append((f.bench, f.figure, f.bound, "-" if f.ratio is None else f"{f.ratio:.3f}",
                     "n/a" if f.ok is None else ("PASS" if f.ok else "FAIL")))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke check in about three minutes")
    ap.add_argument("--only", action="append", choices=BENCHES, help="run only this benchmark (repeatable)")
    a = ap.parse_args()
    figs: list[Figure] = []
    t_all = time.perf_counter()
    for name in a.only or BENCHES:
        print(f"\n--- {name} {'(quick)' if a.quick else ''}", flush=True)
        t0 = time.perf_counter()
        try:
            mod = importlib.import_module(name)
            out = mod.quick() if a.quick else mod.run()
        except (Exception, SystemExit) as e:  # one broken bench must not hide the others' figures
            traceback.print_exc()
            out = Figure(name, f"error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:80],
                         "-", None, False)
        figs += out if isinstance(out, list) else [out]
        print(f"--- {name}: {time.perf_counter() - t0:.1f} s", flush=True)
    print(f"\n{'quick (smoke-check sizes)' if a.quick else 'full sizes'}; {time.perf_counter() - t_all:.0f} s in all\n")
    print(table(figs))
    notes = [(f.bench, n) for f in figs for n in f.notes]
    for bench, n in notes:
        print(f"  {bench}: {n}")
    return 0 if all(f.ok is not False for f in figs) else 1


if __name__ == "__main__":
    sys.exit(main())
