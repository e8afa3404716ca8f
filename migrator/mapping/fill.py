"""Fill rates: how often each mapped field's source path gave a value.

A typo in a path (``frist_name``) or a mapping written for another source compiles
fine — a path is only an address — and then silently gives nothing in every record.
The schema cannot see it (the field is just empty) and the records stay "valid". So
``validate`` counts, per mapped field and source path, the records where the path gave
a non-empty value, and a path that gave nothing in any record is named with a
did-you-mean among the keys the source actually returned; ``run`` does the same on its
first page only.

What is counted is what the *path* gave, before any transform, so a transform that
refuses a value is not mistaken for a typo. Constants (``value:``) read no path and are
left out; a template counts each of its placeholders; a ``ref`` counts its path. A
path that raises on a record (a JMESPath function over the wrong type) found data
there, so it counts as filled — that record fails with the path's own message — unless
the record has none of the keys it reads.

Pure and cheap: one getter call per path per record, and the keys of a record are
looked at only for a path that has not yet given anything.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, Sequence

from migrator.mapping.compile import _Compiler, _empty, closest
from migrator.mapping.paths import _PROJECTION, _SIMPLE, _steps, PathError, PathValueError, compile_path

__all__ = ["FillCounter", "PathFill", "dead_lines", "dead_paths", "table_lines"]

KEYS_CAP = 1000   # keys remembered per path and level, for the did-you-mean (a bound on memory)
_EACH = object()  # the ``[*]`` step of a projection


@dataclass(slots=True)
class PathFill:
    """One (target field, source path) pair and what it gave."""

    field: str
    path: str
    get: Any
    steps: tuple[tuple[Any, Any], ...] | None   # None: a JMESPath expression, probed by its roots
    roots: frozenset[str]
    filled: int = 0
    present: bool = False      # the path reached its end (its keys exist), if only at empty values
    opaque: bool = False       # a JMESPath expression over the record itself: its keys are not known
    # the shallowest key the path missed: (depth, key) -> keys found at that level
    missed: dict[tuple[int, str], set[str]] = field(default_factory=dict)

    def status(self) -> str:
        """``filled``; ``missing``: a key of the path is in no record — a typo, or a
        mapping for another source (validate fails); ``empty``: the keys are there but no
        record had a value (an unused field: reported, not failed); ``unknown``."""
        if self.filled:
            return "filled"
        if self.opaque:
            return "unknown"
        if self.missed and not self.present:
            return "missing"
        return "empty"

    def suggestion(self) -> str | None:
        """A corrected path, from the keys the records held where this one missed."""
        if self.present or not self.missed:
            return None
        (depth, key), keys = min(self.missed.items(), key=lambda kv: kv[0][0])
        match = closest(key, keys)
        if match is None:
            return None
        if self.steps is None:
            return match  # a JMESPath expression: the key it reads that the records lack
        steps = list(self.steps)
        key_steps = [i for i, (is_index, _) in enumerate(steps) if is_index is False]
        at = key_steps[depth] if depth < len(key_steps) else None
        if at is None:
            return None
        steps[at] = (False, match)
        return _render(steps)


def _render(steps: list[tuple[Any, Any]]) -> str:
    out = ""
    for is_index, step in steps:
        if step is _EACH:
            out += "[*]"
        elif is_index:
            out += f"[{step}]"
        else:
            out += ("." if out else "") + step
    return out


def _path_steps(expr: str, kind: str, key: str | None) -> tuple[tuple[Any, Any], ...] | None:
    if key is not None:
        return ((False, key),)
    if _SIMPLE.fullmatch(expr):
        return _steps(expr)
    m = _PROJECTION.fullmatch(expr)
    if m is not None:
        return _steps(m.group(1)) + ((True, _EACH),) + _steps(m.group(2))
    return None


class FillCounter:
    """Counts, for one stream mapping, the records each source path gave a value in.

    ``feed`` it records (dicts); ``rows()`` and ``dead()`` say what it found.
    """

    def __init__(self, stream: str, paths: list[PathFill]):
        self.stream = stream
        self.paths = paths
        self.records = 0
        self.checked = False   # run: the first page's warnings were given
        # the same records' valid mapped output (what is sent): target field -> records with a value
        self.written: dict[str, int] | None = None
        self.written_records = 0

    @classmethod
    def for_stream(cls, sm: Any) -> "FillCounter":
        """The paths of a compiled ``StreamMapping``'s fields (constants left out)."""
        paths: list[PathFill] = []
        for name, f in sm.fields.items():
            if f.kind in ("path", "ref"):
                exprs = [f.source]
            elif f.kind == "template":
                exprs = [m.group(1).strip() for m in _Compiler._PLACEHOLDER.finditer(f.source)
                         if m.group(1) is not None]
            else:
                continue
            for expr in dict.fromkeys(exprs):
                try:
                    p = compile_path(expr)
                except PathError:  # the compiler took it, so this does not happen
                    continue
                paths.append(PathFill(name, expr, p.get, _path_steps(expr, p.kind, p.key), p.roots))
        return cls(sm.name, paths)

    def feed(self, records: Sequence[dict]) -> None:
        """Count one page. Column by column: a plain key is read by ``map(dict.get)`` and
        the empty values counted by ``list.count``, both in C (validate reads every
        record; this keeps its cost a fraction of mapping's)."""
        if not records:
            return
        n = len(records)
        for p in self.paths:
            if p.steps is None:
                self._feed_expression(p, records)
                continue
            values = (list(map(dict.get, records, repeat(p.steps[0][1]))) if len(p.steps) == 1
                      else list(map(p.get, records)))
            # None, "", [] and {} are no value; a text of blanks counts as given (a cheap
            # count, and such a path names a real key anyway)
            filled = n - values.count(None) - values.count("") - values.count([]) - values.count({})
            p.filled += filled
            if not p.filled:
                for record in records:
                    _probe(p, record)
        self.records += n

    def feed_written(self, records: Sequence[dict]) -> None:
        """Count, per mapped target field, the valid mapped records of a page that hold a
        value: beside the source's rate, what a transform or the validation lost."""
        if self.written is None:
            self.written = dict.fromkeys((p.field for p in self.paths), 0)
        if not records:
            return
        n = len(records)
        for name in self.written:
            values = list(map(dict.get, records, repeat(name)))
            self.written[name] += n - values.count(None) - values.count("") - values.count([]) - values.count({})
        self.written_records += n

    @staticmethod
    def _feed_expression(p: PathFill, records: Sequence[dict]) -> None:
        for record in records:
            try:
                value = p.get(record)
            except PathValueError:
                # join() over a key the record lacks raises too: that is a miss
                if _reads_nothing_in(p, record):
                    if not p.filled:
                        _probe(p, record)
                else:
                    p.filled += 1
                continue
            if not _empty(value):
                p.filled += 1
            elif not p.filled:
                _probe(p, record)

    def rows(self) -> list[dict[str, Any]]:
        """The report's rows: field, path, filled, read, rate, and for a dead path its suggestion."""
        out = []
        for p in self.paths:
            row: dict[str, Any] = {"field": p.field, "path": p.path, "filled": p.filled,
                                   "read": self.records,
                                   "rate": round(p.filled / self.records, 4) if self.records else None}
            if self.records and not p.filled:
                row["status"] = p.status()
                if row["status"] == "missing":
                    row["did_you_mean"] = p.suggestion()
            out.append(row)
        return out

    def to_dict(self, scope: str) -> dict[str, Any]:
        """``scope``: ``all`` (validate read every record) or ``first page`` (run)."""
        out = {"scope": scope, "records": self.records, "fields": self.rows()}
        if self.written is not None:
            out["written"] = {"records": self.written_records, "fields": dict(self.written)}
        return out


