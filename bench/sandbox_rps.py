"""Issue 3 figure: requests/s one simulator serves on one core.

    python bench/sandbox_rps.py [SECONDS]

Starts `migrator sandbox --no-limits` in its own process (one core for the server) and
drives each simulator from this process with 64 concurrent connections: a plain page read
and a create. Goal >= 1,500/s, so benchmarks measure the migrator, not the sandbox.
"""
from __future__ import annotations

import base64
import itertools
import re
import subprocess
import sys
import time

import aiohttp
import anyio

CONCURRENCY = 64


def start_sandbox() -> tuple[subprocess.Popen, dict[str, str], dict[str, str]]:
    proc = subprocess.Popen([sys.executable, "-m", "migrator.cli", "sandbox", "--no-limits", "--contacts", "500"],
                            stdout=subprocess.PIPE, text=True)
    urls, env = {}, {}
    assert proc.stdout is not None
    for line in proc.stdout:
        m = re.match(r"\s+(\w+)\s+(http://\S+)", line)
        if m:
            urls[m.group(1)] = m.group(2)
        m = re.match(r"\s*export (\w+)=(\S+)", line)
        if m:
            env[m.group(1)] = m.group(2)
        if "Ctrl-C" in line:
            break
    return proc, urls, env


async def token(session, url, env):
    async with session.post(f"{url}/oauth/token", params={
            "grant_type": "client_credentials", "client_id": env["REALVOLVE_CLIENT_ID"],
            "client_secret": env["REALVOLVE_CLIENT_SECRET"]}) as r:
        return (await r.json())["access_token"]


def cases(urls, env, rv_token):
    n = itertools.count()
    basic = "Basic " + base64.b64encode(f"{env['REALEFLOW_API_KEY']}:".encode()).decode()
    rv = {"Authorization": f"Bearer {rv_token}"}
    key = {"utility_api_key": env["REALVOLVE_UTILITY_API_KEY"]}
    spark = {"Authorization": f"Bearer {env['SPARK_ACCESS_TOKEN']}", "X-SparkApi-User-Agent": "bench"}
    rei = {"Authorization": f"Bearer {env['REI_API_KEY']}"}
    bk = {"Authorization": f"Token token={env['BROKERKIT_API_KEY']}"}
    return {
        "realvolve page read": lambda: ("GET", f"{urls['realvolve']}/utility_api/v1/contacts", rv, dict(key, page="1"), None, None),
        "realvolve create": lambda: ("POST", f"{urls['realvolve']}/utility_api/v1/contacts", rv, None,
                                     dict(key, **{"contact[primary][first_name]": f"B{next(n)}"}), None),
        "spark page read": lambda: ("GET", f"{urls['spark']}/v1/contacts", spark, {"_pagination": "1", "_limit": "25", "_page": "2"}, None, None),
        "spark create": lambda: ("POST", f"{urls['spark']}/v1/contacts", spark, None, None,
                                 {"D": {"DisplayName": "Bench", "PrimaryEmail": f"b{next(n)}@bench.example.com"}}),
        "rei page read": lambda: ("GET", f"{urls['rei']}/v1/contacts/", rei, {"limit": "100"}, None, None),
        "rei create": lambda: ("POST", f"{urls['rei']}/v1/contacts/", rei, None, None, {"email": f"b{next(n)}@bench.example.com"}),
        "realeflow page read": lambda: ("GET", f"{urls['realeflow']}/api/contact/list", {"Authorization": basic}, None, None, None),
        "realeflow create": lambda: ("POST", f"{urls['realeflow']}/api/contact/create", {"Authorization": basic}, None, None,
                                     {"FullName": f"Bench {next(n)}"}),
        "brokerkit create": lambda: ("POST", f"{urls['brokerkit']}/v2/leads", bk, None, None,
                                     {"first_name": "B", "email": f"b{next(n)}@bench.example.com"}),
    }


async def hammer(session, make, seconds: float) -> tuple[int, int]:
    ok = bad = 0
    end = time.perf_counter() + seconds

    async def worker():
        nonlocal ok, bad
        while time.perf_counter() < end:
            method, url, headers, params, data, js = make()
            async with session.request(method, url, headers=headers, params=params, data=data, json=js) as r:
                await r.read()
                if r.status < 300:
                    ok += 1
                else:
                    bad += 1

    async with anyio.create_task_group() as tg:
        for _ in range(CONCURRENCY):
            tg.start_soon(worker)
    return ok, bad


async def main(seconds: float) -> None:
    proc, urls, env = start_sandbox()
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as s:
            rv_token = await token(s, urls["realvolve"], env)
            print(f"{'case':<22} {'req/s':>8}  (server process on its own core, {CONCURRENCY} connections)")
            for name, make in cases(urls, env, rv_token).items():
                t0 = time.perf_counter()
                ok, bad = await hammer(s, make, seconds)
                rate = ok / (time.perf_counter() - t0)
                flag = "" if not bad else f"  ({bad} non-2xx!)"
                print(f"{name:<22} {rate:>8,.0f}{flag}", flush=True)
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    anyio.run(main, float(sys.argv[1]) if len(sys.argv) > 1 else 3.0)
