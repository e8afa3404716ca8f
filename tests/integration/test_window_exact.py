"""A job smaller than one vendor window runs at its latency bound: the limiter spends the
window's burst instead of pacing at its average rate. Proved on the simulator's own
account of when each request arrived, not on wall time.

MIGRATOR_WINDOW_PAGES sets the Spark pages read (default 400: 10,000 contacts)."""
import os

import anyio

from migrator.engine import Engine
from migrator.job import load_job
from migrator.sandbox.base import Faults, most_in_any_window
from migrator.sandbox.server import Sandbox, make

PAGES = int(os.environ.get("MIGRATOR_WINDOW_PAGES", "400"))
WINDOW = (1500, 300.0)       # Spark's IDX key: 1,500 requests in any five minutes
LATENCY, CONCURRENCY = 0.05, 8

JOB = """name: spark-window
source: {{system: spark, base_url: '${{SPARK_BASE_URL}}', access_token: '${{SPARK_ACCESS_TOKEN}}',
         rate_limit: {{requests: {n}, per: {per:g}}}}}
target: {{system: jsonl, path: out.jsonl}}
mapping:
  source: spark
  target: jsonl
  streams:
    contacts:
      fields:
        id: Id
checkpoint: ckpt.sqlite
reports: reports
concurrency: {concurrency}
"""


async def test_a_read_inside_one_window_runs_at_its_latency_bound_and_is_never_refused(tmp_path):
    sim = make("spark", contacts=PAGES * 25, seed=5, limit=WINDOW, faults=Faults(latency=LATENCY))
    sandbox = Sandbox({"spark": sim})
    await sandbox.start()
    try:
        (tmp_path / "job.yaml").write_text(JOB.format(n=WINDOW[0], per=WINDOW[1], concurrency=CONCURRENCY))
        with anyio.fail_after(120):   # the average-rate pacing this replaces took 80 s for 400 pages
            outcome = await Engine(load_job(tmp_path / "job.yaml", env=sandbox.env()),
                                   mode="run", progress=False).run()
    finally:
        await sandbox.stop()
    assert outcome.streams[0].counts["done"] == PAGES * 25
    arrivals = list(sim.stats.arrivals)
    pages = sum(n for route, n in sim.stats.requests.items() if route.startswith("GET /v1/contacts"))
    assert pages >= PAGES
    assert sim.stats.rate_limited == 0 and sim.window.refused == 0, "no request refused"
    assert sim.window.max_in_window <= WINDOW[0]
    assert most_in_any_window(arrivals, WINDOW[1]) <= WINDOW[0]
    bound = pages * LATENCY / CONCURRENCY
    span = arrivals[-1] - arrivals[0] + LATENCY   # first arrival to last answer
    assert span <= 3 * bound, f"{pages} pages over {span:.2f} s; the latency bound is {bound:.2f} s"
