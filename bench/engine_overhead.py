"""Issue 8, figure 5: the engine's own CPU per record.

    python bench/engine_overhead.py [--rows 200000] [--sandbox-contacts 5000] [--quick]

File -> file: bench/_data.py's 200k-row CSV (12 columns, phone/date/state transforms)
mapped to JSONL with `migrator run`. Sandbox: seeded contacts from JSONL into the REI
Software simulator with no limit and no latency (mappings/csv-to-rei.yaml), the simulator
in its own process so its CPU is not counted. CPU = user + sys of the migrator process
(os.wait4), minus the CPU of an interpreter that only imports what a run imports.
Figure: records / that CPU = records per second per core. Goal >= 20,000 for file ->
file; the sandbox figure (HTTP client included) has no goal and is shown for scale.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _bench import (JSONL_SOURCE, MAPPINGS, REI_TARGET, Figure, SandboxProc, done_times, limit_yaml,  # noqa: E402
                    print_figure, run_cli, startup_cpu, tmpdir, write_job)
from _data import write_contacts_jsonl  # noqa: E402
from _data import write_job as write_file_job  # noqa: E402

GOAL = 20_000


def file_to_file(rows: int, boot: float) -> Figure:
    root = tmpdir("overhead-file")
    job = write_file_job(root, rows)
    res = run_cli(["run", str(job), "--no-progress"])
    lines = sum(1 for _ in open(root / "out.jsonl", "rb"))
    cpu = max(res.cpu - boot, 1e-9)
    rate = rows / cpu
    print(f"  file -> file: {rows:,} rows, {lines:,} written; wall {res.wall:.2f} s, cpu {res.cpu:.2f} s "
          f"(- {boot:.2f} s start-up) -> {rate:,.0f} records/s per core, {cpu / rows * 1000 * 1000:.1f} ms CPU "
          "per 1,000 records", flush=True)
    notes = [] if lines == rows else [f"{lines} of {rows} rows written"]
    return Figure("overhead_file", f"{rate:,.0f} rec/s/core ({cpu / rows * 1e6:.0f} ms CPU / 1k)",
                  f"goal >= {GOAL:,} rec/s/core", rate / GOAL, rate >= GOAL and lines == rows, notes)


def sandbox_run(contacts: int, boot: float) -> Figure:
    root = tmpdir("overhead-api")
    write_contacts_jsonl(root / "contacts.jsonl", contacts)
    job = write_job(root, source=JSONL_SOURCE, target=REI_TARGET.format(limit=limit_yaml(None)),
                    mapping=MAPPINGS / "csv-to-rei.yaml", concurrency=8, name="bench-overhead")
    with SandboxProc(["rei"]) as sb:
        res = run_cli(["run", str(job), "--no-progress"], env=sb.env)
    written = len(done_times(root / "ckpt.sqlite"))
    cpu = max(res.cpu - boot, 1e-9)
    rate = written / cpu
    print(f"  JSONL -> REI sandbox: {contacts:,} contacts, {written:,} written; wall {res.wall:.2f} s, "
          f"cpu {res.cpu:.2f} s (- {boot:.2f} s start-up) -> {rate:,.0f} records/s per core, "
          f"{cpu / max(written, 1) * 1e6:.1f} ms CPU per 1,000 records", flush=True)
    return Figure("overhead_api", f"{rate:,.0f} rec/s/core ({cpu / max(written, 1) * 1e6:.0f} ms CPU / 1k)",
                  "no goal (HTTP included)", None, None)


def run(rows: int = 200_000, sandbox_contacts: int = 5000) -> list[Figure]:
    boot = startup_cpu()
    print(f"engine overhead: CPU of the migrator process minus {boot:.2f} s of interpreter start-up and imports")
    figs = []
    if rows:
        figs.append(file_to_file(rows, boot))
    if sandbox_contacts:
        figs.append(sandbox_run(sandbox_contacts, boot))
    for f in figs:
        print_figure(f)
    return figs


def quick() -> list[Figure]:
    return run(rows=20_000, sandbox_contacts=1000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000, help="file -> file rows (0: skip)")
    ap.add_argument("--sandbox-contacts", type=int, default=5000, help="JSONL -> REI sandbox contacts (0: skip)")
    ap.add_argument("--quick", action="store_true", help="20,000 rows and 1,000 contacts")
    a = ap.parse_args()
    if a.quick:
        quick()
    else:
        run(a.rows, a.sandbox_contacts)


if __name__ == "__main__":
    main()
