"""Every shipped mapping into Realvolve and into Realeflow, end to end against the sandbox.

Each pair loads its mapping against the target's schema, then migrates seeded people from
the source simulator (or its CSV export) into an empty target simulator through the real
job loader and engine. Failures must be seeded dirt only, every clean person must arrive
exactly once, and what arrives must equal the person after the mapping's transforms.
MIGRATOR_PAIR_CONTACTS sets the number of people (default 200 to keep CI fast; the
issue's full size is 500).
"""
from __future__ import annotations

import os
from collections import Counter
from typing import Any

import pytest

from migrator.connectors.realeflow import Realeflow
from migrator.connectors.realvolve import Realvolve
from migrator.mapping import load_mapping
from migrator.mapping.transforms import build_transform
from migrator.registry import connector_class
from migrator.sandbox.data import STATUSES, Address, Person
from migrator.sandbox.exports import BROKERKIT_STATUS
from tests.integration.fields import Tally, declared, note_lines
from tests.integration.harness import CSV_SOURCES, REALEFLOW_API_LIMIT, Pair, assert_each_record_settled, checkpoint_rows, mapping_path, people_by_source_id

N = int(os.environ.get("MIGRATOR_PAIR_CONTACTS", "200"))
FIRST, LAST = build_transform("first_name"), build_transform("last_name")
TARGETS = {"realvolve": Realvolve, "realeflow": Realeflow}
PAIRS = [(s, "realvolve") for s in ("spark", "rei", "realeflow", "realeflow-csv", "brokerkit-csv", "csv")] + \
        [(s, "realeflow") for s in ("realvolve", "spark", "rei", "brokerkit-csv", "csv")]

# Beyond name, e-mail, first phone, company, source, home address and tags, what each
# source hands over.
FULL = {"first_last", "email2", "typed_phones", "work", "title", "birthday", "anniversary",
        "notes", "status"}
CARRIES = {
    "realvolve": FULL, "spark": FULL, "csv": FULL,
    "brokerkit-csv": {"first_last", "typed_phones", "work", "birthday", "notes", "status"},
    "rei": {"first_last", "birthday", "anniversary", "rei_notes"},
    "realeflow-csv": {"notes", "contact_type"},
    "realeflow": set(),
}


def _address(p: Person, kind: str) -> Address | None:
    return next((a for a in p.addresses if a.kind == kind), None)


def _tags(names: list[str]) -> frozenset[str]:
    return frozenset(t.casefold() for t in names)


def _common(source: str, p: Person) -> tuple[set[str], Address, dict[str, Any]]:
    carries = CARRIES[source]
    want: dict[str, Any] = {"company": p.company or None, "tags": _tags(p.tags)}
    if "birthday" in carries:
        want["birthday"] = p.birthday.isoformat() if p.birthday else None
    if "anniversary" in carries:
        want["anniversary"] = p.anniversary.isoformat() if p.anniversary else None
    if "title" in carries:
        want["title"] = p.title
    if "email2" in carries:
        want["email2"] = p.emails[1][1].lower() if len(p.emails) > 1 else None
    home = _address(p, "home")
    assert home is not None
    return carries, home, want


def realvolve_phones(phones: list[tuple[str, str]], primary: str | None = None) -> dict[str, str]:
    """Realvolve's API takes a work and a home phone, no mobile: the mappings send the
    first of mobile, home (and a primary number apart) as home, and the work number as
    work — else the next different number, so two numbers always both arrive."""
    typed = dict(phones)
    others = list(dict.fromkeys(n for n in (typed.get("mobile"), typed.get("home"), primary) if n))
    out = {"home": others[0]} if others else {}
    work = typed.get("work") or (others[1] if len(others) > 1 else None)
    return {**out, "work": work} if work else out


def expected_realvolve(source: str, p: Person) -> dict[str, Any]:
    """The Realvolve contact a clean person should become, as ``realvolve_view`` shows it."""
    carries, home, want = _common(source, p)
    kind, number = p.phones[0]
    phones = realvolve_phones(p.phones, p.primary_phone if source == "spark" else None) \
        if "typed_phones" in carries else \
        {"work" if kind == "work" and source not in ("rei", "realeflow") else "home": number}
    want.update(email=p.email.lower(), source=p.source, home=_parts(home), phones=phones,
                status=p.status if "status" in carries else None)
    if "work" in carries:
        work = _address(p, "work")
        want["work"] = _parts(work) if work else None
    # Realvolve holds the name in parts: they must arrive as the person's parts, whether
    # the source held them apart or as a full name (split the way its script writes it).
    if "first_last" in carries or "script_name" in p.shapes:
        want.update(first_name=p.first_name, last_name=p.last_name)
    else:
        want.update(first_name=FIRST(p.full_name), last_name=LAST(p.full_name))
    if "contact_type" in carries:
        want["tags"] |= {"seller" if "seller" in p.tags else "buyer"}
    if "notes" in carries:
        want["notes"] = p.notes
    elif "rei_notes" in carries:
        want["notes"] = ["\n".join(p.notes)] if p.notes else []
    else:
        want["notes"] = []
    return want


