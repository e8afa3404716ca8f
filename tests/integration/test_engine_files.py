"""File → file through the real engine: exactly once, bad rows fail alone, resume."""
import csv
import json
import os
import stat

import anyio
import orjson

from migrator.engine import Engine
from migrator.job import load_job
from tests.conftest import PHONE_MAPPING, contacts_rows, file_job, run_cli, write_csv


def _out(tmp):
    return [orjson.loads(l) for l in (tmp / "out.jsonl").read_bytes().splitlines()]


def _run(job, **kw):
    return anyio.run(Engine(load_job(job), progress=False, **kw).run)


def test_file_to_file_exactly_once_and_report(tmp):
    rows = contacts_rows(1200)
    rows[5]["Tags"] = "skipme"
    job = file_job(tmp, rows)
    res = run_cli("run", str(job), "--no-progress")
    assert res.returncode == 0, res.stderr
    out = _out(tmp)
    assert len(out) == 1199
    assert len({o["_source_id"] for o in out}) == 1199
    first = next(o for o in out if o["_source_id"] == "2")
    assert first == {"_source_id": "2", "first_name": "First2", "last_name": "Last2",
                     "email": "person2@example.com", "tags": ["c"]}
    report = json.loads((tmp / "reports" / "t-run-report.json").read_text())
    counts = report["streams"][0]["counts"]
    assert counts["done"] == 1199 and counts["skipped"] == 1
    for f in ("t-run-report.json", "t-run-failures.csv"):
        assert stat.S_IMODE(os.stat(tmp / "reports" / f).st_mode) == 0o600
    assert "written 1199" in res.stderr


def test_malformed_rows_fail_alone(tmp):
    job = file_job(tmp, contacts_rows(3))
    with open(tmp / "in.csv", "a", encoding="utf-8") as fh:
        fh.write('4,Only,Three\n5,"broken,quote\n')
    outcome = _run(job)
    counts = outcome.streams[0].counts
    assert counts["done"] == 3 and counts["failed"] >= 1
    # The engine alone writes no report; the checkpoint holds the reasons.
    import sqlite3
    rows = sqlite3.connect(tmp / "ckpt.sqlite").execute(
        "SELECT source_id, error FROM records WHERE status='failed'").fetchall()
    assert any("expected 6 columns, got 3" in e and "line 5" in e for _, e in rows)


def test_stop_and_resume_writes_each_once(tmp):
    job = file_job(tmp, contacts_rows(2000))
    first = _run(job, stop_after=700)
    assert first.interrupted
    done_first = first.streams[0].counts["done"]
    assert 700 <= done_first < 2000
    second = _run(job)
    assert not second.interrupted
    out = _out(tmp)
    ids = [o["_source_id"] for o in out]
    assert len(ids) == len(set(ids)) == 2000
    third = _run(job)
    assert third.streams[0].counts["stream_already_finished"] == 1
    assert len(_out(tmp)) == 2000


def test_validate_writes_nothing_and_counts_invalid(tmp):
    rows = contacts_rows(10)
    rows[3]["Phone"] = "555-CALL-NOW"
    job = file_job(tmp, rows, mapping=PHONE_MAPPING)
    res = run_cli("validate", str(job), "--no-progress")
    assert res.returncode == 1, res.stderr
    assert not (tmp / "out.jsonl").exists() and not (tmp / "ckpt.sqlite").exists()
    fails = list(csv.DictReader(open(tmp / "reports" / "t-validate-failures.csv")))
    assert [(f["source_id"], f["field"]) for f in fails] == [("4", "phone")]
    assert run_cli("validate", str(job), "--no-progress", "--max-invalid", "1").returncode == 0


def test_retry_only_failed(tmp):
    rows = contacts_rows(20)
    rows[3]["Phone"] = "bad"
    job = file_job(tmp, rows, mapping=PHONE_MAPPING)
    assert run_cli("run", str(job)).returncode == 1
    assert len(_out(tmp)) == 19
    rows[3]["Phone"] = "+14155550000"
    write_csv(tmp / "in.csv", rows)
    res = run_cli("retry", str(job))
    assert res.returncode == 0, res.stderr
    out = _out(tmp)
    assert len(out) == 20 and sorted(int(o["_source_id"]) for o in out) == list(range(1, 21))
    st = run_cli("status", str(job))
    assert st.returncode == 0 and "done 20, failed 0" in st.stdout


def test_duplicate_source_ids_written_once(tmp):
    rows = contacts_rows(5) + [contacts_rows(5)[2]]
    job = file_job(tmp, rows)
    outcome = _run(job)
    c = outcome.streams[0].counts
    assert c["duplicate_source_id"] == 1 and c["done"] == 5
    assert len(_out(tmp)) == 5
