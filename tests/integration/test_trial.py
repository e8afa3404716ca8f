"""`run --sample N`: a trial of N records spread over the source; the next run writes the
rest, and no record twice (issue 20, part 2)."""
import sqlite3
from collections import Counter

import orjson

from migrator.sandbox.base import Faults
from tests.conftest import contacts_rows, file_job, run_cli
from tests.integration.harness import ThreadPair
from migrator.sandbox.data import CLEAN


def test_sample_then_full_run_writes_every_record_once_into_rei(tmp_path, monkeypatch, capsys):
    n, k = 120, 12
    with ThreadPair(tmp_path, "realvolve", "rei", n=n, concurrency=8, source_sim={"page_size": 25}) as pair:
        code, err = pair.main(monkeypatch, capsys, "run", "--sample", str(k))
        assert code in (0, 1), err
        db = sqlite3.connect(tmp_path / "ckpt.sqlite")
        trial = db.execute("SELECT source_id, status, run FROM records WHERE stream='contacts'").fetchall()
        assert len(trial) == k, trial
        assert pair.target_count() == sum(1 for _, s, _ in trial if s == "done")
        # spread over the whole source, not its first pages: every 10th of 120 read in order
        order = [str(r["id"]) for r in pair.call(lambda: pair.source_sim.inspect_records("contacts"))]
        positions = sorted(order.index(sid) for sid, _, _ in trial)
        assert positions[0] < n // k and positions[-1] >= n - 2 * (n // k), positions
        assert "migrator run" in err and "migrator undo" in err and "--sample-only" in err
        done = sum(1 for _, s, _ in trial if s == "done")
        assert f"contacts: {done:,} done, equal {done:,}, drift 0, missing 0" in err, err  # the trial's verify
        assert db.execute("SELECT mode FROM runs ORDER BY run DESC").fetchone() == ("sample",)
        assert db.execute("SELECT count(*) FROM cursors WHERE finished=1").fetchone()[0] == 0
        # the trial's contacts are picked from the list rows: a contact_detail each, no more
        report = orjson.loads((tmp_path / "reports" / "realvolve-to-rei-run-report.json").read_bytes())
        assert report["requests"]["source"]["requests"]["detail"] == k, report["requests"]["source"]

        code, err = pair.main(monkeypatch, capsys, "run")
        assert code in (0, 1), err
        rows = db.execute("SELECT status, target_id FROM records WHERE stream='contacts'").fetchall()
        assert len(rows) == n
        done = [t for s, t in rows if s == "done"]
        held = pair.call(pair.target_records)
        assert pair.call(pair.target_sim.duplicates) == {}
        assert set(done) <= {str(r["id"]) for r in held}
        report = orjson.loads((tmp_path / "reports" / "realvolve-to-rei-run-report.json").read_bytes())
        counts = Counter()
        for s in report["streams"]:
            counts.update(s.get("counts", {}))
        assert counts["already_settled"] == sum(1 for _, s, _ in trial if s == "done"), counts


def test_sample_of_a_csv_into_jsonl_then_the_rest_gives_each_line_once(tmp_path):
    rows = contacts_rows(95)
    job = file_job(tmp_path, rows)
    res = run_cli("run", str(job), "--sample", "10", "--no-progress")
    assert res.returncode == 0, res.stderr
    lines = (tmp_path / "out.jsonl").read_bytes().splitlines()
    assert len(lines) == 10
    picked = sorted(int(_sid(line, rows)) for line in lines)
    assert picked == list(range(1, 92, 9))[:10], picked   # every 9th of 95, from the first
    res = run_cli("run", str(job), "--no-progress")
    assert res.returncode == 0, res.stderr
    lines = (tmp_path / "out.jsonl").read_bytes().splitlines()
    assert len(lines) == 95
    assert len(set(lines)) == 95


def _sid(line: bytes, rows: list[dict]) -> str:
    rec = orjson.loads(line)
    return next(r["id"] for r in rows if r["Email"] == rec.get("email"))


def test_a_trial_verifies_its_records_and_says_what_the_target_did_not_keep(tmp_path, monkeypatch, capsys):
    """The trial reads back exactly the records it wrote; a target that kept less than it
    acknowledged makes the trial exit 1, each spoiled record named, before the full run."""
    with ThreadPair(tmp_path, "realvolve", "rei", n=60, concurrency=4, dirt=CLEAN,
                    faults=Faults(keep_less_rate=1.0, seed=3)) as pair:
        code, err = pair.main(monkeypatch, capsys, "run", "--sample", "6")
        assert code == 1, err
        assert "contacts: 6 done, equal 0" in err, err
        drift = (tmp_path / "reports" / "realvolve-to-rei-verify-drift.csv").read_text()
        spoiled = {row.split(",")[1] for row in drift.splitlines()[1:]}
        db = sqlite3.connect(tmp_path / "ckpt.sqlite")
        assert spoiled == {sid for (sid,) in db.execute("SELECT source_id FROM records WHERE status='done'")}


def test_a_trial_prints_its_share_of_the_plan_and_its_report_sets_it_beside_what_it_spent(
        tmp_path, monkeypatch, capsys):
    """Planned before it runs: after validate, a trial of 12 prints the share of the plan
    it spends — 12 creates, a contact_detail for each of its 12, every list page — and
    its report sets that, not the whole migration's plan, beside its requests."""
    n, k = 120, 12
    with ThreadPair(tmp_path, "realvolve", "rei", n=n, dirt=CLEAN, concurrency=8) as pair:
        code, err = pair.main(monkeypatch, capsys, "validate")
        assert code == 0, err
        code, err = pair.main(monkeypatch, capsys, "run", "--sample", str(k))
        assert code == 0, err
        assert f"a trial of {k} records a stream" in err, err
        report = orjson.loads((tmp_path / "reports" / "realvolve-to-rei-run-report.json").read_bytes())
        kinds = {role: report["plan"]["requests"][role]["kinds"] for role in ("source", "target")}
        assert kinds["target"]["create"] == {"planned": k, "actual": k}, kinds
        assert kinds["source"]["detail"] == {"planned": k, "actual": k}, kinds
        assert all(v["planned"] == v["actual"] for side in kinds.values() for v in side.values()), kinds
