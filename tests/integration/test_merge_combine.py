"""Issue 15, part 4: merges keep both records (``on_merge: combine``, the default).

A couple sharing one e-mail, each with their own name, phone, notes and tags, goes from a
CSV file through the real job loader and engine into each simulator. Under ``combine`` the
target ends up holding both names, both phones, every note and every tag — the first
record's values in their fields, the second's where the connector put them — and the
report lists what went where. Under ``update`` the vendor's overwrite still applies.
"""
from __future__ import annotations

from typing import Any

import pytest

from migrator.report import build_report, checkpoint_facts, summary
from migrator.sandbox.data import CLEAN, Person
from tests.integration.harness import Pair

EMAIL = "smiths@example.com"
JOHN = Person(1, "John", "Smith", emails=[("home", EMAIL)], phones=[("mobile", "+14155550101")],
              tags=["buyer", "garden"], notes=["Wants a garden", "Call after six"], status="Lead")
JANE = Person(2, "Jane", "Smith", emails=[("home", EMAIL.upper())], phones=[("mobile", "+14155550102")],
              tags=["vip"], notes=["Prefers e-mail"], status="Lead")
OTHER = Person(3, "Ann", "Other", emails=[("home", "ann@example.com")], phones=[("mobile", "+14155550103")],
               tags=["renter"], notes=["Nothing shared"])


async def migrate(tmp_path, target: str, on_merge: str | None) -> tuple[Pair, Any, list[dict[str, Any]]]:
    pair = Pair(tmp_path, "csv", target, n=3, dirt=CLEAN, on_merge=on_merge)
    pair.people = [JOHN, JANE, OTHER]
    async with pair:
        outcome = await pair.run()
        held = pair.target_records()
    return pair, outcome, held


def flat(value: Any) -> str:
    """Everything a target record holds, as one text to search."""
    if isinstance(value, dict):
        return "\n".join(flat(v) for v in value.values())
    if isinstance(value, list):
        return "\n".join(flat(v) for v in value)
    return "" if value is None else str(value)


def the_couple(target: str, held: list[dict[str, Any]]) -> dict[str, Any]:
    email = {"rei": "email", "spark": "PrimaryEmail", "brokerkit": "email"}[target]
    found = [r for r in held if str(r.get(email) or "").lower() == EMAIL]
    assert len(found) == 1, "one target record for the two people"
    return found[0]


def name_fields(target: str) -> tuple[str, str]:
    return {"rei": ("firstName", "phone"), "spark": ("GivenName", "MobilePhoneNumber"),
            "brokerkit": ("first_name", "phone")}[target]


@pytest.mark.parametrize("target", ["rei", "spark", "brokerkit"])
async def test_a_couple_sharing_an_e_mail_keeps_both_names_phones_notes_and_tags(tmp_path, target):
    pair, outcome, held = await migrate(tmp_path, target, None)   # the default: combine
    assert outcome.streams[0].counts["failed"] == 0
    couple = the_couple(target, held)
    text = flat(couple)
    first, phone = name_fields(target)
    # The first record's values stay in their fields; the second's are where the target can hold them.
    assert couple[first] == "John" and couple[phone] == "+14155550101"
    assert "Jane" in text and "+14155550102" in text
    for note in (*JOHN.notes, *JANE.notes):
        assert note in text, f"note {note!r} kept"
    for tag in (*JOHN.tags, *JANE.tags):
        assert tag in text, f"tag {tag!r} kept"
    assert "Nothing shared" not in text and "renter" not in text

    facts = checkpoint_facts(pair.tmp / "ckpt.sqlite")
    (merge,) = facts["merges"]
    assert merge["source_ids"] == ["1", "2"]
    placed = merge["placed"]["2"]
    hows = {(p["field"], p["how"]) for p in placed}
    assert (first, "line") in hows, "the other name went into a line of the notes"
    assert any(p["value"] == "+14155550102" and p["how"] in ("second", "line") for p in placed)
    assert all(p["how"] != "lost" for p in placed)
    text = summary(build_report(pair.job(), outcome, facts), None, None)
    assert "combined: " in text and "kept as a line of the notes" in text


@pytest.mark.parametrize("target", ["rei", "spark", "brokerkit"])
async def test_on_merge_update_still_lets_the_later_record_overwrite(tmp_path, target):
    pair, outcome, held = await migrate(tmp_path, target, "update")
    couple = the_couple(target, held)
    first, phone = name_fields(target)
    assert couple[first] == "Jane" and couple[phone] == "+14155550102"
    assert "+14155550101" not in flat(couple), "the vendor's overwrite: the first phone is gone"
    (merge,) = checkpoint_facts(pair.tmp / "ckpt.sqlite")["merges"]
    assert merge["source_ids"] == ["1", "2"] and "placed" not in merge


async def test_brokerkit_combines_with_what_an_earlier_run_of_the_job_sent(tmp_path):
    """Brokerkit cannot be read: what was sent per key lives in the checkpoint, so a lead
    written after a resume (a new connector, nothing in memory) is still sent combined."""
    pair = Pair(tmp_path, "csv", "brokerkit", n=3, dirt=CLEAN, concurrency=1)
    pair.people = [JOHN, OTHER, JANE]
    async with pair:
        first = await pair.run(stop_after=2)
        outcome = await pair.run()
        couple = the_couple("brokerkit", pair.target_records())
    assert first.interrupted and first.streams[0].counts["done"] == 2
    assert outcome.streams[0].counts["done"] == 1 and outcome.streams[0].counts["failed"] == 0
    assert (couple["first_name"], couple["phone"], couple["other_phone"]) == ("John", "+14155550101", "+14155550102")
    assert all(note in couple["note"] for note in (*JOHN.notes, *JANE.notes))
    assert "Also first_name: Jane (source record 2)" in couple["note"]


async def test_sent_records_answer_before_and_after_commit(tmp_path):
    from migrator.checkpoint import Checkpoint
    ckpt = await Checkpoint.open(tmp_path / "k.sqlite", job_id="j", mapping_digest="m")
    try:
        sent = ckpt.sent_records("leads")
        sent.put(["email=a@x.com", "agent_id=7"], {"first_name": "A"})
        assert await sent.get(["email=b@x.com", "agent_id=7"]) == {"first_name": "A"}   # the overlay
        await ckpt.commit()
        assert await sent.get(["email=a@x.com"]) == {"first_name": "A"} and not sent._recent
        sent.put(["email=a@x.com"], {"first_name": "B"})
        await ckpt.commit()
        assert await sent.get(["email=a@x.com"]) == {"first_name": "B"}
        assert await ckpt.sent_records("other").get(["email=a@x.com"]) is None
    finally:
        await ckpt.close()
