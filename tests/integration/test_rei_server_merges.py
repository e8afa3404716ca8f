"""REI merges a create with a known e-mail into that contact and answers 200 with its id.
Without ``match_on`` the tool cannot know beforehand, so it must tell from the answer: a
merge is reported as a merge (``matched``, the key it shares), never as a create."""
from __future__ import annotations

import sqlite3
from pathlib import Path

from migrator.report import build_report, checkpoint_facts, summary
from migrator.sandbox.data import Dirt
from tests.integration.harness import Pair, mapping_path, people_by_source_id


def without_match_on(tmp: Path) -> Path:
    text = mapping_path("csv", "rei").read_text()
    assert "match_on:" in text
    out = tmp / "no-match-on.yaml"
    out.write_text("".join(line for line in text.splitlines(keepends=True) if "match_on:" not in line))
    return out


def rows(pair: Pair) -> dict[str, tuple[str, str, str, str | None]]:
    with sqlite3.connect(pair.tmp / "ckpt.sqlite") as db:
        return {sid: (st, tid, action, key) for sid, st, tid, action, key in db.execute(
            "SELECT source_id, status, target_id, action, matched_key FROM records")}


async def test_two_records_with_one_email_and_no_match_on_are_one_create_and_one_merge(tmp_path):
    async with Pair(tmp_path, "csv", "rei", n=2, dirt=Dirt(duplicate_email=1.0),
                    mapping=without_match_on(tmp_path)) as pair:
        people = pair.people
        assert people[0].email.lower() == people[1].email.lower(), "the source repeats the e-mail"
        outcome = await pair.run()
        held = pair.target_records()
    by_sid = people_by_source_id(pair)
    got = rows(pair)
    first, second = sorted(got, key=lambda sid: people.index(by_sid[sid]))
    assert len(held) == 1 and pair.target_sim.merged_writes == 1
    assert got[first] == ("done", held[0]["id"], "created", None)
    assert got[second][:3] == ("done", held[0]["id"], "matched")
    assert got[second][3].lower() == f"email={people[1].email}".lower()
    facts = checkpoint_facts(pair.tmp / "ckpt.sqlite")
    [merge] = facts["merges"]
    assert merge["source_ids"] == [first, second] and merge["actions"] == ["created", "matched"]
    assert not merge["existing"]
    assert outcome.streams[0].counts["created"] == 1 and outcome.streams[0].counts["matched"] == 1
    assert "1 target records each received more than one source record" in summary(
        build_report(pair.job(), outcome, facts), None, None)


async def test_merges_into_contacts_the_location_held_are_reported_as_existing(tmp_path):
    n = 40
    async with Pair(tmp_path, "csv", "rei", n=n, dirt=Dirt(duplicate_email=0.15), preseed=0.25,
                    mapping=without_match_on(tmp_path)) as pair:
        await pair.run()
        held = pair.target_records()
    by_sid = people_by_source_id(pair)
    got = rows(pair)
    before = {p.email.lower() for p in pair.preseeded if p.email}
    seen: set[str] = set()
    merged = 0
    for sid in sorted(got, key=lambda s: pair.people.index(by_sid[s])):
        email = (by_sid[sid].email or "").lower()
        status, tid, action, key = got[sid]
        assert status == "done"
        if email and (email in before or email in seen):
            assert action == "matched" and key.lower() == f"email={email}", sid
            merged += 1
        else:
            assert action == "created", sid
        seen.add(email)
    assert merged >= 5 and len(held) == len({c["emailLowerCase"] for c in held})
    existing = [m for m in checkpoint_facts(pair.tmp / "ckpt.sqlite")["merges"] if m["existing"]]
    assert existing, "merges into contacts held before the job are listed as such"
