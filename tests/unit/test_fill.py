"""Fill rates (migrator/mapping/fill.py): pure counting of what each source path gave."""
from migrator.mapping.fill import FillCounter, dead_lines, dead_paths, table_lines

from tests.unit.test_mapping import stream

FIELDS = """\
firstName: frist_name
lastName: last_name
email: {path: "email_addresses[0].emial_address", transform: [strip, lower]}
phone: {path: "phone_numbers[0].plain_phone_number", transform: phone_e164}
tags: {path: "tags[*].nmae"}
source: {value: "Realvolve import"}
name: {template: "{first_name} {lsat_name}"}
status: {path: contact_status, map: {Lead: new_lead}, default: new_lead}
birthday: {path: "join(' ', birht_parts)"}
owner_id: {ref: contacts, path: "contact_ids[0]"}
"""


def records(n=4):
    out = []
    for i in range(n):
        out.append({
            "first_name": f"Ann{i}", "last_name": "Lee" if i % 2 else "",
            "email_addresses": [{"email_address": f"a{i}@x.com"}] if i else [],
            "phone_numbers": [{"plain_phone_number": "not a phone"}],
            "tags": [{"name": "Buyer"}], "contact_status": None,
            "birth_parts": ["1975", "03"], "contact_ids": [i],
        })
    return out


def rows_by(counter):
    return {(r["field"], r["path"]): r for r in counter.rows()}


def test_counts_what_each_path_gave_before_transforms():
    counter = FillCounter.for_stream(stream(FIELDS))
    counter.feed(records(4))
    rows = rows_by(counter)
    assert counter.records == 4
    # a constant reads no path; a template counts each placeholder; a ref counts its path
    assert ("source", "'Realvolve import'") not in rows and not any(f == "source" for f, _ in rows)
    assert rows[("name", "first_name")]["filled"] == 4
    assert rows[("name", "lsat_name")]["filled"] == 0
    assert rows[("owner_id", "contact_ids[0]")]["filled"] == 4   # 0 is a value
    assert rows[("lastName", "last_name")]["filled"] == 2 and rows[("lastName", "last_name")]["rate"] == 0.5
    # a value its transform refuses still counts: the path gave it
    assert rows[("phone", "phone_numbers[0].plain_phone_number")]["filled"] == 4
    assert rows[("status", "contact_status")]["filled"] == 0
    assert rows[("status", "contact_status")]["status"] == "empty"


def test_missing_keys_get_a_did_you_mean_at_their_own_level():
    counter = FillCounter.for_stream(stream(FIELDS))
    counter.feed(records(4))
    rows = rows_by(counter)
    assert rows[("firstName", "frist_name")]["status"] == "missing"
    assert rows[("firstName", "frist_name")]["did_you_mean"] == "first_name"
    # nested: the keys of the list's items, and the corrected path as a whole
    assert rows[("email", "email_addresses[0].emial_address")]["did_you_mean"] == \
        "email_addresses[0].email_address"
    assert rows[("tags", "tags[*].nmae")]["did_you_mean"] == "tags[*].name"
    assert rows[("name", "lsat_name")]["did_you_mean"] == "last_name"
    # an expression: the root key it reads that no record has
    assert rows[("birthday", "join(' ', birht_parts)")]["did_you_mean"] == "birth_parts"


def test_lines_and_table():
    sm = stream(FIELDS)
    counter = FillCounter.for_stream(sm)
    counter.feed(records(3))
    report = {"streams": [{"stream": "contacts", "fill": counter.to_dict("all")}]}
    lines = dead_lines(report)
    assert "contacts.firstName: path 'frist_name' gave no value in any of 3 records " \
           "(did you mean 'first_name'?)" in lines
    assert not any("contact_status" in line for line in lines)   # its key exists: not a typo
    assert any("contact_status" in line and "empty in every record" in line
               for line in dead_lines(report, missing_only=False))
    assert {row["path"] for _, _, row in dead_paths(report)} == {
        "frist_name", "email_addresses[0].emial_address", "tags[*].nmae", "lsat_name",
        "join(' ', birht_parts)"}
    table = "\n".join(table_lines(report["streams"][0]["fill"]))
    assert "frist_name" in table and "0/3" in table and "first_name" in table and "100.0%" in table
    first = {"streams": [{"stream": "contacts", "fill": counter.to_dict("first page")}]}
    assert "any of the first page's 3 records" in dead_lines(first)[0]


