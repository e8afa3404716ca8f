"""`--limit VENDOR=REQUESTS/SECONDS` holds one simulator to a chosen rate limit (benchmarks
need a target limited to exactly R while the other systems stay unlimited)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from migrator.sandbox.cli import build, parse_limits


def test_parse_limits_reads_requests_per_seconds_and_off():
    assert parse_limits(["rei=50/1", "Spark=7/2.5", "realvolve=off", "brokerkit=9"]) == {
        "rei": {"limit": (50, 1.0)}, "spark": {"limit": (7, 2.5)}, "realvolve": {"limit": None},
        "brokerkit": {"limit": (9, 1.0)}}
    assert parse_limits(None) == {}


@pytest.mark.parametrize("spec", ["rei", "nosuch=5/1", "rei=0/1", "rei=5/0", "rei=x/1", "rei=5/x", "rei=-3/1",
                                  "rei=5/inf"])
def test_parse_limits_refuses_bad_specs(spec):
    with pytest.raises(ValueError, match="--limit"):
        parse_limits([spec])


def test_build_applies_the_limit_over_no_limits_and_only_to_that_vendor():
    sims = build(0, 1, limits=False, vendors=["rei", "spark"], **parse_limits(["rei=50/1"]))
    assert (sims["rei"].window.limit, sims["rei"].window.period) == (50, 1.0)
    assert sims["spark"].window is None
    sims = build(0, 1, vendors=["rei", "spark"], **parse_limits(["rei=off"]))
    assert sims["rei"].window is None
    assert (sims["spark"].window.limit, sims["spark"].window.period) == (1500, 300.0)


def test_bad_limit_is_one_line_and_exit_2():
    res = subprocess.run([sys.executable, "-m", "migrator.sandbox.cli", "--only", "rei", "--limit", "rei=fast"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "Traceback" not in res.stderr
    assert "--limit 'rei=fast'" in res.stderr


def test_limit_for_a_system_not_served_is_refused():
    res = subprocess.run([sys.executable, "-m", "migrator.sandbox.cli", "--only", "rei", "--limit", "spark=5/1"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "--limit names spark, which --only leaves out" in res.stderr


def _get(url: str, headers: dict[str, str]) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_served_simulator_refuses_over_the_given_limit():
    proc = subprocess.Popen([sys.executable, "-m", "migrator.sandbox.cli", "--no-limits", "--only", "rei",
                             "--only", "spark", "--contacts", "2", "--limit", "rei=3/30"],
                            stdout=subprocess.PIPE, text=True)
    try:
        env: dict[str, str] = {}
        assert proc.stdout is not None
        for line in proc.stdout:
            m = re.match(r"\s*export (\w+)=(\S+)", line)
            if m:
                env[m.group(1)] = m.group(2)
            if "Ctrl-C" in line:
                break
        rei = {"Authorization": f"Bearer {env['REI_API_KEY']}"}
        statuses = [_get(f"{env['REI_BASE_URL']}/v1/contacts/?limit=1", rei) for _ in range(5)]
        assert statuses == [200, 200, 200, 429, 429]
        with urllib.request.urlopen(f"{env['REI_BASE_URL']}/_sandbox/stats", timeout=10) as r:
            window = json.loads(r.read())["window"]
        assert (window["limit"], window["period"], window["admitted"], window["refused"]) == (3, 30.0, 3, 2)
        with urllib.request.urlopen(f"{env['SPARK_BASE_URL']}/_sandbox/stats", timeout=10) as r:
            assert "window" not in json.loads(r.read())  # --no-limits still holds for the others
    finally:
        proc.terminate()
        proc.wait(30)


def test_the_cli_options_name_every_simulator():
    from migrator.sandbox.options import VENDORS
    from migrator.sandbox.server import SIMULATORS
    assert tuple(SIMULATORS) == VENDORS
