"""Paths into a source record, compiled once per mapping.

The syntax is JMESPath, but nearly every real path is a key, a dotted chain of keys,
``key[0].key`` or ``key[*].key``: those run as plain ``dict.get`` / index steps. Any
other expression is parsed by the jmespath library and its tree turned into nested
closures that mirror the library's interpreter node for node, without its per-node
dispatch (three to ten times faster; a mapping runs them on every record).

A CSV header such as ``First Name`` or ``E-mail Address`` is not valid JMESPath; rather
than make people quote it, a name without any JMESPath punctuation that fails to parse
is taken as a literal key.
"""
from __future__ import annotations

import re
from typing import Any, Callable

import jmespath
import jmespath.exceptions
from jmespath import functions as _jp_functions
from jmespath.visitor import TreeInterpreter
from jmespath.visitor import _Expression, _is_actual_number, _is_comparable

__all__ = ["Path", "PathError", "PathValueError", "compile_path"]

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_CHAIN = rf"{_IDENT}(?:\[-?[0-9]+\])*(?:\.{_IDENT}(?:\[-?[0-9]+\])*)*"
_SIMPLE = re.compile(_CHAIN)
_PROJECTION = re.compile(rf"({_CHAIN})\[\*\]\.({_CHAIN})")
_STEP = re.compile(rf"({_IDENT})|\[(-?[0-9]+)\]")
_STRUCTURAL = frozenset(".[]{}|*@`\"&?!=<>")
_KNOWN_FUNCTIONS = frozenset(_jp_functions.Functions.FUNCTION_TABLE)
# for the few node kinds evaluated by the library itself (expref arguments of sort_by…)
_INTERPRETER = TreeInterpreter()
_FUNCTIONS = _jp_functions.Functions()


class PathError(ValueError):
    """A path that cannot be compiled; the message is one line for a person."""


