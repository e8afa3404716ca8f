"""Delta after cutover (issue 20, part 4): ``run --since TIME`` updates, through the
checkpoint's id map, exactly the records changed in the source since TIME, creates the
new ones, and the report counts them apart."""
from __future__ import annotations

import json
import sqlite3
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from migrator.connectors.base import Context
from migrator.engine import Engine
from migrator.registry import connector_class

from tests.integration.harness import CREDENTIALS, Pair, read_file_target

N = 40


async def change_in_realvolve(pair: Pair, ids: list[str], new_contact: dict, note: str | None = None) -> str:
    """Change contacts in the source simulator through Realvolve's own API (update_contact
    stamps updated_at; ``note``: add_note adds one to each), and add one: what a team does
    while it cuts over."""
    env = pair.env
    settings = {"system": "realvolve", "base_url": env["REALVOLVE_BASE_URL"],
                **{k: env[v] for k, v in CREDENTIALS["realvolve"].items()}}
    api = connector_class("realvolve")(settings, Context(role="target", allow_insecure_http=True))
    await api.open()
    try:
        for sid in ids:
            await api.write("contacts", {"first_name": f"Changed{sid}", **({"notes": [note]} if note else {})},
                            source_id=sid, target_id=sid)
        return (await api.write("contacts", new_contact, source_id="new")).target_id
    finally:
        await api.close()


def rows(pair: Pair, sql: str) -> list[tuple]:
    with sqlite3.connect(pair.tmp / "ckpt.sqlite") as db:
        return db.execute(sql).fetchall()


