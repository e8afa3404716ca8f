"""Issue 8, figure 4: a whole Realvolve -> REI Software migration against both limits.

    python bench/end_to_end.py [--contacts 3000] [--scale 5] [--latency 0.05] [--concurrency 8] [--quick]

Both sides run at their vendor's default limit times --scale, in the simulators
(`--limit realvolve=50/1 --limit rei=500/10`) and in the job's `rate_limit` alike:
Realvolve 10/1 s and REI 100/10 s by default (migrator/connectors/realvolve.py, rei.py
and the simulators agree), so x5 and 3,000 contacts take about a minute. The shipped
mappings/realvolve-to-rei.yaml; every request takes --latency. Each simulator runs in a
process of its own (the source seeded with the contacts, the target empty).

Bound: each side's requests (the simulator's count of requests its window admitted: on
Realvolve the list pages plus one contact_detail per contact, on REI one create per
contact plus the custom-field lookup) / that side's rate; the larger is the tighter side.
Figure: wall time of the `migrator run` process / bound. Goal <= 1.05.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _bench import (MAPPINGS, REALVOLVE_SOURCE, REI_TARGET, Figure, SandboxProc, done_times,  # noqa: E402
                    limit_yaml, print_figure, run_cli, startup_cpu, tmpdir, window_summary, write_job)

GOAL = 1.05
REALVOLVE = (10, 1.0)   # requests, per seconds: the vendor defaults, as connectors and simulators hold them
REI = (100, 10.0)


def run(contacts: int = 3000, scale: float = 5, latency: float = 0.05, concurrency: int = 8) -> Figure:
    src_n, src_per = max(1, round(REALVOLVE[0] * scale)), REALVOLVE[1]
    tgt_n, tgt_per = max(1, round(REI[0] * scale)), REI[1]
    root = tmpdir("e2e")
    job = write_job(root, source=REALVOLVE_SOURCE.format(limit=limit_yaml(src_n, src_per)),
                    target=REI_TARGET.format(limit=limit_yaml(tgt_n, tgt_per)),
                    mapping=MAPPINGS / "realvolve-to-rei.yaml", concurrency=concurrency, name="bench-e2e")
    with SandboxProc(["realvolve"], contacts=contacts, latency=latency, no_limits=False,
                     limits={"realvolve": f"{src_n}/{src_per:g}"}) as src, \
            SandboxProc(["rei"], latency=latency, no_limits=False, limits={"rei": f"{tgt_n}/{tgt_per:g}"}) as tgt:
        res = run_cli(["run", str(job), "--no-progress"], env={**src.env, **tgt.env})
        s_stats, t_stats = src.stats("realvolve"), tgt.stats("rei")
    s_req = s_stats["window"]["admitted"]
    t_req = t_stats["window"]["admitted"]
    s_bound, t_bound = s_req / (src_n / src_per), t_req / (tgt_n / tgt_per)
    bound = max(s_bound, t_bound)
    side = "Realvolve (source)" if s_bound >= t_bound else "REI (target)"
    times = done_times(root / "ckpt.sqlite")
    written = len(times)
    ratio = res.wall / bound
    boot = startup_cpu()  # roughly the interpreter's start-up, for the figure without it
    print(f"end to end: {contacts:,} Realvolve contacts -> REI, limits x{scale:g}: Realvolve {src_n}/{src_per:g} s, "
          f"REI {tgt_n}/{tgt_per:g} s, {latency * 1000:.0f} ms latency, concurrency {concurrency}")
    print(f"  Realvolve: {s_req:,} requests -> {s_bound:.1f} s at its limit; {window_summary(s_stats)}")
    print(f"  REI:       {t_req:,} requests -> {t_bound:.1f} s at its limit; {window_summary(t_stats)}")
    if times:
        print(f"  first write {times[0] - res.started:.1f} s after start, last {times[-1] - res.started:.1f} s "
              "(reading and writing overlap only when the first write comes early)")
    print(f"  {written:,} written; wall {res.wall:.1f} s; bound {bound:.1f} s (tighter side: {side}); "
          f"wall/bound {ratio:.3f} ({(res.wall - boot) / bound:.3f} without ~{boot:.1f} s of start-up)")
    refused = s_stats.get("rate_limited", 0) + t_stats.get("rate_limited", 0)
    notes = []
    if refused:
        notes.append(f"{refused} requests refused with 429")
    if written < contacts:
        notes.append(f"only {written} of {contacts} contacts written")
    fig = Figure("end_to_end", f"wall {res.wall:.1f} s, {refused} x 429", f"bound {bound:.1f} s ({side.split()[0]}); "
                 f"goal <= {GOAL}", ratio, ratio <= GOAL and written > 0, notes)
    print_figure(fig)
    return fig


def quick() -> Figure:
    return run(contacts=500, scale=5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--contacts", type=int, default=3000)
    ap.add_argument("--scale", type=float, default=5, help="multiply both vendors' default limits")
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--quick", action="store_true", help="500 contacts (about 10 s)")
    a = ap.parse_args()
    if a.quick:
        quick()
    else:
        run(a.contacts, a.scale, a.latency, a.concurrency)


if __name__ == "__main__":
    main()
