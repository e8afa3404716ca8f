"""`migrator undo JOB` (issue 20, part 3): what the job created is deleted, what it changed
is put back, through documented endpoints only; exactly once across a SIGKILL; a record
changed after the migration is listed, not overwritten; a target with no delete refuses."""
import copy
import sqlite3
import subprocess

import orjson
import pytest

from tests.conftest import contacts_rows, file_job, run_cli
from tests.integration.harness import ThreadPair

VOLATILE = {"rei": ("dateUpdated",), "spark": ("ModificationTimestamp",)}


def _snapshot(pair) -> dict[str, dict]:
    key = "Id" if pair.target == "spark" else "id"
    out = {}
    for r in pair.call(pair.target_records):
        r = copy.deepcopy(r)
        for v in VOLATILE.get(pair.target, ()):
            r.pop(v, None)
        out[str(r[key])] = r
    return out


def _undo_report(tmp_path, name):
    return orjson.loads((tmp_path / "reports" / f"{name}-undo-report.json").read_bytes())


@pytest.mark.parametrize("target,on_merge", [("rei", "update"), ("rei", "combine"), ("spark", "update"),
                                             ("spark", "combine")])
def test_run_then_undo_leaves_the_target_as_it_was(tmp_path, monkeypatch, capsys, target, on_merge):
    with ThreadPair(tmp_path, "realvolve", target, n=60, preseed=0.25, on_merge=on_merge) as pair:
        before = _snapshot(pair)
        assert before, "the target should hold some people before the run"
        code, err = pair.main(monkeypatch, capsys, "run")
        assert code in (0, 1), err
        assert "cannot be undone" not in err
        db = sqlite3.connect(tmp_path / "ckpt.sqlite")
        actions = dict(db.execute("SELECT action, count(*) FROM records WHERE status='done' GROUP BY action"))
        assert actions.get("created") and actions.get("updated"), actions
        code, err = pair.main(monkeypatch, capsys, "undo")
        assert "undo plan:" in err and "ETA" in err, err
        after = _snapshot(pair)
        report = _undo_report(tmp_path, pair.job().name)
        partly = {row["target_id"] for row in report["put_back_partly"]}
        assert set(after) == set(before), (set(after) ^ set(before))
        unequal = [tid for tid in before if after[tid] != before[tid] and tid not in partly]
        assert not unequal, [(before[t], after[t]) for t in unequal[:2]]
        assert report["counts"]["undone"] == sum(actions.get(a, 0) for a in ("created", "updated")), report["counts"]
        print(on_merge, target, "pre-existing put back byte-equal:", len(before) - len(partly), "partly:", len(partly))
