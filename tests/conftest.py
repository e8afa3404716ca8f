"""Shared helpers: write job files, run the CLI in-process or as a subprocess."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def write_csv(path: Path, rows: list[dict], header: list[str] | None = None) -> Path:
    header = header or list(rows[0])
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=header)
        w.writeheader()
        for r in rows:
            w.writerow(r)
    return path


def contacts_rows(n: int) -> list[dict]:
    return [{"id": str(i), "First Name": f"First{i}", "Last Name": f"Last{i}",
             "Email": f"person{i}@example.com", "Phone": f"+1415555{i % 10000:04d}",
             "Tags": "a, b" if i % 2 else "c"} for i in range(1, n + 1)]


FILE_MAPPING = """\
source: csv
target: jsonl
streams:
  contacts:
    match_on: [email]
    skip_if: [{path: Tags, equals: skipme}]
    fields:
      first_name: {path: First Name, transform: [strip]}
      last_name: Last Name
      email: {path: Email, transform: [strip, lower]}
      tags: {path: Tags, transform: [split]}
"""
# A file job whose phone can fail its transform: a row fails alone, by its id and value.
PHONE_MAPPING = """\
source: csv
target: jsonl
streams:
  contacts:
    fields:
      email: {path: Email, transform: [strip, lower]}
      phone: {path: Phone, transform: [phone_e164]}
"""


def file_job(tmp: Path, rows: list[dict] | None = None, *, mapping: str = FILE_MAPPING,
             extra: str = "", target: str = "{system: jsonl, path: out.jsonl}",
             concurrency: int = 4) -> Path:
    if rows is not None:
        write_csv(tmp / "in.csv", rows)
    (tmp / "mapping.yaml").write_text(mapping)
    job = tmp / "job.yaml"
    job.write_text(f"""name: t
source: {{system: csv, path: in.csv, id_column: id}}
target: {target}
mapping: mapping.yaml
checkpoint: ckpt.sqlite
reports: reports
concurrency: {concurrency}
{extra}""")
    return job


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    e = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "migrator.cli", *args], capture_output=True, text=True,
                          env=e, cwd=cwd, timeout=timeout)


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path
