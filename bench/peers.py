"""Issue 19: crm-migrator beside the tools a user would pick instead, side by side, in one run.

    python bench/peers.py [--read-contacts 10000] [--write-contacts 5000] [--quick]
                          [--only read|write] [--limits default|off|both]

Every tool runs in its own process against the same sandbox (its own process too), with
the same latency and limits; the simulator is reset between runs. For each run it prints
the wall time (process start to exit), the ratio to the task's bound, the 429s the
simulator answered, and the largest number of requests the simulator saw in any window
of the vendor's period (admitted ones when its limit is on; all arrivals when it is off:
what a limited server would have had to refuse).

Reading (latency --read-latency, 100 ms; the migrator at concurrency 8):
- Spark, all contacts, 25 a page: `migrator run` into a JSONL file, and dlt's REST API
  source (page numbers up to `TotalPages`) into duckdb. Bound: pages × latency / 8,
  or the vendor's window when the pages do not fit in one.
- REI, all contacts, 100 a page: `migrator run` into a JSONL file, and dlt's REST API
  source (the `startAfter` + `startAfterId` cursor, through `meta.nextPageUrl`) into
  duckdb. A cursor cannot overlap: bound pages × latency.

Writing (latency --write-latency, 40 ms): the same seeded contacts, from one CSV, into an
empty REI: `migrator run` (mappings/csv-to-rei.yaml, concurrency 32, as many in flight as
the hand-written client's 32 tasks: aiohttp, aiolimiter.AsyncLimiter(limit, period),
`hand_written` below), and
drt-core's REST API destination (a duckdb model over the CSV). At 50 requests / 1 s, at
REI's default 100 / 10 s, and with no limit. Bound: the window (N per period, the
vendor's way) or contacts × latency / 32, whichever is longer.

"off" turns the simulator's limit off and each tool's own: the migrator's `rate_limit:
off`, no AsyncLimiter, drt at 1,000 requests/s (it always paces). dlt has no limiter.
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _bench import MAPPINGS, PY, SandboxProc, run_cli, write_job  # noqa: E402

from migrator.sandbox.base import most_in_any_window  # noqa: E402

SPARK_WINDOW = (1500, 300.0)
REI_WINDOW = (100, 10.0)
CONCURRENCY = 8
SPARK_PAGE, REI_PAGE = 25, 100
PEER_ENV = {"RUNTIME__DLTHUB_TELEMETRY": "false", "DO_NOT_TRACK": "1"}
MIGRATOR_ENV: dict[str, str] = {}
PEERS = [True]                      # --skip-peers: the migrator's rows only   # --migrator-path: another checkout's migrator (a "before" figure)


# ---- the peers, each as a user would write it (run in a child process) ---------------
def dlt_spark(out: Path) -> None:
    """dlt's REST API source: page numbers until TotalPages, into duckdb."""
    import dlt
    from dlt.sources.rest_api import rest_api_source

    source = rest_api_source({
        "client": {
            "base_url": os.environ["SPARK_BASE_URL"] + "/v1/",
            "auth": {"type": "bearer", "token": os.environ["SPARK_ACCESS_TOKEN"]},
            "headers": {"X-SparkApi-User-Agent": "dlt-bench"},
            "paginator": {"type": "page_number", "base_page": 1, "page_param": "_page",
                          "total_path": "D.Pagination.TotalPages"},
        },
        "resources": [{"name": "contacts", "endpoint": {
            "path": "contacts", "params": {"_pagination": 1, "_limit": SPARK_PAGE, "_orderby": "Id"},
            "data_selector": "D.Results"}}],
    })
    pipeline = dlt.pipeline("spark_contacts", destination=dlt.destinations.duckdb(str(out / "dlt.duckdb")),
                            dataset_name="spark", pipelines_dir=str(out / "pipelines"))
    info = pipeline.run(source)
    print(json.dumps({"rows": pipeline.last_trace.last_normalize_info.row_counts.get("contacts", 0),
                      "failed": info.has_failed_jobs}))


