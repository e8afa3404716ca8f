"""Issue 18 figures: what ``migrator verify`` costs after a migration into REI and Spark.

    python bench/verify_cost.py [--contacts 2000] [--target rei|spark|both] [--latency 0.02]

A clean contacts CSV is migrated into a REI Software or Flexmls (Spark) simulator through
the real CLI (``migrator run``, the simulator's limit off and the job's high, so the
migration is quick), then ``migrator verify`` reads it back under the vendor's own limit
(the job names none, so the connector's default — REI 100 / 10 s, Spark 1,500 / 5 min —
and the simulator enforces the same from a fresh window), every request answered after
``--latency`` seconds, which verify's bill is told. Printed per target:

- requests ÷ records: what verify sent per contact it checked (goal ≤ 1.05 where a list
  read serves, 1 per record where it does not);
- wall ÷ ETA: verify's own time (its report) ÷ the ETA its bill printed;
- the checkpoint's ``sent`` table: bytes a contact, what keeping the body as sent costs.

The default size is small; the issue's figures are ``--contacts 20000``.
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from migrator.sandbox.base import Faults, SlidingWindow  # noqa: E402
from migrator.sandbox.data import CLEAN, people  # noqa: E402
from migrator.sandbox.exports import id_column, write_export  # noqa: E402
from migrator.sandbox.server import SandboxThread, make  # noqa: E402

TARGETS = {
    "rei": "{{system: rei, base_url: '${{REI_BASE_URL}}', api_key: '${{REI_API_KEY}}'{limit}}}",
    "spark": "{{system: spark, base_url: '${{SPARK_BASE_URL}}', access_token: '${{SPARK_ACCESS_TOKEN}}'{limit}}}",
}
FAST = ", rate_limit: {requests: 100000, per: 1}"


def job_text(target: str, concurrency: int, limit: str) -> str:
    src = f"{{system: csv, path: export.csv, id_column: '{id_column('csv')}'}}"
    return (f"name: verify-cost\nsource: {src}\ntarget: {TARGETS[target].format(limit=limit)}\n"
            f"mapping: {ROOT / 'mappings' / f'csv-to-{target}.yaml'}\n"
            f"checkpoint: ckpt.sqlite\nreports: reports\nconcurrency: {concurrency}\n")


def migrator(env: dict[str, str], cwd: Path, *args: str, ok: tuple[int, ...] = (0,)) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "migrator.cli", *args, "--no-progress"], cwd=cwd, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode not in ok:
        sys.exit(f"migrator {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return time.perf_counter() - t0


def sent_bytes(checkpoint: Path) -> tuple[int, int]:
    with sqlite3.connect(checkpoint) as db:
        n, size = db.execute("SELECT count(*), coalesce(sum(length(body)), 0) FROM sent").fetchone()
    return n, size


def one(target: str, args: argparse.Namespace) -> dict[str, float]:
    persons = people(args.contacts, args.seed, CLEAN)
    root = Path(tempfile.mkdtemp(prefix=f"bench-verify-{target}-"))
    write_export("csv", root / "export.csv", persons)
    sim = make(target, contacts=0, seed=args.seed + 1, faults=Faults(latency=args.latency), limit=None)
    job = str(root / "job.yaml")
    with SandboxThread({target: sim}) as sandbox:
        env = {**os.environ, **sandbox.env()}
        (root / "job.yaml").write_text(job_text(target, args.concurrency, FAST))
        run_wall = migrator(env, root, "run", job, ok=(0, 1))
        # verify under the vendor's limit, client and simulator alike, from a fresh window
        limit = type(sim).default_limit
        sandbox.call(lambda: setattr(sim, "window", SlidingWindow(*limit)))
        (root / "job.yaml").write_text(job_text(target, args.concurrency, ""))
        wall = migrator(env, root, "verify", job, "--latency", str(args.latency))
    report = orjson.loads((root / "reports" / "verify-cost-verify-report.json").read_bytes())
    (stream,) = report["streams"]
    records = stream["records"]
    requests = sum(report["requests"].values())
    n, size = sent_bytes(root / "ckpt.sqlite")
    out = {"records": records, "equal": stream["equal"], "requests": requests,
           "per_record": requests / records, "eta": report["eta_seconds"], "took": report["seconds"],
           "wall": wall, "sent_per": size / max(1, n), "run": run_wall}
    print(f"{target}: {args.contacts:,} contacts migrated in {run_wall:.1f} s (not the figure); verify:")
    print(f"  read back {stream['read_back']}: {records:,} done, {stream['equal']:,} equal, "
          f"clean {report['clean']}")
    print(f"  requests {report['requests']} (planned {report['planned_requests']})")
    print(f"  requests ÷ records  {out['per_record']:.4f}")
    print(f"  ETA {out['eta']:.1f} s, verify took {out['took']:.1f} s (process {wall:.1f} s): "
          f"wall ÷ ETA {out['took'] / out['eta']:.3f}" if out["eta"] else "  ETA 0")
    print(f"  checkpoint 'sent': {out['sent_per']:.0f} bytes a contact ({size / 1e6:.1f} MB for {n:,})")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--contacts", type=int, default=2000)
    ap.add_argument("--target", choices=("rei", "spark", "both"), default="both")
    ap.add_argument("--latency", type=float, default=0.02, help="seconds each simulated request takes")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    for target in ("rei", "spark") if args.target == "both" else (args.target,):
        one(target, args)


if __name__ == "__main__":
    main()
