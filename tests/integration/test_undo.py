"""`migrator undo JOB` (issue 20, part 3): what the job created is deleted, what it changed
is put back, through documented endpoints only; exactly once across a SIGKILL; a record
changed after the migration is listed, not overwritten; a target with no delete refuses."""
import copy
from collections import Counter
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


def _held_twice(pair) -> dict[str, int]:
    """E-mails two contacts the target holds now share (the simulator's own count of
    creates by key also counts a contact deleted by undo and written again)."""
    emails = Counter(str(r.get("email") or "").lower() for r in pair.call(pair.target_records) if r.get("email"))
    return {e: n for e, n in emails.items() if n > 1}


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
        assert not unequal, [{k: (before[t].get(k), after[t].get(k)) for k in set(before[t]) | set(after[t]) if before[t].get(k) != after[t].get(k)} for t in unequal[:2]]
        assert report["counts"]["undone"] == sum(actions.get(a, 0) for a in ("created", "updated")), report["counts"]
        kinds = report["plan"]["requests"]["target"]["kinds"]   # planned, then spent
        assert kinds and all(v["planned"] == v["actual"] for v in kinds.values()), (kinds, err)
        assert "requests planned → actual" in err, err
        print(on_merge, target, "pre-existing put back byte-equal:", len(before) - len(partly), "partly:", len(partly))


def test_a_sigkill_mid_undo_then_undo_again_leaves_the_target_as_it_was(tmp_path, monkeypatch, capsys):
    with ThreadPair(tmp_path, "realvolve", "rei", n=80, preseed=0.25, concurrency=4) as pair:
        before = _snapshot(pair)
        code, err = pair.main(monkeypatch, capsys, "run")
        assert code in (0, 1), err
        db = sqlite3.connect(tmp_path / "ckpt.sqlite")
        done_first = db.execute("SELECT count(*) FROM records WHERE status='done'").fetchone()[0]
        env = pair.subprocess_env()
        for kill_at in ("undo:15", "undo:40"):
            env["MIGRATOR_CRASH_AT"] = kill_at
            crashed = subprocess.run(pair.cli("undo") + ["--debug"], env=env, capture_output=True, text=True, timeout=120)
            assert crashed.returncode == -9, crashed.stderr[-600:]
        db = sqlite3.connect(tmp_path / "ckpt.sqlite")
        assert db.execute("SELECT count(*) FROM undo_state WHERE state='inflight'").fetchone()[0] >= 1
        env.pop("MIGRATOR_CRASH_AT")
        final = subprocess.run(pair.cli("undo"), env=env, capture_output=True, text=True, timeout=120)
        assert final.returncode == 0, final.stderr[-800:]
        assert "Traceback" not in final.stderr
        after = _snapshot(pair)
        assert set(after) == set(before)
        # a field a merge filled that REI cannot empty again is noted on the record's undo
        partly = {t for (t,) in db.execute("SELECT l.target_id FROM undo_state u JOIN undo_log l USING "
                                           "(stream, source_id) WHERE u.note LIKE '%cannot empty%'")}
        assert [{k: (v, after[t].get(k)) for k, v in before[t].items() if after[t].get(k) != v}
                for t in before if before[t] != after[t] and t not in partly] == []
        assert len(partly) < len(before)
        states = dict(db.execute("SELECT state, count(*) FROM undo_state GROUP BY state"))
        assert set(states) == {"undone"}, states
        assert db.execute("SELECT count(*) FROM records WHERE status='done'").fetchone()[0] == 0
        report = _undo_report(tmp_path, pair.job().name)
        written = db.execute("SELECT count(*) FROM undo_log").fetchone()[0]
        assert states["undone"] == written   # every record's undo once: the resume did only what was left
        assert 0 < report["counts"]["undone"] <= written - 15 + 1, report["counts"]
        # the undo is over: run again and every record is written once more
        code, err = pair.main(monkeypatch, capsys, "run")
        assert code in (0, 1), err
        assert _held_twice(pair) == {}
        assert db.execute("SELECT count(*) FROM records WHERE status='done'").fetchone()[0] == done_first