def dlt_rei(out: Path) -> None:
    """dlt's REST API source: REI's cursor (startAfter + startAfterId) as meta.nextPageUrl."""
    import dlt
    from dlt.sources.rest_api import rest_api_source

    source = rest_api_source({
        "client": {
            "base_url": os.environ["REI_BASE_URL"] + "/v1/",
            "auth": {"type": "bearer", "token": os.environ["REI_API_KEY"]},
            "paginator": {"type": "json_link", "next_url_path": "meta.nextPageUrl"},
        },
        "resources": [{"name": "contacts", "endpoint": {
            "path": "contacts/", "params": {"limit": REI_PAGE}, "data_selector": "contacts"}}],
    })
    pipeline = dlt.pipeline("rei_contacts", destination=dlt.destinations.duckdb(str(out / "dlt.duckdb")),
                            dataset_name="rei", pipelines_dir=str(out / "pipelines"))
    info = pipeline.run(source)
    print(json.dumps({"rows": pipeline.last_trace.last_normalize_info.row_counts.get("contacts", 0),
                      "failed": info.has_failed_jobs}))


async def hand_written(path: Path, limit: int | None, period: float) -> None:
    """What a competent engineer writes in thirty lines: aiohttp, aiolimiter, 32 tasks,
    and a 429 waits out its Retry-After."""
    import aiohttp
    from aiolimiter import AsyncLimiter

    url = os.environ["REI_BASE_URL"] + "/v1/contacts/"
    headers = {"Authorization": f"Bearer {os.environ['REI_API_KEY']}"}
    limiter = AsyncLimiter(limit, period) if limit else None
    queue: asyncio.Queue[dict] = asyncio.Queue()
    for row in csv.DictReader(open(path, newline="", encoding="utf-8")):
        phone = row["Mobile Phone"] or row["Home Phone"] or row["Work Phone"]
        body = {"firstName": row["First Name"], "lastName": row["Last Name"], "email": row["Email"],
                "phone": phone, "companyName": row["Company"]}
        queue.put_nowait({k: v for k, v in body.items() if v})
    done = refused = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal done, refused
        while not queue.empty():
            contact = queue.get_nowait()
            while True:
                if limiter:
                    await limiter.acquire()
                async with session.post(url, json=contact, headers=headers) as r:
                    await r.read()
                    if r.status != 429:
                        done, refused = done + (r.status < 300), refused + (r.status >= 300)
                        break
                    await asyncio.sleep(float(r.headers.get("Retry-After", 1)))

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(32)))
    print(json.dumps({"rows": done, "failed": refused}))


DRT_SYNC = """name: rei_contacts
model: "select * from read_csv('{csv}', all_varchar = true)"
destination:
  type: rest_api
  url: "{url}/v1/contacts/"
  method: POST
  headers: {{Content-Type: application/json}}
  auth: {{type: bearer, token_env: REI_API_KEY}}
  body_template: |
    {{"firstName": {{{{ row['First Name'] | tojson }}}}, "lastName": {{{{ row['Last Name'] | tojson }}}},
     "email": {{{{ row['Email'] | tojson }}}},
     "phone": {{{{ (row['Mobile Phone'] or row['Home Phone'] or row['Work Phone']) | tojson }}}}}}
sync:
  batch_size: 100
  rate_limit: {{requests_per_second: {rps}}}
"""


def drt_project(root: Path, csv_path: Path, url: str, rps: float) -> Path:
    """A drt project (drt_project.yml, syncs/, a duckdb profile under $HOME/.drt)."""
    (root / "syncs").mkdir(parents=True, exist_ok=True)
    (root / ".drt").mkdir(exist_ok=True)
    (root / ".drt" / "profiles.yml").write_text("default:\n  type: duckdb\n  database: ':memory:'\n")
    (root / "drt_project.yml").write_text("name: bench\nprofile: default\n")
    (root / "syncs" / "rei_contacts.yml").write_text(DRT_SYNC.format(csv=csv_path, url=url, rps=rps))
    return root