def _reads_nothing_in(p: PathFill, record: dict) -> bool:
    return bool(p.roots) and "*" not in p.roots and not any(root in record for root in p.roots)


def _probe(p: PathFill, record: dict) -> None:
    """Where this path missed in this record: the key, and the keys beside it there."""
    if p.steps is None:
        # An expression reads its root keys; it is "there" when the record has any of them
        # (``a || null`` reads a key named null, which no record has).
        if "*" in p.roots or not p.roots:
            p.opaque = True
        elif any(root in record for root in p.roots):
            p.present = True
        else:
            for root in p.roots:
                keys = p.missed.setdefault((0, root), set())
                if len(keys) < KEYS_CAP:
                    keys.update(k for k in record if isinstance(k, str))
        return
    level: list[Any] = [record]
    depth = 0
    for is_index, step in p.steps:
        if step is _EACH:
            level = [x for v in level if type(v) is list for x in v]
        elif is_index:
            level = [v[step] for v in level if type(v) is list and -len(v) <= step < len(v)]
        else:
            nxt = []
            for v in level:
                if not isinstance(v, dict):
                    continue
                if step in v:
                    nxt.append(v[step])
                else:
                    keys = p.missed.setdefault((depth, step), set())
                    if len(keys) < KEYS_CAP:
                        keys.update(k for k in v if isinstance(k, str))
            level = nxt
            depth += 1
        if not level:
            return
    p.present = True


