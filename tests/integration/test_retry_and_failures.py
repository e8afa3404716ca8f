"""Issue 16, parts 3 and 4: the fix-and-retry flow, and a failures file a person can work from."""
from __future__ import annotations

import csv
import os
import re
import signal
import stat
import threading

import orjson
import pytest

from migrator.cli import main
from migrator.identity import who
from migrator.sandbox.data import CLEAN
from tests.conftest import PHONE_MAPPING, contacts_rows, file_job, run_cli, write_csv
from tests.integration.harness import ThreadPair

N = int(os.environ.get("MIGRATOR_RETRY_CONTACTS", "60"))
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)$")


def cli(pair: ThreadPair, monkeypatch, capsys, *args: str) -> tuple[int, str]:
    for k, v in pair.env.items():
        monkeypatch.setenv(k, v)
    capsys.readouterr()
    code = main([*args, str(pair.tmp / "job.yaml"), "--no-progress"])
    return code, capsys.readouterr().err


def source_requests(pair: ThreadPair) -> dict[str, int]:
    return pair.call(lambda: dict(pair.source_sim.stats.requests))


def reset_source(pair: ThreadPair) -> None:
    pair.call(lambda: pair.source_sim.stats.requests.clear())


def failed_ids(pair: ThreadPair) -> list[str]:
    import sqlite3
    with sqlite3.connect(pair.tmp / "ckpt.sqlite") as db:
        return [r[0] for r in db.execute("SELECT source_id FROM records WHERE status='failed'")]


# ---- part 3 ---------------------------------------------------------------------------
def test_retry_with_nothing_failed_reads_nothing(tmp_path, monkeypatch, capsys):
    """Before: retry read the whole source (every list page and contact_detail) to find nothing."""
    with ThreadPair(tmp_path, "realvolve", "rei", n=20, dirt=CLEAN, concurrency=4) as pair:
        code, err = cli(pair, monkeypatch, capsys, "run")
        assert code == 0 and not failed_ids(pair), err
        reset_source(pair)
        code, err = cli(pair, monkeypatch, capsys, "retry")
        assert code == 0, err
        assert "nothing to retry" in err and "20 done" in err
        assert source_requests(pair) == {}


@pytest.mark.parametrize("source,target,by_id", [
    ("realvolve", "rei", "GET /utility_api/v1/contacts/contact_detail"),
    ("spark", "rei", "GET /v1/contacts/{Id}"),
    ("rei", "spark", "GET /v1/contacts/{contactId}"),
])
def test_retry_reads_only_the_failed_records(tmp_path, monkeypatch, capsys, source, target, by_id):
    """Before: retry read every page of the source (and Realvolve a contact_detail per
    contact) to find the few that failed."""
    with ThreadPair(tmp_path, source, target, n=N, concurrency=4) as pair:
        code, err = cli(pair, monkeypatch, capsys, "run")
        failed = failed_ids(pair)
        assert code == 1 and 0 < len(failed) < N, err
        reset_source(pair)
        code, err = cli(pair, monkeypatch, capsys, "retry")
        asked = source_requests(pair)
        by_kind = {k: v for k, v in asked.items() if k == by_id or k.endswith("/{id}") and by_id.endswith("}")}
        assert sum(by_kind.values()) == len(failed), asked
        if source != "realvolve":  # no list page but the access probe; Realvolve lists to find the rows' names
            lists = sum(v for k, v in asked.items() if k.rstrip("/").endswith("/contacts"))
            assert lists == 1, asked   # the probe of the source (`probe_access`), one short page
        assert sorted(failed_ids(pair)) == sorted(failed)  # the same dirty records fail again


def test_fix_the_mapping_then_retry_with_accept_mapping_change(tmp):
    """The README's flow: a record fails, the user fixes the mapping, then retries. Before,
    retry refused the changed mapping and named an option it did not take."""
    rows = contacts_rows(20)
    rows[3]["Phone"] = "555-CALL-NOW"
    job = file_job(tmp, rows, mapping=PHONE_MAPPING)
    assert run_cli("run", str(job)).returncode == 1
    (tmp / "mapping.yaml").write_text(PHONE_MAPPING.replace("      phone: {path: Phone, transform: [phone_e164]}\n",
                                                            "      phone: Phone\n"))
    refused = run_cli("retry", str(job))
    assert refused.returncode == 2 and "--accept-mapping-change" in refused.stderr, refused.stderr
    assert len([line for line in refused.stderr.splitlines() if line.strip()]) == 1
    res = run_cli("retry", str(job), "--accept-mapping-change")
    assert res.returncode == 0, res.stderr
    assert "read 1," in res.stderr and "written 1" in res.stderr
    lines = [orjson.loads(line) for line in (tmp / "out.jsonl").read_bytes().splitlines()]
    assert len(lines) == 20 and sum(1 for r in lines if r.get("phone") == "555-CALL-NOW") == 1


