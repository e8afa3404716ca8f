"""`migrator verify`: the target read back and compared with what each write sent.

A test of the truth, not of the simulator: the targets are given the keep-less fault
(a create answered as usual that drops a field, cuts a long value, reformats one, or is
lost after it was acknowledged) and verify must name each spoiled record by source id
and field — and find nothing on a clean run. MIGRATOR_VERIFY_CONTACTS sets the size
(default 300).
"""
from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import aiohttp
import orjson
import pytest

from migrator.lock import JobLock, lock_path
from migrator.sandbox.base import Faults
from migrator.sandbox.data import CLEAN
from migrator.verify import verify
from migrator.verify.output import summary, verify_paths, write_outputs
from tests.conftest import file_job, run_cli
from tests.integration.harness import Pair, ThreadPair

N = int(os.environ.get("MIGRATOR_VERIFY_CONTACTS", "300"))
KEEP_LESS = Faults(keep_less_rate=0.1, seed=5)


def _source_ids(tmp: Path) -> dict[str, list[str]]:
    with sqlite3.connect(tmp / "ckpt.sqlite") as db:
        out: dict[str, list[str]] = {}
        for sid, tid in db.execute("SELECT source_id, target_id FROM records WHERE status='done'"):
            out.setdefault(tid, []).append(sid)
        return out


def _found(outcome) -> tuple[set[tuple[str, str]], set[str]]:
    (s,) = outcome.streams
    return {(d["source_id"], d["field"]) for d in s.drift}, {m["source_id"] for m in s.missing}


@pytest.mark.parametrize("target", ["rei", "spark"])
async def test_a_clean_run_verifies_clean(tmp: Path, target: str):
    async with Pair(tmp, "csv", target, n=N) as pair:
        run = await pair.run()
        assert run.total("done") > 0.9 * N
        outcome = await verify(pair.job(), progress=False, out=lambda line: None)
    (s,) = outcome.streams
    assert outcome.clean, (s.drift[:3], s.missing[:3], s.twice[:3])
    assert s.equal == s.records == run.total("done") and s.how == "list"
    # The bill is what was spent: the whole list, a few pages, not a request per record.
    assert outcome.requests == outcome.planned
    assert sum(outcome.requests.values()) <= 0.1 * s.records


@pytest.mark.parametrize("target", ["rei", "spark"])
async def test_verify_finds_every_record_the_target_kept_less_of(tmp: Path, target: str):
    async with Pair(tmp, "csv", target, n=N, dirt=CLEAN, faults=KEEP_LESS) as pair:
        await pair.run()
        outcome = await verify(pair.job(), progress=False, out=lambda line: None)
        spoiled = pair.target_sim.stats.kept_less
    owners = _source_ids(tmp)
    assert {k["what"] for k in spoiled} == {"drop", "cut", "lose", "reformat"}
    drifted = {(sid, k["field"]) for k in spoiled if k["what"] != "lose" for sid in owners[k["id"]]}
    lost = {sid for k in spoiled if k["what"] == "lose" for sid in owners[k["id"]]}
    found_drift, found_missing = _found(outcome)
    assert found_drift == drifted
    assert found_missing == lost
    assert not outcome.clean
    (s,) = outcome.streams
    cut = next(k for k in spoiled if k["what"] == "cut")
    row = next(d for d in s.drift if d["target_id"] == cut["id"])
    assert row["held"] == cut["kept"] and row["sent"].startswith(cut["kept"]) and len(row["sent"]) > len(cut["kept"])


async def test_a_sample_is_read_by_id(tmp: Path):
    """``verify(job, source_ids)``, as ``run --sample N`` calls it: a few records cost a
    request each, fewer than the list's pages; a lost one is missing by its source id."""
    async with Pair(tmp, "csv", "rei", n=500, dirt=CLEAN, faults=KEEP_LESS) as pair:   # 5 pages
        await pair.run()
        spoiled = pair.target_sim.stats.kept_less
        owners = _source_ids(tmp)
        lost = next(owners[k["id"]][0] for k in spoiled if k["what"] == "lose")
        dropped = next(k for k in spoiled if k["what"] == "drop")
        sample = [lost, owners[dropped["id"]][0]]
        outcome = await verify(pair.job(), sample, progress=False, out=lambda line: None)
    (s,) = outcome.streams
    assert s.how == "by_id" and s.records == 2
    assert outcome.requests.get("by_id") == 2
    assert _found(outcome) == ({(sample[1], dropped["field"])}, {lost})


