"""The mapping language: from a YAML file to a function per stream, record -> record.

Everything that can be checked without data is checked at load, against the target's
schema, so that a typo fails in the first second with the file and line instead of in
every record of a long run. The compiled form is a flat tuple per stream that ``apply``
walks with no further lookups.
"""
from __future__ import annotations

import copy
import difflib
import hashlib
import json
import os
import re
from dataclasses import dataclass, field as dc_field
from pathlib import Path as FilePath
from collections.abc import Mapping as AbcMapping
from typing import Any, Callable, Iterable

from migrator.errors import MappingError
from migrator.mapping.paths import Path, PathError, PathValueError, compile_path
from migrator.mapping.transforms import (
    TRANSFORMS, Transform, TransformError, build_transform,
)
from migrator.schema import Ref, StreamSchema, Violation, excerpt
from migrator.yamlutil import LDict, LList, load_yaml, where

__all__ = ["CompiledField", "FieldError", "MapResult", "Mapping", "Ref", "StreamMapping",
           "compile_mapping", "load_mapping"]

TOP_KEYS = ("source", "target", "defaults", "streams")
STREAM_KEYS = ("from", "to", "match_on", "where", "skip_if", "fields", "keep_all")
FILE_TARGETS = ("csv", "jsonl")   # the only targets that take a whole record (keep_all)
FIELD_KEYS = ("path", "value", "template", "ref", "transform", "map", "default", "on_error")
DEFAULT_KEYS = ("region", "dayfirst")
CONDITION_OPS = ("equals", "not_equals", "in", "not_in", "empty", "not_empty", "matches")
Schemas = AbcMapping[str, StreamSchema] | Callable[[str], "StreamSchema | None"]


class FieldError(Exception):
    """A transform failed on one record's value for one field."""

    def __init__(self, field: str, rule: str, message: str, excerpt: str = ""):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.rule = rule
        self.message = message
        self.excerpt = excerpt

    def violation(self) -> Violation:
        return Violation(self.field, self.rule, self.message, self.excerpt)


@dataclass(slots=True)
class MapResult:
    """What became of one source record.

    ``data`` is the target record, or None when the record was skipped (``skipped``
    says which condition) or failed (``errors`` lists every failed field; a record with
    errors has no data so it can never be written half-mapped).
    """

    data: dict | None
    skipped: str | None = None
    errors: list[Violation] = dc_field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CompiledField:
    """A target field as the mapping defines it, for reports and ``migrator fields``."""

    name: str
    kind: str  # path | value | template | ref
    source: str  # the path, the template, or repr of the constant
    transforms: tuple[str, ...]
    on_error: str
    line: int
    ref: str | None = None


class _Everything(frozenset):
    """``uses_paths`` of a ``keep_all`` stream: it uses every path the source holds, so a
    source that fetches parts of a record only when the mapping reads them fetches all."""

    def __contains__(self, item: object) -> bool:
        return True


EVERYTHING = _Everything()

_Plan = tuple[str, "str | None", Callable[[dict], Any], tuple[tuple[str, Transform], ...],
              bool, bool, "dict[str, Any] | None"]

# Transforms are pure, and most columns repeat (states, statuses, tags, dates, cities), so a
# field remembers what its chain made of recent texts. Bounded: cleared when full.
MEMO_SIZE = 4096
_MISS = object()