def _parts(a: Address) -> tuple[str | None, ...]:
    return (a.street, a.city or None, a.state, a.zip)


def realvolve_view(rec: dict[str, Any], sources: dict[int, str]) -> dict[str, Any]:
    def by_kind(items: list[dict[str, Any]], key: str) -> dict[str, Any]:
        return {i["google_type"]: i[key] for i in items}

    def parts(a: dict[str, Any]) -> tuple[str | None, ...]:
        """The address as Realvolve split it: a line it could not split has no parts."""
        street = " ".join(x for x in (a["street_number"], a["address_line"]) if x) or None
        return (street, a["geo_city"], a["geo_state"], a["zipcode"])
    emails = by_kind(rec["email_addresses"], "email_address")
    addresses = {a["google_type"]: parts(a) for a in rec["addresses"]}
    status = rec["contact_status_id"]
    return {"name": f"{rec['first_name'] or ''} {rec['last_name'] or ''}".strip(),
            "first_name": rec["first_name"], "last_name": rec["last_name"],
            "email": emails.get("work"), "email2": emails.get("home"),
            "phones": by_kind(rec["phone_numbers"], "plain_phone_number"),
            "home": addresses.get("home"), "work": addresses.get("work"),
            "company": rec["company"], "title": rec["title"], "source": sources.get(rec["source_id"]),
            "birthday": rec["birth_date"], "anniversary": rec["home_purchase_anniversary"],
            "tags": _tags(rec["tag_names"]), "notes": [n["content"] for n in rec["notes"]],
            "status": STATUSES[status - 1] if status else None}


def expected_realeflow(source: str, p: Person) -> dict[str, Any]:
    """The Realeflow contact a clean person should become, as ``realeflow_view`` shows it."""
    carries, home, want = _common(source, p)
    others = {n for _, n in p.phones[1:]} if "typed_phones" in carries else set()
    if source == "spark" and p.primary_phone:
        others.add(p.primary_phone)
    want.update(name=p.full_name, email=p.email.lower(), source=p.source, phone=p.phones[0][1],
                phone_type="Mobile", address=home.street, city=home.city or None, state=home.state,
                zip=home.zip, other_phones=frozenset(others))
    if "work" in carries:
        work = _address(p, "work")
        want["work"] = work.one_line if work else None
    if "notes" in carries:
        want["notes"] = "\n\n".join(note_lines(source, p)) or None
    elif "rei_notes" in carries:
        want["notes"] = "\n".join(p.notes) or None
    if "status" in carries:
        want["status"] = BROKERKIT_STATUS[p.status] if source == "brokerkit-csv" else p.status
    return want


def realeflow_view(rec: dict[str, Any], sources: dict[int, str]) -> dict[str, Any]:
    custom = (rec["customFields"] or []) + [None] * 28
    return {"name": rec["fullName"], "email": rec["email"], "company": rec["companyName"],
            "phone": rec["phone"], "phone_type": rec["phoneType"], "source": rec["source"],
            "address": rec["address"], "city": rec["city"], "state": rec["state"], "zip": rec["zipCode"],
            "tags": _tags(rec["tags"]), "status": custom[0], "birthday": custom[1],
            "anniversary": custom[2], "notes": custom[3], "title": custom[4], "email2": custom[5],
            "other_phones": frozenset(custom[6].split(", ")) if custom[6] else frozenset(),
            "work": custom[7]}


EXPECTED = {"realvolve": expected_realvolve, "realeflow": expected_realeflow}
VIEW = {"realvolve": realvolve_view, "realeflow": realeflow_view}




def source_names(pair: Pair) -> dict[int, str]:
    if pair.target != "realvolve":
        return {}
    return {s["id"]: s["name"] for s in pair.target_sim.inspect_records("contact_sources")}