async def test_a_key_held_twice_is_reported(tmp: Path):
    """Another contact with one of the job's e-mails appears in the target after the run
    (a location that allows duplicates): verify names the key and both target ids."""
    async with Pair(tmp, "csv", "rei", n=60, dirt=CLEAN, target_sim={"allow_duplicates": True}) as pair:
        await pair.run()
        held = pair.target_records()
        email = held[0]["email"]
        sim = pair.target_sim
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{sim.base_url}/v1/contacts/", json={"email": email, "firstName": "Copy"},
                                 headers={"Authorization": f"Bearer {sim.credentials()['REI_API_KEY']}"}) as r:
                assert r.status == 200
        outcome = await verify(pair.job(), progress=False, out=lambda line: None)
    (s,) = outcome.streams
    assert [t["key"] for t in s.twice] == [f"email={email.lower()}"]
    assert held[0]["id"] in s.twice[0]["target_ids"] and len(s.twice[0]["target_ids"]) == 2
    assert not outcome.clean and not s.drift and not s.missing


@pytest.mark.parametrize("target", ["jsonl", "csv"])
async def test_a_file_target_is_read_back_line_by_line(tmp: Path, target: str):
    rows = [{"id": str(i), "First Name": f"First{i}", "Last Name": f"Last{i}",
             "Email": f"p{i}@example.com", "Phone": "", "Tags": "a, b"} for i in range(1, 41)]
    job_path = file_job(tmp, rows, target=f"{{system: {target}, path: out.{target}}}")
    from migrator.engine import Engine
    from migrator.job import load_job
    job = load_job(job_path)
    await Engine(job, progress=False).run()
    outcome = await verify(job, progress=False, out=lambda line: None)
    assert outcome.clean and outcome.streams[0].equal == 40 and not outcome.requests
    out = tmp / f"out.{target}"
    lines = out.read_text().splitlines(keepends=True)
    head = 1 if target == "csv" else 0
    lines[head + 4] = lines[head + 4].replace("First5", "FIRST5")   # source id 5: reformatted
    del lines[head + 9]                                             # source id 10: lost
    out.write_text("".join(lines))
    outcome = await verify(job, progress=False, out=lambda line: None)
    assert _found(outcome) == ({("5", "first_name")}, {"10"})


def test_the_cli_prints_the_bill_first_writes_private_files_and_exits_by_the_verdict(tmp: Path, monkeypatch, capsys):
    with ThreadPair(tmp, "csv", "spark", n=80, dirt=CLEAN) as pair:
        pair.call(lambda: None)
        assert run_cli("run", str(tmp / "job.yaml"), "--no-progress", env=pair.subprocess_env()).returncode == 0
        # verify only reads: it takes no job lock and works beside a writing run
        job = pair.job()
        with JobLock(lock_path(job.checkpoint), str(tmp / "job.yaml"), "run"):
            code, err = pair.main(monkeypatch, capsys, "verify")
        assert code == 0, err
        assert err.index("verify csv-to-spark: read back") < err.index("ETA:") < err.index("equal ")
        assert "everything read back is as sent" in err
        report, drift = verify_paths(job)
        for path in (report, drift):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert orjson.loads(report.read_bytes())["clean"] is True
        # A contact deleted in the target the next morning: exit 1, named in the drift file.
        tid = pair.call(lambda: pair.target_records()[0]["Id"])
        pair.call(lambda: pair.target_sim._contacts.pop(tid))
        pair.call(lambda: pair.target_sim._changed())
        code, err = pair.main(monkeypatch, capsys, "verify")
        assert code == 1 and "missing 1" in err
        assert f",{tid},missing," in drift.read_text()


# ---- Realeflow: only the newest 25 can be read back ------------------------------------------
async def test_realeflow_a_job_within_the_newest_25_verifies_equal(tmp: Path):
    async with Pair(tmp, "csv", "realeflow", n=20, dirt=CLEAN) as pair:
        run = await pair.run()
        outcome = await verify(pair.job(), progress=False, out=lambda line: None)
    (s,) = outcome.streams
    assert run.total("done") == 20
    assert outcome.clean and s.equal == 20 and s.unchecked == 0, (s.drift[:3], s.missing[:3])
    assert outcome.requests == outcome.planned == {"page": 1}


