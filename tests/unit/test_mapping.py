import textwrap

import pytest

from migrator.errors import MappingError
from migrator.mapping import (
    FieldError, MapResult, Mapping, Ref, StreamMapping, compile_mapping, load_mapping,
)
from migrator.schema import AnyOf, Field, StreamSchema, Violation
from migrator.yamlutil import load_yaml

CONTACTS = StreamSchema("contacts", [
    Field("firstName"), Field("lastName"), Field("name"), Field("email", format="email"),
    Field("phone", format="phone_e164"), Field("tags", type="list"), Field("source"),
    Field("status", enum=("new_lead", "active")), Field("birthday"), Field("owner_id"),
    Field("spouse_ids", type="list"), Field("state"), Field("notes_count", type="int"),
], rules=[AnyOf(("email", "phone"))], open_prefixes=("custom.",))
NOTES = StreamSchema("notes", [Field("body", required=True), Field("contact_id")])
SCHEMAS = {"contacts": CONTACTS, "notes": NOTES}

EXAMPLE = """\
source: realvolve
target: rei
defaults: {region: US}
streams:
  contacts:
    to: contacts
    match_on: [email, phone]
    where:   [{path: email_addresses, not_empty: true}]
    skip_if: [{path: status, in: [Deleted, Spam]}]
    fields:
      firstName: first_name
      email: {path: "email_addresses[0].email_address", transform: [strip, lower]}
      phone: {path: "phone_numbers[0].plain_phone_number", transform: phone_e164, on_error: drop}
      tags:  {path: "tags[*].name", transform: [unique]}
      source: {value: "Realvolve import"}
      name:  {template: "{first_name} {last_name}"}
      status: {path: contact_status, map: {Lead: new_lead, Client: active}, default: new_lead}
      birthday: {path: birth_date, transform: [{date: {format: "%d/%m/%Y"}}]}
      owner_id: {ref: contacts, path: "contact_ids[0]"}
  notes:
    fields:
      body: {path: text, transform: strip}
      contact_id: {ref: contacts, path: contact_id}
"""

RECORD = {
    "first_name": "Ann", "last_name": "Lee",
    "email_addresses": [{"email_address": "  Ann.Lee@Example.COM "}],
    "phone_numbers": [{"plain_phone_number": "(415) 555-0123"}],
    "tags": [{"name": "Buyer"}, {"name": "buyer"}, {"name": "VIP"}],
    "contact_status": "Client",
    "birth_date": "1975-03-24",
    "contact_ids": [17],
    "status": "Active",
}


def load(text=EXAMPLE, **kwargs):
    return load_mapping(text, schemas=kwargs.pop("schemas", SCHEMAS),
                        filename=kwargs.pop("filename", "m.yaml"), **kwargs)


def stream(fields_yaml, extra="", schemas=None):
    text = ("source: realvolve\ntarget: rei\nstreams:\n  contacts:\n" + extra
            + "    fields:\n" + textwrap.indent(textwrap.dedent(fields_yaml), "      "))
    return load(text, schemas=schemas or SCHEMAS).streams["contacts"]


# ---- the compiled mapping ------------------------------------------------------------


def test_example_compiles_with_streams_in_file_order():
    mapping = load()
    assert isinstance(mapping, Mapping)
    assert (mapping.source, mapping.target, mapping.path) == ("realvolve", "rei", "m.yaml")
    assert list(mapping.streams) == ["contacts", "notes"]
    contacts = mapping.streams["contacts"]
    assert isinstance(contacts, StreamMapping)
    assert (contacts.source_stream, contacts.target_stream) == ("contacts", "contacts")
    assert contacts.match_on == ("email", "phone")
    assert contacts.refs == {"owner_id": "contacts"}
    assert contacts.schema is CONTACTS
    assert contacts.uses_paths == {"first_name", "last_name", "email_addresses",
                                   "phone_numbers", "tags", "contact_status", "birth_date",
                                   "contact_ids", "status"}
    assert contacts.fields["email"].transforms == ("strip", "lower")
    assert contacts.fields["status"].transforms == ("map", "default")
    assert contacts.fields["name"].kind == "template"
    assert contacts.fields["email"].line == 12
    assert mapping.streams["notes"].refs == {"contact_id": "contacts"}


