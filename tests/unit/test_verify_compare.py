"""The comparison verify makes, directly: each target's normalisation applies to both
sides, lists pass when nothing sent was lost, merges' placements are not drift."""
from datetime import date

import pytest

from migrator.verify.compare import SKIP, Drift, comparable, drifts, held_twice, shown


def _rules(**rules):
    return lambda name, value: comparable(value, rules.get(name))


@pytest.mark.parametrize("sent, held, rule", [
    ("  Ann   Lee ", "Ann Lee", None),
    ("Ann@Example.com", "ann@example.com", "casefold"),
    ("(415) 555-0134", "+14155550134", "e164"),
    ("1980-02-03", "1980-02-03T00:00:00Z", "date"),
    (date(1980, 2, 3), "1980-02-03", "date"),
    (["VIP", "buyer"], ["vip", "buyer", "added-later"], "tags"),
    ("a note", ["first note", "a note"], "list"),
    (True, "true", None),
    (5.0, "5", None),
])
def test_equal_after_the_targets_normalisation(sent, held, rule):
    assert drifts({"f": sent}, {"f": held}, _rules(f=rule)) == []


@pytest.mark.parametrize("sent, held, rule", [
    ("Ann", "ANN", None),                     # reformatted: the target does not declare case
    ("Ann", None, None),                      # dropped
    ("38411 Andrea Roads", "38411 And", None),  # cut
    (["vip", "buyer"], ["vip"], "tags"),      # an item lost
    ("+14155550134", "+14155550199", "e164"),
])
def test_drift_names_field_sent_and_held(sent, held, rule):
    (d,) = drifts({"f": sent}, {"f": held}, _rules(f=rule))
    assert (d.field, d.sent, d.held) == ("f", sent, held)


def test_nothing_sent_nothing_compared_and_skip_rules():
    assert drifts({"a": None, "b": "", "c": []}, {}, _rules()) == []
    assert comparable("x", "skip") is SKIP
    assert drifts({"Note": "x"}, {}, _rules(Note="skip")) == []
    # A field the target's read does not show (a list row without it) is not compared.
    assert drifts({"company": "Acme", "title": "CEO"}, {"company": SKIP, "title": "CTO"}, _rules()) == \
        [Drift("title", "CEO", "CTO")]


def test_a_merge_placement_is_not_drift_and_an_appended_field_must_still_hold_the_value():
    form = _rules()
    assert drifts({"phone": "+1415"}, {"phone": "+1999"}, form, skip={"phone"}) == []
    assert drifts({"note": "mine"}, {"note": "theirs\n\nmine"}, form, grew={"note"}) == []
    assert [d.field for d in drifts({"note": "mine"}, {"note": "theirs"}, form, grew={"note"})] == ["note"]


def test_held_twice_and_shown():
    assert held_twice([("email=a", "1"), ("email=a", "2"), ("email=b", "3"), ("email=b", "3")]) == {"email=a": {"1", "2"}}
    assert shown(["a", "b"]) == "a; b" and shown(None) == "" and shown({"k": 1}) == '{"k":1}'