def test_retry_of_a_file_source_reads_the_fixed_rows(tmp):
    rows = contacts_rows(20)
    rows[3]["Phone"] = "555-CALL-NOW"
    job = file_job(tmp, rows, mapping=PHONE_MAPPING)
    assert run_cli("run", str(job)).returncode == 1
    rows[3]["Phone"] = "+14155550000"
    write_csv(tmp / "in.csv", rows)
    res = run_cli("retry", str(job))
    assert res.returncode == 0, res.stderr
    assert "read 1," in res.stderr and "written 1" in res.stderr
    again = run_cli("retry", str(job))
    assert again.returncode == 0 and "nothing to retry" in again.stderr


def test_ctrl_c_during_validate_names_validate(tmp_path):
    """Before: "Resume with: migrator run job.yaml" after stopping a validate."""
    import subprocess
    import time
    with ThreadPair(tmp_path, "realvolve", "rei", n=N, concurrency=2) as pair:
        job = pair.tmp / "job.yaml"  # a slow source: validate is still reading when Ctrl-C comes
        job.write_text(job.read_text().replace("rate_limit: {requests: 2000, per: 1}",
                                               "rate_limit: {requests: 4, per: 1}", 1))
        proc = subprocess.Popen(pair.cli("validate"), stderr=subprocess.PIPE, text=True,
                                env=pair.subprocess_env())
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if any("contact_detail" in k for k in source_requests(pair)):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "finished before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert f"migrator validate {job}" in err and "migrator run" not in err


# ---- part 4 ---------------------------------------------------------------------------
def test_failures_csv_names_the_record_and_its_value(tmp):
    """Before: stream, source_id, field, rule, message only."""
    rows = contacts_rows(6)
    rows[3]["Phone"] = "555-CALL-NOW"
    job = file_job(tmp, rows, mapping=PHONE_MAPPING)
    for mode in ("validate", "run"):
        run_cli(mode, str(job), "--no-progress")
        path = tmp / "reports" / f"t-{mode}-failures.csv"
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        fails = list(csv.DictReader(open(path, newline="", encoding="utf-8")))
        assert list(fails[0]) == ["stream", "source_id", "name", "email", "field", "rule", "value", "message"]
        (row,) = fails
        assert (row["source_id"], row["name"], row["email"], row["field"]) == \
            ("4", "First4 Last4", "person4@example.com", "phone")
        assert "555-CALL-NOW" in row["value"]


def test_reports_have_iso_times_and_each_run_its_own(tmp):
    """Before: started/ended were epoch floats and a resume overwrote the interrupted run's report."""
    rows = contacts_rows(30)
    rows[2]["Phone"] = "bad"
    job = file_job(tmp, rows, mapping=PHONE_MAPPING)
    assert run_cli("run", str(job), "--no-progress").returncode == 1
    rows[2]["Phone"] = "+14155550000"
    write_csv(tmp / "in.csv", rows)
    assert run_cli("retry", str(job), "--no-progress").returncode == 0
    assert run_cli("run", str(job), "--no-progress").returncode == 0
    reports = tmp / "reports"
    runs = sorted(p.name for p in reports.glob("t-run-*-report.json"))
    assert runs == ["t-run-1-report.json", "t-run-3-report.json"]
    assert (reports / "t-retry-2-report.json").exists()
    first = orjson.loads((reports / "t-run-1-report.json").read_bytes())
    latest = orjson.loads((reports / "t-run-report.json").read_bytes())
    assert first["run"] == 1 and latest["run"] == 3
    assert first["streams"][0]["counts"]["failed"] == 1
    for r in (first, latest):
        assert ISO.match(r["started"]) and ISO.match(r["ended"]), r["started"]
    for p in reports.iterdir():
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600, p


def test_who_reads_each_vendors_names():
    assert who({"first_name": "Cary", "last_name": "Siegler",
                "email_addresses": [{"email_address": "c@x.com", "id": 1}]}) == ("Cary Siegler", "c@x.com")
    assert who({"GivenName": "Ann", "FamilySurname": "Lee", "PrimaryEmail": "a@x.com"}) == ("Ann Lee", "a@x.com")
    assert who({"firstName": "Bo", "lastName": "Ek", "email": "b@x.com"}) == ("Bo Ek", "b@x.com")
    assert who({"Full Name": "Dee Du", "E-mail": "d@x.com"}) == ("Dee Du", "d@x.com")
    assert who(None) == ("", "")


def test_retry_says_why_it_reads_the_whole_source(tmp_path, monkeypatch, capsys):
    """A source with no read by id (Realeflow): one line saying so, then the same records retried."""
    with ThreadPair(tmp_path, "realeflow", "rei", n=25, concurrency=4) as pair:
        cli(pair, monkeypatch, capsys, "run")
        failed = failed_ids(pair)
        assert failed, "the seeded dirt should fail some contacts"
        code, err = cli(pair, monkeypatch, capsys, "retry")
        lines = [line for line in err.splitlines() if "retry reads all of" in line]
        assert lines == [f"note: retry reads all of contacts to find its {len(failed)} records to retry: "
                         "realeflow has no way to read one contacts record by its id"], err