@pytest.mark.parametrize("source, target", PAIRS)
def test_mapping_loads_against_target_schema(source, target):
    streams = None if source in CSV_SOURCES else connector_class(source).source_streams
    mapping = load_mapping(mapping_path(source, target), schemas=TARGETS[target].schemas(),
                           source_streams=streams)
    assert (mapping.source, mapping.target) == ("csv" if source in CSV_SOURCES else source, target)
    if source == "realvolve":
        names = targets = ["contacts", "properties"]
    else:
        names = targets = ["contacts"]
    assert list(mapping.streams) == names
    assert [s.target_stream for s in mapping.streams.values()] == targets
    fields = set(mapping.streams["contacts"].fields)
    core = {"first_name", "last_name", "work_email", "home_phone", "home_address", "tags",
            "contact_source"} if target == "realvolve" else \
           {"FullName", "Email", "Phone", "Address", "City", "State", "ZipCode", "Tags", "Source"}
    assert core <= fields


def field_tally(pair: Pair, got: list[dict[str, Any]]) -> tuple[Tally, list[int]]:
    """Every clean person's record compared field by field (also bench/field_equality.py),
    and the people whose record could not be told apart (none or several candidates)."""
    source, target = pair.source, pair.target
    by_sid = people_by_source_id(pair)
    done = [by_sid[sid] for status, sid, _ in checkpoint_rows(pair, "contacts") if status == "done"]
    by_email: dict[str, list[dict[str, Any]]] = {}
    for g in got:
        by_email.setdefault(g["email"], []).append(g)
    tally, ambiguous = Tally(declared(pair.mapping)), []
    for p in done:
        if p.dirty:
            continue
        want = EXPECTED[target](source, p)
        name = (want["first_name"], want["last_name"]) if target == "realvolve" else want["name"]
        candidates = [g for g in by_email.get(p.email.lower(), [])
                      if (g.get("first_name"), g.get("last_name")) == name or g["name"] == name]
        if len(candidates) != 1:
            ambiguous.append(p.uid)
            continue
        tally.add(p, want, candidates[0])
    return tally, ambiguous


async def run_pair(tmp_path, source: str, target: str, n: int):
    async with Pair(tmp_path, source, target, n=n) as pair:
        outcome = await pair.run()
        records = pair.target_records()
        sources = source_names(pair)
    return outcome, pair, records, [VIEW[target](r, sources) for r in records]


@pytest.mark.parametrize("source, target", PAIRS)
async def test_round_trip(tmp_path, source, target):
    outcome, pair, records, got = await run_pair(tmp_path, source, target, N)
    by_sid = people_by_source_id(pair)
    rows = checkpoint_rows(pair, "contacts")
    result = outcome.streams[0]
    counts = result.counts
    assert_each_record_settled(pair, result, rows, by_sid, N)
    if source == "realeflow":
        assert {by_sid[sid].uid for _, sid, _ in rows} == {p.uid for p in pair.people[-REALEFLOW_API_LIMIT:]}
    done = [by_sid[sid] for status, sid, _ in rows if status == "done"]
    assert len(records) == len(done) == counts["done"]

    # No dedup in either target: an e-mail arrives once per migrated person holding it.
    arrived = Counter(g["email"] for g in got if g["email"])
    sent = Counter(p.email.lower() for p in done if p.email)
    assert arrived == sent

    clean = [p for p in done if not p.dirty]
    assert len(clean) > len(done) * 3 // 4
    tally, ambiguous = field_tally(pair, got)
    assert ambiguous == []
    assert tally.misses == [], tally.report()
    if source != "realeflow":  # the API's 25 newest need not hold every shape
        assert tally.shapes >= {"zip_plus4", "no_city", "script_name", "long_note"}


async def test_realvolve_properties_reach_realeflow_without_owners_as_the_mapping_says(tmp_path):
    """Realvolve's doc names no field linking a property to its contacts: every property
    arrives, none with an owner relation, and the mapping's header says so."""
    async with Pair(tmp_path, "realvolve", "realeflow", n=min(N, 60)) as pair:
        outcome = await pair.run()
        homes = pair.source_sim.inspect_records("properties")
        created = pair.target_sim.inspect_records("properties")
        relations = pair.target_sim.inspect_records("relations")
    assert [s.stream for s in outcome.streams] == ["contacts", "properties"]
    assert homes and outcome.streams[1].counts["done"] == len(homes)
    assert relations == []
    assert "Owners of properties CANNOT be carried" in mapping_path("realvolve", "realeflow").read_text()
    want = sorted((h["address_line"], h["city"], h["state"], h["zipcode"],
                   [str(h[k]) for k in ("bedrooms", "bathrooms", "area_in_sq_feet", "list_price")])
                  for h in homes)
    got = sorted((c["address"], c["city"], c["state"], c["zipCode"], c["customFields"][8:12])
                 for c in created)
    assert got == want


