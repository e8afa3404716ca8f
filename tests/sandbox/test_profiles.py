"""The named fault profiles `migrator sandbox --faults` offers do what they say."""
import time

import aiohttp
import pytest

from migrator.sandbox.base import PROFILES, faults_profile
from migrator.sandbox.server import Sandbox, make


def test_unknown_profile_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown fault profile 'flakey'; choose one of none, latency"):
        faults_profile("flakey")


async def _hammer(profile: str, n: int = 300):
    sim = make("rei", contacts=5, seed=1, limit=None, faults=faults_profile(profile))
    statuses, errors = [], 0
    async with Sandbox({"rei": sim}):
        headers = {"Authorization": f"Bearer {sim.credentials()['REI_API_KEY']}"}
        async with aiohttp.ClientSession() as s:
            t0 = time.monotonic()
            for i in range(n):
                try:
                    async with s.post(f"{sim.base_url}/v1/contacts/", headers=headers,
                                      json={"email": f"p{i}@example.com"}) as r:
                        await r.read()
                        statuses.append(r.status)
                except aiohttp.ClientError:
                    errors += 1
            elapsed = time.monotonic() - t0
    return sim, statuses, errors, elapsed


async def test_none_is_clean():
    sim, statuses, errors, _ = await _hammer("none", 100)
    assert errors == 0 and set(statuses) == {200} and not sim.stats.faults


async def test_latency_adds_latency():
    _, _, _, elapsed = await _hammer("latency", 20)
    assert elapsed >= 20 * PROFILES["latency"].latency


async def test_flaky_injects_every_kind_of_fault():
    sim, statuses, errors, _ = await _hammer("flaky", 600)
    assert {500, 502, 503} & set(statuses) and 429 in statuses
    assert errors > 0
    assert {"5xx", "429_burst", "drop_before", "drop_after", "truncated"} <= set(sim.stats.faults)


def test_tokens_profile_shortens_tokens():
    sim = make("realvolve", faults=faults_profile("tokens"))
    assert sim.token_ttl(7200) == PROFILES["tokens"].token_ttl < 10
