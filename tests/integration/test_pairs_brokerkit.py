"""Every shipped mapping into Brokerkit, end to end against the sandbox.

Each pair loads its mapping against Brokerkit's schema, then migrates seeded people from
the source simulator (or its CSV export) into an empty Brokerkit simulator through the
real job loader and engine. Failures must be seeded dirt only, every clean person must
arrive as exactly one lead, and what arrives must equal the person after the mapping's
transforms. MIGRATOR_PAIR_CONTACTS sets the number of people (default 200 to keep CI
fast; the issue's full size is 500).
"""
from __future__ import annotations

import os
import sqlite3
from collections import Counter
from typing import Any

import pytest

from migrator.connectors.brokerkit import Brokerkit
from migrator.errors import UserError
from migrator.mapping import load_mapping
from migrator.report import checkpoint_facts
from migrator.sandbox.base import Faults
from migrator.sandbox.brokerkit import STATE_NAMES
from migrator.sandbox.data import Person
from tests.integration.fields import Tally, declared, note_lines
from migrator.sandbox.data import CLEAN
from tests.integration.harness import Pair, assert_each_record_settled, checkpoint_rows, mapping_path, people_by_source_id

N = int(os.environ.get("MIGRATOR_PAIR_CONTACTS", "200"))
SOURCES = ("realvolve", "spark", "rei", "realeflow", "realeflow-csv", "csv")
MAPPING_SOURCE = {"realeflow-csv": "csv"}

STATUS = {"Suspect": "new_lead", "Prospect": "contact_attempt", "Lead": "contact_made",
          "Client": "active", "Past Client": "onboarding"}
# What each source can hand over beyond names, e-mail, cell phone, company, source and home address.
CARRIES = {
    "realvolve": {"extra_phones", "office", "birthday", "status", "notes"},
    "spark": {"extra_phones", "office", "birthday", "status", "notes"},
    "csv": {"extra_phones", "office", "birthday", "status", "notes"},
    "rei": {"birthday", "rei_notes"},
    "realeflow-csv": {"notes"},
    "realeflow": set(),
}


def _phone(p: Person, kind: str) -> str | None:
    return next((n for k, n in p.phones if k == kind), None)


def _address(p: Person, kind: str):
    return next((a for a in p.addresses if a.kind == kind), None)


def expected_lead(source: str, p: Person) -> dict[str, Any]:
    """The lead a clean person should become, as Brokerkit renders it."""
    carries = CARRIES[source]
    home = _address(p, "home")
    lead: dict[str, Any] = {
        "first_name": p.first_name, "last_name": p.last_name, "email": p.email.lower(),
        "phone": _phone(p, "mobile"), "currently_at": p.company or None, "source": p.source,
        "alt_address": home.street, "alt_city": home.city or None,
        "alt_state": STATE_NAMES[home.state], "alt_zip": home.zip,
        "status": "new_lead", "bucket": "default",
    }
    if "extra_phones" in carries:
        lead["other_phone"] = _phone(p, "home")
        lead["office_phone"] = _phone(p, "work")
        if source == "spark" and p.primary_phone:  # a primary number apart takes a free slot
            free = next((k for k in ("other_phone", "office_phone") if not lead[k]), None)
            if free:
                lead[free] = p.primary_phone
    if "office" in carries:
        work = _address(p, "work")
        lead.update(office_address=work.street if work else None,
                    office_city=work.city if work else None,
                    office_state=STATE_NAMES[work.state] if work else None,
                    office_zip=work.zip if work else None)
    if "birthday" in carries:
        lead["birthday"] = p.birthday.isoformat() if p.birthday else None
    if "status" in carries:
        lead["status"] = STATUS[p.status]
    paragraphs = []
    if "notes" in carries:
        paragraphs += note_lines(source, p)
    elif "rei_notes" in carries and p.notes:
        paragraphs.append("\n".join(p.notes))  # REI keeps notes as one custom field
    if p.tags:
        paragraphs.append("Tags: " + ", ".join(p.tags))
    lead["note"] = "\n\n".join(paragraphs) or None
    return lead




@pytest.mark.parametrize("source", SOURCES)
def test_mapping_loads_against_brokerkit_schema(source):
    mapping = load_mapping(mapping_path(source, "brokerkit"), schemas=Brokerkit.schemas())
    assert (mapping.source, mapping.target) == (MAPPING_SOURCE.get(source, source), "brokerkit")
    assert list(mapping.streams) == ["contacts"]
    stream = mapping.streams["contacts"]
    assert stream.target_stream == "leads"
    assert {"first_name", "last_name", "email", "phone", "note", "alt_city"} <= set(stream.fields)
    # A record that lacks every field (or holds nulls) maps to nothing rather than raising.
    for empty in ({}, dict.fromkeys(stream.uses_paths - {"*"})):
        result = stream.apply(empty)
        assert result.errors == []
        assert set(result.data) <= {"source", "status"}


