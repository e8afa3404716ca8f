from datetime import date

import pytest

from migrator.schema import AnyOf, Field, Ref, StreamSchema, Violation, excerpt

SCHEMA = StreamSchema("leads", [
    Field("first_name", required=True, max_length=10, description="Given name"),
    Field("email", format="email", max_length=75),
    Field("phone", format="phone_e164"),
    Field("status", enum=("default", "backlog", "archived")),
    Field("state", format="state2"),
    Field("zip", format="zip5"),
    Field("website", format="url"),
    Field("birthday", type="date", format="date:%d/%m/%Y"),
    Field("anniversary", type="date"),
    Field("rating", type="int", minimum=4, maximum=10),
    Field("price", type="float", minimum=0),
    Field("kpa_taken", type="bool"),
    Field("tags", type="list", max_items=3, max_length=5),
    Field("emails", type="list", format="email"),
    Field("owner_id"),
], rules=[AnyOf(("email", "phone"))], open_prefixes=("custom.",))


def check(record):
    return SCHEMA.validate({"first_name": "Ann", "email": "ann@example.com", **record})


def one(record):
    violations = check(record)
    assert len(violations) == 1, violations
    return violations[0]


def test_a_valid_record_has_no_violations():
    assert check({"phone": "+14155550123", "status": "backlog", "state": "CA", "zip": "92103",
                  "website": "https://example.com/x", "birthday": "24/03/1975",
                  "anniversary": "2001-06-01", "rating": 7, "price": 1.5, "kpa_taken": False,
                  "tags": ["a", "b"], "emails": ["a@b.co"], "custom.Source": "x"}) == []


def test_empty_values_count_as_absent():
    assert check({"status": None, "zip": "", "tags": [], "rating": None}) == []


def test_required():
    v = SCHEMA.validate({"email": "a@b.co"})
    assert v == [Violation("first_name", "required", "is required", "")]
    assert SCHEMA.validate({"first_name": "", "email": "a@b.co"})[0].rule == "required"


def test_any_of():
    v = SCHEMA.validate({"first_name": "Ann"})
    assert v == [Violation("email|phone", "any_of", "at least one of email, phone is required",
                           "")]
    assert SCHEMA.validate({"first_name": "Ann", "phone": "+14155550123"}) == []


def test_max_length_message_gives_the_figures():
    v = one({"first_name": "Bartholomew Jr"})
    assert (v.field, v.rule, v.message) == ("first_name", "max_length",
                                            "must be at most 10 characters (got 14)")
    assert v.excerpt == "'Bartholomew Jr'"


def test_enum_is_case_sensitive_and_lists_the_choices():
    v = one({"status": "Backlog"})
    assert (v.rule, v.message) == ("enum", "must be one of default, backlog, archived")


@pytest.mark.parametrize("field, value, rule, message", [
    ("email", "ann@", "format:email", "is not a valid email address"),
    ("email", "ann@example", "format:email", "is not a valid email address"),
    ("email", "ann smith@example.com", "format:email", "is not a valid email address"),
    ("email", "a..b@example.com", "format:email", "is not a valid email address"),
    ("email", "x" * 65 + "@ex.co", "format:email", "is not a valid email address"),
    ("phone", "4155550123", "format:phone_e164", "is not a valid phone number"),
    ("phone", "+1415555012", "format:phone_e164", "is not a valid phone number"),
    ("phone", "+11115550123", "format:phone_e164", "is not a valid phone number"),
    ("phone", "+1 415 555 0123", "format:phone_e164", "is not a valid phone number"),
    ("state", "Ca", "format:state2", "must be a 2-letter US state code"),
    ("state", "XX", "format:state2", "must be a 2-letter US state code"),
    ("zip", "2134", "format:zip5", "must be a 5-digit ZIP code"),
    ("zip", "92103-1234", "format:zip5", "must be a 5-digit ZIP code"),
    ("website", "example.com", "format:url", "is not a valid http(s) URL"),
    ("website", "ftp://example.com", "format:url", "is not a valid http(s) URL"),
    ("website", "http://exa mple.com", "format:url", "is not a valid http(s) URL"),
    ("birthday", "1975-03-24", "format:date", "must be a date like 31/12/1999"),
    ("birthday", "31/02/1975", "format:date", "must be a date like 31/12/1999"),
    ("anniversary", "06/01/2001", "format:date", "must be a date like 1999-12-31"),
])
def test_formats(field, value, rule, message):
    v = one({field: value})
    assert (v.field, v.rule, v.message) == (field, rule, message)


@pytest.mark.parametrize("field, value", [
    ("email", "ann.o'neil+tag@sub.example.co.uk"),
    ("email", "ünïcode@exämple.com"),
    ("phone", "+442079460958"),
    ("phone", "+16045550123"),
    ("state", "DC"), ("state", "PR"),
    ("birthday", "1/2/1999"),
    ("anniversary", date(2001, 6, 1)),
])
def test_formats_accept(field, value):
    assert check({field: value}) == []


def test_date_format_other_patterns_use_strptime():
    schema = StreamSchema("s", [Field("when", type="date", format="date:%B %d, %Y")])
    assert schema.validate({"when": "March 24, 1975"}) == []
    v = schema.validate({"when": "24/03/1975"})[0]
    assert v.message == "must be a date like December 31, 1999"