def test_a_record_changed_after_the_migration_is_listed_not_deleted_unless_forced(tmp_path, monkeypatch, capsys):
    with ThreadPair(tmp_path, "realvolve", "rei", n=20) as pair:
        code, err = pair.main(monkeypatch, capsys, "run")
        assert code in (0, 1), err
        db = sqlite3.connect(tmp_path / "ckpt.sqlite")
        sid, tid = db.execute("SELECT source_id, target_id FROM records WHERE action='created' AND target_id IN "
                              "(SELECT target_id FROM records GROUP BY target_id HAVING count(*)=1) "
                              "LIMIT 1").fetchone()
        sim = pair.target_sim

        def edit():
            contact = sim.contacts[tid]
            contact["firstName"] = "Renamed By The Team"
        pair.call(edit)
        code, err = pair.main(monkeypatch, capsys, "undo")
        assert code == 1, err
        assert tid in err and "changed in the target since the migration (firstName)" in err, err
        held = {str(r["id"]) for r in pair.call(pair.target_records)}
        assert held == {tid}, held
        code, err = pair.main(monkeypatch, capsys, "undo", "--force")
        assert code == 0, err
        assert pair.call(pair.target_records) == []


@pytest.mark.parametrize("target", ["brokerkit", "realeflow"])
def test_a_target_without_delete_says_so_before_the_first_write_and_undo_refuses(tmp_path, monkeypatch, capsys,
                                                                                   target):
    with ThreadPair(tmp_path, "rei" if target == "realeflow" else "realvolve", target, n=10) as pair:
        code, err = pair.main(monkeypatch, capsys, "validate")
        assert "note: this run cannot be undone:" in err and "documents no way to delete" in err, err
        code, err = pair.main(monkeypatch, capsys, "run")
        assert code in (0, 1), err
        first = err.index("cannot be undone")
        assert first < (err.find("created") if "created" in err else len(err))
        held = pair.call(pair.target_records)
        code, err = pair.main(monkeypatch, capsys, "undo")
        assert code == 2
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and "cannot be undone" in lines[0], err
        assert pair.call(pair.target_records) == held


def test_sample_then_run_then_undo_sample_only_takes_back_just_the_trial(tmp_path, monkeypatch, capsys):
    with ThreadPair(tmp_path, "realvolve", "rei", n=50, source_sim={"page_size": 10}) as pair:
        code, err = pair.main(monkeypatch, capsys, "run", "--sample", "5")
        assert code in (0, 1), err
        db = sqlite3.connect(tmp_path / "ckpt.sqlite")
        trial = {t for (t,) in db.execute("SELECT target_id FROM records WHERE status='done'")}
        assert len(trial) == 5
        code, err = pair.main(monkeypatch, capsys, "run")
        assert code in (0, 1), err
        everything = {str(r["id"]) for r in pair.call(pair.target_records)}
        code, err = pair.main(monkeypatch, capsys, "undo", "--sample-only")
        assert code == 0, err
        assert {str(r["id"]) for r in pair.call(pair.target_records)} == everything - trial
        code, err = pair.main(monkeypatch, capsys, "run")   # the trial's records are written again, once
        assert code in (0, 1), err
        assert len(pair.call(pair.target_records)) == len(everything)
        assert _held_twice(pair) == {}


def test_a_file_target_is_cut_back_whole_or_just_the_trial(tmp_path):
    rows = contacts_rows(40)
    job = file_job(tmp_path, rows)
    out = tmp_path / "out.jsonl"
    out.write_bytes(b'{"kept": "a line the file held before the job"}\n')
    original = out.read_bytes()
    assert run_cli("run", str(job), "--sample", "4", "--no-progress").returncode == 0
    assert len(out.read_bytes().splitlines()) == 5
    res = run_cli("undo", str(job), "--sample-only", "--no-progress")
    assert res.returncode == 0, res.stderr
    assert out.read_bytes() == original
    assert run_cli("run", str(job), "--sample", "4", "--no-progress").returncode == 0
    assert run_cli("run", str(job), "--no-progress").returncode == 0
    lines = out.read_bytes().splitlines()
    assert len(lines) == 41 and len(set(lines)) == 41
    res = run_cli("undo", str(job), "--sample-only", "--no-progress")
    assert res.returncode == 2 and "without --sample-only" in res.stderr, res.stderr
    res = run_cli("undo", str(job), "--no-progress")
    assert res.returncode == 0, res.stderr
    assert out.read_bytes() == original
    assert oct((tmp_path / "reports" / "t-undo-report.json").stat().st_mode & 0o777) == "0o600"
    assert run_cli("run", str(job), "--no-progress").returncode == 0
    assert len(out.read_bytes().splitlines()) == 41


