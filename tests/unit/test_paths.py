import random

import jmespath
import pytest

from migrator.mapping.paths import Path, PathError, compile_path

RECORD = {
    "first_name": "Ann",
    "First Name": "Ann (csv)",
    "E-mail Address": "ann@example.com",
    "Phone (Home)": "555",
    "Home.Phone": "dotted",
    "contact": {"name": {"given": "Ann"}, "tags": ["a"]},
    "email_addresses": [{"email_address": "a@x.com"}, {"email_address": "b@x.com"}],
    "tags": [{"name": "Buyer"}, {"label": "no name"}, "text", {"name": "VIP"}],
    "status": None,
    "count": 0,
}


def test_plain_key_is_a_dict_get():
    path = compile_path("first_name")
    assert isinstance(path, Path) and path.kind == "key" and path.key == "first_name"
    assert path.get(RECORD) == "Ann"
    assert compile_path("missing").get(RECORD) is None
    assert compile_path("count").get(RECORD) == 0
    assert path.roots == {"first_name"}


def test_dotted_and_indexed_chains_use_the_fast_path():
    assert compile_path("contact.name.given").kind == "chain"
    assert compile_path("contact.name.given").get(RECORD) == "Ann"
    assert compile_path("email_addresses[0].email_address").get(RECORD) == "a@x.com"
    assert compile_path("email_addresses[-1].email_address").get(RECORD) == "b@x.com"
    assert compile_path("email_addresses[5].email_address").get(RECORD) is None
    assert compile_path("first_name.deeper").get(RECORD) is None
    assert compile_path("contact[0]").get(RECORD) is None
    assert compile_path("email_addresses[0].email_address").roots == {"email_addresses"}


def test_projection_fast_path_drops_missing_items_like_jmespath():
    path = compile_path("tags[*].name")
    assert path.kind == "projection"
    assert path.get(RECORD) == ["Buyer", "VIP"]
    assert compile_path("missing[*].name").get(RECORD) is None
    assert path.roots == {"tags"}


def _random_value(rng, depth):
    choice = rng.random()
    if depth > 2 or choice < 0.3:
        return rng.choice([None, 0, "x", "", True, 3.5])
    if choice < 0.65:
        return {k: _random_value(rng, depth + 1) for k in rng.sample(["a", "b", "c"], 2)}
    return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]


@pytest.mark.parametrize("expr", [
    "a", "a.b", "a.b.c", "a[0]", "a[1].b", "a[-1]", "a[0][1]", "a.b[0].c", "a[*].b",
    "a.b[*].c", "a[0][*].b", "a[*].b.c", "a[*].b[0]",
])
def test_fast_paths_agree_with_jmespath_on_random_records(expr):
    rng = random.Random(expr)
    compiled = compile_path(expr)
    reference = jmespath.compile(expr)
    assert compiled.kind != "jmespath"
    for _ in range(400):
        record = {k: _random_value(rng, 0) for k in ("a", "b")}
        assert compiled.get(record) == reference.search(record), record


def test_full_jmespath_for_everything_else():
    path = compile_path("email_addresses[?email_address=='b@x.com'].email_address | [0]")
    assert path.kind == "jmespath"
    assert path.get(RECORD) == "b@x.com"
    assert path.roots == {"email_addresses"}
    assert compile_path("length(tags)").get(RECORD) == 4
    assert compile_path("[first_name, contact.name.given]").roots == {"first_name", "contact"}
    assert compile_path("@").roots == {"*"}


@pytest.mark.parametrize("header", ["First Name", "E-mail Address", "Phone (Home)"])
def test_csv_headers_that_are_not_jmespath_are_literal_keys(header):
    path = compile_path(header)
    assert path.kind == "key" and path.key == header
    assert path.get(RECORD) == RECORD[header]
    assert path.roots == {header}


def test_a_quoted_key_reaches_names_with_dots():
    assert compile_path('"Home.Phone"').get(RECORD) == "dotted"


@pytest.mark.parametrize("expr, reason", [
    ("email_addresses[0", "incomplete expression"),
    ("a..b", "unexpected '.' at column 3"),
    ("a.", "incomplete expression"),
    ("lenght(tags).x", "unknown function lenght()"),
    ("tags[?name=='x'", "incomplete expression"),
])
def test_malformed_paths_raise_path_error(expr, reason):
    with pytest.raises(PathError) as info:
        compile_path(expr)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert message.startswith(f"malformed path {expr!r}: ")
    assert reason in message
    assert "\n" not in message


def test_malformed_path_with_odd_characters_suggests_quoting():
    with pytest.raises(PathError, match=r"Unknown token '-' .*quote a key"):
        compile_path("home.e-mail")


@pytest.mark.parametrize("expr", ["", "   ", 5, None])
def test_empty_or_non_text_path_is_refused(expr):
    with pytest.raises(PathError):
        compile_path(expr)


COMPILED_EXPRESSIONS = [
    "a || b", "a && b", "!a", "!b.c", "a[?c == 'x']", "a[?c != 'x'].b", "a[?c == `0`]",
    "a[?c == `false`]", "a[?c > `1`]", "a[?c <= b]", "a[?c]", "a[?!c].b", "a[:2]",
    "a[::-1]", "a[1:]", "a[]", "a[][]", "*.b", "*.c[0]", "[a, b]", "{x: a, y: b.c}",
    "a | [0]", "a[*].b | [0]", "length(a)", "join(', ', a)", "join('-', a[*].b)",
    "sort_by(a, &c)", "max_by(a, &c)", "to_string(a)", "contains(a, 'x')", "a[?contains(b, 'x')]",
    "[a[*].b, [b]][] | [?@ != `null`]", "a[?c == 'x'] | [0].b", "`\"lit\"`", "'raw'", "@.a",
    "a[?c == 'x' || c == 'y'].b", "a[?c == 'x' && b].b", "not_null(b, a)", "type(a)",
]


def _jmes_value(rng, depth=0):
    pick = rng.random()
    if depth > 2 or pick < 0.35:
        return rng.choice([None, 0, 1, 2, -1, 1.5, "x", "y", "", True, False])
    if pick < 0.65:
        return {k: _jmes_value(rng, depth + 1) for k in rng.sample(["a", "b", "c"], rng.randint(0, 3))}
    return [_jmes_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]


@pytest.mark.parametrize("expr", COMPILED_EXPRESSIONS)
def test_compiled_jmespath_agrees_with_the_library(expr):
    from migrator.mapping.paths import PathValueError
    compiled = compile_path(expr)
    reference = jmespath.compile(expr)
    rng = random.Random(expr)
    for _ in range(300):
        record = {k: _jmes_value(rng) for k in ("a", "b")}
        try:
            expected = ("ok", reference.search(record))
        except (jmespath.exceptions.JMESPathError, TypeError):
            expected = ("error", None)
        try:
            got = ("ok", compiled.get(record))
        except PathValueError as exc:
            assert exc.message.startswith(f"cannot read {expr}: ")
            got = ("error", None)
        assert got == expected, record


def test_a_path_failing_on_a_record_raises_path_value_error():
    from migrator.mapping.paths import PathValueError
    path = compile_path("join(', ', tags)")
    assert path.get({"tags": ["a", "b"]}) == "a, b"
    with pytest.raises(PathValueError, match=r"^cannot read join\(', ', tags\): "):
        path.get({"tags": [1, 2]})