class PathValueError(Exception):
    """A compiled path that fails on one record's data (e.g. join() over numbers)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class Path:
    """A compiled path. ``get(record)`` returns the value or None.

    ``roots`` holds the top-level keys of the record the path reads (``"*"`` when it may
    read any of them), so a source can skip fetching what no path uses.
    """

    __slots__ = ("expr", "get", "kind", "roots", "key")

    def __init__(self, expr: str, get: Callable[[dict], Any], kind: str,
                 roots: frozenset[str], key: str | None = None):
        self.expr = expr
        self.get = get
        self.kind = kind
        self.roots = roots
        self.key = key

    def __repr__(self) -> str:
        return f"Path({self.expr!r}, {self.kind})"


def _steps_getter(steps: tuple[tuple[bool, Any], ...]) -> Callable[[dict], Any]:
    def get(record: dict) -> Any:
        cur: Any = record
        for is_index, step in steps:
            if is_index:
                if type(cur) is not list:
                    return None
                try:
                    cur = cur[step]
                except IndexError:
                    return None
            else:
                if not isinstance(cur, dict):
                    return None
                cur = cur.get(step)
                if cur is None:
                    return None
        return cur
    return get


def _steps(expr: str) -> tuple[tuple[bool, Any], ...]:
    return tuple((m.group(2) is not None,
                  int(m.group(2)) if m.group(2) is not None else m.group(1))
                 for m in _STEP.finditer(expr))


def _chain_getter(steps: tuple[tuple[bool, Any], ...]) -> Callable[[dict], Any]:
    shape = tuple(is_index for is_index, _ in steps)
    if shape == (False,):
        return _key_getter(steps[0][1])
    if shape == (False, False):
        return _key_key_getter(steps[0][1], steps[1][1])
    if shape == (False, True, False):
        return _key_index_key_getter(steps[0][1], steps[1][1], steps[2][1])
    return _steps_getter(steps)


def _key_key_getter(first: str, second: str) -> Callable[[dict], Any]:
    def get(record: dict) -> Any:
        value = record.get(first)
        return value.get(second) if isinstance(value, dict) else None
    return get


def _key_index_key_getter(first: str, index: int, second: str) -> Callable[[dict], Any]:
    """``first[index].second``, the usual shape of a path into a list of sub-records."""
    def get(record: dict) -> Any:
        items = record.get(first)
        if type(items) is not list:
            return None
        try:
            item = items[index]
        except IndexError:
            return None
        return item.get(second) if isinstance(item, dict) else None
    return get


def _projection_getter(left: Callable[[dict], Any], right: Callable[[dict], Any],
                       right_key: str | None) -> Callable[[dict], Any]:
    """``left[*].right`` as JMESPath evaluates it: None unless a list; Nones dropped."""
    if right_key is not None:
        def get_key(record: dict) -> Any:
            items = left(record)
            if type(items) is not list:
                return None
            return [v for v in (item.get(right_key) for item in items if isinstance(item, dict))
                    if v is not None]
        return get_key

    def get(record: dict) -> Any:
        items = left(record)
        if type(items) is not list:
            return None
        out = []
        for item in items:
            if isinstance(item, dict):
                value = right(item)
                if value is not None:
                    out.append(value)
        return out
    return get


def _key_getter(key: str) -> Callable[[dict], Any]:
    def get(record: dict) -> Any:
        return record.get(key)
    return get


# ---- JMESPath ASTs as closures -------------------------------------------------------
# Each closure mirrors TreeInterpreter.visit_<type> exactly, without its per-node
# dispatch; anything not listed is handed to the interpreter itself.

Getter = Callable[[Any], Any]


def _is_false(value: Any) -> bool:
    if value is True:
        return False
    return (value == "" or value == [] or value == {} or value is None or value is False)


def _identity(value: Any) -> Any:
    return value


def _compile_node(node: dict) -> Getter:
    kind = node["type"]
    children = node.get("children", [])
    builder = _BUILDERS.get(kind)
    if builder is None:
        return lambda value: _INTERPRETER.visit(node, value)
    return builder(node, children)


def _build_field(node: dict, children: list) -> Getter:
    key = node["value"]

    def field(value: Any) -> Any:
        if type(value) is dict:
            return value.get(key)
        if value is None:  # the usual miss; raising AttributeError for it is slow
            return None
        try:
            return value.get(key)
        except AttributeError:
            return None
    return field


def _build_sequence(node: dict, children: list) -> Getter:
    steps = [_compile_node(c) for c in children]
    if len(steps) == 2:
        first, second = steps
        return lambda value: second(first(value))

    def sequence(value: Any) -> Any:
        for step in steps:
            value = step(value)
        return value
    return sequence


def _build_index(node: dict, children: list) -> Getter:
    index = node["value"]

    def at(value: Any) -> Any:
        if not isinstance(value, list):
            return None
        try:
            return value[index]
        except IndexError:
            return None
    return at


def _build_slice(node: dict, children: list) -> Getter:
    part = slice(*children)
    return lambda value: value[part] if isinstance(value, list) else None


def _build_literal(node: dict, children: list) -> Getter:
    literal = node["value"]
    return lambda value: literal


def _build_expref(node: dict, children: list) -> Getter:
    inner = children[0]
    return lambda value: _Expression(inner, _INTERPRETER)


def _build_function(node: dict, children: list) -> Getter:
    name = node["value"]
    args = [_compile_node(c) for c in children]
    call = _FUNCTIONS.call_function
    if name == "join" and len(args) == 2:
        sep_of, items_of = args

        def join(value: Any) -> Any:
            sep, items = sep_of(value), items_of(value)
            # the library's type checks pass for exactly this case; anything else goes
            # through them so that the same error is raised
            if type(sep) is str and type(items) is list \
                    and all(type(item) is str for item in items):
                return sep.join(items)
            return call(name, [sep, items])
        return join
    return lambda value: call(name, [arg(value) for arg in args])


def _build_projection(node: dict, children: list) -> Getter:
    base_of, each = _compile_node(children[0]), _compile_node(children[1])

    def projection(value: Any) -> Any:
        base = base_of(value)
        return _project(base, each) if isinstance(base, list) else None
    return projection


def _project(elements: Any, each: Getter) -> list:
    """JMESPath projection: ``each`` of every element, nulls dropped."""
    out = []
    for element in elements:
        current = each(element)
        if current is not None:
            out.append(current)
    return out


def _build_value_projection(node: dict, children: list) -> Getter:
    base_of, each = _compile_node(children[0]), _compile_node(children[1])

    def projection(value: Any) -> Any:
        try:
            return _project(base_of(value).values(), each)
        except AttributeError:
            return None
    return projection


def _field_equals_text(node: dict) -> tuple[str, str, bool] | None:
    """(key, text, equal) for a comparator ``key == 'text'`` or ``key != 'text'``."""
    if node["type"] != "comparator" or node["value"] not in ("eq", "ne"):
        return None
    left, right = node["children"]
    if left["type"] != "field" or right["type"] != "literal" or type(right["value"]) is not str:
        return None
    return left["value"], right["value"], node["value"] == "eq"


def _build_filter(node: dict, children: list) -> Getter:
    simple = _field_equals_text(children[2])
    if simple is not None and children[1]["type"] in ("identity", "current"):
        return _build_select(_compile_node(children[0]), *simple)
    base_of, each, test = (_compile_node(c) for c in children[:3])

    def filtered(value: Any) -> Any:
        base = base_of(value)
        if not isinstance(base, list):
            return None
        out = []
        for element in base:
            if not _is_false(test(element)):
                current = each(element)
                if current is not None:
                    out.append(current)
        return out
    return filtered


def _build_select(base_of: Getter, key: str, text: str, equal: bool) -> Getter:
    """``base[?key == 'text']``, the usual way to pick e.g. the home address."""
    def select(value: Any) -> Any:
        base = base_of(value)
        if not isinstance(base, list):
            return None
        out = []
        for element in base:
            if type(element) is dict:
                found = element.get(key)
            else:
                try:
                    found = element.get(key)
                except AttributeError:
                    found = None
            if (found == text) is equal and element is not None:
                out.append(element)
        return out
    return select


def _build_flatten(node: dict, children: list) -> Getter:
    base_of = _compile_node(children[0])

    def flatten(value: Any) -> Any:
        base = base_of(value)
        if not isinstance(base, list):
            return None
        out: list = []
        for element in base:
            if isinstance(element, list):
                out.extend(element)
            else:
                out.append(element)
        return out
    return flatten


def _build_multi_list(node: dict, children: list) -> Getter:
    parts = [_compile_node(c) for c in children]
    return lambda value: None if value is None else [part(value) for part in parts]


def _build_multi_dict(node: dict, children: list) -> Getter:
    parts = [(c["value"], _compile_node(c)) for c in children]
    return lambda value: None if value is None else {k: part(value) for k, part in parts}


def _build_or(node: dict, children: list) -> Getter:
    left, right = _compile_node(children[0]), _compile_node(children[1])

    def either(value: Any) -> Any:
        matched = left(value)
        return right(value) if _is_false(matched) else matched
    return either


def _build_and(node: dict, children: list) -> Getter:
    left, right = _compile_node(children[0]), _compile_node(children[1])

    def both(value: Any) -> Any:
        matched = left(value)
        return matched if _is_false(matched) else right(value)
    return both


def _build_not(node: dict, children: list) -> Getter:
    inner = _compile_node(children[0])

    def negate(value: Any) -> Any:
        result = inner(value)
        if _is_actual_number(result) and result == 0:
            return False
        return not result
    return negate


def _build_comparator(node: dict, children: list) -> Getter:
    op = node["value"]
    compare = TreeInterpreter.COMPARATOR_FUNC[op]
    left, right = _compile_node(children[0]), _compile_node(children[1])
    if op in TreeInterpreter._EQUALITY_OPS:
        literal = children[1]["value"] if children[1]["type"] == "literal" else None
        if isinstance(literal, str):
            # JMESPath's special case (0/1 against false/true) cannot arise against text
            if op == "eq":
                return lambda value: left(value) == literal
            return lambda value: not (left(value) == literal)
        return lambda value: compare(left(value), right(value))

    def ordered(value: Any) -> Any:
        a, b = left(value), right(value)
        if not (_is_comparable(a) and _is_comparable(b)):
            return None
        return compare(a, b)
    return ordered


_BUILDERS: dict[str, Callable[[dict, list], Getter]] = {
    "field": _build_field,
    "subexpression": _build_sequence,
    "index_expression": _build_sequence,
    "pipe": _build_sequence,
    "index": _build_index,
    "slice": _build_slice,
    "current": lambda node, children: _identity,
    "identity": lambda node, children: _identity,
    "literal": _build_literal,
    "expref": _build_expref,
    "function_expression": _build_function,
    "projection": _build_projection,
    "value_projection": _build_value_projection,
    "filter_projection": _build_filter,
    "flatten": _build_flatten,
    "multi_select_list": _build_multi_list,
    "multi_select_dict": _build_multi_dict,
    "key_val_pair": lambda node, children: _compile_node(children[0]),
    "or_expression": _build_or,
    "and_expression": _build_and,
    "not_expression": _build_not,
    "comparator": _build_comparator,
}


def _roots(node: dict) -> set[str]:
    """Top-level keys an AST node reads when evaluated against the record itself."""
    kind = node["type"]
    children = node.get("children", [])
    if kind == "field":
        return {node["value"]}
    if kind in ("subexpression", "index_expression", "projection", "value_projection",
                "filter_projection", "pipe"):
        return _roots(children[0]) if children else set()
    if kind == "flatten":
        return _roots(children[0])
    if kind in ("current", "identity"):
        return {"*"}
    if kind in ("literal", "index", "slice", "expref", "raw_string"):
        return set()
    out: set[str] = set()
    for child in children:
        if isinstance(child, dict):
            out |= _roots(child)
    return out


def _functions(node: dict) -> set[str]:
    out = {node["value"]} if node["type"] == "function_expression" else set()
    for child in node.get("children", []):
        if isinstance(child, dict):  # a slice's children are its bounds
            out |= _functions(child)
    return out


def _jmespath_reason(exc: Exception) -> str:
    if isinstance(exc, jmespath.exceptions.EmptyExpressionError):
        return "empty path"
    if isinstance(exc, jmespath.exceptions.LexerError):
        return f"{exc.message} at column {exc.lex_position + 1}"
    if isinstance(exc, jmespath.exceptions.IncompleteExpressionError) \
            or str(getattr(exc, "token_type", "")).lower() == "eof":
        return "incomplete expression"
    if isinstance(exc, jmespath.exceptions.ParseError):
        token = exc.token_value or exc.token_type
        return f"unexpected {token!r} at column {exc.lex_position + 1}"
    return str(exc).splitlines()[0]


def compile_path(expr: str) -> Path:
    """Compile ``expr``; a malformed one raises PathError."""
    if not isinstance(expr, str):
        raise PathError(f"a path must be text, not {type(expr).__name__}")
    if _SIMPLE.fullmatch(expr):
        steps = _steps(expr)
        root = steps[0][1]
        if len(steps) == 1:
            return Path(expr, _key_getter(root), "key", frozenset({root}), key=root)
        return Path(expr, _chain_getter(steps), "chain", frozenset({root}))
    m = _PROJECTION.fullmatch(expr)
    if m is not None:
        left, right = _steps(m.group(1)), _steps(m.group(2))
        right_key = right[0][1] if len(right) == 1 else None
        return Path(expr, _projection_getter(_chain_getter(left), _chain_getter(right),
                                             right_key),
                    "projection", frozenset({left[0][1]}))
    if not expr.strip():
        raise PathError("empty path")
    reason = None
    try:
        parsed = jmespath.compile(expr)
    except jmespath.exceptions.JMESPathError as exc:
        reason = _jmespath_reason(exc)
    else:
        unknown = _functions(parsed.parsed) - _KNOWN_FUNCTIONS
        if not unknown:
            evaluate = _compile_node(parsed.parsed)

            def get(record: dict) -> Any:
                try:
                    return evaluate(record)
                except Exception as exc:  # JMESPathError, or the library's own TypeError
                    raise PathValueError(f"cannot read {expr}: "
                                         f"{str(exc).splitlines()[0]}") from None
            return Path(expr, get, "jmespath", frozenset(_roots(parsed.parsed)))
        reason = f"unknown function {sorted(unknown)[0]}()"
    if not (_STRUCTURAL & set(expr)):
        return Path(expr, _key_getter(expr), "key", frozenset({expr}), key=expr)
    hint = ""
    if any(not (c.isalnum() or c == "_" or c in _STRUCTURAL or c in "(),") for c in expr):
        hint = " (quote a key that has special characters, e.g. '\"Home-Phone\".number')"
    raise PathError(f"malformed path {expr!r}: {reason}{hint}")
