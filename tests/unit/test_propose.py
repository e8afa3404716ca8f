"""The mapping proposed from other CRMs' exports: how often it says what a person would."""
from __future__ import annotations

import pytest

from migrator.init_from import render_mapping, schema_for
from migrator.mapping.compile import load_mapping
from migrator.mapping.propose import classify, propose, target_stream
from migrator.registry import connector_class
from tests.exports21 import EXPORTS, rows, truth

TARGETS = ("rei", "brokerkit", "spark", "realvolve", "realeflow", "jsonl", "csv")


def test_columns_are_read_as_a_person_would():
    """Fields mapped right / fields a person would map, over the six-plus header styles;
    a wrong guess is worse than none, so it must never happen."""
    right = wanted = wrong = 0
    misses = []
    for name in EXPORTS:
        header, data = rows(name)
        expected = truth(name)
        for g in classify(header, data):
            want = expected[g.column]
            wanted += want is not None
            if want is not None and g.concept == want:
                right += 1
            elif g.concept is not None:
                wrong += 1
                misses.append((name, g.column, want, g.concept))
            elif want is not None:
                misses.append((name, g.column, want, None))
    accuracy = right / wanted
    print(f"auto-mapping accuracy: {right}/{wanted} = {accuracy:.1%}, wrong: {wrong}, exports: {len(EXPORTS)}")
    assert wrong == 0, misses
    assert accuracy >= 0.95, misses


def test_values_name_a_column_whose_name_says_nothing():
    data = [{"Feld 1": f"p{i}@example.com", "Feld 2": f"(415) 555-01{i:02d}", "Feld 3": "x"} for i in range(20)]
    got = {g.column: g for g in classify(["Feld 1", "Feld 2", "Feld 3"], data)}
    assert got["Feld 1"].concept == "email" and got["Feld 1"].confidence == "low"
    assert got["Feld 2"].concept == "phone"
    assert got["Feld 3"].concept is None


def test_a_name_whose_values_disagree_is_not_trusted():
    data = [{"Phone": f"p{i}@example.com", "Zip": "Springfield"} for i in range(10)]
    got = {g.column: g for g in classify(["Phone", "Zip"], data)}
    assert got["Phone"].concept == "email"          # the values win, and the comment says so
    assert "says otherwise" in got["Phone"].why


def test_day_first_dates_and_list_separators_are_seen():
    header, data = rows("german")
    g = {x.column: x for x in classify(header, data)}
    assert g["Geburtstag"].dayfirst and g["Gruppen"].separator == ","
    header, data = rows("outlook")
    g = {x.column: x for x in classify(header, data)}
    assert not g["Birthday"].dayfirst and g["Categories"].separator == ";"


def test_a_full_name_alone_is_split_for_targets_that_hold_parts():
    data = [{"Contact": "Ann Lee", "Mail": "ann@example.com"}, {"Contact": "Bob Ray", "Mail": "bob@example.com"}]
    p = propose(["Contact", "Mail"], data, "rei", schema_for("rei", "contacts"))
    by = {c.target: c for c in p.choices}
    assert by["firstName"].transforms == ("first_name",) and by["lastName"].transforms == ("last_name",)
    assert by["email"].path == "Mail"


def test_the_proposal_is_deterministic():
    header, data = rows("salesforce")
    assert propose(header, data, "spark", schema_for("spark")) == propose(header, data, "spark", schema_for("spark"))


@pytest.mark.parametrize("target", TARGETS)
def test_every_proposed_mapping_compiles(target):
    schemas = connector_class(target).schemas()
    for name in EXPORTS:
        header, data = rows(name)
        p = propose(header, data, target, schema_for(target, target_stream(target)))
        text = render_mapping(p, "csv", f"{name}.csv")
        mapping = load_mapping(text, schemas=schemas, filename=f"{name}-{target}.yaml")
        sm = mapping.streams["contacts"]
        result = sm.apply(dict(data[0]))
        assert result is not None
        assert "# Columns nothing reads" in text or "# Every column is read." in text
        assert all(f"— {c.confidence}" in text for c in p.choices)


def test_spark_gets_the_outlook_fields_a_person_would_give_it():
    header, data = rows("outlook")
    p = propose(header, data, "spark", schema_for("spark"))
    by = {c.target: c.columns for c in p.choices}
    assert by["PrimaryEmail"] == ("E-mail Address",) and by["SecondaryEmails"] == ("E-mail 2 Address",)
    assert by["MobilePhoneNumber"] == ("Mobile Phone",) and by["WorkPhoneNumber"] == ("Business Phone",)
    assert by["WorkPostalCode"] == ("Business Postal Code",) and by["Salutation"] == ("Title",)
    assert by["Position"] == ("Job Title",) and by["Tags"] == ("Categories",)
    assert "Web Page" in {g.column for g in p.unmapped}     # Spark has no website field


def test_a_column_without_a_name_is_listed_never_mapped():
    data = [{"": f"p{i}@example.com", "Email": f"q{i}@example.com"} for i in range(5)]
    p = propose(["", "Email"], data, "jsonl")
    assert [c.columns for c in p.choices] == [("Email",)]
    assert [g.column for g in p.unmapped] == [""]