def test_rei_status_and_bucket_tags_come_back_and_leave_the_tag_line():
    """realvolve-to-rei and brokerkit-csv-to-rei park status and bucket in REI tags."""
    stream = load_mapping(mapping_path("rei", "brokerkit"),
                          schemas=Brokerkit.schemas()).streams["contacts"]
    data = stream.apply({"firstName": "Ann", "tags": ["status: past client", "vip", "bucket: archived"],
                         "customFields": {"Notes": "met at the open house"}}).data
    assert (data["status"], data["bucket"]) == ("onboarding", "archived")
    assert data["note"] == "met at the open house\n\nTags: vip"
    data = stream.apply({"firstName": "Ann", "tags": ["status: appt set"]}).data
    assert (data["status"], "bucket" in data, "note" in data) == ("appt_set", False, False)
    data = stream.apply({"firstName": "Ann", "tags": ["status: retired", "bucket: attic"]}).data
    assert "status" not in data and "bucket" not in data


def field_tally(pair: Pair, leads: list[dict[str, Any]]) -> tuple[Tally, int]:
    """Every clean person's lead compared field by field (also bench/field_equality.py)."""
    by_sid = people_by_source_id(pair)
    migrated = [by_sid[sid] for _, sid, _ in checkpoint_rows(pair)]
    shared = Counter(p.email.lower() for p in migrated if p.email)
    lead_by_email = {lead["email"].lower(): lead for lead in leads if lead["email"]}
    tally = Tally(declared(pair.mapping))
    checked = 0
    for p in migrated:
        if p.dirty or shared[p.email.lower()] > 1:  # a later row with this e-mail updated the lead
            continue
        tally.add(p, expected_lead(pair.source, p), lead_by_email.get(p.email.lower(), {}))
        checked += 1
    return tally, checked


def done_targets(pair: Pair) -> dict[str, tuple[str, str]]:
    """source id -> (target id, action) of every record done."""
    with sqlite3.connect(pair.tmp / "ckpt.sqlite") as db:
        return {sid: (tid, action) for sid, tid, action in db.execute(
            "SELECT source_id, target_id, action FROM records WHERE status='done'")}


