"""Paths into a source record, compiled once per mapping.

The syntax is JMESPath, but nearly every real path is a key, a dotted chain of keys or
``key[0].key``: those run as plain ``dict.get`` / index steps, several times faster
than the JMESPath interpreter. A CSV header such as ``First Name`` or
``E-mail Address`` is not valid JMESPath; rather than make people quote it, a name
without any JMESPath punctuation that fails to parse is taken as a literal key.
"""
from __future__ import annotations

import re
from typing import Any, Callable

import jmespath
import jmespath.exceptions
from jmespath import functions as _jp_functions
from jmespath.visitor import TreeInterpreter

__all__ = ["Path", "PathError", "compile_path"]

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_CHAIN = rf"{_IDENT}(?:\[-?[0-9]+\])*(?:\.{_IDENT}(?:\[-?[0-9]+\])*)*"
_SIMPLE = re.compile(_CHAIN)
_PROJECTION = re.compile(rf"({_CHAIN})\[\*\]\.({_CHAIN})")
_STEP = re.compile(rf"({_IDENT})|\[(-?[0-9]+)\]")
_STRUCTURAL = frozenset(".[]{}|*@`\"&?!=<>")
_KNOWN_FUNCTIONS = frozenset(_jp_functions.Functions.FUNCTION_TABLE)
# one interpreter for all paths: ParsedResult.search builds a new one (and its function
# table) on every call, which costs more than the lookup itself
_INTERPRETER = TreeInterpreter()


class PathError(ValueError):
    """A path that cannot be compiled; the message is one line for a person."""


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
    if len(steps) == 1:
        return _key_getter(steps[0][1])
    return _steps_getter(steps)


def _projection_getter(left: Callable[[dict], Any], right: Callable[[dict], Any]
                       ) -> Callable[[dict], Any]:
    """``left[*].right`` as JMESPath evaluates it: None unless a list; Nones dropped."""
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
        out |= _roots(child)
    return out


def _functions(node: dict) -> set[str]:
    out = {node["value"]} if node["type"] == "function_expression" else set()
    for child in node.get("children", []):
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
        return Path(expr, _steps_getter(steps), "chain", frozenset({root}))
    m = _PROJECTION.fullmatch(expr)
    if m is not None:
        left, right = _steps(m.group(1)), _steps(m.group(2))
        return Path(expr, _projection_getter(_chain_getter(left), _chain_getter(right)),
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
            ast = parsed.parsed
            visit = _INTERPRETER.visit

            def get(record: dict) -> Any:
                return visit(ast, record)
            return Path(expr, get, "jmespath", frozenset(_roots(parsed.parsed)))
        reason = f"unknown function {sorted(unknown)[0]}()"
    if not (_STRUCTURAL & set(expr)):
        return Path(expr, _key_getter(expr), "key", frozenset({expr}), key=expr)
    hint = ""
    if any(not (c.isalnum() or c == "_" or c in _STRUCTURAL or c in "(),") for c in expr):
        hint = " (quote a key that has special characters, e.g. '\"Home-Phone\".number')"
    raise PathError(f"malformed path {expr!r}: {reason}{hint}")
