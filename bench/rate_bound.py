"""Issue 8, figure 1: how close writes come to a target's rate limit without crossing it.

    python bench/rate_bound.py [--contacts 5000] [--rate 50] [--latency 0.04] [--concurrency 8] [--quick]

5,000 seeded contacts from a JSONL file into the REI Software simulator, held to R = 50
requests in any 1 s (`--limit rei=50/1`) with 40 ms a request; the job's rate_limit is the
same {requests: 50, per: 1}. Achieved rate = (writes - 1) / (last write - first write),
from the times the engine stamped in the checkpoint as each write was answered, so
process start-up and the job's set-up requests do not count (wall time is printed too).
Goal: achieved / R >= 0.97, zero 429s, and the simulator's largest count of admitted
requests in any 1 s window never above R.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _bench import (rate_limited_main, JSONL_SOURCE, MAPPINGS, REI_TARGET, Figure, SandboxProc, done_times, limit_yaml,  # noqa: E402
                    print_figure, run_cli, tmpdir, window_summary, write_job, write_rate)
from _data import write_contacts_jsonl  # noqa: E402

GOAL = 0.97


def run(contacts: int = 5000, rate: int = 50, latency: float = 0.04, concurrency: int = 8) -> Figure:
    root = tmpdir("rate")
    write_contacts_jsonl(root / "contacts.jsonl", contacts)
    job = write_job(root, source=JSONL_SOURCE, target=REI_TARGET.format(limit=limit_yaml(rate, 1)),
                    mapping=MAPPINGS / "csv-to-rei.yaml", concurrency=concurrency, name="bench-rate")
    with SandboxProc(["rei"], latency=latency, limits={"rei": f"{rate}/1"}) as sb:
        res = run_cli(["run", str(job), "--no-progress"], env=sb.env)
        stats = sb.stats("rei")
    times = done_times(root / "ckpt.sqlite")
    achieved = write_rate(times)
    window = stats.get("window") or {}
    over = window.get("max_in_window", 0) > rate
    refused = stats.get("rate_limited", 0)
    ratio = achieved / rate
    print(f"rate bound: {contacts:,} contacts JSONL -> REI sandbox limited to {rate}/1 s, "
          f"{latency * 1000:.0f} ms latency, concurrency {concurrency}")
    print(f"  {len(times):,} writes; first->last {times[-1] - times[0] if times else 0:.2f} s -> "
          f"{achieved:.2f} writes/s; wall {res.wall:.2f} s ({len(times) / res.wall:.2f} writes/s incl. start-up)")
    print(f"  simulator: {window_summary(stats)}")
    notes = []
    if refused:
        notes.append(f"{refused} requests refused with 429 (goal: none)")
    if over:
        notes.append(f"a {window['period']:g} s window held {window['max_in_window']} requests (limit {rate})")
    if len(times) < contacts:
        notes.append(f"only {len(times)} of {contacts} records written")
    fig = Figure("rate_bound", f"{achieved:.2f} writes/s, {refused} x 429, max {window.get('max_in_window')}/window",
                 f"R = {rate}/s; goal >= {GOAL}", ratio,
                 ratio >= GOAL and not refused and not over and len(times) > 0, notes)
    print_figure(fig)
    return fig


def quick() -> Figure:
    return run(contacts=500)


def main() -> None:
    rate_limited_main(run, quick, __doc__, latency=0.04)


if __name__ == "__main__":
    main()
