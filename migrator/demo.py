"""``migrator demo``: a whole migration, Realvolve -> REI Software, on the built-in sandbox.

No network and no account: the sandbox serves both APIs on loopback, seeded with a
Realvolve account of dirty, realistic contacts and an empty REI location. The demo
writes a job with the shipped mapping into ``--dir``, validates it, runs it, interrupts
itself part-way (as Ctrl-C would), resumes, and prints the report and what to try next.
The vendors' rate limits are kept, scaled up so the demo takes well under a minute.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import anyio

from .engine import Engine
from .job import load_job
from .lock import JobLock, lock_path
from .plan import save_plan, validate_with_plan
from .report import FailureSink, finish, report_paths
from .resources import mapping_file
from .sandbox.data import DIRTY
from .sandbox.server import Sandbox, make

SCALE = 20  # the demo runs the vendors' limits this many times faster
REALVOLVE_LIMIT = (10 * SCALE, 1.0)
REI_LIMIT = (100 * SCALE, 10.0)

JOB = f"""\
# The demo's job: Realvolve -> REI Software on the built-in sandbox.
# The credentials and URLs are the sandbox's, passed in the environment as a real job's are.
name: demo
source:
  system: realvolve
  base_url: ${{REALVOLVE_BASE_URL}}
  client_id: ${{REALVOLVE_CLIENT_ID}}
  client_secret: ${{REALVOLVE_CLIENT_SECRET}}
  utility_api_key: ${{REALVOLVE_UTILITY_API_KEY}}
  rate_limit: {{requests: {REALVOLVE_LIMIT[0]}, per: {REALVOLVE_LIMIT[1]:g}}}   # Realvolve's default x{SCALE}
target:
  system: rei
  base_url: ${{REI_BASE_URL}}
  api_key: ${{REI_API_KEY}}
  rate_limit: {{requests: {REI_LIMIT[0]}, per: {REI_LIMIT[1]:g}}}   # REI Software's published limit x{SCALE}
mapping: mapping.yaml
checkpoint: demo.ckpt.sqlite
reports: reports
concurrency: 16
"""


def demo(args: argparse.Namespace) -> int:
    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    # The demo writes a job like any other: it is that job's only writer, and a second
    # demo in the same folder is refused before it clears the first one's checkpoint.
    with JobLock(lock_path(root / "demo.ckpt.sqlite"), root / "job.yaml", "demo"):
        for stale in ("demo.ckpt.sqlite", "demo.ckpt.sqlite-wal", "demo.ckpt.sqlite-shm"):
            (root / stale).unlink(missing_ok=True)
        shutil.copyfile(mapping_file("realvolve", "rei"), root / "mapping.yaml")
        (root / "job.yaml").write_text(JOB, encoding="utf-8")
        progress = False if args.no_progress else None
        say = lambda s="": print(s, file=sys.stderr)  # noqa: E731
        n = args.contacts

        async def main() -> None:
            sims = {"realvolve": make("realvolve", contacts=n, seed=2026, dirt=DIRTY, limit=REALVOLVE_LIMIT),
                    "rei": make("rei", contacts=0, seed=2027, limit=REI_LIMIT)}
            async with Sandbox(sims) as sandbox:
                job = load_job(root / "job.yaml", env=sandbox.env())
                say(f"demo: a Realvolve account with {n} contacts (some deliberately dirty) and\n"
                    f"      an empty REI Software location, both simulated on loopback;\n"
                    f"      rate limits are the vendors' x{SCALE}.\n")

                say("1/3  migrator validate — read, map and validate every contact; write nothing")
                sink = FailureSink(report_paths(job, "validate")[1])
                outcome, plan = await validate_with_plan(Engine(job, mode="validate", progress=progress, sink=sink))
                sink.close()
                say(finish(job, outcome, "validate", plan)[1])
                if plan is not None:
                    save_plan(job, plan)  # the run's report sets these counts beside what it spent
                    say(plan.render())

                stop = max(1, n * 2 // 5)
                say(f"2/3  migrator run — stopped after {stop} contacts are written,\n"
                    f"     as a Ctrl-C or a crash would stop it")
                outcome = await Engine(job, mode="run", progress=progress, stop_after=stop).run()
                say(finish(job, outcome, "run")[1])

                say("3/3  migrator run again — resumes from the checkpoint;\n"
                    "     nothing is written twice")
                outcome = await Engine(job, mode="run", progress=progress).run()
                report, text = finish(job, outcome, "run")
                say(text)
                held = len(sims["rei"].inspect_records("contacts"))
                dups = sims["rei"].duplicates()
                say(f"REI Software now holds {held} contacts; contacts created twice: {len(dups)}.\n"
                    f"Merges (two Realvolve contacts with one e-mail) are listed in the report.")

        anyio.run(main)
    tries = [(f"migrator status {root / 'job.yaml'}", "what is done, failed, pending"),
             (f"less {root / 'reports' / 'demo-run-failures.csv'}", "every failed contact and why"),
             ("migrator fields rei", "what REI Software accepts"),
             ("migrator connectors", "every system, what it reads and writes"),
             ("migrator init realvolve rei --out my-job", "a job of your own, same mapping"),
             ("migrator sandbox", "the simulated APIs, to point a job at")]
    say(f"\nEverything the demo wrote is in {root}/:\n"
        "  job.yaml, mapping.yaml, the checkpoint, reports/.\nTry next:")
    say(_commands(tries))
    return 0


def _commands(tries: list[tuple[str, str]], width: int = 80) -> str:
    """Commands a person pastes, each with what it shows: the comment beside it when
    that fits ``width``, else on its own line above (a path is never broken)."""
    col = max((len(cmd) for cmd, what in tries if len(cmd) + 6 + len(what) <= width), default=0) + 4
    out = []
    for cmd, what in tries:
        if col + len(what) + 2 <= width:
            out.append(f"  {cmd:<{col - 2}}# {what}")
        else:
            out += [f"  # {what}", f"  {cmd}"]
    return "\n".join(out)
