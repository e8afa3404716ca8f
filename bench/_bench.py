"""What the issue-8 benchmarks share: a sandbox in its own process, the real CLI in
another (its rusage read with os.wait4), job files, and the checkpoint's write times.

The sandbox runs apart so its CPU never counts as the migrator's, and the migrator runs
as `python -m migrator.cli`, exactly what a user starts.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MAPPINGS = ROOT / "mappings"
PY = sys.executable

# Job blocks; credentials and URLs come from the sandbox's environment, never the file.
REI_TARGET = "{{system: rei, base_url: '${{REI_BASE_URL}}', api_key: '${{REI_API_KEY}}', rate_limit: {limit}}}"
REALVOLVE_SOURCE = ("{{system: realvolve, base_url: '${{REALVOLVE_BASE_URL}}', client_id: '${{REALVOLVE_CLIENT_ID}}', "
                    "client_secret: '${{REALVOLVE_CLIENT_SECRET}}', "
                    "utility_api_key: '${{REALVOLVE_UTILITY_API_KEY}}', rate_limit: {limit}}}")
SPARK_SOURCE = "{{system: spark, base_url: '${{SPARK_BASE_URL}}', access_token: '${{SPARK_ACCESS_TOKEN}}', rate_limit: {limit}}}"
REI_SOURCE = "{{system: rei, base_url: '${{REI_BASE_URL}}', api_key: '${{REI_API_KEY}}', rate_limit: {limit}}}"
JSONL_SOURCE = "{system: jsonl, path: contacts.jsonl, id_column: id}"


def limit_yaml(requests: int | None, per: float = 1.0) -> str:
    return "off" if requests is None else f"{{requests: {requests}, per: {per:g}}}"


@dataclass
class Figure:
    """One row of the run_all table."""

    bench: str
    figure: str
    bound: str
    ratio: float | None
    ok: bool | None
    notes: list[str] = field(default_factory=list)


def print_figure(f: Figure) -> None:
    verdict = "n/a" if f.ok is None else ("PASS" if f.ok else "FAIL")
    ratio = "-" if f.ratio is None else f"{f.ratio:.3f}"
    print(f"=> {f.bench}: {f.figure}; {f.bound}; ratio {ratio}: {verdict}", flush=True)
    for n in f.notes:
        print(f"   note: {n}", flush=True)


def tmpdir(name: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))


class SandboxProc:
    """`python -m migrator.sandbox.cli` in its own process; ``env`` holds what it exports."""

    def __init__(self, only: list[str], *, contacts: int = 0, latency: float | None = None,
                 limits: dict[str, str] | None = None, no_limits: bool = True, seed: int = 1,
                 log: Path | None = None):
        self.cmd = [PY, "-m", "migrator.sandbox.cli", "--contacts", str(contacts), "--seed", str(seed)]
        for v in only:
            self.cmd += ["--only", v]
        if no_limits:
            self.cmd.append("--no-limits")
        if latency is not None:
            self.cmd += ["--latency", str(latency)]
        for vendor, spec in (limits or {}).items():
            self.cmd += ["--limit", f"{vendor}={spec}"]
        self.env: dict[str, str] = {}
        self.proc: subprocess.Popen | None = None
        self.log = log  # the server's stderr goes here instead of the terminal (expected noise)

    def __enter__(self) -> "SandboxProc":
        err = open(self.log, "w") if self.log else None
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        if err is not None:
            err.close()
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            m = re.match(r"\s*export (\w+)=(\S+)", line)
            if m:
                self.env[m.group(1)] = m.group(2)
            if "Ctrl-C" in line:
                break
        if not self.env:
            self.__exit__()
            raise SystemExit(f"the sandbox did not start: {' '.join(self.cmd)}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(30)
            if self.proc.stdout is not None:
                self.proc.stdout.close()

    def url(self, vendor: str) -> str:
        return self.env[f"{vendor.upper()}_BASE_URL"]

    def stats(self, vendor: str) -> dict[str, Any]:
        """The simulator's counters; ``creates_by_key`` dropped (large, not needed here)."""
        with urllib.request.urlopen(f"{self.url(vendor)}/_sandbox/stats", timeout=30) as r:
            d = json.loads(r.read())
        d.pop("creates_by_key", None)
        return d

    def reset(self, vendor: str) -> None:
        req = urllib.request.Request(f"{self.url(vendor)}/_sandbox/reset", method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            r.read()


@dataclass
class Run:
    wall: float
    cpu: float          # user + sys of the migrator process
    maxrss_mb: float
    returncode: int
    stderr: str
    started: float      # time.time() just before the process was started


# Started from the bench, a child's ru_maxrss would start at the bench's own peak RSS
# (Linux carries the old memory's high-water mark across exec), so a small launcher
# (python -S, ~11 MB) starts the migrator and reports its rusage: the migrator's peak RSS
# is then its own whenever it is above the launcher's.
LAUNCH = ("import os, sys, time\n"
          "t0 = time.perf_counter()\n"
          "pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)\n"
          "_, status, ru = os.wait4(pid, 0)\n"
          "wall = time.perf_counter() - t0\n"
          "with open(sys.argv[1], 'w') as fh:\n"
          "    fh.write(repr((os.waitstatus_to_exitcode(status), wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss)))\n")


def run_cli(args: list[str], *, env: dict[str, str] | None = None, check: bool = True,
            cwd: Path | None = None) -> Run:
    """Run `python -m migrator.cli ARGS`, its rusage read from the kernel (os.wait4, in
    the launcher), so CPU and peak RSS are the migrator's alone."""
    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        report = Path(tmp) / "rusage"
        with open(Path(tmp) / "stderr", "w+b") as err:
            started = time.time()
            subprocess.run([PY, "-S", "-c", LAUNCH, str(report), PY, "-m", "migrator.cli", *args],
                           stdout=subprocess.DEVNULL, stderr=err, env={**os.environ, **(env or {})}, cwd=cwd,
                           check=True)
            err.seek(0)
            text = err.read().decode(errors="replace")
        code, wall, cpu, maxrss = ast.literal_eval(report.read_text())
    if check and code not in (0, 1):
        raise SystemExit(f"migrator {' '.join(args)} exited {code}:\n{text[-2000:]}")
    return Run(wall, cpu, maxrss / 1024, code, text, started)


def startup_cpu(modules: str = "migrator.cli, migrator.engine, migrator.job, migrator.checkpoint, "
                "migrator.connectors.files, migrator.connectors.rei, aiohttp, tqdm",
                repeat: int = 3) -> float:
    """CPU seconds of an interpreter that only imports what a run imports: the part of a
    run's CPU that is start-up, not engine work (median of a few)."""
    cpus = []
    for _ in range(repeat):
        proc = subprocess.Popen([PY, "-c", f"import {modules}"])
        _, _, ru = os.wait4(proc.pid, 0)
        cpus.append(ru.ru_utime + ru.ru_stime)
    return statistics.median(cpus)


def write_job(root: Path, *, source: str, target: str, mapping: str | Path, concurrency: int = 8,
              name: str = "bench", extra: str = "") -> Path:
    """A job file in ``root``; ``mapping`` is a path or an inline YAML mapping block."""
    root.mkdir(parents=True, exist_ok=True)
    if isinstance(mapping, Path):
        mapping_line = f"mapping: '{mapping}'"
    else:
        mapping_line = "mapping:\n" + "".join(f"  {line}\n" for line in mapping.splitlines())
    (root / "job.yaml").write_text(f"""name: {name}
source: {source}
target: {target}
{mapping_line.rstrip()}
checkpoint: ckpt.sqlite
reports: reports
concurrency: {concurrency}
{extra}""")
    return root / "job.yaml"


def done_times(ckpt: Path, since: float | None = None, new_only: bool = False) -> list[float]:
    """When the engine settled each written record (``records.updated`` of ``done`` rows,
    time.time() stamped right after the target answered), sorted. ``new_only`` leaves out
    records settled by a lookup (action ``matched``): those were not written this time."""
    conn = sqlite3.connect(f"file:{ckpt}?mode=ro", uri=True)
    try:
        q = "SELECT updated FROM records WHERE status='done'"
        params: list[Any] = []
        if since is not None:
            q += " AND updated >= ?"
            params.append(since)
        if new_only:
            q += " AND COALESCE(action, '') != 'matched'"
        return sorted(r[0] for r in conn.execute(q, params))
    finally:
        conn.close()


def done_ids(ckpt: Path) -> set[str]:
    conn = sqlite3.connect(f"file:{ckpt}?mode=ro", uri=True)
    try:
        return {r[0] for r in conn.execute("SELECT source_id FROM records WHERE status='done'")}
    finally:
        conn.close()


def status_counts(ckpt: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{ckpt}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT status, COUNT(*) FROM records GROUP BY status").fetchall())
    finally:
        conn.close()


def write_rate(times: list[float]) -> float:
    """Writes per second between the first and the last write: n - 1 intervals."""
    if len(times) < 2 or times[-1] <= times[0]:
        return 0.0
    return (len(times) - 1) / (times[-1] - times[0])


def window_summary(stats: dict[str, Any]) -> str:
    w = stats.get("window")
    s = f"429s {stats.get('rate_limited', 0)}"
    if w:
        s += (f", admitted {w['admitted']}, largest count in any {w['period']:g} s window "
              f"{w['max_in_window']} (limit {w['limit']})")
    return s


def rate_limited_main(run: Any, quick: Any, doc: str, *, latency: float) -> None:
    """The command line of a bench that writes seeded contacts into a rate-limited REI
    simulator (rate_bound, resume): sizes, rate, latency, concurrency, or --quick."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--contacts", type=int, default=5000)
    ap.add_argument("--rate", type=int, default=50)
    ap.add_argument("--latency", type=float, default=latency)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--quick", action="store_true", help="500 contacts")
    a = ap.parse_args()
    if a.quick:
        quick()
    else:
        run(a.contacts, a.rate, a.latency, a.concurrency)
