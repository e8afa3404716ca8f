"""Issue 2 / 8 figure: peak RSS of a run at several sizes, file -> file and API -> file.

    python bench/memory_flat.py [ROWS ...] [--sandbox N ...] [--quick]
        (default: ROWS 10000 1000000, --sandbox 10000 100000)

Memory must stay flat however many records flow: goal, the peak RSS of the migrator
process (os.wait4) within 50 MB across sizes, for each variant.

- file -> file: bench/_data.py's synthetic CSV mapped to JSONL.
- sandbox read: the REI Software simulator seeded with N contacts (its own process, no
  limit, no latency), read 100 a page with cursor paging and written to JSONL. 1M is not
  feasible here: seeding the simulator's people takes ~0.8 s per 1,000 (about 15 min for
  1M on this machine) and the simulator would hold them all in memory, so the API variant
  stops at 100k; the file variant carries the 1M proof.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _bench import REI_SOURCE, Figure, SandboxProc, limit_yaml, print_figure, run_cli, tmpdir, write_job  # noqa: E402
from _data import write_job as write_file_job  # noqa: E402

GOAL_MB = 50.0
REI_TO_JSONL = """source: rei
target: jsonl
streams:
  contacts:
    fields:
      id: id
      first_name: firstName
      last_name: lastName
      email: email
      phone: phone
      tags: tags
      custom: customFields"""


def file_run(rows: int) -> tuple[float, int]:
    root = tmpdir(f"mem-{rows}")
    job = write_file_job(root, rows)
    res = run_cli(["run", str(job), "--no-progress"])
    lines = sum(1 for _ in open(root / "out.jsonl", "rb"))
    print(f"  file -> file {rows:>9,} rows: peak RSS {res.maxrss_mb:6.1f} MB, wall {res.wall:7.1f} s, "
          f"cpu {res.cpu:7.1f} s, {rows / res.wall:,.0f} rec/s, lines written {lines:,}", flush=True)
    return res.maxrss_mb, lines


def sandbox_run(contacts: int) -> tuple[float, int]:
    root = tmpdir(f"mem-api-{contacts}")
    job = write_job(root, source=REI_SOURCE.format(limit=limit_yaml(None)), target="{system: jsonl, path: out.jsonl}",
                    mapping=REI_TO_JSONL, concurrency=8, name="bench-mem-api")
    with SandboxProc(["rei"], contacts=contacts) as sb:
        res = run_cli(["run", str(job), "--no-progress"], env=sb.env)
    lines = sum(1 for _ in open(root / "out.jsonl", "rb")) if (root / "out.jsonl").exists() else 0
    print(f"  REI sandbox -> file {contacts:>9,} contacts: peak RSS {res.maxrss_mb:6.1f} MB, wall {res.wall:7.1f} s, "
          f"cpu {res.cpu:7.1f} s, {contacts / res.wall:,.0f} rec/s, lines written {lines:,}", flush=True)
    return res.maxrss_mb, lines


def _figure(name: str, sizes: list[int], results: list[tuple[float, int]]) -> Figure:
    rss = [r[0] for r in results]
    spread = max(rss) - min(rss)
    short = [f"{n:,}: {r[1]:,} written" for n, r in zip(sizes, results) if r[1] != n]
    fig = Figure(name, f"peak RSS {' / '.join(f'{r:.0f}' for r in rss)} MB at {' / '.join(f'{n:,}' for n in sizes)}",
                 f"spread goal <= {GOAL_MB:.0f} MB", spread / GOAL_MB, spread <= GOAL_MB and not short,
                 [f"records missing: {', '.join(short)}"] if short else [])
    print(f"  spread of peak RSS: {spread:.1f} MB (goal <= {GOAL_MB:.0f} MB)")
    return fig


def run(rows: list[int] | None = None, sandbox: list[int] | None = None) -> list[Figure]:
    rows = [10_000, 1_000_000] if rows is None else rows
    sandbox = [10_000, 100_000] if sandbox is None else sandbox
    figs = []
    if rows:
        figs.append(_figure("memory_file", rows, [file_run(n) for n in rows]))
    if sandbox:
        figs.append(_figure("memory_api", sandbox, [sandbox_run(n) for n in sandbox]))
    for f in figs:
        print_figure(f)
    return figs


def quick() -> list[Figure]:
    return run([5_000, 50_000], [1_000, 5_000])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rows", nargs="*", type=int, help="file -> file sizes (default 10000 1000000)")
    ap.add_argument("--sandbox", nargs="*", type=int, default=None,
                    help="REI sandbox -> file sizes (default 10000 100000; none given: skip)")
    ap.add_argument("--quick", action="store_true", help="files of 5k and 50k rows, sandbox 1k and 5k")
    a = ap.parse_args()
    if a.quick:
        quick()
    else:
        run(a.rows or None, a.sandbox)


if __name__ == "__main__":
    main()
