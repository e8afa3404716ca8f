import pytest

from migrator.errors import JobError, MappingError
from migrator.yamlutil import LDict, LList, load_yaml, where

DOC = """\
source: realvolve
streams:
  contacts:
    fields:
      firstName: first_name
      tags:
        - strip
        - {truncate: 5}
"""


def test_dicts_and_lists_carry_their_lines_and_file():
    data = load_yaml(DOC, "m.yaml")
    assert isinstance(data, LDict) and data.line == 1 and data.filename == "m.yaml"
    assert data.line_of("streams") == 2
    fields = data["streams"]["contacts"]["fields"]
    assert fields.line == 5
    assert fields.line_of("firstName") == 5
    assert fields.line_of("tags") == 6
    tags = fields["tags"]
    assert isinstance(tags, LList) and tags.line == 7 and tags.filename == "m.yaml"
    assert tags.line_of(0) == 7 and tags.line_of(1) == 8
    assert tags[1].line == 8 and tags[1].line_of("truncate") == 8


def test_line_of_falls_back_to_the_container_line():
    data = load_yaml(DOC, "m.yaml")
    contacts = data["streams"]["contacts"]
    assert contacts.line_of("missing") == contacts.line == 4
    assert data["streams"]["contacts"]["fields"]["tags"].line_of(9) == 7


def test_where_formats_file_and_line():
    data = load_yaml(DOC, "m.yaml")
    fields = data["streams"]["contacts"]["fields"]
    assert where(fields, "tags") == "m.yaml:6"
    assert where(fields["tags"]) == "m.yaml:7"
    assert where({"plain": 1}, "plain", "job.yaml") == "job.yaml"
    assert where("scalar") == "<unknown>"


def test_plain_values_are_ordinary_python():
    data = load_yaml("a: 1\nb: 2.5\nc: null\nd: [x, y]\n", "f")
    assert data == {"a": 1, "b": 2.5, "c": None, "d": ["x", "y"]}
    assert data["d"] == ["x", "y"]


def test_booleans_follow_yaml_1_2_so_state_codes_and_yes_stay_text():
    data = load_yaml("a: yes\nb: NO\nc: on\nd: true\ne: False\nmap: {Y: 1, N: 0}\n", "f")
    assert data["a"] == "yes" and data["b"] == "NO" and data["c"] == "on"
    assert data["d"] is True and data["e"] is False
    assert set(data["map"]) == {"Y", "N"}


@pytest.mark.parametrize("text, line, reason", [
    ("a: 1\nb: [1,\n", 2, "did not find expected node content"),
    ("a: b: c\n", 1, "mapping values are not allowed"),
    ("a:\n  - x\n - y\n", 3, ""),
    ("a: 1\na: 2\n", 2, "duplicate key 'a' (first at line 1)"),
    ("? [1, 2]\n: x\n", 1, "a mapping key must be a plain value"),
    ("x: !!python/object:os.system ls\n", 1, "could not determine a constructor"),
    ("a: \x07\n", 1, "control characters are not allowed"),
])
def test_syntax_errors_are_one_line_with_file_and_line(text, line, reason):
    with pytest.raises(JobError) as info:
        load_yaml(text, "job.yaml")
    message = str(info.value)
    assert message.startswith(f"job.yaml:{line}: invalid YAML: ")
    assert reason in message
    assert "\n" not in message and "Traceback" not in message


def test_error_class_is_chosen_by_the_caller():
    with pytest.raises(MappingError, match=r"^m\.yaml:1: invalid YAML"):
        load_yaml("a: [", "m.yaml", MappingError)


def test_merge_keys_may_be_overridden_without_counting_as_duplicates():
    data = load_yaml("base: &b {p: 1, q: 2}\nx:\n  <<: *b\n  q: 3\n", "f")
    assert data["x"] == {"p": 1, "q": 3}
    assert data["x"].line_of("q") == 4


def test_empty_document_is_none():
    assert load_yaml("", "f") is None
    assert load_yaml("# only a comment\n", "f") is None
