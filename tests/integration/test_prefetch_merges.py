"""Issue 10, parts 4 and 5: dedup without a lookup per record, and merges reported.

Real runs: a CSV export into the REI and Spark simulators through the job loader and the
engine, with the target empty, pre-seeded with some of the same people, or fed source rows
that repeat an e-mail. What the tests hold the code to:

- the index is chosen and read once; no lookup is sent per record; contacts the target
  already held are matched (updated in place), never duplicated;
- every merge — onto a pre-seeded contact or onto an earlier record of the run — is in the
  report with its source ids, target id and key, under each ``on_merge``;
- the write planner counts, kind by kind, exactly what the run then sends.
"""
from __future__ import annotations

import sqlite3
from collections import Counter
from typing import Any

import pytest

from migrator.plan import probe_setup

from migrator.checkpoint import Checkpoint
from migrator.cli import main
from migrator.engine import Engine
from migrator.protocols import Record
from migrator.report import build_report, checkpoint_facts, summary
from migrator.sandbox.data import CLEAN, Dirt, people
from tests.integration.harness import Pair, people_by_source_id

TARGET_EMAIL = {"rei": "email", "spark": "PrimaryEmail"}
TARGET_ID = {"rei": "id", "spark": "Id"}
REPEATS = Dirt(duplicate_email=0.15)   # some source rows reuse an earlier row's e-mail


def records_of(pair: Pair) -> list[tuple[str, str, str | None, str | None, str | None]]:
    """(source_id, status, target_id, action, matched_key) in the checkpoint, by source id."""
    with sqlite3.connect(pair.tmp / "ckpt.sqlite") as db:
        return db.execute("SELECT source_id, status, target_id, action, matched_key FROM records "
                          "ORDER BY CAST(source_id AS INTEGER)").fetchall()


def rule_of(pair: Pair) -> dict[str, tuple[str, str, str]]:
    with sqlite3.connect(pair.tmp / "ckpt.sqlite") as db:
        return {sid: (rule, field, error) for sid, rule, field, error in db.execute(
            "SELECT source_id, rule, field, error FROM records WHERE status='failed'")}


async def planned(pair: Pair, on_merge: str) -> dict[str, int]:
    """What the plan says the run will send the target, by kind: a connector of its own
    (as ``validate`` makes one) fed every valid mapped record of the source, in order."""
    job = pair.job()
    source, target = job.connector("source"), job.connector("target")
    target.on_merge = on_merge
    counts: Counter[str] = Counter(target.plan_setup("target", ["contacts"]))
    counts.update(probe_setup(target))   # the access check a run makes first
    try:
        for sm in job.mapping.streams.values():
            planner = await target.write_planner(sm.target_stream, sm)
            schema = target.schema(sm.target_stream)
            async for page in source.pages(sm.source_stream, None):
                for rec in page.records:
                    assert isinstance(rec, Record) and rec.data is not None
                    mapped = sm.apply(rec.data)
                    if mapped.skipped is None and not mapped.errors and not schema.validate(mapped.data):
                        planner.add(mapped.data)
            counts.update(planner.requests())
            assert planner.dedup, "the plan says which way the target dedups, and why"
    finally:
        await source.close()
        await target.close()
    return {k: n for k, n in counts.items() if n}


def actual(outcome) -> dict[str, int]:
    return {k: n for k, n in (outcome.target_requests.get("requests") or {}).items() if n}


def contacts_by_email(pair: Pair) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for c in pair.target_records():
        email = c[TARGET_EMAIL[pair.target]]
        if email:
            out.setdefault(email.lower(), []).append(c)
    return out


# ---- a target that already holds some of the contacts --------------------------------

