"""`migrator init csv TARGET --from FILE` as a user runs it: propose, validate, run."""
from __future__ import annotations

import json

import orjson
import yaml

from tests.conftest import run_cli
from tests.exports21 import as_records, write


def test_a_cp1252_semicolon_export_goes_from_init_to_a_finished_run(tmp):
    src = write(tmp / "kontakte.csv", "german", 40, delimiter=";", encoding="cp1252")
    res = run_cli("init", "csv", "jsonl", "--from", str(src), "--out", str(tmp / "job"))
    assert res.returncode == 0, res.stderr
    job = yaml.safe_load((tmp / "job" / "job.yaml").read_text())
    assert job["source"]["encoding"] == "cp1252" and job["source"]["delimiter"] == ";"
    assert job["source"]["id_column"] == "Kundennummer"
    text = (tmp / "job" / "mapping.yaml").read_text()
    assert "# its name 'Nachname'" in text and "'Erstellt am'" in text   # why, and the column left over
    val = run_cli("validate", str(tmp / "job" / "job.yaml"), "--no-progress", cwd=tmp)
    assert val.returncode == 0, val.stderr
    run = run_cli("run", str(tmp / "job" / "job.yaml"), "--no-progress", cwd=tmp)
    assert run.returncode == 0, run.stderr
    out = [orjson.loads(line) for line in (tmp / "job" / "out.jsonl").read_bytes().splitlines()]
    people = {r["Kundennummer"]: r for r in as_records("german", 40)}
    assert len(out) == 40
    for rec in out:
        person = people[rec["_source_id"]]
        assert rec["last_name"] == person["Nachname"] and rec["email"] == person["E-Mail-Adresse"].lower()
        day, month, year = person["Geburtstag"].split(".")
        assert rec["birthday"] == f"{year}-{month}-{day}"
        assert rec["tags"] == [t.strip() for t in person["Gruppen"].split(",")]


def test_a_jsonl_export_into_a_crm_target_validates_its_proposal(tmp):
    src = tmp / "contacts.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in as_records("snake", 30)))
    res = run_cli("init", "jsonl", "rei", "--from", str(src), "--out", str(tmp / "j"))
    assert res.returncode == 0, res.stderr
    text = (tmp / "j" / "mapping.yaml").read_text()
    assert "phone: {path: '[cell, phone_number]'" in text and "${REI_API_KEY}" in (tmp / "j" / "job.yaml").read_text()
    assert "lead_score" in text       # listed as a column nothing reads


def test_bad_from_files_get_one_line_and_exit_2(tmp):
    missing = run_cli("init", "csv", "rei", "--from", str(tmp / "nope.csv"), "--out", str(tmp / "a"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "nope.csv" in missing.stderr
    (tmp / "empty.csv").write_text("")
    empty = run_cli("init", "csv", "rei", "--from", str(tmp / "empty.csv"), "--out", str(tmp / "b"))
    assert empty.returncode == 2 and "empty" in empty.stderr and empty.stderr.count("\n") == 1
    (tmp / "bad.jsonl").write_text('{"a": 1}\nnot json\n')
    bad = run_cli("init", "jsonl", "rei", "--from", str(tmp / "bad.jsonl"), "--out", str(tmp / "c"))
    assert bad.returncode == 2 and "bad.jsonl:2" in bad.stderr
    wrong = run_cli("init", "realvolve", "rei", "--from", str(tmp / "empty.csv"), "--out", str(tmp / "d"))
    assert wrong.returncode == 2 and "--from reads a CSV or JSONL export" in wrong.stderr


def test_a_salesforce_like_export_lands_in_the_rei_sandbox(tmp):
    from migrator.sandbox.server import SandboxThread, make

    src = write(tmp / "sf.csv", "salesforce", 30)
    res = run_cli("init", "csv", "rei", "--from", str(src), "--out", str(tmp / "j"))
    assert res.returncode == 0, res.stderr
    with SandboxThread({"rei": make("rei", contacts=0, seed=3, limit=None)}) as sb:
        env = sb.env()
        val = run_cli("validate", str(tmp / "j" / "job.yaml"), "--no-progress", env=env, cwd=tmp)
        assert val.returncode == 0, val.stderr
        run = run_cli("run", str(tmp / "j" / "job.yaml"), "--no-progress", env=env, cwd=tmp)
        assert run.returncode == 0, run.stderr
        got = sb.call(lambda: sb["rei"].inspect_records("contacts"))
    people = {p["Email"].lower(): p for p in as_records("salesforce", 30)}
    assert len(got) == 30 and {g["email"] for g in got} == set(people)
    for g in got:
        p = people[g["email"]]
        assert (g["firstName"], g["lastName"], g["companyName"]) == (p["First Name"], p["Last Name"], p["Account Name"])
        assert len(g["state"]) == 2 and g["postalCode"][:5] == p["Mailing Zip/Postal Code"][:5]
