"""YAML loading that remembers where every mapping and list came from.

Job and mapping files are written by people, so every refusal must point at a line.
PyYAML drops positions once it builds Python objects; this loader keeps them on the
containers (``LDict`` / ``LList``) and on each mapping key.

Booleans follow YAML 1.2 (only ``true``/``false``): under YAML 1.1 a value table such
as ``{Yes: 1, NO: 2, ON: 3}`` would silently turn its keys into booleans.
"""
from __future__ import annotations

import re
from typing import Any

import yaml

from migrator.errors import JobError, UserError

__all__ = ["LDict", "LList", "load_yaml", "where"]

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_BOOL_TAG = "tag:yaml.org,2002:bool"


class LDict(dict):
    """A dict that knows its file, its line and the line of each of its keys."""

    __slots__ = ("line", "filename", "key_lines")

    def __init__(self, *args: Any, line: int = 0, filename: str = "", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.line = line
        self.filename = filename
        self.key_lines: dict[Any, int] = {}

    def line_of(self, key: Any) -> int:
        """Line of ``key`` in the file, or of the mapping itself if the key is not there."""
        return self.key_lines.get(key, self.line)


class LList(list):
    """A list that knows its file, its line and the line of each item."""

    __slots__ = ("line", "filename", "item_lines")

    def __init__(self, *args: Any, line: int = 0, filename: str = ""):
        super().__init__(*args)
        self.line = line
        self.filename = filename
        self.item_lines: list[int] = []

    def line_of(self, index: int) -> int:
        """Line of item ``index``, or of the list itself when unknown."""
        try:
            return self.item_lines[index]
        except (IndexError, TypeError):
            return self.line


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    filename = "<yaml>"


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL_TAG]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def _construct_map(loader: _Loader, node: yaml.MappingNode):
    result = LDict(line=node.start_mark.line + 1, filename=loader.filename)
    yield result
    own = sum(1 for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge")
    loader.flatten_mapping(node)
    pairs = node.value
    first_own = len(pairs) - own
    for i, (key_node, value_node) in enumerate(pairs):
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value, not a list or mapping",
                key_node.start_mark) from None
        line = key_node.start_mark.line + 1
        if i >= first_own and key in result.key_lines and result.key_lines[key] >= 0:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {result.key_lines[key]})",
                key_node.start_mark)
        result[key] = loader.construct_object(value_node, deep=True)
        # keys merged in with << may be overridden; mark them so they do not count as dupes
        result.key_lines[key] = line if i >= first_own else -line
    for key, line in result.key_lines.items():
        if line < 0:
            result.key_lines[key] = -line


def _construct_seq(loader: _Loader, node: yaml.SequenceNode):
    result = LList(line=node.start_mark.line + 1, filename=loader.filename)
    yield result
    for item in node.value:
        result.append(loader.construct_object(item, deep=True))
        result.item_lines.append(item.start_mark.line + 1)


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def _reason(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        parts = [p for p in (exc.context, exc.problem) if p]
        text = "; ".join(parts) if parts else "syntax error"
    else:
        text = str(exc).splitlines()[0] if str(exc) else "syntax error"
    return " ".join(text.split())


def _error_line(exc: yaml.YAMLError, text: str) -> int:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    position = getattr(exc, "position", None)
    if mark is not None:
        line = mark.line + 1
    elif isinstance(position, int):
        line = text.count("\n", 0, position) + 1
    else:
        line = 1
    # an error at the end of the stream is reported past the last line; point at it instead
    return max(1, min(line, len(text.splitlines())))


def load_yaml(text: str, filename: str, error: type[UserError] = JobError) -> Any:
    """Parse ``text`` safely; a syntax error becomes ``error("file:line: invalid YAML: …")``."""
    loader = _Loader(text)
    loader.filename = filename
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise error(f"{filename}:{_error_line(exc, text)}: invalid YAML: {_reason(exc)}") from None
    finally:
        loader.dispose()


def where(node: Any, key: Any = None, default_filename: str = "<unknown>") -> str:
    """``"file:line"`` of ``node`` (or of ``key`` inside it), for messages."""
    filename = getattr(node, "filename", "") or default_filename
    if key is not None and hasattr(node, "line_of"):
        line = node.line_of(key)
    else:
        line = getattr(node, "line", 0)
    return f"{filename}:{line}" if line else filename
