"""An access token that expires mid-run, end to end through the CLI.

Spark's OAuth2 access tokens expire (the simulator's docstring: a day, shortened here).
A job that gives only ``SPARK_ACCESS_TOKEN`` cannot renew it: the run must stop
resumably, say which variables to set, never print a token — and the run after the user
sets the refresh grant's three variables finishes with every record in Spark once.
"""
from __future__ import annotations

import subprocess

from migrator.cli import EXIT_INTERRUPTED
from migrator.sandbox.base import Faults
from migrator.sandbox.data import CLEAN
from tests.integration.harness import ThreadPair

N = 300
REFRESH = ("refresh_token: '${SPARK_REFRESH_TOKEN}', client_id: '${SPARK_CLIENT_ID}', "
           "client_secret: '${SPARK_CLIENT_SECRET}', ")


def test_an_expired_token_stops_resumably_and_the_refresh_grant_finishes_exactly_once(tmp_path):
    # The token's life starts with the simulator, before the CLI's start-up: 3 s leaves a
    # loaded machine time to write some, and 300 creates at 50 ms, two at a time, outlive it.
    with ThreadPair(tmp_path, "csv", "spark", n=N, dirt=CLEAN, concurrency=2,
                    faults=Faults(latency=0.05), target_sim={"access_token_ttl": 3.0}) as pair:
        env = pair.subprocess_env()
        first = subprocess.run(pair.cli("run"), env=env, capture_output=True, text=True, timeout=180)
        assert first.returncode == EXIT_INTERRUPTED, first.stderr
        assert "Traceback" not in first.stderr and "internal error" not in first.stderr
        assert "has expired" in first.stderr and "SPARK_REFRESH_TOKEN" in first.stderr
        assert "Resume with:  migrator run" in first.stderr
        for secret in ("SPARK_ACCESS_TOKEN", "SPARK_REFRESH_TOKEN", "SPARK_CLIENT_SECRET"):
            assert env[secret] not in first.stderr
        held = pair.target_count()
        assert 0 < held < N

        job = tmp_path / "job.yaml"
        text = job.read_text()
        assert "access_token: '${SPARK_ACCESS_TOKEN}'" in text
        job.write_text(text.replace("access_token: '${SPARK_ACCESS_TOKEN}'",
                                    REFRESH + "access_token: '${SPARK_ACCESS_TOKEN}'"))
        second = subprocess.run(pair.cli("run"), env=env, capture_output=True, text=True, timeout=180)
        assert second.returncode == 0, second.stderr
        emails = [r["PrimaryEmail"].lower() for r in pair.call(pair.target_records)]
        assert len(emails) == N and len(set(emails)) == N
        assert pair.call(lambda: pair.target_sim.grants) >= 1
