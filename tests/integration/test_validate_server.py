"""Brokerkit checks records itself with `validate --server` (test: true) and saves nothing;
its reasons match what our own validation says before any request."""
import csv
import subprocess

import pytest

from migrator.engine import Engine
from migrator.errors import UserError
from tests.integration.harness import Pair, ThreadPair


def _break(records_csv, rows: dict[int, dict[str, str]]):
    data = list(csv.DictReader(open(records_csv, encoding="utf-8")))
    header = list(data[0])
    for i, changes in rows.items():
        data[i].update(changes)
    with open(records_csv, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=header)
        w.writeheader()
        w.writerows(data)


def test_server_dry_run_saves_nothing_and_agrees_with_local_validation(tmp_path):
    with ThreadPair(tmp_path, "csv", "brokerkit", n=40) as pair:
        _break(tmp_path / "export.csv", {1: {"Mobile Phone": "555-CALL-NOW", "Home Phone": "", "Work Phone": ""},
                                         2: {"Email": "not-an-email"}})
        env = pair.subprocess_env()
        local = subprocess.run(pair.cli("validate"), env=env, capture_output=True, text=True, timeout=120)
        server = subprocess.run(pair.cli("validate", "--server"), env=env, capture_output=True, text=True,
                                timeout=120)
        assert local.returncode == 1 and server.returncode == 1, server.stderr
        assert pair.target_count() == 0, "the dry run saved leads"
        fails = list(csv.DictReader(open(tmp_path / "reports" / "csv-to-brokerkit-validate-failures.csv")))
        by_id = {f["source_id"]: f for f in fails}
        assert set(by_id) >= {"2", "3"}
        assert not (tmp_path / "ckpt.sqlite").exists()


async def test_test_mode_is_refused_for_run(tmp_path):
    async with Pair(tmp_path, "csv", "brokerkit", n=5, target_settings={"test_mode": "true"}) as pair:
        with pytest.raises(UserError, match="validate --server"):
            Engine(pair.job(), mode="run")


async def test_server_flag_needs_a_dry_run_target(tmp_path):
    async with Pair(tmp_path, "realvolve", "rei", n=5) as pair:
        with pytest.raises(UserError, match="no server-side dry run"):
            Engine(pair.job(), mode="validate", server=True)