class StreamMapping:
    """How one source stream becomes records of one target stream.

    ``name`` is the stream's key in the mapping: the checkpoint and ``ref`` know it by
    that name. It is the source stream's name unless ``from:`` says otherwise, which lets
    one source stream feed two target streams (properties, and relations to their owners).
    """

    __slots__ = ("name", "source_stream", "target_stream", "match_on", "fields", "uses_paths", "refs",
                 "schema", "_where", "_skip_if", "_plan", "_fields", "path_roots", "keep_all")

    def __init__(self, source_stream: str, target_stream: str, match_on: tuple[str, ...],
                 fields: dict[str, CompiledField], schema: StreamSchema | None,
                 uses_paths: set[str], refs: dict[str, str],
                 where: tuple[tuple[Callable[[dict], bool], str], ...],
                 skip_if: tuple[tuple[Callable[[dict], bool], str], ...],
                 plan: tuple[_Plan, ...], name: str | None = None, keep_all: bool = False):
        self.name = name or source_stream
        # keep_all: the record goes out whole — every key the source returned, empty
        # ones and nested lists included — with the mapped fields laid over it (a backup).
        self.keep_all = keep_all
        self.source_stream = source_stream
        self.target_stream = target_stream
        self.match_on = match_on
        self.fields = fields
        self.schema = schema
        self.uses_paths = uses_paths
        self.refs = refs
        self._where = where
        self._skip_if = skip_if
        self._plan = plan
        self._fields = _generate(plan)
        # (top-level key, path, "file:line") of every path the stream reads
        self.path_roots: tuple[tuple[str, str, str], ...] = ()

    def check_columns(self, what: str, columns: Iterable[str]) -> None:
        """Refuse a path whose top-level key is not among ``columns`` — what the source
        is known to hold, e.g. a CSV header — naming the mapping's line and the nearest
        column: a typo (``Frist Name``) would otherwise map nothing in every record."""
        columns = list(columns)
        known = {*columns, "*", "null"}  # any key; a bare ``null`` (meant as `null`) reads nothing either way
        for root, expr, at in self.path_roots:
            if root not in known:
                hint = _suggest(root, columns)
                if not hint:
                    shown = sorted(columns)
                    hint = (f" (columns: {', '.join(map(repr, shown[:12]))}"
                            + (", …" if len(shown) > 12 else "") + ")")
                reads = f"path {expr!r} reads {root!r}" if expr != root else repr(root)
                raise MappingError(f"{at}: {reads}, which is not {what}{hint}")

    def apply(self, record: dict) -> MapResult:
        """Map one source record; empty values (None, "", []) are left out of ``data``."""
        for test, text in self._where:
            if not test(record):
                return MapResult(None, skipped=f"where: {text}")
        for test, text in self._skip_if:
            if test(record):
                return MapResult(None, skipped=f"skip_if: {text}")
        data: dict[str, Any] = dict(record) if self.keep_all else {}
        errors = self._fields(record, data)
        if errors:
            return MapResult(None, errors=errors)
        return MapResult(data)

    def __repr__(self) -> str:
        return (f"StreamMapping({self.source_stream!r} -> {self.target_stream!r}, "
                f"{len(self.fields)} fields)")


@dataclass(slots=True)
class Mapping:
    """A compiled mapping file. ``digest`` changes when its meaning may have changed."""

    source: str
    target: str
    streams: dict[str, StreamMapping]
    path: str
    digest: str
    defaults: dict[str, Any] = dc_field(default_factory=dict)


# ---- loading -------------------------------------------------------------------------


def load_mapping(text_or_path: str | os.PathLike, *, schemas: Schemas,
                 filename: str | None = None,
                 source_streams: Iterable[str] | None = None) -> Mapping:
    """Load and compile a mapping from YAML text or from a file path."""
    text, name = _read(text_or_path, filename)
    data = load_yaml(text, name, MappingError)
    return compile_mapping(data, schemas=schemas, filename=name, source_streams=source_streams)


