"""``migrator demo``: a whole migration, with no network and no setup.

Writes a job into ``--dir``, validates it, runs it, interrupts itself part-way (as a
Ctrl-C would), resumes, and prints where everything is and what to try next.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import anyio

from .engine import Engine
from .job import load_job
from .report import (FailureSink, build_report, checkpoint_facts, report_paths, summary,
                     write_failures_from_checkpoint, write_report)
from .sandbox.data import DIRTY, people

FILE_MAPPING = """\
# Demo mapping: a CRM's CSV export -> a JSON Lines file another CRM imports.
source: csv
target: jsonl
streams:
  contacts:
    match_on: [email]
    skip_if: [{path: Status, equals: Archived}]
    fields:
      first_name: {path: First Name, transform: [strip]}
      last_name: {path: Last Name, transform: [strip]}
      email: {path: Email, transform: [strip, lower, drop_empty]}
      phone: {path: Phone, transform: [phone_e164], on_error: drop}
      address: {template: "{Street}, {City}, {State} {Zip}"}
      state: {path: State, transform: [state_abbrev], on_error: drop}
      zip: {path: Zip, transform: [zip5], on_error: drop}
      tags: {path: Tags, transform: [split, unique]}
      status: {path: Status, map: {Lead: new_lead, Prospect: contact_made, Client: active, Past Client: active}, default: new_lead}
      birthday: {path: Birthday, transform: [{date: {format: "%d/%m/%Y"}}], on_error: drop}
"""

FILE_JOB = """\
name: demo
source: {system: csv, path: contacts.csv, id_column: id}
target: {system: jsonl, path: out/contacts.jsonl}
mapping: mapping.yaml
checkpoint: demo.ckpt.sqlite
reports: reports
concurrency: 8
"""


def _write_csv(path: Path, n: int) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "First Name", "Last Name", "Email", "Phone", "Street", "City", "State", "Zip",
                     "Tags", "Status", "Birthday"])
        for p in people(n, seed=7, dirt=DIRTY):
            a = p.addresses[0]
            w.writerow([p.uid, p.first_name, p.last_name, p.email or "", p.phone or "", a.street, a.city,
                        a.state, a.zip, ", ".join(p.tags), p.status,
                        p.birthday.isoformat() if p.birthday else ""])


def _report(job, outcome, mode: str) -> str:
    json_path, csv_path = report_paths(job, mode)
    facts = None
    if mode != "validate":
        write_failures_from_checkpoint(job.checkpoint, csv_path)
        facts = checkpoint_facts(job.checkpoint)
    report = build_report(job, outcome, facts)
    write_report(json_path, report)
    return summary(report, json_path, csv_path)


def demo(args: argparse.Namespace) -> int:
    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    for stale in ("demo.ckpt.sqlite", "demo.ckpt.sqlite-wal", "demo.ckpt.sqlite-shm", "out/contacts.jsonl"):
        (root / stale).unlink(missing_ok=True)
    _write_csv(root / "contacts.csv", args.contacts)
    (root / "mapping.yaml").write_text(FILE_MAPPING, encoding="utf-8")
    (root / "job.yaml").write_text(FILE_JOB, encoding="utf-8")
    job = load_job(root / "job.yaml")
    progress = False if args.no_progress else None
    say = lambda s: print(s, file=sys.stderr)  # noqa: E731

    say(f"demo: {args.contacts} contacts exported to {root / 'contacts.csv'} (some deliberately dirty)\n")
    say("1/3 validate: read, map and validate everything, write nothing")
    json_path, csv_path = report_paths(job, "validate")
    sink = FailureSink(csv_path)
    outcome = anyio.run(Engine(job, mode="validate", progress=progress, sink=sink).run)
    sink.close()
    say(_report(job, outcome, "validate"))

    half = max(1, args.contacts // 2)
    say(f"2/3 run, interrupted after about {half} records (as Ctrl-C would)")
    engine = Engine(job, mode="run", progress=progress, stop_after=half)
    outcome = anyio.run(engine.run)
    say(_report(job, outcome, "run"))

    say("3/3 run again: resumes from the checkpoint, skips what is done")
    outcome = anyio.run(Engine(job, mode="run", progress=progress).run)
    say(_report(job, outcome, "run"))
    say("Try next:\n"
        f"  migrator status {root / 'job.yaml'}\n"
        f"  migrator validate {root / 'job.yaml'}\n"
        f"  migrator retry {root / 'job.yaml'}      # after fixing what failed\n"
        "  migrator connectors\n"
        "  migrator init realvolve rei --out my-job/")
    return 0