# ---- the runs ---------------------------------------------------------------------------
@dataclass
class Row:
    task: str
    tool: str
    limits: str
    wall: float
    bound: float
    refused: int
    most: int | None
    limit: int | None
    period: float
    records: int | None
    note: str = ""


def bound(requests: int, window: tuple[int, float] | None, latency: float, concurrency: int) -> float:
    """The shortest the task can take: latency-bound, or window-bound counted the vendor's
    way (N at once, the next N a period later), whichever is longer."""
    by_latency = requests * latency / concurrency
    if window is None:
        return by_latency
    n, per = window
    full = (requests - 1) // n
    return max(by_latency, full * per + (requests - full * n) * latency / concurrency)


def sim_stats(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/_sandbox/stats?arrivals=1", timeout=60) as r:
        return json.loads(r.read())


def reset(url: str) -> None:
    req = urllib.request.Request(f"{url}/_sandbox/reset", method="POST")
    urllib.request.urlopen(req, timeout=60).read()


def child(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, dict, str]:
    """A peer in its own process: wall time, its last JSON line, and stderr's tail."""
    t0 = time.perf_counter()
    res = subprocess.run([PY, str(Path(__file__).resolve()), *args], env={**os.environ, **PEER_ENV, **env}, cwd=cwd,
                         capture_output=True, text=True)
    wall = time.perf_counter() - t0
    lines = [x for x in res.stdout.strip().splitlines() if x.startswith("{")]
    out = json.loads(lines[-1]) if lines else {}
    err = "" if res.returncode == 0 else (res.stderr.strip().splitlines() or ["?"])[-1][:160]
    return wall, out, err


def measured(task: str, tool: str, limits: str, wall: float, task_bound: float, url: str,
             window: tuple[int, float] | None, period: float, records: int | None, note: str = "") -> Row:
    s = sim_stats(url)
    w = s.get("window")
    most = w["max_in_window"] if w else most_in_any_window(s.get("arrivals") or [], period)
    return Row(task, tool, limits, wall, task_bound, s.get("rate_limited", 0), most,
               window[0] if window else None, period, records, note)


def jsonl_rows(path: Path) -> int:
    return sum(1 for _ in open(path, "rb")) if path.exists() else 0


READ_JOB = """source: {vendor}
target: jsonl
streams:
  contacts:
    fields:
      id: {id_path}"""
SPARK_SOURCE = "{{system: spark, base_url: '${{SPARK_BASE_URL}}', access_token: '${{SPARK_ACCESS_TOKEN}}'{limit}}}"
REI_SOURCE = "{{system: rei, base_url: '${{REI_BASE_URL}}', api_key: '${{REI_API_KEY}}'{limit}}}"
REI_TARGET = "{{system: rei, base_url: '${{REI_BASE_URL}}', api_key: '${{REI_API_KEY}}'{limit}}}"


def rate_yaml(window: tuple[int, float] | None, vendor_default: bool) -> str:
    """The job's rate_limit: none written (the vendor's default), a window, or off."""
    if window is None:
        return ", rate_limit: off"
    return "" if vendor_default else f", rate_limit: {{requests: {window[0]}, per: {window[1]:g}}}"


def reads(contacts: int, latency: float, limits: list[str]) -> list[Row]:
    rows = []
    for vendor, window, page, source, id_path, peer, conc in (
            ("spark", SPARK_WINDOW, SPARK_PAGE, SPARK_SOURCE, "Id", "--dlt-spark", CONCURRENCY),
            ("rei", REI_WINDOW, REI_PAGE, REI_SOURCE, "id", "--dlt-rei", 1)):
        pages = max(1, math.ceil(contacts / page))
        for lim in limits:
            win = window if lim == "default" else None
            sb_args = dict(no_limits=lim == "off")
            with SandboxProc([vendor], contacts=contacts, latency=latency, **sb_args) as sb:
                url = sb.url(vendor)
                task = f"read {contacts:,} {vendor} ({pages} pages)"
                b = bound(pages, win, latency, conc)
                root = Path(tempfile.mkdtemp(prefix=f"peers-read-{vendor}-"))
                job = write_job(root, source=source.format(limit=rate_yaml(win, True)),
                                target="{system: jsonl, path: out.jsonl}",
                                mapping=READ_JOB.format(vendor=vendor, id_path=id_path),
                                concurrency=CONCURRENCY, name=f"peers-read-{vendor}")
                res = run_cli(["run", str(job), "--no-progress"], env={**sb.env, **MIGRATOR_ENV}, check=False, cwd=root)
                note = "" if res.returncode == 0 else f"exit {res.returncode}: {res.stderr.strip()[-160:]}"
                rows.append(measured(task, "crm-migrator", lim, res.wall, b, url, win, window[1],
                                     jsonl_rows(root / "out.jsonl"), note))
                if PEERS[0]:
                    reset(url)
                    wall, out, err = child([peer, str(root)], sb.env, root)
                    rows.append(measured(task, "dlt rest_api", lim, wall, b, url, win, window[1], out.get("rows"), err))
            print_rows(rows[-2:] if PEERS[0] else rows[-1:])
    return rows


def writes(contacts: int, latency: float, limits: list[str], concurrency: int = 32) -> list[Row]:
    from migrator.sandbox.data import CLEAN, people
    from migrator.sandbox.exports import write_export

    rows = []
    data = Path(tempfile.mkdtemp(prefix="peers-write-"))
    csv_path = write_export("csv", data / "contacts.csv", people(contacts, 1, CLEAN))
    cases = ([("50/1 s", (50, 1.0)), ("default", REI_WINDOW)] if "default" in limits else []) + \
        ([("off", None)] if "off" in limits else [])
    for name, win in cases:
        period = win[1] if win else REI_WINDOW[1]
        limit_args = {"limits": {"rei": f"{win[0]}/{win[1]:g}"}} if win else {"no_limits": True}
        with SandboxProc(["rei"], latency=latency, **limit_args) as sb:
            url = sb.url("rei")
            task = f"write {contacts:,} into rei"
            b = bound(contacts, win, latency, concurrency)
            root = Path(tempfile.mkdtemp(prefix="peers-write-"))
            (root / "contacts.csv").write_bytes(csv_path.read_bytes())
            job = write_job(root, source="{system: csv, path: contacts.csv, id_column: id}",
                            target=REI_TARGET.format(limit=rate_yaml(win, win == REI_WINDOW)),
                            mapping=MAPPINGS / "csv-to-rei.yaml", concurrency=concurrency, name="peers-write")
            res = run_cli(["run", str(job), "--no-progress"], env={**sb.env, **MIGRATOR_ENV}, check=False, cwd=root)
            note = "" if res.returncode == 0 else f"exit {res.returncode}: {res.stderr.strip()[-160:]}"
            held = len(json.loads(urllib.request.urlopen(f"{url}/_sandbox/records/contacts", timeout=60).read()))
            rows.append(measured(task, "crm-migrator", name, res.wall, b, url, win, period, held, note))
            if PEERS[0]:
                reset(url)
                lim_args = [str(win[0]), str(win[1])] if win else ["0", "1"]
                wall, out, err = child(["--hand-written", str(csv_path), *lim_args], sb.env, root)
                held = len(json.loads(urllib.request.urlopen(f"{url}/_sandbox/records/contacts", timeout=60).read()))
                rows.append(measured(task, "aiohttp+aiolimiter", name, wall, b, url, win, period, held, err))
                reset(url)
                rps = win[0] / win[1] if win else 1000
                project = drt_project(Path(tempfile.mkdtemp(prefix="peers-drt-")), csv_path, url, rps)
                wall, out, err = child(["--drt", str(project)], {**sb.env, "HOME": str(project)}, project)
                held = len(json.loads(urllib.request.urlopen(f"{url}/_sandbox/records/contacts", timeout=60).read()))
                rows.append(measured(task, f"drt-core ({rps:g}/s)", name, wall, b, url, win, period, held, err))
        print_rows(rows[-3:] if PEERS[0] else rows[-1:])
    return rows


def run_drt(project: Path) -> None:
    res = subprocess.run([str(Path(sys.executable).parent / "drt"), "run", "--select", "rei_contacts"], cwd=project, capture_output=True, text=True)
    sys.stderr.write(res.stderr[-2000:])
    if res.returncode != 0:
        sys.stderr.write(res.stdout[-2000:])
        sys.exit(res.returncode)
    print(json.dumps({"rows": None}))


def print_rows(rows: list[Row], header: bool = False) -> None:
    if header:
        print(f"{'task':<30} {'tool':<20} {'limits':<8} {'wall s':>8} {'bound s':>8} {'ratio':>6} "
              f"{'429s':>5} {'most/window':>16} {'records':>8}")
    for r in rows:
        lim = f"{r.most}/{r.limit}" if r.limit else f"{r.most} (off)"
        ratio = r.wall / r.bound if r.bound else float("nan")
        print(f"{r.task:<30} {r.tool:<20} {r.limits:<8} {r.wall:8.1f} {r.bound:8.1f} {ratio:6.2f} "
              f"{r.refused:>5} {lim + f' in {r.period:g} s':>16} {r.records if r.records is not None else '-':>8}"
              + (f"  ({r.note})" if r.note else ""), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--read-contacts", type=int, default=10_000)
    ap.add_argument("--write-contacts", type=int, default=5_000)
    ap.add_argument("--read-latency", type=float, default=0.1)
    ap.add_argument("--write-latency", type=float, default=0.04)
    ap.add_argument("--write-concurrency", type=int, default=32, help="the migrator's, as the hand client's 32 tasks")
    ap.add_argument("--only", choices=["read", "write"])
    ap.add_argument("--limits", choices=["default", "off", "both"], default="both")
    ap.add_argument("--quick", action="store_true", help="2,000 contacts read, 300 written")
    ap.add_argument("--migrator-path", type=Path, help="run the migrator of this checkout (PYTHONPATH), "
                    "e.g. `git worktree add /tmp/before <commit>` for a before figure")
    ap.add_argument("--skip-peers", action="store_true", help="run only the migrator")
    ap.add_argument("--dlt-spark", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--dlt-rei", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--hand-written", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--drt", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.dlt_spark:
        return dlt_spark(a.dlt_spark)
    if a.dlt_rei:
        return dlt_rei(a.dlt_rei)
    if a.hand_written:
        path, limit, period = a.hand_written
        return asyncio.run(hand_written(Path(path), int(limit), float(period)))
    if a.drt:
        return run_drt(a.drt)
    if a.quick:
        a.read_contacts, a.write_contacts = 2_000, 300
    if a.migrator_path:
        MIGRATOR_ENV["PYTHONPATH"] = str(a.migrator_path.resolve())
    PEERS[0] = not a.skip_peers
    limits = ["default", "off"] if a.limits == "both" else [a.limits]
    print(f"peers: reads at {a.read_latency * 1000:.0f} ms a request, the migrator at concurrency {CONCURRENCY}; "
          f"writes at {a.write_latency * 1000:.0f} ms, concurrency {a.write_concurrency}")
    print_rows([], header=True)
    rows = []
    if a.only != "write":
        rows += reads(a.read_contacts, a.read_latency, limits)
    if a.only != "read":
        rows += writes(a.write_contacts, a.write_latency, limits, a.write_concurrency)
    print("\nall runs:")
    print_rows(rows, header=True)


if __name__ == "__main__":
    main()