@pytest.mark.parametrize("field, value, message", [
    ("rating", "7", "must be a whole number (got text)"),
    ("rating", True, "must be a whole number (got true/false)"),
    ("rating", 7.5, "must be a whole number (got a number)"),
    ("price", "1.5", "must be a number (got text)"),
    ("price", float("nan"), "must be a number (got NaN)"),
    ("kpa_taken", "true", "must be true or false (got text)"),
    ("kpa_taken", 1, "must be true or false (got a whole number)"),
    ("first_name", 12, "must be text (got a whole number)"),
    ("tags", "a,b", "must be a list (got text)"),
    ("birthday", date(1975, 3, 24), "must be a date as text (got date)"),
    ("anniversary", 20010601, "must be a date (got a whole number)"),
])
def test_types_are_not_coerced(field, value, message):
    v = one({field: value})
    assert (v.field, v.rule, v.message) == (field, "type", message)


def test_range():
    assert one({"rating": 3}).message == "must be at least 4"
    assert one({"rating": 11}).message == "must be at most 10"
    assert one({"rating": 11}).rule == "range"
    assert one({"price": -0.5}).message == "must be at least 0"
    assert check({"rating": 4}) == [] and check({"rating": 10}) == []
    assert check({"price": 3}) == []


def test_list_rules_apply_to_the_list_and_each_item():
    v = one({"tags": ["a", "b", "c", "d"]})
    assert (v.rule, v.message) == ("max_items", "must have at most 3 items (got 4)")
    v = one({"tags": ["a", "toolong"]})
    assert (v.rule, v.message, v.excerpt) == ("max_length",
                                              "item must be at most 5 characters (got 7)",
                                              "'toolong'")
    v = one({"tags": ["a", 5]})
    assert (v.rule, v.message) == ("type", "items must be text (got a whole number)")
    v = one({"emails": ["ok@example.com", "bad"]})
    assert (v.rule, v.message) == ("format:email", "item is not a valid email address")


def test_several_violations_are_all_reported():
    rules = [v.rule for v in SCHEMA.validate({"first_name": "x" * 11, "status": "x",
                                              "rating": 1})]
    assert sorted(rules) == ["any_of", "enum", "max_length", "range"]


def test_unknown_fields_are_reported_but_open_prefixes_are_allowed():
    v = one({"favourite_colour": "blue"})
    assert (v.field, v.rule, v.message) == ("favourite_colour", "unknown",
                                            "is not a field of leads")
    assert check({"custom.Anything Goes": "x"}) == []
    v = one({"custom.Notes": 5})
    assert v.rule == "type"
    assert SCHEMA.field("custom.Notes") == Field("custom.Notes")
    assert SCHEMA.field("custom.") is None
    assert SCHEMA.field("nope") is None
    assert SCHEMA.field("email").format == "email"


def test_refs_are_accepted_in_place_of_values():
    assert check({"owner_id": Ref("contacts", "17"), "rating": Ref("contacts", "1")}) == []


def test_excerpt_is_cut_to_about_forty_characters():
    assert excerpt("x" * 100) == repr("x" * 100)[:37] + "..."
    assert len(excerpt("x" * 100)) == 40
    assert excerpt(5) == "5"
    v = one({"first_name": "y" * 200})
    assert len(v.excerpt) == 40


def test_describe_rows():
    rows = {r["name"]: r for r in SCHEMA.describe()}
    assert rows["first_name"] == {"name": "first_name", "type": "string", "required": True,
                                  "any_of": "", "limits": "≤10 chars", "enum": None,
                                  "format": None, "description": "Given name"}
    assert rows["email"]["any_of"] == "phone"
    assert rows["status"]["enum"] == ["default", "backlog", "archived"]
    assert rows["rating"]["limits"] == "≥4, ≤10"
    assert rows["tags"]["limits"] == "each item ≤5 chars, ≤3 items"
    assert rows["birthday"]["format"] == "date:%d/%m/%Y"
    assert rows["custom.*"]["type"] == "string"


def test_bad_declarations_are_refused():
    with pytest.raises(ValueError, match="unknown type"):
        Field("x", type="integer")
    with pytest.raises(ValueError, match="unknown format"):
        Field("x", format="e-mail")
    with pytest.raises(ValueError, match="declared twice"):
        StreamSchema("s", [Field("a"), Field("a")])
    with pytest.raises(ValueError, match="any_of names unknown field"):
        StreamSchema("s", [Field("a")], rules=[AnyOf(("a", "b"))])


@pytest.mark.parametrize("pattern", ["%d/%m/%Y", "%Y-%m-%d", "%m/%d/%Y", "%d %m %Y"])
def test_fast_date_formats_accept_exactly_what_strptime_accepts(pattern):
    from datetime import datetime
    schema = StreamSchema("s", [Field("when", type="date", format=f"date:{pattern}")])
    parts = {"d": ["1", "01", " 1", "28", "29", "30", "31", "32", "0", "x"],
             "m": ["1", "02", "12", "13", " 2"], "Y": ["1999", "2000", "2024", "99", "02024"]}
    samples = {" 01/02/1999", "01/02/1999 ", ""}
    for d in parts["d"]:
        for m in parts["m"]:
            for y in parts["Y"]:
                for sep in ("/", "-", " ", "  "):
                    samples |= {sep.join((d, m, y)), sep.join((y, m, d)), sep.join((m, d, y))}
    for text in samples:
        try:
            datetime.strptime(text, pattern)
            expected = True
        except ValueError:
            expected = False
        assert (schema.validate({"when": text}) == []) is (expected or text == ""), text
