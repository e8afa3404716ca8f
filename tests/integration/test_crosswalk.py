"""The crosswalk (issue 20, part 5): ``migrator ids JOB --out FILE`` writes one row per
done record — stream, source id, target id, action — as CSV or JSON Lines, 0600."""
from __future__ import annotations

import csv
import json
import sqlite3
import stat
from pathlib import Path

import pytest

from migrator.cli import main
from migrator.crosswalk import action_of

from tests.integration.harness import Pair


def done_records(ckpt: Path) -> dict[tuple[str, str], str]:
    with sqlite3.connect(ckpt) as db:
        return {(s, i): t for s, i, t in db.execute(
            "SELECT stream, source_id, target_id FROM records WHERE status='done'")}


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
async def test_the_crosswalk_has_one_row_per_done_record(tmp_path: Path, suffix: str, monkeypatch, capsys) -> None:
    async with Pair(tmp_path, "realvolve", "rei", n=40, preseed=0.25) as pair:
        outcome = await pair.run()
        env = pair.env
    assert outcome.total("failed") > 0   # dirty data: failed records are not in the crosswalk
    done = done_records(tmp_path / "ckpt.sqlite")
    assert done
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    out = tmp_path / "out" / f"ids{suffix}"
    assert main(["ids", str(tmp_path / "job.yaml"), "--out", str(out)]) == 0
    assert f"wrote {len(done)} rows to {out}" in capsys.readouterr().err
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    if suffix == ".csv":
        with open(out, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    else:
        rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert list(rows[0]) == ["stream", "source_id", "target_id", "action"]
    assert len(rows) == len(done)
    assert {(r["stream"], r["source_id"]): r["target_id"] for r in rows} == done
    actions = {r["action"] for r in rows}
    assert "created" in actions and "merged" in actions   # a quarter of the people were in REI already
    assert actions <= {"created", "updated", "matched", "merged", "undone"}


def test_the_crosswalk_refuses_an_unknown_extension_in_one_line(tmp_path: Path, capsys) -> None:
    from tests.conftest import file_job
    job = file_job(tmp_path, [{"id": "1", "First Name": "A", "Last Name": "B", "Email": "a@x.io", "Tags": ""}])
    assert main(["run", str(job), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["ids", str(job), "--out", str(tmp_path / "ids.xlsx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ".csv or .jsonl" in err[0]


def test_actions_keep_their_value_space_open() -> None:
    assert action_of("done", "created", None) == "created"
    assert action_of("done", "updated", "email=ann@example.com") == "merged"
    assert action_of("done", "updated", "delta") == "updated"
    assert action_of("done", "matched", "lookup after interruption") == "matched"
    assert action_of("undone", "created", None) == "undone"
    assert action_of("done", "tested", None) == "tested"
