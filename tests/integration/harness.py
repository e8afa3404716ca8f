"""Round trips between sandbox systems through the real job loader and engine.

    async with Pair(tmp, "realvolve", "rei", n=500) as pair:
        outcome = await pair.run()                 # or mode="validate", stop_after=…
        records = pair.target_records()            # what the target simulator now holds

The source simulator is seeded with ``n`` people (dirty data included); the target starts
empty, or holding some of the same people (``preseed``: a target the team already uses).
CSV sources get an export written from the same seeded people. Simulator rate
limits are off and the job's are high, so tests measure behaviour, not waiting.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from migrator.engine import Engine, Outcome
from migrator.job import load_job
from migrator.sandbox.base import Faults
from migrator.sandbox.data import DIRTY, Dirt, people
from migrator.sandbox.exports import EXPORTS, id_column, write_export
from migrator.sandbox.server import Sandbox, SandboxThread, make

ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = ROOT / "mappings"
CSV_SOURCES = set(EXPORTS)
FILE_TARGETS = ("csv", "jsonl")   # written to out-<stream>.<csv|jsonl> beside the job, no simulator
TARGET_STREAM = {"brokerkit": "leads"}
CREDENTIALS = {
    "realvolve": {"client_id": "REALVOLVE_CLIENT_ID", "client_secret": "REALVOLVE_CLIENT_SECRET",
                  "utility_api_key": "REALVOLVE_UTILITY_API_KEY"},
    "spark": {"access_token": "SPARK_ACCESS_TOKEN"},
    "rei": {"api_key": "REI_API_KEY"},
    "realeflow": {"api_key": "REALEFLOW_API_KEY"},
    "brokerkit": {"api_key": "BROKERKIT_API_KEY"},
}


def mapping_path(source: str, target: str) -> Path:
    return MAPPINGS / f"{source}-to-{target}.yaml"


def system_block(system: str, extra: dict[str, Any] | None = None,
                 credentials: dict[str, str] | None = None) -> str:
    extra = dict(extra or {})
    parts = [f"system: {system}", f"base_url: '${{{system.upper()}_BASE_URL}}'",
             f"rate_limit: {extra.pop('rate_limit', '{requests: 2000, per: 1}')}"]
    parts += [f"{k}: '${{{v}}}'" for k, v in (credentials or CREDENTIALS[system]).items()]
    parts += [f"{k}: {v}" for k, v in extra.items()]
    return "{" + ", ".join(parts) + "}"


class Pair:
    def __init__(self, tmp: Path, source: str, target: str, *, n: int = 500, seed: int = 11,
                 dirt: Dirt = DIRTY, faults: Faults | None = None, concurrency: int = 16,
                 on_uncertain: str = "retry", mapping: Path | None = None,
                 source_sim: dict[str, Any] | None = None, target_sim: dict[str, Any] | None = None,
                 target_settings: dict[str, Any] | None = None,
                 source_settings: dict[str, Any] | None = None,
                 source_credentials: dict[str, str] | None = None, preseed: Any = None,
                 on_merge: str | None = None):
        self.tmp, self.source, self.target = tmp, source, target
        self.people = people(n, seed, dirt)
        sims = {}
        if source not in CSV_SOURCES:
            sims[source] = make(source, contacts=n, seed=seed, dirt=dirt, **{"limit": None, **(source_sim or {})})
        if target not in FILE_TARGETS:
            sims[target] = make(target, contacts=0, seed=seed + 1, faults=faults, **{"limit": None, **(target_sim or {})})
        # The people the target holds before the run: a list, or every k-th one for a share.
        self.preseeded = (preseed if isinstance(preseed, list) else
                          self.people[::max(1, round(1 / preseed))] if preseed else [])
        if self.preseeded:
            seed_target(sims[target], self.preseeded)
        self.on_merge = on_merge
        self.sandbox = Sandbox(sims)
        self.mapping = mapping or mapping_path(source, target)
        self.concurrency = concurrency
        self.on_uncertain = on_uncertain
        self.target_settings = target_settings
        self.source_settings = source_settings
        self.source_credentials = source_credentials

    @property
    def target_sim(self):
        return self.sandbox[self.target]

    @property
    def source_sim(self):
        return self.sandbox[self.source]

    async def __aenter__(self) -> "Pair":
        await self.sandbox.start()
        self._write_job()
        return self

    def _write_job(self) -> None:
        if self.source in CSV_SOURCES:
            write_export(self.source, self.tmp / "export.csv", self.people)
            src = f"{{system: csv, path: export.csv, id_column: '{id_column(self.source)}'}}"
        else:
            src = system_block(self.source, self.source_settings, credentials=self.source_credentials)
        dst = (f"{{system: {self.target}, path: 'out-{{stream}}.{self.target}'}}" if self.target in FILE_TARGETS
               else system_block(self.target, self.target_settings))
        (self.tmp / "job.yaml").write_text(
            f"name: {self.source}-to-{self.target}\n"
            f"source: {src}\n"
            f"target: {dst}\n"
            f"mapping: {self.mapping}\n"
            f"checkpoint: ckpt.sqlite\nreports: reports\n"
            f"concurrency: {self.concurrency}\non_uncertain: {self.on_uncertain}\n"
            + (f"on_merge: {self.on_merge}\n" if self.on_merge else ""))

    async def __aexit__(self, *exc: object) -> None:
        await self.sandbox.stop()

    @property
    def env(self) -> dict[str, str]:
        return self.sandbox.env()

    def job(self):
        return load_job(self.tmp / "job.yaml", env=self.env)

    async def run(self, mode: str = "run", **kwargs: Any) -> Outcome:
        return await Engine(self.job(), mode=mode, progress=False, **kwargs).run()

    def target_records(self, stream: str = "contacts") -> list[dict[str, Any]]:
        if self.target in FILE_TARGETS:
            return read_file_target(self.tmp / f"out-{stream}.{self.target}")
        return self.target_sim.inspect_records(TARGET_STREAM.get(self.target, "contacts"))


class ThreadPair(Pair):
    """The same pair with the simulators in a background thread, for tests that run
    ``migrator`` as a subprocess (and kill it)."""

    def __enter__(self) -> "ThreadPair":
        self._thread = SandboxThread(self.sandbox.sims)
        self._thread.__enter__()
        self.sandbox = self._thread.sandbox
        self._write_job()
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.__exit__(*exc)

    def cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "migrator.cli", *args, str(self.tmp / "job.yaml"), "--no-progress"]

    def main(self, monkeypatch: Any, capsys: Any, *args: str) -> tuple[int, str]:
        """``migrator ARGS job.yaml`` in this process (the pair's credentials in the
        environment): its exit code and what it printed to stderr."""
        from migrator.cli import main
        for k, v in self.env.items():
            monkeypatch.setenv(k, v)
        capsys.readouterr()
        code = main([*args, str(self.tmp / "job.yaml"), "--no-progress"])
        return code, capsys.readouterr().err

    def subprocess_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def run_process(self, crash: str | None = None, *args: str) -> subprocess.CompletedProcess:
        """``migrator run`` in a process of its own, killed at ``crash`` (a crashpoint
        ``name:n``, see ``migrator/crashpoints.py``) when given."""
        env = self.subprocess_env()
        env.pop("MIGRATOR_CRASH_AT", None)
        if crash:
            env["MIGRATOR_CRASH_AT"] = crash
        return subprocess.run(self.cli("run", *args), env=env, capture_output=True, text=True, timeout=180)

    def call(self, fn, *args: Any) -> Any:
        """Run ``fn`` on the sandbox's loop (reads simulator state without racing it)."""
        return self._thread.call(fn, *args)

    def target_count(self) -> int:
        return self.call(lambda: len(self.target_records()))