def test_nothing_read_is_not_a_dead_path():
    counter = FillCounter.for_stream(stream(FIELDS))
    counter.feed([])
    report = {"streams": [{"stream": "contacts", "fill": counter.to_dict("all")}]}
    assert dead_paths(report) == [] and table_lines(report["streams"][0]["fill"]) == []


def test_a_path_that_fills_later_is_not_dead_and_stops_probing():
    counter = FillCounter.for_stream(stream("firstName: nick\n"))
    counter.feed([{"name": "a"}] * 3)
    assert counter.paths[0].missed  # probed while it had given nothing
    counter.feed([{"nick": "b"}, {"name": "c"}])
    (row,) = counter.rows()
    assert row["filled"] == 1 and row["read"] == 5 and "status" not in row
    assert counter.paths[0].missed[(0, "nick")] == {"name"}  # not probed once it gave a value


def test_empty_lists_and_null_parents_are_empty_not_missing():
    counter = FillCounter.for_stream(stream("""\
        email: "email_addresses[0].email_address"
        state: "address.state"
        """))
    counter.feed([{"email_addresses": [], "address": None}, {"email_addresses": None, "address": {}}])
    rows = rows_by(counter)
    assert rows[("email", "email_addresses[0].email_address")]["status"] == "empty"
    # {} has no 'state' key at all, but no record was ever missing it beside a value:
    assert rows[("state", "address.state")]["status"] == "missing"
    assert rows[("state", "address.state")]["did_you_mean"] is None


def test_expression_over_the_record_itself_is_unknown_not_missing():
    counter = FillCounter.for_stream(stream(
        'phone: "[@][?phoneType == \'Home\'].phone | [0]"\n'
        'firstName: "phoneType == \'Work\' && phone || null"\n'))
    counter.feed([{"phoneType": "Mobile", "phone": "1"}])
    rows = rows_by(counter)
    assert rows[("phone", "[@][?phoneType == 'Home'].phone | [0]")]["status"] == "unknown"
    # `|| null` reads a key named null that no record has; the others are there
    assert rows[("firstName", "phoneType == 'Work' && phone || null")]["status"] == "empty"


from hypothesis import given, settings, strategies as st  # noqa: E402

from migrator.mapping.compile import _empty  # noqa: E402

VALUES = st.sampled_from([None, "", "x", [], {}, 0, False, 1.5, ["a"], {"b": 1}])
RECORDS = st.lists(st.dictionaries(st.sampled_from(["a", "b", "c"]), st.one_of(
    VALUES, st.lists(st.dictionaries(st.sampled_from(["a", "b"]), VALUES), max_size=2))), max_size=12)


@settings(max_examples=200, deadline=None)
@given(RECORDS, st.integers(min_value=1, max_value=5))
def test_counts_equal_the_mapping_s_own_notion_of_empty_however_paged(records, page):
    sm = stream('firstName: a\nlastName: "b[0].a"\nname: {template: "{c} {b[*].b}"}\n')
    counter = FillCounter.for_stream(sm)
    for i in range(0, len(records), page):
        counter.feed(records[i:i + page])
    assert counter.records == len(records)
    rows = counter.rows()
    for p, row in zip(counter.paths, rows):
        assert p.filled == sum(not _empty(p.get(r)) for r in records), p.path
        if p.path in ("a", "c") and records and not p.filled:
            # a plain key is missing exactly when no record has it
            assert (row["status"] == "missing") == (not any(p.path in r for r in records))