def test_apply_maps_a_record():
    result = load().streams["contacts"].apply(RECORD)
    assert isinstance(result, MapResult)
    assert result.skipped is None and result.errors == []
    assert result.data == {
        "firstName": "Ann",
        "email": "ann.lee@example.com",
        "phone": "+14155550123",
        "tags": ["Buyer", "VIP"],
        "source": "Realvolve import",
        "name": "Ann Lee",
        "status": "active",
        "birthday": "24/03/1975",
        "owner_id": Ref("contacts", "17"),
    }
    assert CONTACTS.validate(result.data) == []


def test_empty_values_are_left_out():
    contacts = load().streams["contacts"]
    data = contacts.apply({"email_addresses": [{"email_address": "a@b.co"}], "tags": [],
                           "first_name": ""}).data
    assert data == {"email": "a@b.co", "source": "Realvolve import", "status": "new_lead"}


def test_where_keeps_only_records_matching_all_conditions():
    contacts = load().streams["contacts"]
    result = contacts.apply({"first_name": "No Email"})
    assert result.data is None
    assert result.skipped == "where: email_addresses not_empty"


def test_skip_if_skips_records_matching_any_condition():
    contacts = load().streams["contacts"]
    result = contacts.apply({**RECORD, "status": "spam"})
    assert result.data is None and result.skipped == "skip_if: status in [Deleted, Spam]"


@pytest.mark.parametrize("condition, value, keep", [
    ("{path: s, equals: Active}", "active", True),
    ("{path: s, equals: Active}", "Closed", False),
    ("{path: s, equals: 4}", "4", True),
    ("{path: s, equals: 4}", 4.0, True),
    ("{path: s, not_equals: Active}", "Closed", True),
    ("{path: s, not_equals: Active}", "ACTIVE", False),
    ("{path: s, in: [a, b]}", "B", True),
    ("{path: s, in: [a, b]}", "c", False),
    ("{path: s, in: [a, b]}", ["x", "b"], True),
    ("{path: s, not_in: [a, b]}", "c", True),
    ("{path: s, not_in: [a, b]}", None, True),
    ("{path: s, empty: true}", "  ", True),
    ("{path: s, empty: true}", "x", False),
    ("{path: s, empty: false}", "x", True),
    ("{path: s, not_empty: true}", [], False),
    ("{path: s, not_empty: true}", 0, True),
    ("{path: s, not_empty: false}", None, True),
    ("{path: s, matches: '^\\d{5}$'}", "92103", True),
    ("{path: s, matches: '^\\d{5}$'}", 92103, True),
    ("{path: s, matches: '^\\d{5}$'}", "9210", False),
    ("{path: s, matches: 'VIP'}", ["a", "VIP"], True),
    ("{path: s, matches: 'x'}", None, False),
    ("{path: s, equals: null}", None, True),
])
def test_conditions(condition, value, keep):
    mapping = stream("source: {value: x}\n", extra=f"    where: [{condition}]\n")
    assert (mapping.apply({"s": value}).data is not None) is keep


def test_where_accepts_a_single_condition_and_conditions_count_in_uses_paths():
    mapping = stream("source: {value: x}\n", extra="    where: {path: a.b, equals: 1}\n")
    assert mapping.apply({"a": {"b": 1}}).data == {"source": "x"}
    assert mapping.uses_paths == {"a"}


