"""Issue 8, figure 8: the migrator beside the script a person would write by hand.

    python bench/side_by_side.py [--contacts 5000] [--scale 10] [--latency 0.05] [--quick]

One run, the same sandbox for both: the Spark simulator seeded with the contacts (no
limit), the REI Software simulator empty and held to its default limit times --scale
(100/10 s x 10 = 1,000 requests in any 10 s: a busy agency's plan), --latency a request
on both. Each simulator in its own process.

- By hand: `side_by_side.py --by-hand` in its own process, urllib, one request at a time:
  read a Spark page (25 contacts), map each contact (name, e-mail, first phone, company,
  tags) and POST it to REI; wait out a 429's Retry-After if one comes.
- The migrator: `migrator run` with mappings/spark-to-rei.yaml (notes, custom fields,
  validation, checkpoint), concurrency 8, the job's REI rate_limit = the simulator's.

The REI simulator is reset between the two. Prints both wall times (process start to
exit) and hand / migrator. No goal: the figure says what the tool buys.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _bench import (MAPPINGS, PY, REI_TARGET, SPARK_SOURCE, Figure, SandboxProc, done_times, limit_yaml,  # noqa: E402
                    print_figure, run_cli, tmpdir, window_summary, write_job)

REI = (100, 10.0)  # the vendor's default: requests per seconds


def _call(method: str, url: str, headers: dict[str, str], body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    if data is not None:
        headers = {**headers, "Content-Type": "application/json"}
    while True:
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            if e.code == 429:
                time.sleep(float(e.headers.get("Retry-After") or 1))
                continue
            return e.code, {}


def by_hand() -> None:
    """The hand-written migration: sequential, no checkpoint, no validation."""
    spark = os.environ["SPARK_BASE_URL"] + "/v1/contacts"
    spark_h = {"Authorization": f"Bearer {os.environ['SPARK_ACCESS_TOKEN']}", "X-SparkApi-User-Agent": "my-script"}
    rei = os.environ["REI_BASE_URL"] + "/v1/contacts/"
    rei_h = {"Authorization": f"Bearer {os.environ['REI_API_KEY']}"}
    page, ok, bad = 1, 0, 0
    while True:
        _, body = _call("GET", f"{spark}?_pagination=1&_limit=25&_page={page}", spark_h)
        d = body.get("D") or {}
        for c in d.get("Results") or []:
            phone = next((c[k] for k in ("PrimaryPhoneNumber", "MobilePhoneNumber", "HomePhoneNumber",
                                         "WorkPhoneNumber") if c.get(k)), None)
            contact = {"firstName": c.get("GivenName"), "lastName": c.get("FamilyName"),
                       "email": c.get("PrimaryEmail"), "phone": phone, "companyName": c.get("Organization"),
                       "tags": c.get("Tags") or None}
            status, _ = _call("POST", rei, rei_h, {k: v for k, v in contact.items() if v})
            if status < 300:
                ok += 1
            else:
                bad += 1
        if page >= (d.get("Pagination") or {}).get("TotalPages", 0):
            break
        page += 1
    print(json.dumps({"written": ok, "refused": bad}))


def run(contacts: int = 5000, scale: float = 10, latency: float = 0.05) -> Figure:
    n, per = max(1, round(REI[0] * scale)), REI[1]
    root = tmpdir("side")
    job = write_job(root, source=SPARK_SOURCE.format(limit=limit_yaml(None)),
                    target=REI_TARGET.format(limit=limit_yaml(n, per)),
                    mapping=MAPPINGS / "spark-to-rei.yaml", concurrency=8, name="bench-side")
    with SandboxProc(["spark"], contacts=contacts, latency=latency) as src, \
            SandboxProc(["rei"], latency=latency, no_limits=False, limits={"rei": f"{n}/{per:g}"}) as tgt:
        env = {**os.environ, **src.env, **tgt.env}
        t0 = time.perf_counter()
        out = subprocess.run([PY, __file__, "--by-hand"], env=env, capture_output=True, text=True, check=True)
        hand_wall = time.perf_counter() - t0
        hand = json.loads(out.stdout.strip().splitlines()[-1])
        hand_stats = tgt.stats("rei")
        tgt.reset("rei")
        res = run_cli(["run", str(job), "--no-progress"], env={**src.env, **tgt.env})
        tool_stats = tgt.stats("rei")
    written = len(done_times(root / "ckpt.sqlite"))
    ratio = hand_wall / res.wall
    print(f"side by side: {contacts:,} Spark contacts -> REI limited to {n}/{per:g} s, {latency * 1000:.0f} ms latency")
    print(f"  by hand (sequential urllib): {hand_wall:7.1f} s, {hand['written']:,} written, {hand['refused']:,} refused; "
          f"REI {window_summary(hand_stats)}")
    print(f"  migrator (concurrency 8):    {res.wall:7.1f} s, {written:,} written; REI {window_summary(tool_stats)}")
    print(f"  by hand / migrator: {ratio:.2f}x")
    fig = Figure("side_by_side", f"hand {hand_wall:.1f} s vs migrator {res.wall:.1f} s",
                 "no goal (speed-up)", ratio, None,
                 [] if written >= hand["written"] else [f"migrator wrote {written}, the script {hand['written']}"])
    print_figure(fig)
    return fig


def quick() -> Figure:
    return run(contacts=300)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--contacts", type=int, default=5000)
    ap.add_argument("--scale", type=float, default=10, help="multiply REI's default 100/10 s limit")
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--quick", action="store_true", help="300 contacts")
    ap.add_argument("--by-hand", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.by_hand:
        by_hand()
    elif a.quick:
        quick()
    else:
        run(a.contacts, a.scale, a.latency)


if __name__ == "__main__":
    main()