async def test_a_delta_run_updates_exactly_the_records_changed_in_the_source(tmp_path: Path) -> None:
    async with Pair(tmp_path, "realvolve", "rei", n=N, on_merge="update") as pair:
        first = await pair.run()
        assert first.total("done") > N // 2   # the seeded data is dirty: a few fail
        before = {c["id"]: c for c in pair.target_records()}
        done = dict(rows(pair, "SELECT source_id, target_id FROM records WHERE status='done'"))
        since = (datetime.now(timezone.utc) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        changed = sorted(done)[3:6]
        new_id = await change_in_realvolve(pair, changed, {
            "first_name": "Newcomer", "last_name": "Delta", "work_email": "newcomer.delta@example.com"})

        delta = await Engine(pair.job(), mode="run", progress=False, since=since).run()
        (s,) = delta.streams
        assert s.counts["read"] == len(changed) + 1          # recent_contacts: only what changed
        assert s.counts["updated"] == len(changed) and s.counts["created"] == 1, s.counts
        assert s.counts["failed"] == 0
        after = {c["id"]: c for c in pair.target_records()}
        assert len(after) == len(before) + 1                   # nothing doubled
        for sid in changed:
            assert after[done[sid]]["firstName"] == f"Changed{sid}"
        untouched = [tid for sid, tid in done.items() if sid not in changed]
        assert all(after[t]["dateUpdated"] == before[t]["dateUpdated"] for t in untouched)
        new_tid = rows(pair, f"SELECT target_id, action FROM records WHERE source_id='{new_id}'")
        assert new_tid and new_tid[0][1] == "created" and after[new_tid[0][0]]["firstName"] == "Newcomer"

        # The same delta again (a resume, or run twice): it updated those already — nothing sent.
        again = await Engine(pair.job(), mode="run", progress=False, since=since).run()
        assert again.total("updated") == 0 and again.total("created") == 0
        assert len(pair.target_records()) == len(after)


def with_own_email(pair: Pair) -> list[dict]:
    """Source contacts whose e-mail no other holds (the seed shares a few): a PUT with it."""
    contacts = pair.source_sim.inspect_records("contacts")
    seen = Counter(str(c.get("email") or "").lower() for c in contacts)
    return [c for c in contacts if c.get("email") and seen[c["email"].lower()] == 1]


async def change_in_rei(pair: Pair, contacts: list[dict], new_contact: dict) -> str:
    """Change contacts in the REI source simulator through its own API (a PUT stamps
    dateUpdated; the doc's PUT must carry the e-mail or phone), and add one."""
    settings = {"system": "rei", "base_url": pair.env["REI_BASE_URL"], "api_key": pair.env["REI_API_KEY"]}
    api = connector_class("rei")(settings, Context(role="target", allow_insecure_http=True))
    await api.open()
    try:
        for c in contacts:
            await api.write("contacts", {"firstName": f"Changed{c['id']}", "email": c["email"]},
                            source_id=c["id"], target_id=c["id"])
        return (await api.write("contacts", new_contact, source_id="new")).target_id
    finally:
        await api.close()


async def test_an_rei_delta_reads_newest_updated_first_and_stops_at_the_first_older_contact(
        tmp_path: Path) -> None:
    """REI's doc has no filter by time, only a sort by date_updated: the delta reads
    newest-updated first and asks for no page after the one holding the first contact
    updated before --since."""
    page = 5
    async with Pair(tmp_path, "rei", "jsonl", n=N, source_settings={"page_size": page}) as pair:
        first = await pair.run()
        assert first.total("done") == N and first.total("failed") == 0
        before = pair.target_records()
        since = datetime.now(timezone.utc).isoformat()
        changed = with_own_email(pair)[5:11]
        new_id = await change_in_rei(pair, changed, {"firstName": "Newcomer", "email": "newcomer.rei@example.com"})
        pages_before = pair.source_sim.stats.requests["GET /v1/contacts/"]

        delta = await Engine(pair.job(), mode="run", progress=False, since=since).run()
        (s,) = delta.streams
        fresh = len(changed) + 1
        assert s.counts["read"] == fresh                      # only what changed since
        assert s.counts["updated"] == len(changed) and s.counts["created"] == 1, s.counts
        assert s.counts["failed"] == 0
        # 7 changed at 5 a page: the second page holds the first older contact; no third
        assert delta.source_requests["requests"]["page"] == fresh // page + 1
        assert pair.source_sim.stats.requests["GET /v1/contacts/"] - pages_before == fresh // page + 2  # + probe
        after = pair.target_records()
        assert after[:len(before)] == before                  # the first run's lines untouched
        appended = after[len(before):]
        assert sorted(r["_source_id"] for r in appended) == sorted([c["id"] for c in changed] + [new_id])
        assert all(r["firstName"] == f"Changed{r['_source_id']}" for r in appended if r["_source_id"] != new_id)
        kinds = dict(rows(pair, "SELECT source_id, action FROM records"))
        # the report counts the delta's updates; the checkpoint keeps what the job did to each
        # target record (it created them all), which undo and the crosswalk go by
        assert set(kinds.values()) == {"created"}, Counter(kinds.values())

        # The same delta again (a resume, or run twice): nothing read twice, nothing sent.
        again = await Engine(pair.job(), mode="run", progress=False, since=since).run()
        assert again.total("updated") == 0 and again.total("created") == 0
        assert len(pair.target_records()) == len(after)


async def test_an_interrupted_rei_delta_resumes_at_its_cursor_and_writes_each_change_once(tmp_path: Path) -> None:
    """The delta's cursor (startAfter, startAfterId of the date_updated order) is kept in
    the checkpoint under the delta's own key: resumed, it neither skips nor repeats."""
    async with Pair(tmp_path, "rei", "jsonl", n=N, source_settings={"page_size": 2}) as pair:
        await pair.run()
        before = len(pair.target_records())
        since = datetime.now(timezone.utc).isoformat()
        changed = with_own_email(pair)[:7]
        await change_in_rei(pair, changed, {"firstName": "Late", "email": "late.rei@example.com"})

        cut = await Engine(pair.job(), mode="run", progress=False, since=since, stop_after=3).run()
        assert cut.interrupted and 0 < cut.total("updated") < len(changed)
        rest = await Engine(pair.job(), mode="run", progress=False, since=since).run()
        assert cut.total("updated") + rest.total("updated") == len(changed)
        assert cut.total("created") + rest.total("created") == 1
        appended = [r["_source_id"] for r in pair.target_records()[before:]]
        assert len(appended) == len(set(appended)) == len(changed) + 1   # each change once, none skipped


def file_job(tmp: Path, rows_: list[dict], *, updated_column: str | None = "updated") -> Path:
    src = tmp / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows_))
    extra = f", updated_column: {updated_column}" if updated_column else ""
    (tmp / "job.yaml").write_text(
        "name: t\n"
        f"source: {{system: jsonl, path: in.jsonl, id_column: id{extra}}}\n"
        "target: {system: jsonl, path: out.jsonl}\n"
        "mapping:\n  source: jsonl\n  target: jsonl\n  streams:\n    contacts:\n"
        "      fields: {name: name, email: email}\n"
        "checkpoint: ckpt.sqlite\nreports: reports\n")
    return tmp / "job.yaml"