def test_template_collapses_whitespace_and_missing_parts():
    mapping = stream("""\
        name: {template: "{title} {first_name}  {last_name} ({tags[*].name})"}
        source: {template: "{{literal}} {n}"}
        """)
    data = mapping.apply({"first_name": "Ann", "tags": [{"name": "a"}, {"name": "b"}],
                          "n": 3.0}).data
    assert data == {"name": "Ann (a, b)", "source": "{literal} 3"}
    # Every placeholder empty: nothing, not the template's bare punctuation.
    assert mapping.apply({}).data == {}
    assert stream('name: {template: "{a} {b}"}\n').apply({}).data == {}


def test_template_with_transforms():
    mapping = stream('name: {template: "{first} {last}", transform: [upper, {truncate: 5}]}\n')
    assert mapping.apply({"first": "ann", "last": "lee"}).data == {"name": "ANN L"}


def test_ref_values():
    mapping = stream("""\
        owner_id: {ref: contacts, path: owner, transform: strip}
        spouse_ids: {ref: contacts, path: "spouses[*].id"}
        """)
    assert mapping.apply({"owner": " 42 "}).data == {"owner_id": Ref("contacts", "42")}
    assert mapping.apply({"owner": 17}).data == {"owner_id": Ref("contacts", "17")}
    assert mapping.apply({"owner": None, "spouses": []}).data == {}
    assert mapping.refs == {"owner_id": "contacts", "spouse_ids": "contacts"}
    result = mapping.apply({"spouses": [{"id": 1}, {"id": 2}]})
    assert result.data is None
    assert result.errors[0].field == "spouse_ids" and result.errors[0].rule == "transform:ref"
    assert "needs one source id" in result.errors[0].message


def test_map_and_default_at_field_level():
    mapping = stream("status: {path: s, map: {Lead: new_lead, 4: active}, default: new_lead}\n")
    assert mapping.apply({"s": "lead"}).data == {"status": "new_lead"}
    assert mapping.apply({"s": 4}).data == {"status": "active"}
    assert mapping.apply({"s": "Other"}).data == {"status": "new_lead"}
    assert mapping.apply({}).data == {"status": "new_lead"}
    strict = stream("status: {path: s, map: {Lead: new_lead}}\n")
    result = strict.apply({"s": "Other"})
    assert result.data is None
    assert result.errors == [Violation("status", "transform:map",
                                       "no mapping for value 'Other'", "'Other'")]
    assert strict.apply({}).data == {}


def test_on_error_fail_fails_the_record_with_every_field_error():
    mapping = stream("""\
        phone: {path: p, transform: phone_e164}
        birthday: {path: b, transform: [strip, date]}
        firstName: f
        """)
    result = mapping.apply({"p": "123", "b": " someday ", "f": "Ann"})
    assert result.data is None and result.skipped is None
    assert result.errors == [
        Violation("phone", "transform:phone_e164", "not a valid phone number", "'123'"),
        Violation("birthday", "transform:date", "not a valid date: 'someday'", "'someday'"),
    ]


def test_on_error_drop_drops_only_that_field():
    mapping = stream("""\
        phone: {path: p, transform: phone_e164, on_error: drop}
        firstName: f
        """)
    result = mapping.apply({"p": "123", "f": "Ann"})
    assert result.data == {"firstName": "Ann"} and result.errors == []


def test_an_unexpected_library_error_fails_only_the_record():
    mapping = stream("firstName: {path: f, transform: lower}\n")
    result = mapping.apply({"f": {"nested": "object"}})
    assert result.data is None
    assert result.errors[0].rule == "transform:lower"


def test_defaults_region_reaches_phone_e164():
    text = ("source: a\ntarget: b\ndefaults: {region: GB}\nstreams:\n  contacts:\n"
            "    fields:\n      phone: {path: p, transform: phone_e164}\n")
    mapping = load(text).streams["contacts"]
    assert mapping.apply({"p": "020 7946 0958"}).data == {"phone": "+442079460958"}


