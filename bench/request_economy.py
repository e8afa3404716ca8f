"""Issue 10 figure: target requests spent per record written (records + children).

    python bench/request_economy.py [--contacts 20000] [--preseed 0.3] [--targets rei spark]
                                    [--concurrency 16] [--json out.json]

A generic contacts CSV (the sandbox's clean people) is migrated with the shipped
``csv-to-<target>`` mapping (``match_on`` on) into a REI Software and a Flexmls (Spark)
simulator: once into an empty target, once into a target that already holds ``--preseed``
(30 %) of the same contacts. The figure is every request the target was sent (index reads,
metadata, lookups, creates, updates, tags, auth …) divided by the records and child
records written. These targets take contacts only, with notes inline (Spark's ``Note``,
REI's "Notes" custom field), so children are 0. Goal: ≤ 1.05 into an empty target.

The figure is a request count, not a time: the simulators' rate limits are off and the
job's rate_limit is raised, so 20,000 contacts take a minute or two, not hours.

Measured (concurrency 16). "Before" is the code before issue 10's parts 4–5 (commit
a8f38e8 with other helpers' unrelated edits in the tree), at 2,000 contacts:

                         before (2,000)   after (2,000)   after (20,000)
    rei    empty         1.0005           1.0010          1.0001   meta 1, index 1, create 20000
    rei    preseeded     1.0005           1.0035          1.0030   meta 1, index 60, create 20000
    spark  empty         1.0000           1.0010          1.0001   index 2, create 20000
    spark  preseeded     1.3000           1.0125          1.0120   index 241, create 14000, update 6000

Before, REI's location merged the 30 % silently (each reported as "created", none listed
as a merge) and Spark spent a refused create and a lookup on each of them, then left its
data unwritten ("matched"). After, both read the target's list once (REI 100 a page,
Spark 25 a page, plus Spark's unconnected list) and match locally: each pre-seeded
contact is updated (REI by its own create-or-update, Spark by PUT) and listed as a merge.
The one REI "updated" into an empty target at 20,000 is two people sharing a phone.
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from migrator.engine import Engine  # noqa: E402
from migrator.job import load_job  # noqa: E402
from migrator.sandbox.data import CLEAN, people  # noqa: E402
from migrator.sandbox.exports import write_export  # noqa: E402
from migrator.sandbox.server import Sandbox, make  # noqa: E402

CREDENTIALS = {"rei": {"api_key": "REI_API_KEY"}, "spark": {"access_token": "SPARK_ACCESS_TOKEN"}}


def preseed(sim: Any, persons: list[Any]) -> None:
    """Make ``sim`` hold ``persons`` as contacts the account already had."""
    sim.seed_people = list(persons)
    sim.seed_properties = []
    sim.seed_data()


def chosen(persons: list[Any], fraction: float) -> list[Any]:
    """Every k-th person, so the pre-seeded share is spread over the whole file."""
    if fraction <= 0:
        return []
    step = 1 / fraction
    picked = {math.floor(i * step) for i in range(int(len(persons) * fraction))}
    return [p for i, p in enumerate(persons) if i in picked]


async def one(target: str, n: int, fraction: float, concurrency: int, seed: int = 7) -> dict[str, Any]:
    persons = people(n, seed, CLEAN)
    sim = make(target, contacts=0, seed=seed + 1, limit=None, **({"daily_quota": None} if target == "rei" else {}))
    seeded = chosen(persons, fraction)
    preseed(sim, seeded)
    async with Sandbox({target: sim}) as sandbox:
        with tempfile.TemporaryDirectory(prefix=f"bench-economy-{target}-") as tmp:
            root = Path(tmp)
            write_export("csv", root / "export.csv", persons)
            creds = ", ".join(f"{k}: '${{{v}}}'" for k, v in CREDENTIALS[target].items())
            (root / "job.yaml").write_text(
                f"name: economy-{target}\n"
                f"source: {{system: csv, path: export.csv, id_column: id}}\n"
                f"target: {{system: {target}, base_url: '${{{target.upper()}_BASE_URL}}', "
                f"rate_limit: {{requests: 100000, per: 1}}, {creds}}}\n"
                f"mapping: {ROOT / 'mappings' / f'csv-to-{target}.yaml'}\n"
                f"checkpoint: ckpt.sqlite\nreports: reports\nconcurrency: {concurrency}\n")
            job = load_job(root / "job.yaml", env=sandbox.env())
            t0 = time.perf_counter()
            outcome = await Engine(job, mode="run", progress=False).run()
            seconds = time.perf_counter() - t0
    by_kind = dict((outcome.target_requests or {}).get("requests") or {})
    counts: dict[str, int] = {}
    for s in outcome.streams:
        for k, v in s.counts.items():
            counts[k] = counts.get(k, 0) + v
    written = counts.get("done", 0)
    children = 0
    total = sum(by_kind.values())
    return {"target": target, "scenario": "preseeded" if fraction > 0 else "empty",
            "contacts": n, "preseeded": len(seeded), "written": written, "children": children,
            "failed": counts.get("failed", 0), "requests": by_kind, "total_requests": total,
            "per_record": round(total / max(1, written + children), 4),
            "actions": {k: counts[k] for k in ("created", "updated", "matched") if counts.get(k)},
            "target_contacts_after": len(sim.inspect_records("contacts")), "seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--contacts", type=int, default=20_000)
    ap.add_argument("--preseed", type=float, default=0.3, help="share of the contacts the target already holds")
    ap.add_argument("--targets", nargs="+", default=["rei", "spark"], choices=["rei", "spark"])
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    results = []
    for target in args.targets:
        for fraction in (0.0, args.preseed):
            r = anyio.run(one, target, args.contacts, fraction, args.concurrency)
            results.append(r)
            kinds = ", ".join(f"{k} {v}" for k, v in sorted(r["requests"].items()))
            print(f"  {r['target']:<6} {r['scenario']:<10} {r['per_record']:>7.4f} requests/record   "
                  f"({kinds}; written {r['written']}, failed {r['failed']}, {r['actions']}, "
                  f"target holds {r['target_contacts_after']}, {r['seconds']} s)", flush=True)
    worst_empty = max(r["per_record"] for r in results if r["scenario"] == "empty")
    print(f"worst into an empty target: {worst_empty:.4f} requests/record (goal <= 1.05)")
    if args.json:
        args.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