def _stream(source: str, target: str):
    return load_mapping(mapping_path(source, target),
                        schemas=TARGETS[target].schemas()).streams["contacts"]


def test_rei_status_tag_sets_the_realvolve_status_and_an_unknown_one_is_dropped():
    stream = _stream("rei", "realvolve")
    data = stream.apply({"firstName": "Ann", "tags": ["vip", "status: past client"],
                         "customFields": {"Notes": "met at the open house"}}).data
    assert (data["contact_status_id"], data["tags"], data["notes"]) == (
        5, ["vip", "status: past client"], ["met at the open house"])
    data = stream.apply({"firstName": "Ann", "tags": ["status: Ghost"]}).data
    assert "contact_status_id" not in data and data["tags"] == ["status: Ghost"]


def test_realeflow_phone_type_picks_the_realvolve_phone():
    stream = _stream("realeflow", "realvolve")
    data = stream.apply({"fullName": "Ann Lee", "phone": "(415) 555-0134", "phoneType": "Work"}).data
    assert data == {"first_name": "Ann", "last_name": "Lee", "work_phone": "+14155550134"}
    data = stream.apply({"fullName": "Ann Lee", "phone": "4155550134", "phoneType": None}).data
    assert data["home_phone"] == "+14155550134" and "work_phone" not in data


def test_spark_primary_phone_other_field_and_empty_work_address():
    stream = _stream("spark", "realvolve")
    data = stream.apply({"GivenName": "Ann", "MiddleName": "Marie", "FamilyName": "Lee",
                         "PrimaryPhoneNumber": "415-555-0134", "Other": "prefers texts",
                         "Notes": [{"Note": "called"}], "HomeStreetAddress": "1 Main St",
                         "HomeRegion": "CA", "HomePostalCode": "94105"}).data
    assert data == {"first_name": "Ann Marie", "last_name": "Lee", "home_phone": "+14155550134",
                    "home_address": "1 Main St, , CA 94105", "contact_status_id": 3,
                    "notes": ["called", "prefers texts"]}
    # A primary number apart from the one in the home slot takes the free work slot.
    data = stream.apply({"GivenName": "Ann", "PrimaryPhoneNumber": "415-555-0134",
                         "MobilePhoneNumber": "212-555-0188"}).data
    assert (data["home_phone"], data["work_phone"]) == ("+12125550188", "+14155550134")
    data = stream.apply({"GivenName": "Ann", "PrimaryPhoneNumber": "415-555-0134",
                         "MobilePhoneNumber": "212-555-0188", "WorkPhoneNumber": "312-555-0101"}).data
    assert (data["home_phone"], data["work_phone"]) == ("+12125550188", "+13125550101")
    data = stream.apply({"GivenName": "Ann", "MobilePhoneNumber": "212-555-0188",
                         "HomePhoneNumber": "312-555-0101"}).data
    assert (data["home_phone"], data["work_phone"]) == ("+12125550188", "+13125550101")
    data = stream.apply({"GivenName": "Ann", "PrimaryPhoneNumber": "415-555-0134",
                         "MobilePhoneNumber": "(415) 555-0134"}).data
    assert data["home_phone"] == "+14155550134" and "work_phone" not in data  # the same number once


def test_realvolve_address_realvolve_could_not_split_stays_whole():
    stream = _stream("realvolve", "realeflow")
    line = "Rural Route 9, Box 4"
    data = stream.apply({"first_name": "Ann", "addresses": [
        {"address": line, "address_line": None, "street_number": None}]}).data
    assert data == {"FullName": "Ann", "Address": line}


def test_spark_to_realeflow_phone_is_the_first_number_the_rest_go_to_custom_7():
    stream = _stream("spark", "realeflow")
    data = stream.apply({"GivenName": "Ann", "WorkPhoneNumber": "415-555-0134",
                         "HomePhoneNumber": "212-555-0188", "OtherPhoneNumber": "312-555-0101"}).data
    assert (data["Phone"], data["PhoneType"], data["custom_7"]) == (
        "+14155550134", "Work", "+12125550188, +13125550101")