# ---- the report's section, read back as plain data ----------------------------------


def dead_paths(report: dict[str, Any], missing_only: bool = True
               ) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """``(stream, fill section, row)`` for each path that gave nothing in any record read:
    only those whose key no record had (``missing``), unless ``missing_only`` is false."""
    out = []
    for s in report.get("streams", ()):
        fill = s.get("fill")
        if not fill or not fill.get("records"):
            continue
        for row in fill["fields"]:
            if not row["filled"] and (row.get("status") == "missing" or not missing_only):
                out.append((s["stream"], fill, row))
    return out


_HINTS = {"empty": " (the source has the key, but it was empty in every record)",
          "unknown": " (the records may simply not hold this value)"}


def dead_lines(report: dict[str, Any], missing_only: bool = True) -> list[str]:
    """One line per dead path: ``contacts.first_name: path 'frist_name' gave no value in
    any of 2,000 records (did you mean 'first_name'?)``."""
    lines = []
    for stream, fill, row in dead_paths(report, missing_only):
        n = fill["records"]
        where = (f"any of {n:,} records" if fill.get("scope") != "first page" else
                 f"any of the first page's {n:,} records")
        status = row.get("status")
        hint = (f" (did you mean {row['did_you_mean']!r}?)" if row.get("did_you_mean") else
                " (no record has that key)" if status == "missing" else _HINTS.get(status or "", ""))
        lines.append(f"{stream}.{row['field']}: path {row['path']!r} gave no value in {where}{hint}")
    return lines


def table_lines(fill: dict[str, Any] | None, width: int = 76) -> list[str]:
    """The terminal's fill-rate table of one stream: field, source path, filled/read, %.
    The source path column gives way (cut with …) so that a row fits ``width`` (the
    summary indents the table by 4: 80 columns)."""
    if not fill or not fill.get("fields") or not fill.get("records"):
        return []
    rows = fill["fields"]
    ratios = [f"{r['filled']:,}/{r['read']:,}" for r in rows]
    fw = max(len("field"), *(len(r["field"]) for r in rows))
    rw = max(len("filled/read"), *(len(x) for x in ratios))
    pw = min(40, max(len("source path"), *(len(r["path"]) for r in rows)),
             max(len("source path"), width - 14 - fw - rw))
    head = "fill rates" + (" (first page)" if fill.get("scope") == "first page" else "")
    out = [f"{head}:", f"  {'field':<{fw}}  {'source path':<{pw}}  {'filled/read':>{rw}}  {'%':>6}"]
    for r, ratio in zip(rows, ratios):
        path = r["path"] if len(r["path"]) <= pw else r["path"][:pw - 1] + "…"
        out.append(f"  {r['field']:<{fw}}  {path:<{pw}}  {ratio:>{rw}}  {100 * (r['rate'] or 0):>5.1f}%")
    return out
