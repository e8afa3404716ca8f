"""Issue 10 figure: a run's wall time ÷ the ETA its plan printed. Goal: within 10 %.

    python bench/plan_eta.py [--contacts 20000] [--scale 20] [--latency 0.01]
                             [--source csv|realvolve] [--concurrency 8]

A deterministic sandbox migration into a REI Software simulator, through the real CLI:
``migrator validate --latency L`` makes and stores the plan (its ETA), then
``migrator run`` migrates, and its report gives the time the engine took. The REI
simulator keeps its vendor's limit *shape* (100 requests per 10 s, sliding window,
``X-RateLimit-*`` headers) scaled by ``--scale`` — and the job's ``rate_limit`` with it —
so 20,000 contacts take under two minutes instead of over half an hour; the simulator answers
after ``--latency`` seconds, which the plan is told. The source is the sandbox's clean
people as a contacts CSV (no requests), or a Realvolve simulator (its 10/s scaled the
same way: list pages, one contact_detail per contact) with ``--source realvolve``.

Printed: the plan's requests and ETA, the run's requests and time, and wall ÷ ETA.

Measured on the shared 2-core VM (latency 0.01 s, concurrency 8), engine time ÷ ETA:

    csv → rei        20,000 contacts  ×20   ETA 101.5 s  took 103.8 s   1.023
    csv → rei         4,000 contacts  ×20   ETA  20.3 s  took  20.7 s   1.017
    csv → rei         2,000 contacts  ×10   ETA  20.3 s  took  20.4 s   1.004
    realvolve → rei   2,000 contacts  ×10   ETA  21.4 s  took  21.5 s   1.003
    csv → rei        20,000 contacts  ×40   ETA  50.8 s  took  60.6 s   1.19  (400 requests/s:
        migrator and simulator CPU, with other test runs on the machine, set the pace)
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from migrator.sandbox.base import Faults  # noqa: E402
from migrator.sandbox.data import CLEAN, people  # noqa: E402
from migrator.sandbox.exports import id_column, write_export  # noqa: E402
from migrator.sandbox.server import SandboxThread, make  # noqa: E402


def job_text(source: str, scale: int, concurrency: int, rei_url_var: str = "REI_BASE_URL") -> str:
    if source == "csv":
        src = f"{{system: csv, path: export.csv, id_column: '{id_column('csv')}'}}"
        mapping = ROOT / "mappings" / "csv-to-rei.yaml"
    else:
        src = ("{system: realvolve, base_url: '${REALVOLVE_BASE_URL}', "
               f"rate_limit: {{requests: {10 * scale}, per: 1}}, "
               "client_id: '${REALVOLVE_CLIENT_ID}', client_secret: '${REALVOLVE_CLIENT_SECRET}', "
               "utility_api_key: '${REALVOLVE_UTILITY_API_KEY}'}")
        mapping = ROOT / "mappings" / "realvolve-to-rei.yaml"
    tgt = (f"{{system: rei, base_url: '${{{rei_url_var}}}', api_key: '${{REI_API_KEY}}', "
           f"rate_limit: {{requests: {100 * scale}, per: 10}}}}")
    return (f"name: plan-eta\nsource: {src}\ntarget: {tgt}\nmapping: {mapping}\n"
            f"checkpoint: ckpt.sqlite\nreports: reports\nconcurrency: {concurrency}\n")


def migrator(env: dict[str, str], cwd: Path, *args: str) -> tuple[float, float]:
    """Wall time and CPU time (user + sys) of one ``migrator`` command."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "migrator.cli", *args, "--no-progress"],
                                cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        code = os.waitstatus_to_exitcode(status)
        if code not in (0, 1):
            err.seek(0)
            sys.exit(f"migrator {' '.join(args)} exited {code}:\n{err.read().decode()}")
    return wall, usage.ru_utime + usage.ru_stime


def _cpu_self() -> float:
    """CPU time of this process: the simulators' threads."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--contacts", type=int, default=20_000)
    ap.add_argument("--scale", type=int, default=20, help="simulator limits and job rate_limit × this")
    ap.add_argument("--latency", type=float, default=0.01, help="seconds each simulated request takes")
    ap.add_argument("--source", choices=("csv", "realvolve"), default="csv")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()

    t0 = time.perf_counter()
    persons = people(args.contacts, args.seed, CLEAN)
    print(f"seeded {args.contacts:,} people in {time.perf_counter() - t0:.1f} s (not timed)")
    faults = Faults(latency=args.latency)
    sims = {"rei": make("rei", contacts=0, seed=args.seed + 1, faults=faults, limit=(100 * args.scale, 10.0))}
    if args.source == "realvolve":
        sims["realvolve"] = make("realvolve", contacts=args.contacts, seed=args.seed, faults=faults,
                                 limit=(10 * args.scale, 1.0))
    root = Path(tempfile.mkdtemp(prefix="bench-plan-eta-"))
    if args.source == "csv":
        write_export("csv", root / "export.csv", persons)
    (root / "job.yaml").write_text(job_text(args.source, args.scale, args.concurrency))
    with SandboxThread(sims) as sandbox:
        env = {**os.environ, **sandbox.env()}
        job = str(root / "job.yaml")
        migrator(env, root, "validate", job, "--latency", str(args.latency))
        plan = orjson.loads((root / "reports" / "plan-eta-plan.json").read_bytes())
        sim_cpu0 = _cpu_self()
        wall, cpu = migrator(env, root, "run", job)
        sim_cpu = _cpu_self() - sim_cpu0
        report = orjson.loads((root / "reports" / "plan-eta-run-report.json").read_bytes())
    eta = plan["eta_seconds"]
    engine = report["seconds"]
    print(f"{args.source} → rei, {args.contacts:,} contacts, limits ×{args.scale} "
          f"(rei {100 * args.scale} / 10 s), latency {args.latency} s, concurrency {args.concurrency}")
    for role in ("source", "target"):
        kinds = report["plan"]["requests"][role]["kinds"]
        if kinds:
            parts = ", ".join(f"{k} {v['planned']:,}/{v['actual']:,}" for k, v in kinds.items())
            retries = report["requests"][role].get("retries") or {}
            again = f"; retries (counted in actual): {retries}" if retries else ""
            print(f"  {role} requests planned/actual: {parts}{again}")
    print(f"  plan ETA          {eta:8.1f} s")
    print(f"  run (engine)      {engine:8.1f} s   ratio {engine / eta:.3f}")
    print(f"  run (process)     {wall:8.1f} s   ratio {wall / eta:.3f}   goal: within 10 %")
    print(f"  CPU: migrator {cpu:.1f} s ({cpu / wall:.0%} of a core), simulator {sim_cpu:.1f} s "
          f"({sim_cpu / wall:.0%}) of {os.cpu_count()} cores — when they near a core each, the machine, "
          "not the rate limit, sets the pace")


if __name__ == "__main__":
    main()