def _read(text_or_path: str | os.PathLike, filename: str | None) -> tuple[str, str]:
    is_path = isinstance(text_or_path, os.PathLike) or (
        isinstance(text_or_path, str) and "\n" not in text_or_path
        and (os.path.isfile(text_or_path) or text_or_path.endswith((".yaml", ".yml"))))
    if not is_path:
        return str(text_or_path), filename or "<mapping>"
    path = os.fspath(text_or_path)
    try:
        text = FilePath(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError(f"{path}: cannot read mapping: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise MappingError(f"{path}: cannot read mapping: not UTF-8 text") from None
    return text, filename or path


def compile_mapping(data: Any, *, schemas: Schemas, filename: str | None = None,
                    source_streams: Iterable[str] | None = None) -> Mapping:
    """Compile parsed mapping data (an LDict from yamlutil, e.g. inline in a job file)."""
    return _Compiler(schemas, filename or getattr(data, "filename", "") or "<mapping>",
                     source_streams).mapping(data)


# ---- the compiler --------------------------------------------------------------------


def closest(name: Any, options: Iterable[str]) -> str | None:
    """The option ``name`` most likely meant: the same but for case, else the closest."""
    options = [o for o in options if isinstance(o, str)]
    text = str(name)
    by_case = {o.lower(): o for o in options}
    match = by_case.get(text.lower())
    if match is None:
        close = difflib.get_close_matches(text, options, n=1, cutoff=0.6)
        match = close[0] if close else None
    return match


def _suggest(name: Any, options: Iterable[str]) -> str:
    match = closest(name, options)
    return f" (did you mean {match!r}?)" if match else ""


def _kind_of(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    return repr(value)


def _cond_key(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip().casefold()


def _keys_of(value: Any) -> list[str]:
    if isinstance(value, list):
        return [_cond_key(v) for v in value if v is not None] or [""]
    return [_cond_key(value)]


def _empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    return isinstance(value, (list, dict)) and not value


def _canonical(value: Any) -> Any:
    """A JSON-able form that keeps types apart (1 vs "1") and ignores key order."""
    if isinstance(value, dict):
        items = [[_canonical(k), _canonical(v)] for k, v in value.items()]
        return {"map": sorted(items, key=lambda kv: json.dumps(kv[0], sort_keys=True))}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return {type(value).__name__: repr(value)}
    if isinstance(value, str):
        return value
    return {type(value).__name__: str(value)}


class _Compiler:
    def __init__(self, schemas: Schemas, filename: str, source_streams: Iterable[str] | None):
        self.schemas = schemas
        self.filename = filename
        self.source_streams = list(source_streams) if source_streams is not None else None
        self.target = ""
        self.source = ""
        self.defaults: dict[str, Any] = {}
        self.paths: list[tuple[str, str, str]] = []  # of the stream being compiled

    # -- helpers

    def fail(self, node: Any, key: Any, message: str) -> MappingError:
        return MappingError(f"{where(node, key, self.filename)}: {message}")

    def check_keys(self, node: LDict, allowed: tuple[str, ...], what: str) -> None:
        for key in node:
            if key not in allowed:
                raise self.fail(node, key, f"unknown key {key!r} in {what}"
                                + (_suggest(key, allowed) or
                                   f" (expected one of {', '.join(allowed)})"))

    def schema_for(self, stream: str) -> StreamSchema | None:
        if isinstance(self.schemas, AbcMapping):
            return self.schemas.get(stream)
        try:
            return self.schemas(stream)
        except KeyError:
            return None

    def path(self, node: Any, key: Any, expr: Any) -> Path:
        if not isinstance(expr, str):
            raise self.fail(node, key, f"a path must be text, not {_kind_of(expr)}")
        try:
            path = compile_path(expr)
        except PathError as exc:
            raise self.fail(node, key, str(exc)) from None
        at = where(node, key, self.filename)
        self.paths.extend((root, path.expr, at) for root in sorted(path.roots))
        return path

    # -- top level

    def mapping(self, data: Any) -> Mapping:
        if not isinstance(data, dict):
            raise MappingError(f"{where(data, None, self.filename)}: a mapping file must be a "
                               "YAML mapping with source, target and streams")
        self.check_keys(data, TOP_KEYS, "the mapping")
        for key in ("source", "target", "streams"):
            if key not in data:
                raise self.fail(data, None, f"the mapping needs {key!r}")
        for key in ("source", "target"):
            if not isinstance(data[key], str) or not data[key].strip():
                raise self.fail(data, key, f"{key} must be a system name")
        self.source, self.target = data["source"], data["target"]
        self.defaults = self.compile_defaults(data)
        streams_node = data["streams"]
        if not isinstance(streams_node, dict) or not streams_node:
            raise self.fail(data, "streams", "streams must map source stream names to "
                            "their field mappings")
        names = [n for n in streams_node]
        streams: dict[str, StreamMapping] = {}
        for name in names:
            streams[name] = self.stream(streams_node, name, names)
        digest = hashlib.sha256(
            json.dumps(_canonical(data), sort_keys=True, separators=(",", ":"),
                       ensure_ascii=False).encode()).hexdigest()
        return Mapping(self.source, self.target, streams, self.filename, digest,
                       dict(self.defaults))

    def compile_defaults(self, data: LDict) -> dict[str, Any]:
        node = data.get("defaults")
        if node is None:
            return {}
        if not isinstance(node, dict):
            raise self.fail(data, "defaults", "defaults must be a mapping such as {region: US}")
        self.check_keys(node, DEFAULT_KEYS, "defaults")
        if "region" in node:
            try:
                build_transform("phone_e164", node["region"])
            except ValueError as exc:
                raise self.fail(node, "region", str(exc)) from None
        if "dayfirst" in node and not isinstance(node["dayfirst"], bool):
            raise self.fail(node, "dayfirst", "dayfirst must be true or false")
        return dict(node)

    # -- streams

    def stream(self, streams_node: LDict, name: Any, names: list[str]) -> StreamMapping:
        if not isinstance(name, str):
            raise self.fail(streams_node, name, f"a stream name must be text, not {name!r}")
        spec = streams_node[name]
        if not isinstance(spec, dict):
            raise self.fail(streams_node, name, f"stream {name!r} needs a mapping with fields")
        self.check_keys(spec, STREAM_KEYS, f"stream {name!r}")
        source = spec.get("from", name)
        if not isinstance(source, str) or not source:
            raise self.fail(spec, "from", "'from' must name a source stream")
        if self.source_streams is not None and source not in self.source_streams:
            where_node, key = (spec, "from") if "from" in spec else (streams_node, name)
            raise self.fail(where_node, key, f"{self.source} has no stream {source!r}"
                            + _suggest(source, self.source_streams))
        to = spec.get("to", name)
        if not isinstance(to, str) or not to:
            raise self.fail(spec, "to", "'to' must name a target stream")
        schema = self.schema_for(to)
        if schema is None:
            known = list(self.schemas) if isinstance(self.schemas, AbcMapping) else []
            raise self.fail(spec if "to" in spec else streams_node, "to" if "to" in spec else name,
                            f"{self.target} has no stream {to!r}" + _suggest(to, known))
        keep_all = spec.get("keep_all", False)
        if not isinstance(keep_all, bool):
            raise self.fail(spec, "keep_all", "keep_all must be true or false")
        if keep_all and self.target not in FILE_TARGETS:
            raise self.fail(spec, "keep_all", f"keep_all writes every field the source returns, which only a "
                            f"file takes (target csv or jsonl), not {self.target}")
        fields_node = spec.get("fields")
        if keep_all and fields_node is None:
            fields_node = LDict({}, line=where_line(spec, "keep_all"), filename=self.filename)
        elif not isinstance(fields_node, dict) or not fields_node:
            raise self.fail(spec if "fields" in spec else streams_node,
                            "fields" if "fields" in spec else name,
                            f"stream {name!r} needs fields: target field -> source path or spec")

        self.paths = []
        uses: set[str] = set()
        fields: dict[str, CompiledField] = {}
        refs: dict[str, str] = {}
        plan: list[_Plan] = []
        for target_name in fields_node:
            compiled, entry, roots = self.field(fields_node, target_name, schema, to, names)
            fields[target_name] = compiled
            plan.append(entry)
            uses |= roots
            if compiled.ref is not None:
                refs[target_name] = compiled.ref

        match_on = self.match_on(spec, fields)
        where_conds = self.conditions(spec, "where", uses)
        skip_conds = self.conditions(spec, "skip_if", uses)
        sm = StreamMapping(source, to, match_on, fields, schema, uses, refs,
                           where_conds, skip_conds, tuple(plan), name=name, keep_all=keep_all)
        sm.path_roots = tuple(self.paths)
        if keep_all:
            sm.uses_paths = EVERYTHING
        return sm

    def match_on(self, spec: LDict, fields: dict[str, CompiledField]) -> tuple[str, ...]:
        node = spec.get("match_on")
        if node is None:
            return ()
        items = [node] if isinstance(node, str) else node
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise self.fail(spec, "match_on", "match_on must be a list of target field names")
        for i, item in enumerate(items):
            if item not in fields:
                line_node, line_key = (items, i) if isinstance(items, LList) else (spec, "match_on")
                raise self.fail(line_node, line_key,
                                f"match_on names {item!r}, which this stream does not map"
                                + _suggest(item, fields))
        return tuple(items)

    # -- fields

    def field(self, fields_node: LDict, name: Any, schema: StreamSchema, to: str,
              streams: list[str]) -> tuple[CompiledField, _Plan, set[str]]:
        if not isinstance(name, str):
            raise self.fail(fields_node, name, f"a target field name must be text, not {name!r}")
        if schema.field(name) is None:
            raise self.fail(fields_node, name, f"{name!r} is not a field of {self.target} {to}"
                            + _suggest(name, schema.fields))
        spec = fields_node[name]
        line = fields_node.line_of(name) if isinstance(fields_node, LDict) else 0
        if isinstance(spec, str):
            spec = LDict({"path": spec}, line=line, filename=self.filename)
            spec.key_lines["path"] = line
        elif not isinstance(spec, dict):
            raise self.fail(fields_node, name, f"field {name!r} needs a source path or a spec "
                            f"with path, value, template or ref (got {_kind_of(spec)})")
        self.check_keys(spec, FIELD_KEYS, f"field {name!r}")

        kinds = [k for k in ("path", "value", "template") if k in spec]
        if "ref" in spec:
            if "path" not in spec:
                raise self.fail(spec, "ref", f"field {name!r}: ref needs a path to the "
                                "referenced record's source id")
            others = [k for k in kinds if k != "path"]
            if others:
                raise self.fail(spec, others[0], f"field {name!r} takes one of path, value, "
                                f"template or ref, not ref and {others[0]}")
            kind = "ref"
        elif not kinds:
            raise self.fail(fields_node, name, f"field {name!r} needs one of path, value, "
                            "template or ref")
        elif len(kinds) > 1:
            raise self.fail(spec, kinds[1], f"field {name!r} takes one of path, value, "
                            f"template or ref, not {kinds[0]} and {kinds[1]}")
        else:
            kind = kinds[0]

        on_error = spec.get("on_error", "fail")
        if on_error not in ("fail", "drop"):
            raise self.fail(spec, "on_error", f"on_error must be fail or drop (got {on_error!r})")

        chain = self.transforms(spec, name)
        names = tuple(n for n, _ in chain)
        roots: set[str] = set()
        key: str | None = None
        ref_stream: str | None = None

        if kind == "value":
            value = _plain(spec["value"])
            for tname, fn in chain:
                try:
                    value = fn(value)
                except TransformError as exc:
                    raise self.fail(spec, "value", f"field {name!r}: transform {tname!r} "
                                    f"refuses the value: {exc.message}") from None
            get = _constant(value)
            entry: _Plan = (name, None, get, (), False, False, None)
            source = repr(spec["value"])
        elif kind == "template":
            template = spec["template"]
            if not isinstance(template, str):
                raise self.fail(spec, "template", "a template must be text")
            render, roots = self.template(spec, template)
            entry = (name, None, _identity, (("template", render),) + chain,
                     on_error == "drop", False, None)
            source = template
        else:
            path = self.path(spec, "path", spec["path"])
            roots = set(path.roots)
            source = path.expr
            if kind == "ref":
                ref_stream = spec["ref"]
                if not isinstance(ref_stream, str) or ref_stream not in streams:
                    raise self.fail(spec, "ref", f"ref names {ref_stream!r}, which is not a "
                                    "stream of this mapping" + _suggest(ref_stream, streams))
                chain = chain + (("ref", _ref_maker(ref_stream)),)
            key = path.key
            skip_none = not any(n == "default" for n in names)
            memo: dict[str, Any] | None = {} if chain and kind != "ref" else None
            entry = (name, key, path.get, chain, on_error == "drop", skip_none, memo)

        compiled = CompiledField(name, kind, source, names, on_error, line, ref_stream)
        return compiled, entry, roots

    def transforms(self, spec: LDict, field_name: str) -> tuple[tuple[str, Transform], ...]:
        items: list[tuple[Any, Any, Any, Any]] = []  # (name, arg, node, key) for messages
        node = spec.get("transform")
        if "transform" in spec:
            if isinstance(node, str):
                items.append((node, None, spec, "transform"))
            elif isinstance(node, dict):
                items.append(self.one_key(node, spec, "transform"))
            elif isinstance(node, list) and node:
                for i, item in enumerate(node):
                    if isinstance(item, str):
                        items.append((item, None, node, i))
                    elif isinstance(item, dict):
                        items.append(self.one_key(item, node, i))
                    else:
                        raise self.fail(node, i, f"a transform is a name or {{name: argument}}, "
                                        f"not {_kind_of(item)}")
            else:
                raise self.fail(spec, "transform", "transform must be a name, a list of names "
                                "or a list of {name: argument}")
        if "map" in spec:
            table = spec["map"]
            if not isinstance(table, dict) or not table:
                raise self.fail(spec, "map", "map must be a table of source value: target value")
            arg: dict[str, Any] = {"table": table}
            if "default" in spec:
                arg["default"] = spec["default"]
            items.append(("map", arg, spec, "map"))
        if "default" in spec:
            items.append(("default", spec["default"], spec, "default"))

        chain = []
        for tname, targ, node_, key in items:
            if not isinstance(tname, str) or tname not in TRANSFORMS:
                raise self.fail(node_, key, f"unknown transform {tname!r}"
                                + _suggest(tname, TRANSFORMS))
            try:
                fn = build_transform(tname, _plain(targ), self.defaults)
            except ValueError as exc:
                raise self.fail(node_, key, f"transform {tname!r}: {exc}") from None
            chain.append((tname, fn))
        return tuple(chain)

    def one_key(self, item: LDict, parent: Any, key: Any) -> tuple[Any, Any, Any, Any]:
        if len(item) != 1:
            raise self.fail(item, None, "write one transform per item, e.g. "
                            "[strip, {truncate: 50}]")
        (tname, targ), = item.items()
        return tname, targ, item, tname

    _PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")

    def template(self, spec: LDict, template: str) -> tuple[Transform, set[str]]:
        pieces: list[str | Path] = []
        roots: set[str] = set()
        pos = 0
        for m in self._PLACEHOLDER.finditer(template):
            literal = template[pos:m.start()]
            if "{" in literal or "}" in literal:
                raise self.fail(spec, "template", "unbalanced brace in template "
                                "(write {{ or }} for a literal brace)")
            pieces.append(literal)
            pos = m.end()
            if m.group(1) is None:
                pieces.append(m.group(0)[0])
                continue
            expr = m.group(1).strip()
            if not expr:
                raise self.fail(spec, "template", "empty {} in template; put a path inside")
            path = self.path(spec, "template", expr)
            roots |= path.roots
            pieces.append(path)
        tail = template[pos:]
        if "{" in tail or "}" in tail:
            raise self.fail(spec, "template", "unbalanced brace in template "
                            "(write {{ or }} for a literal brace)")
        pieces.append(tail)
        layout = "".join(p.replace("{", "{{").replace("}", "}}") if isinstance(p, str) else "{}"
                         for p in pieces)
        paths = [p for p in pieces if not isinstance(p, str)]
        getters = tuple(p.get for p in paths)
        keys = tuple(p.key for p in paths) if all(p.key is not None for p in paths) else None
        fill = layout.format

        def render(record: dict) -> str | None:
            # Plain keys (the usual "{Street}, {City}") are read by map() in C.
            texts = list(map(record.get, keys)) if keys is not None else [get(record) for get in getters]
            for value in texts:
                if type(value) is not str:
                    texts = [v if type(v) is str else _placeholder_text(v) for v in texts]
                    break
            if getters and not "".join(texts).strip():
                return None  # "{street}, {city}" of an empty address is nothing, not ","
            return " ".join(fill(*texts).split()) or None
        return render, roots

    # -- conditions

    def conditions(self, spec: LDict, key: str, uses: set[str]
                   ) -> tuple[tuple[Callable[[dict], bool], str], ...]:
        node = spec.get(key)
        if node is None:
            return ()
        items = [node] if isinstance(node, dict) else node
        if not isinstance(items, list):
            raise self.fail(spec, key, f"{key} must be a list of conditions like "
                            "{path: status, in: [Deleted]}")
        out = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise self.fail(items, i, f"a condition is a mapping like {{path: status, "
                                f"equals: Active}}, not {_kind_of(item)}")
            test, text, roots = self.condition(item)
            out.append((test, text))
            uses |= roots
        return tuple(out)

    def condition(self, node: LDict) -> tuple[Callable[[dict], bool], str, frozenset[str]]:
        allowed = ("path",) + CONDITION_OPS
        self.check_keys(node, allowed, "a condition")
        if "path" not in node:
            raise self.fail(node, None, "a condition needs a path")
        ops = [k for k in node if k != "path"]
        if len(ops) != 1:
            raise self.fail(node, None, "a condition needs exactly one of "
                            f"{', '.join(CONDITION_OPS)}" + (f" (got {', '.join(ops)})" if ops
                                                             else ""))
        op = ops[0]
        operand = node[op]
        path = self.path(node, "path", node["path"])
        get = _lenient(path.get)
        text = f"{path.expr} {op} {_operand_text(operand)}"

        if op in ("equals", "not_equals"):
            if isinstance(operand, (dict, list)):
                raise self.fail(node, op, f"{op} takes one value; use in/not_in for a list")
            want = _cond_key(operand)

            def equals(record: dict) -> bool:
                value = get(record)
                if type(value) is str:
                    return value.strip().casefold() == want
                return want in _keys_of(value)
            test = equals if op == "equals" else _negate(equals)
        elif op in ("in", "not_in"):
            if not isinstance(operand, list) or any(isinstance(v, (dict, list)) for v in operand):
                raise self.fail(node, op, f"{op} takes a list of values, e.g. [Deleted, Spam]")
            wanted = frozenset(_cond_key(v) for v in operand)

            def contains(record: dict) -> bool:
                value = get(record)
                if type(value) is str:
                    return value.strip().casefold() in wanted
                return any(k in wanted for k in _keys_of(value))
            test = contains if op == "in" else _negate(contains)
        elif op in ("empty", "not_empty"):
            if not isinstance(operand, bool):
                raise self.fail(node, op, f"{op} takes true or false")

            def is_empty(record: dict) -> bool:
                return _empty(get(record))
            test = is_empty if (op == "empty") == operand else _negate(is_empty)
            text = f"{path.expr} {op if operand else ('not_empty' if op == 'empty' else 'empty')}"
        else:
            if not isinstance(operand, str):
                raise self.fail(node, op, "matches takes a regular expression")
            try:
                rx = re.compile(operand)
            except re.error as exc:
                raise self.fail(node, op, f"bad regular expression: {exc}") from None
            search = rx.search

            def matches(record: dict) -> bool:
                value = get(record)
                if value is None:
                    return False
                values = value if isinstance(value, list) else [value]
                return any(search(_template_text(v)) is not None for v in values
                           if v is not None and not isinstance(v, (dict, list)))
            test = matches
        return test, text, path.roots


def where_line(node: Any, key: Any) -> int:
    return node.line_of(key) if isinstance(node, LDict) else 0


def _generate(plan: tuple[_Plan, ...]) -> Callable[[dict, dict], "list[Violation] | None"]:
    """The stream's fields as one generated function, ``(record, data) -> errors``.

    A loop over the plan paid, for every field of every record, the unpacking of its
    tuple and the tests of options the field does not have; here each field is a block
    of straight-line code with only its own steps. Names, keys and functions reach the
    code as variables of its namespace, never as text in it.
    """
    ns: dict[str, Any] = {"MISS": _MISS, "MEMO_SIZE": MEMO_SIZE, "Violation": Violation,
                          "PathValueError": PathValueError, "violation": _transform_violation}
    out = ["def fields(record, data):", "    errors = None"]
    for i, (name, key, get, chain, drop, skip_none, memo) in enumerate(plan):
        ns[f"N{i}"], ns[f"K{i}"], ns[f"G{i}"], ns[f"M{i}"] = name, key, get, memo
        ns[f"T{i}"] = tuple(tname for tname, _ in chain)
        for j, (_, fn) in enumerate(chain):
            ns[f"F{i}_{j}"] = fn
        block: list[str] = []
        if key is not None:
            block.append(f"v = record.get(K{i})")
        else:
            block += ["try:", f"    v = G{i}(record)", "except PathValueError as exc:",
                      "    v = MISS" if drop else
                      f"    v = MISS\n    errors = errors or []\n    errors.append(Violation(N{i}, 'path', exc.message, ''))"]
        body: list[str] = []
        if chain:
            steps = [f"s = {j}; v = F{i}_{j}(v)" for j in range(len(chain))]
            failed = ["v = MISS"] if drop else [
                "errors = errors or []", f"errors.append(violation(N{i}, T{i}[s], exc, v))", "v = MISS"]
            run = ["try:", *("    " + x for x in steps), "except Exception as exc:",
                   *("    " + x for x in failed)]
            if memo is None:
                body += run
            else:
                body += ["if type(v) is str:",
                         f"    h = M{i}.get(v, MISS)",
                         "    if h is MISS:",
                         "        t = v",
                         *("        " + x for x in run),
                         "        if v is not MISS:",
                         f"            if len(M{i}) >= MEMO_SIZE:",
                         f"                M{i}.clear()",
                         f"            M{i}[t] = v.copy() if type(v) is list else v",
                         "    else:",
                         "        v = h.copy() if type(h) is list else h",
                         "else:", *("    " + x for x in run)]
        body += ["if v is not MISS and v is not None and (v or (type(v) is not str and type(v) is not list)):",
                 f"    data[N{i}] = v"]
        guard = " and ".join((["v is not MISS"] if key is None else []) + (["v is not None"] if skip_none else []))
        block += [f"if {guard}:", *("    " + x for x in body)] if guard else body
        out += ["    " + x for line in block for x in line.split("\n")]
    out.append("    return errors")
    exec(compile("\n".join(out), "<mapping>", "exec"), ns)
    return ns["fields"]


def _transform_violation(field: str, transform: str, exc: Exception, value: Any) -> Violation:
    if isinstance(exc, (TransformError, PathValueError)):
        message = exc.message
    else:
        message = f"unexpected {type(exc).__name__}: {exc}"
    return Violation(field, "transform:" + transform, message, excerpt(value))


def _lenient(get: Callable[[dict], Any]) -> Callable[[dict], Any]:
    """A condition reads a path that fails on this record's data as absent."""
    def read(record: dict) -> Any:
        try:
            return get(record)
        except PathValueError:
            return None
    return read


def _negate(fn: Callable[[dict], bool]) -> Callable[[dict], bool]:
    def negated(record: dict) -> bool:
        return not fn(record)
    return negated


def _operand_text(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def _placeholder_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(t for t in (_template_text(v) for v in value if v is not None)
                         if t.strip())
    return _template_text(value)


def _template_text(value: Any) -> str:
    if type(value) is str:
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict):
        raise TransformError("a placeholder names an object, not a value")
    return str(value)


def _plain(value: Any) -> Any:
    """YAML containers as plain dicts and lists, so mapped records hold no LDict/LList."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _identity(record: dict) -> dict:
    return record


def _constant(value: Any) -> Callable[[dict], Any]:
    if isinstance(value, (list, dict)):
        def fresh(record: dict) -> Any:
            return copy.deepcopy(value)
        return fresh

    def const(record: dict) -> Any:
        return value
    return const


def _ref_maker(stream: str) -> Transform:
    def make(value: Any) -> Any:
        if _empty(value):
            return None
        if isinstance(value, (list, dict)):
            raise TransformError("a reference needs one source id, not a list or object "
                                 "(pick one in the path, e.g. contact_ids[0])")
        return Ref(stream, _template_text(value))
    return make