def test_the_whole_workflow_trial_undo_run_delta_then_undo_leaves_the_target_as_it_was(
        tmp_path, monkeypatch, capsys):
    """A trial taken back, the whole run, a delta after cutover, then undo: the target
    holds what it held before the job. A record the trial wrote and undo took back is
    written again by the run and undone again (its old undo state is stale); one the delta
    updated is still the job's own create, deleted, or a merge, put back."""
    import anyio
    from datetime import datetime, timedelta, timezone
    from tests.integration.test_delta import change_in_realvolve
    with ThreadPair(tmp_path, "realvolve", "rei", n=60, preseed=0.25, on_merge="update",
                    source_sim={"page_size": 10}) as pair:
        before = _snapshot(pair)
        assert pair.main(monkeypatch, capsys, "run", "--sample", "10")[0] in (0, 1)
        code, err = pair.main(monkeypatch, capsys, "undo", "--sample-only")
        assert _snapshot(pair).keys() == before.keys(), err
        assert pair.main(monkeypatch, capsys, "run")[0] in (0, 1)
        db = sqlite3.connect(tmp_path / "ckpt.sqlite")
        done = dict(db.execute("SELECT source_id, action FROM records WHERE status='done'"))
        assert {"created", "updated"} <= set(done.values()), Counter(done.values())
        # the delta changes contacts the job created and contacts it merged into held ones
        changed = [next(s for s, a in sorted(done.items()) if a == a_) for a_ in ("created", "updated")]
        changed += sorted(done)[::9]
        since = (datetime.now(timezone.utc) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        anyio.run(change_in_realvolve, pair, sorted(set(changed)),
                  {"first_name": "Late", "last_name": "Comer", "work_email": "late.comer@example.com"})
        code, err = pair.main(monkeypatch, capsys, "run", "--since", since)
        assert code in (0, 1) and "updated" in err, err
        assert dict(db.execute("SELECT source_id, action FROM records WHERE status='done'")).items() >= done.items()

        code, err = pair.main(monkeypatch, capsys, "undo")
        report = _undo_report(tmp_path, pair.job().name)
        assert report["counts"].get("kept", 0) == 0 and report["counts"].get("already_undone", 0) == 0, report
        after = _snapshot(pair)
        assert after.keys() == before.keys(), (after.keys() ^ before.keys())
        partly = {row["target_id"] for row in report["put_back_partly"]}
        unequal = [t for t in before if t not in partly and after[t] != before[t]]
        assert not unequal, [{k: (before[t].get(k), after[t].get(k)) for k in set(before[t]) | set(after[t]) if before[t].get(k) != after[t].get(k)} for t in unequal[:2]]


def test_undo_sample_only_after_a_delta_still_takes_back_each_trial_record(tmp_path, monkeypatch, capsys):
    """A trial record a delta wrote again is still the trial's: `--sample-only` deletes it."""
    import anyio
    from datetime import datetime, timedelta, timezone
    from tests.integration.test_delta import change_in_realvolve
    with ThreadPair(tmp_path, "realvolve", "rei", n=40, source_sim={"page_size": 10}) as pair:
        assert pair.main(monkeypatch, capsys, "run", "--sample", "8")[0] in (0, 1)
        db = sqlite3.connect(tmp_path / "ckpt.sqlite")
        trial = dict(db.execute("SELECT source_id, target_id FROM records WHERE status='done'"))
        assert pair.main(monkeypatch, capsys, "run")[0] in (0, 1)
        everything = {str(r["id"]) for r in pair.call(pair.target_records)}
        since = (datetime.now(timezone.utc) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        anyio.run(change_in_realvolve, pair, sorted(trial)[:2],
                  {"first_name": "Late", "last_name": "Comer", "work_email": "late.comer@example.com"})
        code, err = pair.main(monkeypatch, capsys, "run", "--since", since)
        assert code in (0, 1) and "updated 2" in err, err
        late = everything ^ {str(r["id"]) for r in pair.call(pair.target_records)}   # the delta's new one
        code, err = pair.main(monkeypatch, capsys, "undo", "--sample-only")
        assert code == 0, err
        assert {str(r["id"]) for r in pair.call(pair.target_records)} == (everything | late) - set(trial.values())