def people(n: int, when: str) -> list[dict]:
    return [{"id": f"P{i:03}", "name": f"Person {i}", "email": f"p{i}@example.com", "updated": when}
            for i in range(n)]


async def test_a_file_delta_skips_and_counts_rows_older_than_since(tmp_path: Path) -> None:
    from migrator.job import load_job
    data = people(30, "2026-11-01 09:00")
    job = file_job(tmp_path, data)
    first = await Engine(load_job(job), mode="run", progress=False).run()
    assert first.total("created") == 30
    for i in (4, 17, 29):
        data[i].update(name=f"Renamed {i}", updated="2026-12-02T10:30:00+01:00")
    data.append({"id": "P900", "name": "New one", "email": "new@example.com", "updated": "2026-12-03"})
    file_job(tmp_path, data)
    delta = await Engine(load_job(job), mode="run", progress=False, since="2026-12-01").run()
    (s,) = delta.streams
    assert s.counts["older_than_since"] == 27
    assert s.counts["updated"] == 3 and s.counts["created"] == 1 and s.counts["failed"] == 0, s.counts
    out = read_file_target(tmp_path / "out.jsonl")
    assert len(out) == 34                                 # each changed row's new version appended once
    assert [r["name"] for r in out[30:33]] == ["Renamed 4", "Renamed 17", "Renamed 29"]
    again = await Engine(load_job(job), mode="run", progress=False, since="2026-12-01").run()
    assert again.total("updated") == 0 and len(read_file_target(tmp_path / "out.jsonl")) == 34