def test_open_prefix_fields_and_constants_are_fresh_per_record():
    mapping = stream("""\
        custom.Source Name: {value: [a, b]}
        """)
    first = mapping.apply({}).data
    assert type(first["custom.Source Name"]) is list
    first["custom.Source Name"].append("mutated")
    assert mapping.apply({}).data == {"custom.Source Name": ["a", "b"]}


def test_field_error_carries_field_rule_and_message():
    error = FieldError("phone", "transform:phone_e164", "not a valid phone number", "'1'")
    assert (error.field, error.rule, error.message) == ("phone", "transform:phone_e164",
                                                        "not a valid phone number")
    assert error.violation() == Violation("phone", "transform:phone_e164",
                                          "not a valid phone number", "'1'")


# ---- digest, files, inline mappings ---------------------------------------------------


def test_digest_ignores_layout_but_not_meaning():
    base = load().digest
    assert len(base) == 64
    relaid = EXAMPLE.replace("source: realvolve\n", "# a comment\nsource:   realvolve\n")
    assert load(relaid).digest == base
    assert load(EXAMPLE.replace("Realvolve import", "RV import")).digest != base
    assert load(EXAMPLE.replace("{Lead: new_lead,", "{'Lead': new_lead,")).digest == base
    assert load(EXAMPLE.replace("contact_ids[0]", "contact_ids[1]")).digest != base


def test_load_from_a_path(tmp_path):
    path = tmp_path / "realvolve-rei.yaml"
    path.write_text(EXAMPLE)
    mapping = load_mapping(path, schemas=SCHEMAS)
    assert mapping.path == str(path)
    assert load_mapping(str(path), schemas=SCHEMAS.get).digest == mapping.digest
    with pytest.raises(MappingError, match=r"missing\.yaml: cannot read mapping"):
        load_mapping(str(tmp_path / "missing.yaml"), schemas=SCHEMAS)


def test_errors_in_a_file_name_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(EXAMPLE.replace("firstName: first_name", "fristName: first_name"))
    with pytest.raises(MappingError) as info:
        load_mapping(path, schemas=SCHEMAS)
    assert str(info.value).startswith(f"{path}:11: 'fristName' is not a field")


def test_compile_mapping_inline_in_a_job_file():
    job = load_yaml("job: x\nmapping:\n" + textwrap.indent(EXAMPLE, "  "), "job.yaml")
    mapping = compile_mapping(job["mapping"], schemas=SCHEMAS, filename="job.yaml")
    assert mapping.path == "job.yaml"
    assert mapping.digest == load().digest
    bad = load_yaml("job: x\nmapping:\n" + textwrap.indent(
        EXAMPLE.replace("[strip, lower]", "[strip, lowr]"), "  "), "job.yaml")
    with pytest.raises(MappingError, match=r"^job\.yaml:14: unknown transform 'lowr' "
                                           r"\(did you mean 'lower'\?\)$"):
        compile_mapping(bad["mapping"], schemas=SCHEMAS, filename="job.yaml")


# ---- refusals: one line, file:line, a suggestion where one helps ----------------------

HEAD = "source: realvolve\ntarget: rei\nstreams:\n  contacts:\n"


