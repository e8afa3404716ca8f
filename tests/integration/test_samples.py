"""samples/: a job per shipped pair that loads, and CSV exports those jobs can read."""
from pathlib import Path

import anyio
import pytest

from migrator.engine import Engine
from migrator.job import load_job
from migrator.resources import shipped_pairs
from migrator.sandbox.server import Sandbox, make

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
FAKE_ENV = {v: "sample" for v in ("REALVOLVE_CLIENT_ID", "REALVOLVE_CLIENT_SECRET", "REALVOLVE_UTILITY_API_KEY",
                                  "SPARK_ACCESS_TOKEN", "REI_API_KEY", "REALEFLOW_API_KEY", "BROKERKIT_API_KEY")}


def test_a_sample_job_per_shipped_pair():
    jobs = {p.stem for p in (SAMPLES / "jobs").glob("*.yaml")}
    assert jobs == {f"{s}-to-{t}" for s, t in shipped_pairs()}
    assert len(jobs) == 37   # 29 pairs and 8 backups (an API source → jsonl or csv)


@pytest.mark.parametrize("source,target", shipped_pairs())
def test_sample_job_loads(source, target):
    job = load_job(SAMPLES / "jobs" / f"{source}-to-{target}.yaml", env=FAKE_ENV)
    assert job.target.system == target
    assert job.mapping.streams


@pytest.mark.parametrize("name", ["realeflow-csv-to-rei", "brokerkit-csv-to-spark", "csv-to-brokerkit"])
def test_csv_sample_jobs_validate_their_sample_exports(name, tmp_path):
    """``validate`` proves the target first (its probe): the target is the simulator on
    loopback, as `migrator sandbox` would give it, never the vendor's host."""
    target = name.rsplit("-to-", 1)[1]

    async def validate():
        sim = make(target, limit=None)
        async with Sandbox({target: sim}):
            env = {**FAKE_ENV, **sim.credentials(), f"{target.upper()}_BASE_URL": sim.base_url}
            job = load_job(SAMPLES / "jobs" / f"{name}.yaml", env=env)
            job.reports = tmp_path
            return await Engine(job, mode="validate", progress=False).run()

    outcome = anyio.run(validate)
    assert outcome.streams[0].counts["read"] == 12
    assert outcome.streams[0].counts["valid"] >= 8


def test_demo_job_sample_loads():
    env = {**FAKE_ENV, "REALVOLVE_BASE_URL": "http://127.0.0.1:1", "REI_BASE_URL": "http://127.0.0.1:2"}
    job = load_job(SAMPLES / "demo-job.yaml", env=env)
    assert (job.source.system, job.target.system) == ("realvolve", "rei")