def test_a_source_that_cannot_filter_says_so_in_one_line(tmp_path: Path, capsys) -> None:
    from migrator.cli import main
    job = file_job(tmp_path, people(3, "2026-11-01"), updated_column=None)
    assert main(["run", str(job), "--since", "2026-12-01", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot list only the records changed" in err[0] and "updated_column" in err[0]
    assert not (tmp_path / "out.jsonl").exists()


async def test_a_delta_updates_only_streams_the_source_filters(tmp_path: Path) -> None:
    """Realvolve's properties list takes no time: a delta reads it whole, creates what is
    new and leaves the properties migrated before as they are (none appended again)."""
    async with Pair(tmp_path, "realvolve", "jsonl", n=N) as pair:
        await pair.run()
        before = {s: len(pair.target_records(s)) for s in ("contacts", "notes", "properties")}
        since = (datetime.now(timezone.utc) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        sid = pair.target_records("contacts")[0]["_source_id"]
        await change_in_realvolve(pair, [sid], {"first_name": "Late", "work_email": "late@example.com"})
        delta = await Engine(pair.job(), mode="run", progress=False, since=since).run()
    counts = {s.stream: s.counts for s in delta.streams}
    assert counts["contacts"]["updated"] == 1 and counts["contacts"]["created"] == 1
    assert counts["properties"]["read"] == before["properties"] and counts["properties"]["done"] == 0
    assert counts["properties"]["already_settled"] == before["properties"]
    assert len(pair.target_records("properties")) == before["properties"]
    assert len(pair.target_records("contacts")) == before["contacts"] + 2   # the new version, the new one
    assert {r["first_name"] for r in pair.target_records("contacts")[-2:]} == {f"Changed{sid}", "Late"}


TARGET_FIELDS = {
    "realvolve": "{first_name: name, work_email: email, notes: {path: notes}}",
    "spark": "{DisplayName: name, GivenName: name, PrimaryEmail: email, Note: {path: 'notes[0]'}}",
}


@pytest.mark.parametrize("target", ["realvolve", "spark"])
async def test_a_delta_update_does_not_add_the_notes_again(tmp_path: Path, target: str) -> None:
    """Realvolve's add_note and a Spark PUT's Note add a note: an update by id sends only
    the notes the contact does not hold yet."""
    from migrator.job import load_job
    from migrator.sandbox.server import Sandbox, make
    from tests.integration.harness import system_block

    data = [{"id": f"P{i}", "name": f"Person {i}", "email": f"p{i}@example.com",
             "notes": [f"called {i}", f"met {i}"], "updated": "2026-11-01"} for i in range(4)]

    def write_source() -> None:
        (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))
    write_source()
    sandbox = Sandbox({target: make(target, contacts=0, seed=3, limit=None)})
    await sandbox.start()
    try:
        (tmp_path / "job.yaml").write_text(
            "name: t\nsource: {system: jsonl, path: in.jsonl, updated_column: updated}\n"
            f"target: {system_block(target)}\n"
            f"mapping:\n  source: jsonl\n  target: {target}\n  streams:\n    contacts:\n"
            f"      fields: {TARGET_FIELDS[target]}\n"
            "checkpoint: ckpt.sqlite\nreports: reports\n")
        job = lambda: load_job(tmp_path / "job.yaml", env=sandbox.env())  # noqa: E731
        first = await Engine(job(), mode="run", progress=False).run()
        assert first.total("created") == 4, first.streams[0].counts
        notes_before = len(sandbox[target].inspect_records("notes"))
        data[2].update(name="Renamed Two", updated="2026-12-02")
        write_source()
        delta = await Engine(job(), mode="run", progress=False, since="2026-12-01").run()
        assert delta.total("updated") == 1 and delta.total("failed") == 0, delta.streams[0].counts
        contacts = sandbox[target].inspect_records("contacts")
        assert len(contacts) == 4
        names = {c.get("first_name") or c.get("GivenName") for c in contacts}
        assert "Renamed Two" in names
        assert len(sandbox[target].inspect_records("notes")) == notes_before   # none added again
    finally:
        await sandbox.stop()


def test_a_delta_is_planned_apart_from_the_whole_migration_and_run_beside_its_own_plan(
        tmp_path: Path, capsys) -> None:
    """validate --since counts, from the checkpoint, what the delta updates and what it
    creates, and keeps that plan apart; run --since prints it and its report sets it
    beside what it did — never the whole migration's plan."""
    from migrator.cli import main
    data = people(12, "2026-11-01 09:00")
    job = file_job(tmp_path, data)
    assert main(["validate", str(job), "--no-progress"]) == 0
    assert main(["run", str(job), "--no-progress"]) == 0
    assert "plan (validate at" in capsys.readouterr().err
    whole = (tmp_path / "reports" / "t-plan.json").read_bytes()
    for i in (3, 7):
        data[i].update(name=f"Renamed {i}", updated="2026-12-02")
    data.append({"id": "P900", "name": "New one", "email": "new@example.com", "updated": "2026-12-03"})
    file_job(tmp_path, data)

    assert main(["run", str(job), "--since", "2026-12-01T00:00Z", "--plan", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "plan for the delta since 2026-12-01T00:00:00Z" in err, err
    assert "3 read, 3 valid (2 to update, 1 to create)" in err, err
    assert (tmp_path / "reports" / "t-plan.json").read_bytes() == whole      # the full plan stays
    kept = json.loads((tmp_path / "reports" / "t-plan-since-2026-12-01T000000Z.json").read_text())
    assert kept["since"] == "2026-12-01T00:00:00Z" and kept["streams"][0]["updates"] == 2
    assert len(read_file_target(tmp_path / "out.jsonl")) == 12                # --plan wrote nothing

    assert main(["run", str(job), "--since", "2026-12-01", "--no-progress"]) == 0   # the same time
    err = capsys.readouterr().err
    assert "of the delta since 2026-12-01T00:00:00Z" in err, err
    report = json.loads((tmp_path / "reports" / "t-run-report.json").read_text())
    assert report["streams"][0]["counts"]["updated"] == 2 and report["streams"][0]["counts"]["created"] == 1
    assert report["plan"]["basis"] == "validate" and "note" not in report["plan"], report["plan"]
    assert main(["status", str(job)]) == 0
    out = capsys.readouterr().out
    assert "contacts: done 13," in out and "contacts, the delta since 2026-12-01: finished" in out, out

    assert main(["run", str(job), "--since", "2026-12-02T12:00Z", "--no-progress"]) == 0   # unplanned
    err = capsys.readouterr().err
    assert "plan: none for this delta" in err and "validate JOB --since 2026-12-02T12:00Z" in err, err
    assert "plan (validate at" not in err
    report = json.loads((tmp_path / "reports" / "t-run-report.json").read_text())
    assert "none for this delta" in report["plan"]["note"]


async def test_a_delta_under_way_is_planned_for_what_is_left_of_it(tmp_path: Path) -> None:
    """validate --since after a delta was cut off: what that delta already updated is left
    as it is; the rest is still to update (the checkpoint's mark of where it began)."""
    from migrator.job import load_job
    data = people(10, "2026-11-01 09:00")
    job = file_job(tmp_path, data)
    await Engine(load_job(job), mode="run", progress=False).run()
    for i in (1, 4, 8):
        data[i].update(name=f"Renamed {i}", updated="2026-12-02")
    file_job(tmp_path, data)
    cut = await Engine(load_job(job), mode="run", progress=False, since="2026-12-01", stop_after=1).run()
    assert cut.interrupted and cut.total("updated") == 1
    plan = await Engine(load_job(job), mode="validate", progress=False, since="2026-12-01").run()
    (s,) = plan.streams
    assert s.counts["valid"] == 2 and s.counts["to_update"] == 2 and s.counts["already_settled"] == 1, s.counts


def test_a_delta_is_not_planned_from_another_jobs_checkpoint(tmp_path: Path, capsys) -> None:
    from migrator.cli import main
    job = file_job(tmp_path, people(3, "2026-11-01"))
    assert main(["run", str(job), "--no-progress"]) == 0
    text = job.read_text().replace("target: {system: jsonl, path: out.jsonl}", "target: {system: csv, path: out.csv}")
    job.write_text(text.replace("target: jsonl", "target: csv"))
    capsys.readouterr()
    assert main(["validate", str(job), "--since", "2026-12-01", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different job" in err[0], err


def test_a_delta_plan_on_an_api_target_counts_updates_as_the_run_sends_them(
        tmp_path: Path, monkeypatch, capsys) -> None:
    """Realvolve → REI: validate --since plans a PUT (and its tags) for each contact
    changed since, a create for the new one; the run then spends what was planned."""
    import anyio
    from tests.integration.harness import ThreadPair
    # 230 contacts: three pages of REI's list, so one lookup (the one create) is cheaper than the
    # index, as the plan counts it — and the run must choose as the plan did
    with ThreadPair(tmp_path, "realvolve", "rei", n=230, on_merge="update") as pair:
        code, err = pair.main(monkeypatch, capsys, "run")
        assert code in (0, 1), err   # the seeded data is dirty: a few fail
        done = dict(rows(pair, "SELECT source_id, target_id FROM records WHERE status='done'"))
        since = (datetime.now(timezone.utc) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        changed = sorted(done)[2:6]
        anyio.run(change_in_realvolve, pair, changed,
                  {"first_name": "Newcomer", "last_name": "Plan", "work_email": "newcomer.plan@example.com"})
        held = pair.target_count()

        code, err = pair.main(monkeypatch, capsys, "validate", "--since", since)
        assert code == 0, err
        assert f"{len(changed) + 1} valid ({len(changed)} to update, 1 to create)" in err, err
        assert pair.target_count() == held                                      # validate wrote nothing
        code, err = pair.main(monkeypatch, capsys, "run", "--since", since)
        assert code == 0, err
        assert "of the delta since" in err, err
        report = json.loads(next((tmp_path / "reports").glob("*-run-report.json")).read_text())
        target = report["plan"]["requests"]["target"]["kinds"]
        assert target["update"] == {"planned": len(changed), "actual": len(changed)}, target
        assert target["create"]["planned"] == target["create"]["actual"] == 1, target
        assert all(v["planned"] == v["actual"] for v in target.values()), target
        source = report["plan"]["requests"]["source"]["kinds"]
        assert all(v["planned"] == v["actual"] for v in source.values()), source


@pytest.mark.parametrize("command", ["run", "validate"])
def test_a_since_that_is_no_time_is_one_line_before_anything_is_read_or_planned(
        tmp_path: Path, capsys, command: str) -> None:
    from migrator.cli import main
    job = file_job(tmp_path, people(3, "2026-11-01"))
    assert main([command, str(job), "--since", "2026-13-45", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["migrator: --since '2026-13-45' is not a date or date-time (e.g. 2026-11-30 or "
                   "'2026-11-30 14:00')"], err
    assert not (tmp_path / "ckpt.sqlite").exists() and not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize("target,id_key,first", [("rei", "id", "firstName"), ("spark", "Id", "GivenName")])
async def test_a_delta_whose_answers_are_lost_sends_its_updates_again_and_keeps_each_record_its_own(
        tmp_path: Path, target: str, id_key: str, first: str) -> None:
    """The target drops the connection after applying half the writes of the delta (a
    Spark PUT with a Note is not safe to repeat blindly): an update by id is sent again,
    never looked up as if it were a create; each changed contact is updated, none is
    doubled, and the checkpoint still says the job created each one."""
    from migrator.sandbox.base import Faults
    async with Pair(tmp_path, "realvolve", target, n=N, on_merge="update") as pair:
        await pair.run()
        before = dict(rows(pair, "SELECT source_id, action FROM records WHERE status='done'"))
        held = len(pair.target_records())
        done = dict(rows(pair, "SELECT source_id, target_id FROM records WHERE status='done' AND action='created'"))
        changed = sorted(done)[:6]
        since = (datetime.now(timezone.utc) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        await change_in_realvolve(pair, changed, {"first_name": "Lost", "work_email": "lost.answers@example.com"},
                                  note="called after the cutover")   # a Spark PUT that adds a note
        pair.target_sim.faults = Faults(drop_after_rate=0.5, seed=4)
        delta = await Engine(pair.job(), mode="run", progress=False, since=since).run()
        assert pair.target_sim.stats.faults["drop_after"] > 0
        assert delta.total("updated") == len(changed) and delta.total("failed") == 0, delta.streams[0].counts
        after = {str(c[id_key]): c for c in pair.target_records()}
        assert len(after) == held + 1
        assert all(after[done[sid]][first] == f"Changed{sid}" for sid in changed)
        now = dict(rows(pair, "SELECT source_id, action FROM records WHERE status='done'"))
        assert all(now[sid] == before[sid] for sid in before), {s: (before[s], now[s]) for s in before
                                                                 if now[s] != before[s]}