@pytest.mark.parametrize("body, expected", [
    ("    fields:\n      fristName: first_name\n",
     "m.yaml:6: 'fristName' is not a field of rei contacts (did you mean 'firstName'?)"),
    ("    fields:\n      FirstName: first_name\n",
     "m.yaml:6: 'FirstName' is not a field of rei contacts (did you mean 'firstName'?)"),
    ("    to: contcts\n    fields:\n      firstName: first_name\n",
     "m.yaml:5: rei has no stream 'contcts' (did you mean 'contacts'?)"),
    ("    fields:\n      email: {path: email, transform: [strip, lowr]}\n",
     "m.yaml:6: unknown transform 'lowr' (did you mean 'lower'?)"),
    ("    fields:\n      email:\n        path: email\n        transform:\n          - strip\n"
     "          - lowr\n",
     "m.yaml:10: unknown transform 'lowr' (did you mean 'lower'?)"),
    ("    fields:\n      email: {path: e, transform: [{truncate: -1}]}\n",
     "m.yaml:6: transform 'truncate': needs a length of at least 1 (got -1)"),
    ("    fields:\n      email:\n        path: e\n        transform: {date: {fromat: x}}\n",
     "m.yaml:8: transform 'date': unknown option 'fromat' (expected format, dayfirst)"),
    ("    fields:\n      email: {path: e, transform: [{strip: null, lower: null}]}\n",
     "m.yaml:6: write one transform per item, e.g. [strip, {truncate: 50}]"),
    ("    fields:\n      email: {path: 'email_addresses[0'}\n",
     "m.yaml:6: malformed path 'email_addresses[0': incomplete expression"),
    ("    fields:\n      email: {transform: strip}\n",
     "m.yaml:6: field 'email' needs one of path, value, template or ref"),
    ("    fields:\n      email:\n        path: a\n        value: b\n",
     "m.yaml:8: field 'email' takes one of path, value, template or ref, not path and value"),
    ("    fields:\n      owner_id: {ref: contacts, template: '{a}', path: b}\n",
     "m.yaml:6: field 'owner_id' takes one of path, value, template or ref, "
     "not ref and template"),
    ("    fields:\n      owner_id: {ref: contacts}\n",
     "m.yaml:6: field 'owner_id': ref needs a path to the referenced record's source id"),
    ("    fields:\n      owner_id: {ref: contact, path: x}\n",
     "m.yaml:6: ref names 'contact', which is not a stream of this mapping "
     "(did you mean 'contacts'?)"),
    ("    fields:\n      email:\n        path: a\n        transfrom: strip\n",
     "m.yaml:8: unknown key 'transfrom' in field 'email' (did you mean 'transform'?)"),
    ("    feilds:\n      email: a\n",
     "m.yaml:5: unknown key 'feilds' in stream 'contacts' (did you mean 'fields'?)"),
    ("    match_on: [email, phone]\n    fields:\n      email: a\n",
     "m.yaml:5: match_on names 'phone', which this stream does not map"),
    ("    match_on:\n      - email\n      - phnoe\n    fields:\n      email: a\n      phone: b\n",
     "m.yaml:7: match_on names 'phnoe', which this stream does not map (did you mean 'phone'?)"),
    ("    where: [{path: a, equals: 1, in: [2]}]\n    fields:\n      email: a\n",
     "m.yaml:5: a condition needs exactly one of equals, not_equals, in, not_in, empty, "
     "not_empty, matches (got equals, in)"),
    ("    skip_if:\n      - path: a\n        matchs: x\n    fields:\n      email: a\n",
     "m.yaml:7: unknown key 'matchs' in a condition (did you mean 'matches'?)"),
    ("    skip_if: [{path: a, matches: '('}]\n    fields:\n      email: a\n",
     "m.yaml:5: bad regular expression: missing ), unterminated subpattern at position 0"),
    ("    skip_if: [{path: 'a[', equals: x}]\n    fields:\n      email: a\n",
     "m.yaml:5: malformed path 'a[': incomplete expression"),
    ("    skip_if: [{equals: x}]\n    fields:\n      email: a\n",
     "m.yaml:5: a condition needs a path"),
    ("    skip_if: [{path: a, in: x}]\n    fields:\n      email: a\n",
     "m.yaml:5: in takes a list of values, e.g. [Deleted, Spam]"),
    ("    skip_if: [{path: a, empty: yes}]\n    fields:\n      email: a\n",
     "m.yaml:5: empty takes true or false"),
    ("    skip_if: [status]\n    fields:\n      email: a\n",
     "m.yaml:5: a condition is a mapping like {path: status, equals: Active}, not 'status'"),
    ("    fields:\n      email: {template: '{a} {'}\n",
     "m.yaml:6: unbalanced brace in template (write {{ or }} for a literal brace)"),
    ("    fields:\n      email: {template: 'x {} y'}\n",
     "m.yaml:6: empty {} in template; put a path inside"),
    ("    fields:\n      phone: {value: '123', transform: phone_e164}\n",
     "m.yaml:6: field 'phone': transform 'phone_e164' refuses the value: "
     "not a valid phone number"),
    ("    fields:\n      phone: {path: p, on_error: skip}\n",
     "m.yaml:6: on_error must be fail or drop (got 'skip')"),
    ("    fields:\n      status: {path: s, map: [a]}\n",
     "m.yaml:6: map must be a table of source value: target value"),
    ("    fields:\n      status: {path: s, default: null}\n",
     "m.yaml:6: transform 'default': needs the value to use when the field is empty"),
    ("    fields:\n      status: 5\n",
     "m.yaml:6: field 'status' needs a source path or a spec with path, value, template "
     "or ref (got 5)"),
    ("    fields: {}\n",
     "m.yaml:5: stream 'contacts' needs fields: target field -> source path or spec"),
    ("    fields:\n      status: [\n",
     "m.yaml:6: invalid YAML: while parsing a flow node; did not find expected node content"),
])
def test_refusals(body, expected):
    with pytest.raises(MappingError) as info:
        load(HEAD + body)
    assert str(info.value) == expected


