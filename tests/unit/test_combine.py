"""``on_merge: combine``'s pure logic: both records in one, nothing either held lost."""
from __future__ import annotations

from typing import Any

from hypothesis import given, settings, strategies as st

from migrator.connectors.combine import Slots, combine, contains, slots_for_group
from migrator.connectors.dedup import normalize

PHONES = ("MobilePhoneNumber", "HomePhoneNumber", "OtherPhoneNumber")
SPARKISH = Slots(lists=frozenset({"Tags", "SecondaryEmails"}),
                 second={**slots_for_group(PHONES), "PrimaryEmail": ("SecondaryEmails",)},
                 note="Note", note_appends=True)
REIISH = Slots(lists=frozenset({"tags"}), note="custom.Notes")


def test_a_couple_keeps_both_names_phones_notes_and_tags() -> None:
    him = {"GivenName": "John", "PrimaryEmail": "smiths@example.com", "MobilePhoneNumber": "+15550001111",
           "Tags": ["buyer"], "Note": "Wants a garden"}
    her = {"GivenName": "Jane", "PrimaryEmail": "Smiths@example.com", "MobilePhoneNumber": "+15550002222",
           "Tags": ["buyer", "vip"], "Note": "Prefers e-mail", "Organization": "Acme"}
    out = combine(him, her, SPARKISH, source_id="7")
    assert out.changes == {"Tags": ["buyer", "vip"], "Organization": "Acme", "HomePhoneNumber": "+15550002222",
                           "Note": "Prefers e-mail\n\nAlso GivenName: Jane (source record 7)"}
    assert out.record["GivenName"] == "John" and out.record["MobilePhoneNumber"] == "+15550001111"
    assert out.record["Note"].startswith("Wants a garden\n\nPrefers e-mail")
    got = {(p.field, p.to, p.how) for p in out.placements}
    assert got == {("Tags", "Tags", "added"), ("Organization", "Organization", "filled"),
                   ("MobilePhoneNumber", "HomePhoneNumber", "second"), ("GivenName", "Note", "line"),
                   ("Note", "Note", "appended")}


def test_a_note_the_target_holds_whole_is_appended_and_never_repeated() -> None:
    first = {"email": "a@x.com", "custom.Notes": "one", "firstName": "Ann"}
    second = {"email": "a@x.com", "custom.Notes": "two", "firstName": "Bea", "phone": "+15550003333"}
    out = combine(first, second, REIISH, source_id="s2")
    assert out.changes == {"phone": "+15550003333",
                           "custom.Notes": "one\n\ntwo\n\nAlso firstName: Bea (source record s2)"}
    again = combine(out.record, second, REIISH, source_id="s2")   # a retry after a lost answer
    assert again.changes == {} and again.placements == []


def test_a_short_note_inside_a_longer_one_is_still_appended() -> None:
    out = combine({"Note": "yesterday"}, {"Note": "yes"}, Slots(note="Note"),
                  source_id="1")
    assert out.record["Note"] == "yesterday\n\nyes"


def test_without_a_note_field_a_value_with_no_place_is_reported_lost() -> None:
    out = combine({"first_name": "A"}, {"first_name": "B"}, Slots(), source_id="1")
    assert out.changes == {} and [(p.field, p.how, p.to) for p in out.placements] == [("first_name", "lost", None)]


def test_second_e_mail_goes_to_the_secondary_list_and_equal_values_stay_put() -> None:
    out = combine({"PrimaryEmail": "a@x.com", "SecondaryEmails": ["b@x.com"], "MobilePhoneNumber": "(555) 000-1111"},
                  {"PrimaryEmail": "c@x.com", "MobilePhoneNumber": "+15550001111"}, SPARKISH, source_id="1")
    assert out.changes == {"SecondaryEmails": ["b@x.com", "c@x.com"]}


# ---- property: nothing either record held is lost ------------------------------------

FIELDS = ("GivenName", "Organization", "PrimaryEmail", *PHONES)
text = st.text(alphabet="abcxyz ", min_size=1, max_size=6).filter(lambda s: s.strip())
phone = st.integers(2_000_000_000, 2_000_000_009).map(lambda n: f"+1{n}")


def value_for(name: str) -> st.SearchStrategy[Any]:
    if "Phone" in name:
        return phone
    if name == "PrimaryEmail":
        return st.sampled_from(["a@x.com", "b@x.com", "c@x.com"])
    return text


records = st.fixed_dictionaries({}, optional={
    **{f: value_for(f) for f in FIELDS},
    "Tags": st.lists(text, max_size=3), "SecondaryEmails": st.lists(st.sampled_from(["d@x.com", "a@x.com"]),
                                                                   max_size=2),
    "Note": text})


def holds(record: dict[str, Any], name: str, value: Any, slots: Slots) -> bool:
    if name == slots.note:
        return contains(str(record.get(name) or ""), str(value).strip(), slots.separator)
    if name in slots.lists:
        return all(any(normalize(name, v) == normalize(name, i) for v in record.get(name) or ()) for i in value)
    places = (name, *slots.second.get(name, ()))
    for where in places:
        have = record.get(where)
        for v in have if isinstance(have, list) else [have]:
            if v is not None and normalize(name, v) == normalize(name, value):
                return True
    return any(line.startswith(f"Also {name}: {value} (") for line in str(record.get(slots.note) or "").splitlines())


@settings(max_examples=300, deadline=None)
@given(existing=records, incoming=records)
def test_every_value_of_both_records_is_somewhere_in_the_combined_one(existing, incoming) -> None:
    for slots in (SPARKISH, Slots(lists=frozenset({"Tags", "SecondaryEmails"}), note="Note")):
        out = combine(existing, incoming, slots, source_id="9")
        for rec in (existing, incoming):
            for name, value in rec.items():
                if value in (None, "", []):
                    continue
                assert holds(out.record, name, value, slots), (name, value, out.record)
        # What is sent is what changed: applying it to the existing record gives the combined one.
        applied = {**existing, **out.changes}
        if not slots.note_appends or "Note" not in out.changes:
            assert applied == out.record
        assert all(p.how != "lost" for p in out.placements)