async def test_realeflow_records_past_the_newest_25_are_unchecked_never_missing(tmp: Path):
    lines: list[str] = []
    async with Pair(tmp, "csv", "realeflow", n=40, dirt=CLEAN) as pair:
        await pair.run()
        outcome = await verify(pair.job(), progress=False, out=lines.append)
        (s,) = outcome.streams
        assert s.records == 40 and s.equal == 25 and s.unchecked == 15
        assert not s.missing and not s.drift and s.how == "list"
        # What it could check is equal: exit 0; the bill says in one line why only 25.
        assert outcome.clean
        assert any("lists only its 25 newest contacts" in line and "unchecked" in line for line in lines)
        said = summary(outcome, None, None)
        assert "unchecked 15" in said and "    unchecked: Realeflow lists only its 25 newest" in said
        # The newest contact spoiled in the target: found by its source id and field.
        newest = pair.target_records()[-1]
        pair.target_sim._contacts[newest["contactId"]]["city"] = "Elsewhere"
        outcome = await verify(pair.job(), progress=False, out=lambda line: None)
        owner = _source_ids(tmp)[newest["id"]]
        assert {(d["source_id"], d["field"]) for d in outcome.streams[0].drift} == {(owner[0], "City")}
        assert not outcome.clean
        # Another user creates 25 contacts: none of the job's can be read back; nothing is
        # proven, so verify does not exit 0 — and it still calls none of them missing.
        for n in range(25):
            pair.target_sim._add_contact({"fullName": f"Other {n}", "email": None, "companyName": None,
                                          "phone": None, "phoneType": None, "source": None, "address": None,
                                          "city": None, "state": None, "zipCode": None,
                                          "customFields": None, "tags": []}, [], None)
        outcome = await verify(pair.job(), progress=False, out=lambda line: None)
    (s,) = outcome.streams
    assert s.unchecked == 40 and not s.missing and not s.drift
    assert not outcome.clean and outcome.unproven == ["contacts"]
    assert "nothing of contacts could be read back: nothing is proven (exit 1)" in summary(outcome, None, None)


# ---- Realvolve: its list row plus contact_detail ----------------------------------------------
@pytest.mark.parametrize("rows", ["full", "sample"])
async def test_realvolve_a_clean_run_verifies_clean(tmp: Path, rows: str):
    """``sample``: list rows of the doc's four fields only; what a row does not show is not
    compared (nor called drift), the rest is."""
    async with Pair(tmp, "csv", "realvolve", n=80, dirt=CLEAN, target_sim={"list_fields": rows}) as pair:
        run = await pair.run()
        outcome = await verify(pair.job(), progress=False, out=lambda line: None)
    s = outcome.streams[0]
    assert s.stream == "contacts" and s.how == "by_id"
    assert outcome.clean, (s.drift[:3], s.missing[:3])
    assert s.equal == s.records == run.total("done") > 70
    # One list page, a detail per record, the two name lists (and the token).
    assert outcome.planned == {"page": 1, "detail": s.records, "meta": 2}
    assert {k: n for k, n in outcome.requests.items() if k != "auth"} == outcome.planned


async def test_realvolve_verify_finds_what_the_target_kept_less_of(tmp: Path):
    async with Pair(tmp, "csv", "realvolve", n=200, dirt=CLEAN, faults=KEEP_LESS) as pair:
        await pair.run()
        spoiled = pair.target_sim.stats.kept_less
        owners = _source_ids(tmp)
        # A contact deleted by a user the next morning.
        gone = next(tid for tid in owners if int(tid) in pair.target_sim._contacts
                    and not any(k["id"] == tid for k in spoiled))
        del pair.target_sim._contacts[int(gone)]
        pair.target_sim._ids.remove(int(gone))
        outcome = await verify(pair.job(), progress=False, out=lambda line: None)
    assert {k["what"] for k in spoiled} >= {"drop", "cut", "reformat"}
    # A create it lost fails the contact's update_contact: the run said so; not done.
    drifted = {(sid, k["field"]) for k in spoiled if k["what"] != "lose" for sid in owners.get(k["id"], ())}
    assert drifted and _found(outcome) == (drifted, {owners[gone][0]})
    assert not outcome.clean


# ---- Brokerkit: no read API ---------------------------------------------------------------------
def test_brokerkit_cannot_be_read_back_and_verify_does_not_pass_it(tmp: Path, monkeypatch, capsys):
    """Nothing read back is nothing proven: one line says why, and the exit is 1, not 0."""
    with ThreadPair(tmp, "csv", "brokerkit", n=30, dirt=CLEAN) as pair:
        assert run_cli("run", str(tmp / "job.yaml"), "--no-progress", env=pair.subprocess_env()).returncode == 0
        code, err = pair.main(monkeypatch, capsys, "verify")
    assert code == 1, err
    assert err.count("Brokerkit has no read API: verify reads nothing back there") == 2   # the bill, the summary
    assert "nothing of contacts could be read back: nothing is proven (exit 1)" in err
    assert "one per row" not in err
    report = orjson.loads(verify_paths(pair.job())[0].read_bytes())
    assert report["clean"] is False and report["unproven"] == ["contacts"]
    assert report["streams"][0]["unchecked"] == 30 and report["streams"][0]["missing"] == 0
    assert report["requests"] == {}