@pytest.mark.parametrize("text, expected", [
    ("source: a\ntarget: b\n", "m.yaml:1: the mapping needs 'streams'"),
    ("source: a\ntarget: b\nstreams: {}\n",
     "m.yaml:3: streams must map source stream names to their field mappings"),
    ("- a\n", "m.yaml:1: a mapping file must be a YAML mapping with source, target and streams"),
    ("source: a\ntarget: b\ndefaults: {regin: US}\nstreams: {contacts: {fields: {email: a}}}\n",
     "m.yaml:3: unknown key 'regin' in defaults (did you mean 'region'?)"),
    ("source: a\ntarget: b\ndefaults: {region: XX}\nstreams: {contacts: {fields: {email: a}}}\n",
     "m.yaml:3: unknown region 'XX' (a 2-letter country code such as US)"),
    ("source: a\ntarget: b\nstraems: {}\n",
     "m.yaml:3: unknown key 'straems' in the mapping (did you mean 'streams'?)"),
    ("source: a\ntarget: [b]\nstreams: {contacts: {fields: {email: a}}}\n",
     "m.yaml:2: target must be a system name"),
    ("source: a\ntarget: b\nstreams:\n  contacts:\n", "m.yaml:4: stream 'contacts' needs a "
     "mapping with fields"),
])
def test_top_level_refusals(text, expected):
    with pytest.raises(MappingError) as info:
        load(text)
    assert str(info.value) == expected


def test_unknown_source_stream_is_refused_when_the_source_lists_its_streams():
    with pytest.raises(MappingError) as info:
        load(HEAD + "    fields: {email: a}\n", source_streams=["contact", "notes"])
    assert str(info.value) == "m.yaml:4: realvolve has no stream 'contacts' " \
                              "(did you mean 'contact'?)"
    assert load(HEAD + "    fields: {email: a}\n", source_streams=["contacts"])


def test_schemas_may_be_a_callable():
    mapping = load_mapping(HEAD + "    fields: {email: a}\n", schemas=SCHEMAS.get)
    assert mapping.path == "<mapping>"
    with pytest.raises(MappingError, match=r"^<mapping>:5: rei has no stream 'leads'$"):
        load_mapping(HEAD + "    to: leads\n    fields: {email: a}\n", schemas=SCHEMAS.get)