def read_file_target(path: Path) -> list[dict[str, Any]]:
    """The records a CSV or JSONL target holds (a CSV's cells as text)."""
    import csv
    import json
    if not path.exists():
        return []
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def seed_target(sim: Any, persons: list[Any]) -> None:
    """Make a target simulator hold ``persons`` as contacts it had before the run."""
    sim.seed_people = list(persons)
    sim.seed_properties = []
    sim.seed_data()


def people_by_source_id(pair: Pair) -> dict[str, Any]:
    """Each seeded person under the id the source gives its record (seeding keeps order)."""
    people = pair.people
    if pair.source in CSV_SOURCES:
        columns, row, id_col = EXPORTS[pair.source]
        at = columns.index(id_col)
        return {row(p)[at]: p for p in people}
    sim = pair.source_sim
    if pair.source == "rei":
        records = list(sim.contacts.values())
        id_key, name_key = "id", "firstName"
    else:
        records = sim.inspect_records("contacts")
        id_key, name_key = {"realvolve": ("id", "first_name"), "spark": ("Id", "GivenName"),
                            "realeflow": ("contactId", "fullName")}[pair.source]
    assert len(records) == len(people)
    for r, p in zip(records, people):
        assert r[name_key].startswith(p.full_name if name_key == "fullName" else p.first_name)
    return {str(r[id_key]): p for r, p in zip(records, people)}


def checkpoint_rows(pair: Pair, stream: str | None = None) -> list[tuple[str, str, str | None]]:
    """(status, source_id, error) of every record the checkpoint holds, of one stream or all."""
    import sqlite3
    with sqlite3.connect(pair.tmp / "ckpt.sqlite") as db:
        if stream is None:
            return db.execute("SELECT status, source_id, error FROM records").fetchall()
        return db.execute("SELECT status, source_id, error FROM records WHERE stream=?", (stream,)).fetchall()


REALEFLOW_API_LIMIT = 25  # contact/list returns only the newest 25, whatever the account holds


def assert_each_record_settled(pair: Pair, result: Any, rows: list[tuple[str, str, str | None]],
                               by_sid: dict[str, Any], n: int) -> list[tuple[Any, str | None]]:
    """What every pair test asks first: each record read ends done or failed, and only the
    deliberately dirty people fail. Returns the failed people with their reasons."""
    counts = result.counts
    if pair.source == "realeflow":
        assert counts["read"] == min(n, REALEFLOW_API_LIMIT)
        assert result.notice and "25" in result.notice
    else:
        assert counts["read"] == n
    assert len(rows) == counts["read"]
    assert {status for status, _, _ in rows} <= {"done", "failed"}
    failed = [(by_sid[sid], error) for status, sid, error in rows if status == "failed"]
    assert [(p.uid, error) for p, error in failed if not p.dirty] == []
    assert counts["failed"] == len(failed)
    return failed
