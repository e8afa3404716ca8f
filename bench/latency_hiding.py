"""Issue 8, figure 2: with no rate limit, do C concurrent writers hide the latency?

    python bench/latency_hiding.py [--contacts 5000] [--latency 0.05] [--concurrency 32] [--quick]

Seeded contacts from a JSONL file into the REI Software simulator with no rate limit
(simulator `--no-limits`, job `rate_limit: off`) and 50 ms a request; `concurrency: 32`.
The bound is C / latency writes per second (640/s): every writer always waiting on one
request. Achieved = (writes - 1) / (last write - first write), from the checkpoint's
write times (start-up excluded). Goal: achieved / bound >= 0.90.
At 640 writes/s the migrator's own CPU (mapping, validation, checkpoint, HTTP) is what is
measured too; on a loaded 2-core machine the figure is indicative only.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _bench import (JSONL_SOURCE, MAPPINGS, REI_TARGET, Figure, SandboxProc, done_times, limit_yaml,  # noqa: E402
                    print_figure, run_cli, tmpdir, window_summary, write_job, write_rate)
from _data import write_contacts_jsonl  # noqa: E402

GOAL = 0.90


def run(contacts: int = 5000, latency: float = 0.05, concurrency: int = 32) -> Figure:
    root = tmpdir("latency")
    write_contacts_jsonl(root / "contacts.jsonl", contacts)
    job = write_job(root, source=JSONL_SOURCE, target=REI_TARGET.format(limit=limit_yaml(None)),
                    mapping=MAPPINGS / "csv-to-rei.yaml", concurrency=concurrency, name="bench-latency")
    with SandboxProc(["rei"], latency=latency) as sb:
        res = run_cli(["run", str(job), "--no-progress"], env=sb.env)
        stats = sb.stats("rei")
    times = done_times(root / "ckpt.sqlite")
    achieved = write_rate(times)
    bound = concurrency / latency
    ratio = achieved / bound
    print(f"latency hiding: {contacts:,} contacts JSONL -> REI sandbox, no rate limit, "
          f"{latency * 1000:.0f} ms latency, concurrency {concurrency}")
    print(f"  {len(times):,} writes; first->last {times[-1] - times[0] if times else 0:.2f} s -> "
          f"{achieved:.1f} writes/s; bound C/latency = {bound:.0f}/s; wall {res.wall:.2f} s, "
          f"migrator cpu {res.cpu:.2f} s")
    print(f"  simulator: {window_summary(stats)}")
    notes = [] if len(times) >= contacts else [f"only {len(times)} of {contacts} records written"]
    fig = Figure("latency_hiding", f"{achieved:.0f} writes/s", f"C/lat = {bound:.0f}/s; goal >= {GOAL}",
                 ratio, ratio >= GOAL and len(times) > 0, notes)
    print_figure(fig)
    return fig


def quick() -> Figure:
    return run(contacts=1000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--contacts", type=int, default=5000)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--quick", action="store_true", help="1,000 contacts")
    a = ap.parse_args()
    if not a.latency > 0:
        ap.error("--latency must be > 0 (the bound is concurrency / latency)")
    if a.quick:
        quick()
    else:
        run(a.contacts, a.latency, a.concurrency)


if __name__ == "__main__":
    main()