@pytest.mark.parametrize("on_merge", ["combine", "update"])
@pytest.mark.parametrize("target", ["rei", "spark"])
async def test_the_index_is_read_once_and_existing_contacts_are_matched_not_duplicated(tmp_path, target, on_merge):
    n = 240
    async with Pair(tmp_path, "csv", target, n=n, dirt=CLEAN, preseed=0.5, on_merge=on_merge) as pair:
        before = {c[TARGET_EMAIL[target]].lower(): c[TARGET_ID[target]] for c in pair.target_records()}
        plan = await planned(pair, on_merge)
        engine = Engine(pair.job(), mode="run", progress=False)
        outcome = await engine.run()
        held = contacts_by_email(pair)
    assert len(before) == len(pair.preseeded) == n // 2
    dedup = engine.target._dedup["contacts"]
    assert dedup.choice.mode == "index" and dedup.index is not None

    sent = actual(outcome)
    assert "lookup" not in sent, "no lookup per record"
    page = 100 if target == "rei" else 25
    lists = 1 if target == "rei" else 2       # Spark: connected and unconnected contacts
    assert sent["index"] == -(-(n // 2) // page) + (lists - 1)
    if on_merge == "combine":
        # A merge is read, then PUT only when the record adds something: the plan counts the PUT.
        assert sent.get("read") == plan["read"] == n // 2 and 0 < sent["update"] <= plan["update"] == n // 2
        sent["update"] = plan["update"]
    assert sent == plan, "the plan counts what the run sends, kind by kind"

    # Nothing doubled: one contact per person, the pre-seeded ones kept their ids.
    assert len(held) == n and all(len(cs) == 1 for cs in held.values())
    by_sid = people_by_source_id(pair)
    rows = records_of(pair)
    assert {status for _, status, *_ in rows} == {"done"}
    for sid, _, tid, action, key in rows:
        email = by_sid[sid].email.lower()
        assert held[email][0][TARGET_ID[target]] == tid
        if email in before:
            assert (tid, action) == (before[email], "updated")
            assert key.lower() == f"{TARGET_EMAIL[target]}={email}".lower()
        else:
            assert (action, key) == ("created", None)
    counts = outcome.streams[0].counts
    assert (counts["created"], counts["updated"]) == (n - n // 2, n // 2)

    facts = checkpoint_facts(pair.tmp / "ckpt.sqlite")
    existing = [m for m in facts["merges"] if m["existing"]]
    assert len(existing) == len(facts["merges"]) == n // 2
    assert {m["target_id"] for m in existing} == set(before.values())
    assert all(len(m["source_ids"]) == 1 and len(m["keys"]) == 1 for m in existing)
    text = summary(build_report(pair.job(), outcome, facts), None, None)
    assert f"merges: {n // 2} — {n // 2} source records landed on records the target already held" in text


async def test_a_second_run_reads_the_index_again_and_resumes_without_doubling(tmp_path):
    """The index lives in the checkpoint: an interrupted run resumes, reads the target's
    list afresh (it may have changed) and matches what the first run created."""
    n = 150
    async with Pair(tmp_path, "csv", "rei", n=n, dirt=CLEAN, preseed=0.2, concurrency=4) as pair:
        first = await pair.run(stop_after=60)
        second = await pair.run()
        held = contacts_by_email(pair)
        with sqlite3.connect(pair.tmp / "ckpt.sqlite") as db:
            keys = db.execute("SELECT count(*) FROM target_keys WHERE stream='contacts'").fetchone()[0]
    assert first.interrupted and not second.interrupted
    assert len(held) == n and all(len(cs) == 1 for cs in held.values())
    assert {status for _, status, *_ in records_of(pair)} == {"done"}
    assert "lookup" not in actual(second)
    # What the second run read: the 30 pre-seeded contacts and the ~60 the first run wrote.
    assert keys >= 2 * n - 10, "e-mail and phone of every contact, pre-seeded or written"


# ---- the index is dearer: a lookup per record ----------------------------------------

async def test_rei_looks_records_up_when_the_location_is_far_larger_than_the_run(tmp_path):
    mine = people(3, 11, CLEAN)
    others = people(450, 99, CLEAN)
    async with Pair(tmp_path, "csv", "rei", n=3, dirt=CLEAN, preseed=mine[:2] + others) as pair:
        assert pair.people == mine
        engine = Engine(pair.job(), mode="run", progress=False)
        engine.target.expected_records = {"contacts": 3}   # as the plan's count tells the run
        plan = await planned(pair, "combine")
        outcome = await engine.run()
        held = contacts_by_email(pair)
    assert engine.target._dedup["contacts"].choice.mode == "lookup"
    # on_merge: combine (the default): a match is looked up (the lookup brings the contact), then PUT.
    assert actual(outcome) == plan == {"probe": 1, "meta": 1, "index": 1, "lookup": 3, "create": 1, "update": 2}
    assert len(held) == 453 and all(len(cs) == 1 for cs in held.values())
    actions = Counter(action for _, _, _, action, _ in records_of(pair))
    assert actions == {"updated": 2, "created": 1}


# ---- merges within the run, under each on_merge ----------------------------------------

@pytest.mark.parametrize("on_merge", ["combine", "update", "skip", "fail"])
@pytest.mark.parametrize("target", ["rei", "spark"])
async def test_repeated_emails_in_the_source_are_listed_merges_under_each_on_merge(tmp_path, target, on_merge):
    n = 160
    async with Pair(tmp_path, "csv", target, n=n, dirt=REPEATS, on_merge=on_merge) as pair:
        plan = await planned(pair, on_merge)
        outcome = await pair.run()
        held = contacts_by_email(pair)
        stored = {c[TARGET_ID[target]]: c for cs in held.values() for c in cs}
    by_sid = people_by_source_id(pair)
    rows = records_of(pair)
    first_of: dict[str, str] = {}
    repeats: dict[str, list[str]] = {}
    for sid, *_ in rows:
        email = by_sid[sid].email.lower()
        if email in first_of:
            repeats.setdefault(email, []).append(sid)
        else:
            first_of[email] = sid
    assert len(repeats) >= 5, "the source repeats some e-mails"
    assert all(len(cs) == 1 for cs in held.values()) and len(held) == len(first_of)
    sent = actual(outcome)
    if on_merge == "combine":   # a PUT only when the record adds something: the plan counts it
        assert 0 < sent["update"] <= plan["update"]
        sent["update"] = plan["update"]
    assert sent == plan

    row = {sid: (status, tid, action, key) for sid, status, tid, action, key in rows}
    facts = checkpoint_facts(pair.tmp / "ckpt.sqlite")
    listed = {m["target_id"]: m for m in facts["merges"]}
    refused = {r["source_id"]: r for r in facts["merges_refused"]}
    for email, later in repeats.items():
        status, first_tid, action, _ = row[first_of[email]]
        assert (status, action) == ("done", "created")
        for sid in later:
            status, tid, action, key = row[sid]
            if on_merge == "fail":
                assert status == "failed" and sid in refused
                rule, field, error = rule_of(pair)[sid]
                assert (rule, field) == ("merge", TARGET_EMAIL[target])
                assert first_tid in error and email in error.lower()
                continue
            assert (status, tid) == ("done", first_tid)
            assert action == ("matched" if on_merge == "skip" else "updated")
            assert key.lower() == f"{TARGET_EMAIL[target]}={email}".lower()
        if on_merge == "fail":
            assert first_tid not in listed
            continue
        merge = listed[first_tid]
        assert merge["source_ids"] == [first_of[email], *later] and not merge["existing"]
        assert merge["actions"] == ["created", *(["matched" if on_merge == "skip" else "updated"] * len(later))]
        if on_merge == "combine":   # what each later record put where
            assert set(merge["placed"]) == set(later)
        assert {k.lower() for k in merge["keys"]} == {f"{TARGET_EMAIL[target]}={email}".lower()}
    name_key = "firstName" if target == "rei" else "GivenName"
    for email, later in repeats.items():
        contact = stored[row[first_of[email]][1]]
        winner = by_sid[later[-1]] if on_merge == "update" else by_sid[first_of[email]]
        assert contact[name_key] == winner.first_name
    text = summary(build_report(pair.job(), outcome, facts), None, None)
    if on_merge == "fail":
        assert f"merges refused: {sum(map(len, repeats.values()))} records" in text
        assert outcome.streams[0].counts["failed"] == sum(map(len, repeats.values()))
    else:
        assert f"{len(repeats)} target records each received more than one source record" in text
        assert outcome.streams[0].counts["failed"] == 0


async def test_on_merge_on_the_command_line_overrides_the_job(tmp_path, monkeypatch, capsys):
    async with Pair(tmp_path, "csv", "spark", n=80, dirt=REPEATS, on_merge="update") as pair:
        for name, value in pair.env.items():
            monkeypatch.setenv(name, value)
        import anyio
        code = await anyio.to_thread.run_sync(
            main, ["run", str(pair.tmp / "job.yaml"), "--no-progress", "--on-merge", "fail"])
    err = capsys.readouterr().err
    refused = rule_of(pair)
    assert code == 1 and refused and all(rule == "merge" for rule, _, _ in refused.values())
    assert "merges refused" in err and "(on_merge: fail)" in next(iter(refused.values()))[2]


# ---- a location that allows duplicates -----------------------------------------------

async def test_a_rei_location_that_allows_duplicates_is_noticed_and_nothing_is_doubled(tmp_path):
    n = 40
    async with Pair(tmp_path, "csv", "rei", n=n, dirt=CLEAN, preseed=0.25, on_merge="update",
                    target_sim={"allow_duplicates": True}, concurrency=1) as pair:
        outcome = await pair.run()
        held = contacts_by_email(pair)
    sent = actual(outcome)
    merged = len(pair.preseeded)
    assert len(held) == n and all(len(cs) == 1 for cs in held.values())
    # The first merge's create made a second contact: it was deleted, the match PUT instead;
    # every later merge went straight to PUT.
    assert sent["delete"] == 1 and sent["create"] == n - merged + 1 and sent["update"] == merged
    assert Counter(a for _, _, _, a, _ in records_of(pair)) == {"created": n - merged, "updated": merged}


# ---- the key index itself ----------------------------------------------------------------

async def test_key_index_keeps_the_first_id_and_answers_before_and_after_commit(tmp_path):
    ckpt = await Checkpoint.open(tmp_path / "k.sqlite", job_id="j", mapping_digest="m")
    try:
        index = ckpt.key_index("contacts")
        await index.reset()
        index.add([("email=a@x.com", "1"), ("email=a@x.com", "2")], durable=True)
        await index.flush()
        index.add([("email=b@x.com", "3")])          # not yet committed: the overlay answers
        assert await index.get(["email=a@x.com", "email=b@x.com", "email=c@x.com"]) == \
            {"email=a@x.com": "1", "email=b@x.com": "3"}
        await ckpt.commit()
        assert await index.get(["email=b@x.com"]) == {"email=b@x.com": "3"} and not index._recent
        other = ckpt.key_index("leads")
        assert await other.get(["email=a@x.com"]) == {}
        await index.reset()
        assert await index.count() == 0
    finally:
        await ckpt.close()


async def test_brokerkit_upserts_itself_so_only_on_merge_combine_or_update_is_accepted(tmp_path):
    from migrator.errors import JobError
    async with Pair(tmp_path, "csv", "brokerkit", n=5, dirt=CLEAN, on_merge="skip") as pair:
        with pytest.raises(JobError, match="on_merge must be combine or update"):
            await pair.run()
        held = pair.target_records()
    assert held == [], "refused before any lead was sent"
