"""The migrator never makes a vendor refuse it: configured to a simulator's own limit it
gets no 429 at all and never more than N requests into any window; when the server's
limit is lower than configured, it backs off and still completes."""
import pytest

from tests.integration.harness import Pair

TARGETS = ["rei", "spark", "realvolve", "realeflow", "brokerkit"]


@pytest.mark.parametrize("target", TARGETS)
async def test_no_429_at_the_configured_limit(tmp_path, target):
    limit = (12, 1.0)
    async with Pair(tmp_path, "csv", target, n=45, concurrency=16, target_sim={"limit": limit},
                    target_settings={"rate_limit": "{requests: 12, per: 1}"}) as pair:
        outcome = await pair.run()
        sim = pair.target_sim
        assert outcome.streams[0].counts["done"] >= 30
        assert sim.stats.rate_limited == 0, f"{sim.stats.rate_limited} requests refused"
        assert sim.window.max_in_window <= limit[0]
        assert sim.window.admitted >= 30


@pytest.mark.parametrize("target", ["rei", "realeflow"])
async def test_a_lower_server_limit_is_survived(tmp_path, target):
    async with Pair(tmp_path, "csv", target, n=40, concurrency=16, target_sim={"limit": (6, 1.0)},
                    target_settings={"rate_limit": "{requests: 20, per: 1}"}) as pair:
        outcome = await pair.run()
        c = outcome.streams[0].counts
        assert c["done"] + c["failed"] == 40 - c.get("skipped", 0)
        assert not any("429" in r or "rate" in r for r in outcome.streams[0].failures)
        assert pair.target_sim.window.max_in_window <= 6
        retries = outcome.target_requests["retries"]
        assert retries.get("rate_limited", 0) > 0 or target == "rei"   # REI's headers may avoid them all