def test_a_path_that_fails_on_a_record_fails_that_field_only():
    mapping = stream("""\
        name: {path: "join(', ', tags)"}
        source: {path: "join(', ', tags)", on_error: drop}
        firstName: {template: "{join(' ', tags)}"}
        """, extra="    skip_if: [{path: \"join('', tags)\", equals: x}]\n")
    assert mapping.apply({"tags": ["a", "b"]}).data == {"name": "a, b", "source": "a, b",
                                                       "firstName": "a b"}
    result = mapping.apply({"tags": [1]})
    assert result.data is None
    assert [(e.field, e.rule) for e in result.errors] == [("name", "path"),
                                                          ("firstName", "transform:template")]
    assert result.errors[0].message.startswith("cannot read join(', ', tags): ")


def test_template_with_every_placeholder_empty_gives_nothing():
    from migrator.mapping import compile_mapping
    from migrator.schema import Field, StreamSchema
    from migrator.yamlutil import load_yaml
    text = "source: x\ntarget: y\nstreams:\n  contacts:\n    fields:\n      a: {template: \"{street}, {city}\"}\n"
    sm = compile_mapping(load_yaml(text, "m.yaml"), schemas={"contacts": StreamSchema("contacts", [Field("a")])},
                         filename="m.yaml").streams["contacts"]
    assert sm.apply({"street": "", "city": None}).data == {}
    assert sm.apply({"street": "1 Main St", "city": ""}).data == {"a": "1 Main St,"}


def test_repeated_texts_map_the_same_every_time_failures_included():
    """Fields remember what their transforms made of a text; a remembered list is the
    record's own copy, and a text that failed fails again (it is never remembered)."""
    mapping = stream("""\
        tags: {path: t, transform: [split, unique]}
        phone: {path: p, transform: phone_e164}
        name: {path: w, transform: phone_e164, on_error: drop}
        source: {path: s, default: Import}
        """)
    first = mapping.apply({"t": "a, b, a", "p": "(415) 555-2671", "s": None})
    second = mapping.apply({"t": "a, b, a", "p": "(415) 555-2671"})
    assert first.data == second.data == {"tags": ["a", "b"], "phone": "+14155552671", "source": "Import"}
    first.data["tags"].append("mine")
    assert mapping.apply({"t": "a, b, a"}).data == {"tags": ["a", "b"], "source": "Import"}
    for _ in range(2):
        bad = mapping.apply({"p": "12", "t": "x"})
        assert bad.data is None and [(e.field, e.rule) for e in bad.errors] == [("phone", "transform:phone_e164")]
    for _ in range(2):
        assert mapping.apply({"w": "12"}).data == {"source": "Import"}, "on_error: drop drops the field"


def test_keep_all_sends_the_whole_record_with_the_mapped_fields_laid_over_it():
    from migrator.connectors.files import OpenSchema
    text = textwrap.dedent("""\
        source: realvolve
        target: jsonl
        streams:
          contacts:
            keep_all: true
            fields:
              email: {path: "emails[0].address", transform: [lower]}
        """)
    m = load_mapping(text, schemas=lambda s: OpenSchema(s))
    record = {"id": 7, "first": "", "emails": [{"address": "ANN@X.IO"}], "tags": [], "note": None}
    out = m.streams["contacts"].apply(record)
    assert out.data == {**record, "email": "ann@x.io"}   # empty values and nested lists kept
    assert "anything" in m.streams["contacts"].uses_paths   # the source fetches every part
    plain = load_mapping(text.replace("    keep_all: true\n", ""), schemas=lambda s: OpenSchema(s))
    assert plain.streams["contacts"].apply(record).data == {"email": "ann@x.io"}


def test_keep_all_must_be_true_or_false():
    from migrator.connectors.files import OpenSchema
    text = "source: a\ntarget: csv\nstreams:\n  contacts:\n    keep_all: yes please\n"
    with pytest.raises(MappingError, match=r"<mapping>:5: keep_all must be true or false"):
        load_mapping(text, schemas=lambda s: OpenSchema(s))
