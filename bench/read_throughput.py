"""Issue 4 figure: reading a whole account from the sandbox with 100 ms per request,
pages fetched concurrently vs one at a time.

    python bench/read_throughput.py [--contacts-realvolve 20000] [--spark-pages 400]

Realvolve: 20 pages x 1000 contacts, each needing a contact_detail call (the fan-out);
Spark: 400 pages x 25. The bound is requests x latency / concurrency; goal within 20%.
The simulators run in their own process (`migrator sandbox --latency 0.1 --no-limits`).
`run()` returns the figures for bench/run_all.py (ratio = bound / wall without start-up).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _bench import Figure, SandboxProc, print_figure  # noqa: E402

LATENCY = 0.1
GOAL = 0.8  # achieved within 20% of the bound

JOB = """name: read-{vendor}
source: {source}
target: {{system: jsonl, path: out.jsonl}}
mapping:
  source: {vendor}
  target: jsonl
  streams:
    contacts:
      fields:
        id: {id_path}
checkpoint: ckpt.sqlite
reports: reports
concurrency: {concurrency}
"""
SOURCES = {
    "realvolve": ("{system: realvolve, base_url: '${REALVOLVE_BASE_URL}', client_id: '${REALVOLVE_CLIENT_ID}', "
                  "client_secret: '${REALVOLVE_CLIENT_SECRET}', utility_api_key: '${REALVOLVE_UTILITY_API_KEY}', "
                  "rate_limit: off}", "id"),
    "spark": ("{system: spark, base_url: '${SPARK_BASE_URL}', access_token: '${SPARK_ACCESS_TOKEN}', rate_limit: off}", "Id"),
}


def read_all(vendor: str, env: dict[str, str], concurrency: int) -> float:
    root = Path(tempfile.mkdtemp(prefix=f"bench-read-{vendor}-"))
    source, id_path = SOURCES[vendor]
    (root / "job.yaml").write_text(JOB.format(vendor=vendor, source=source, id_path=id_path, concurrency=concurrency))
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "migrator.cli", "validate", str(root / "job.yaml"), "--no-progress"],
                         env={**os.environ, **env}, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode not in (0, 1):
        raise SystemExit(res.stderr)
    return wall


def run(contacts_realvolve: int = 20_000, spark_pages: int = 400, concurrency: int = 32,
        sequential: bool = True) -> list[Figure]:
    """Each vendor at ``concurrency`` (and one at a time when ``sequential`` and short
    enough); one Figure per vendor at ``concurrency``."""
    cases = [c for c in [("realvolve", contacts_realvolve, -(-contacts_realvolve // 1000) + contacts_realvolve + 3),
             ("spark", spark_pages * 25, spark_pages + 1)] if c[1] > 0]
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "migrator.cli", "connectors"], capture_output=True)
    startup = time.perf_counter() - t0
    print(f"latency {LATENCY * 1000:.0f} ms per request; bound = requests x latency / concurrency; "
          f"process start-up {startup:.2f} s")
    figures = []
    for vendor, contacts, requests in cases:
        with SandboxProc([vendor], contacts=contacts, latency=LATENCY) as sb:
            env = sb.env
            for c in ((1, concurrency) if sequential else (concurrency,)):
                if c == 1 and requests > 2000:
                    print(f"  {vendor:<9} concurrency  1: skipped ({requests} requests x {LATENCY:g} s = "
                          f"{requests * LATENCY:,.0f} s one at a time)")
                    continue
                wall = read_all(vendor, env, c)
                bound = requests * LATENCY / c
                ratio = bound / max(wall - startup, 1e-9)
                print(f"  {vendor:<9} concurrency {c:>2}: {contacts:,} contacts, {requests:,} requests in "
                      f"{wall:6.1f} s; bound {bound:6.1f} s; achieved/bound {bound / wall:.2f} "
                      f"({ratio:.2f} without start-up)", flush=True)
                if c == concurrency:
                    fig = Figure(f"read_{vendor}", f"{requests:,} requests in {wall - startup:.1f} s (excl. start-up)",
                                 f"req x lat / C = {bound:.1f} s; goal >= {GOAL}", ratio, ratio >= GOAL)
                    print_figure(fig)
                    figures.append(fig)
    return figures


def quick() -> list[Figure]:
    return run(contacts_realvolve=2000, spark_pages=200, sequential=False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contacts-realvolve", type=int, default=20_000)
    ap.add_argument("--spark-pages", type=int, default=400)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--quick", action="store_true", help="2,000 Realvolve contacts, 200 Spark pages")
    a = ap.parse_args()
    if a.quick:
        quick()
    else:
        run(a.contacts_realvolve, a.spark_pages, a.concurrency)


if __name__ == "__main__":
    main()