def lead_named(target_id: str, leads: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The held lead a target id names: its Brokerkit id, or for a lead this job could not
    learn the id of, the key it was matched on (``email:<address>``)."""
    for lead in leads:
        if target_id == str(lead["id"]) or (target_id.startswith("email:") and lead["email"]
                                            and target_id == f"email:{lead['email'].lower()}"):
            return lead
    return None


async def run_pair(tmp_path, source: str, n: int):
    async with Pair(tmp_path, source, "brokerkit", n=n) as pair:
        outcome = await pair.run()
        leads = pair.target_records()
        merged = pair.target_sim.merged_writes
    return outcome, pair, leads, merged


@pytest.mark.parametrize("source", SOURCES)
async def test_round_trip_into_brokerkit(tmp_path, source):
    outcome, pair, leads, merged = await run_pair(tmp_path, source, N)
    by_sid = people_by_source_id(pair)
    rows = checkpoint_rows(pair)
    counts = outcome.streams[0].counts
    assert_each_record_settled(pair, outcome.streams[0], rows, by_sid, N)

    migrated = [by_sid[sid] for _, sid, _ in rows]
    done = [by_sid[sid] for status, sid, _ in rows if status == "done"]
    emails = Counter(lead["email"].lower() for lead in leads if lead["email"])
    assert all(n == 1 for n in emails.values())  # Brokerkit upserts on e-mail
    assert all(emails[p.email.lower()] == 1 for p in done if p.email)
    assert counts["matched"] == merged   # every update answered 204, with no body
    # A 204 names no lead: each merged record still ends done with its lead's Brokerkit id.
    ids = {str(lead["id"]): lead for lead in leads}
    targets = done_targets(pair)
    assert {tid for tid, _ in targets.values()} <= set(ids)
    for sid, (tid, _) in targets.items():
        if by_sid[sid].email:
            assert ids[tid]["email"].lower() == by_sid[sid].email.lower(), sid
    repeated = sum(n - 1 for n in Counter(p.email.lower() for p in done if p.email).values())
    assert counts["matched"] >= repeated

    clean = [p for p in migrated if not p.dirty]
    assert len(clean) > len(migrated) // 2
    assert {p.uid for p in clean} <= {p.uid for p in done}
    tally, checked = field_tally(pair, leads)
    assert checked >= len(clean) * 9 // 10
    assert tally.misses == [], tally.report()
    if source != "realeflow":  # the API's 25 newest need not hold every shape
        assert tally.shapes >= {"zip_plus4", "no_city", "script_name", "long_note"}


async def test_test_mode_writes_nothing(tmp_path):
    """test: true is a server-side dry run: Brokerkit checks every lead and keeps none.

    A run in test mode would mark every record done in the checkpoint while Brokerkit holds
    nothing, so the engine refuses it and leaves the dry run to `validate --server`.
    """
    async with Pair(tmp_path, "csv", "brokerkit", n=40,
                    target_settings={"test_mode": "true"}) as pair:
        sim = pair.target_sim
        with pytest.raises(UserError, match="test_mode"):
            await pair.run()
        assert sim.stats.requests["POST /v2/leads"] == 0
        outcome = await pair.run(mode="validate", server=True)
        assert pair.target_records() == []
        assert sim.merged_writes == 0
        sent = sim.stats.requests["POST /v2/leads"]
    counts = outcome.streams[0].counts
    assert counts["valid"] > 30
    assert counts["valid"] + 1 == sent   # and the key's check before reading (probe), a dry run too
    assert not (tmp_path / "ckpt.sqlite").exists()


@pytest.mark.parametrize("on_merge", ["combine", "update"])
async def test_leads_brokerkit_held_before_the_job_are_named_by_their_e_mail(tmp_path, on_merge):
    """Brokerkit answers an update of a lead it already held with 204 and no id, and cannot
    be read: such a record ends done, named ``email:<address>``, reported as a merge onto
    a record the target held before the job; every other record has its lead's id."""
    async with Pair(tmp_path, "csv", "brokerkit", n=60, dirt=CLEAN, preseed=1 / 4, on_merge=on_merge,
                    target_sim={"seed_existing": True}) as pair:
        before = {str(lead["id"]) for lead in pair.target_records()}
        outcome = await pair.run()
        leads = pair.target_records()
    counts = outcome.streams[0].counts
    assert counts["failed"] == 0 and counts["done"] == 60
    by_sid = people_by_source_id(pair)
    preseeded = {p.uid for p in pair.preseeded}
    assert len(leads) == len({p.email.lower() for p in pair.people})   # nothing doubled
    for sid, (tid, action) in done_targets(pair).items():
        person = by_sid[sid]
        lead = lead_named(tid, leads)
        assert lead is not None and lead["email"].lower() == person.email.lower(), (sid, tid)
        if person.uid in preseeded:
            assert (tid, action) == (f"email:{person.email.lower()}", "matched")
        else:
            assert tid not in before and tid.isdigit()
    merges = {m["target_id"]: m for m in checkpoint_facts(tmp_path / "ckpt.sqlite")["merges"]}
    for p in pair.preseeded:
        merge = merges[f"email:{p.email.lower()}"]
        assert merge["existing"]
        if on_merge == "combine":
            assert {x["how"] for x in merge["placed"][merge["source_ids"][0]]} == {"overwritten"}


async def test_lost_and_cut_short_answers_double_no_lead_and_name_every_one(tmp_path):
    """Dropped connections after the write, bodies cut short, 5xx: a keyed lead is sent
    again (the server upserts it), never doubled, and every record names a held lead."""
    faults = Faults(error_rate=0.05, drop_after_rate=0.05, truncate_rate=0.05, seed=3)
    async with Pair(tmp_path, "csv", "brokerkit", n=150, dirt=CLEAN, faults=faults) as pair:
        outcome = await pair.run()
        leads = pair.target_records()
        sim = pair.target_sim
        assert sim.stats.faults["drop_after"] > 0 and sim.stats.faults["truncated"] > 0
        assert sim.duplicates() == {}
    assert outcome.streams[0].counts["done"] == 150
    assert len(leads) == len({p.email.lower() for p in pair.people})
    by_sid = people_by_source_id(pair)
    for sid, (tid, _) in done_targets(pair).items():
        lead = lead_named(tid, leads)
        assert lead is not None and lead["email"].lower() == by_sid[sid].email.lower(), (sid, tid)
