"""``validate --show N``: records side by side — as the source gave them, as they will be sent.

Pure: a record becomes ``(key, text)`` lines (nested keys dotted, list items indexed),
and two such lists become columns that fit a terminal. Widths are measured as the
terminal draws them (``wcwidth``): a CJK name takes two columns a character.
"""
from __future__ import annotations

from itertools import zip_longest
from typing import Any, Iterator

from wcwidth import wcswidth, wcwidth

from .identity import _SECRET

WIDTH = 80
GAP = " │ "
NOTHING = "(nothing: not sent)"


def flatten(record: Any, prefix: str = "") -> list[tuple[str, str]]:
    """``{"a": {"b": 1}, "c": [x, y]}`` → ``[("a.b", "1"), ("c[0]", "x"), ("c[1]", "y")]``;
    an empty value is shown as what it is (``""``, ``[]``, ``null``); a key named like a
    secret (``password``, ``api_key``) shows ``(hidden)``, as in the failures file."""
    out: list[tuple[str, str]] = []
    if isinstance(record, dict) and record:
        for k, v in record.items():
            out += flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(record, list) and record:
        for i, v in enumerate(record):
            out += flatten(v, f"{prefix}[{i}]")
    elif prefix and record not in (None, "") and _SECRET.search(prefix.rsplit(".", 1)[-1]):
        out.append((prefix, "(hidden)"))
    else:
        out.append((prefix, _text(record)))
    return out


EMPTY = ("null", "''", "[]", "{}")


def shown(record: Any) -> list[tuple[str, str]]:
    """``flatten``, with the keys that hold no value gathered on one last line (``empty:
    a, b``): a source with sixty mostly empty columns still shows its values at a glance."""
    lines = flatten(record)
    empty = [k for k, v in lines if v in EMPTY]
    kept = [(k, v) for k, v in lines if v not in EMPTY]
    return kept + ([("empty", ", ".join(empty))] if empty else [])


def _text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):   # an empty or blank-edged text is shown quoted, so it is seen
        return value if value and value == value.strip() else repr(value)
    return str(value)


def width(text: str) -> int:
    w = wcswidth(text)
    return w if w >= 0 else sum(max(0, wcwidth(c)) for c in text)


def _cut(text: str, cols: int) -> Iterator[str]:
    """``text`` in pieces at most ``cols`` wide, broken after a space where one is in the
    piece's second half, else anywhere (control characters shown as spaces)."""
    text = "".join(" " if (c < " " or c == "\x7f") else c for c in text)
    line, w = "", 0
    for c in text:
        cw = max(0, wcwidth(c))
        if w + cw > cols and line:
            at = line.rfind(" ")
            if at >= len(line) // 2:
                line, rest = line[:at + 1], line[at + 1:]
            else:
                rest = ""
            yield line
            line, w = rest, width(rest)
        line += c
        w += cw
    yield line


def _column(lines: list[tuple[str, str]], cols: int) -> list[str]:
    out: list[str] = []
    for key, value in lines:
        pieces = list(_cut(f"{key}: {value}" if key else value, cols))
        out.append(pieces[0])
        out += ["  " + p for p in _cut("".join(pieces[1:]), cols - 2)] if len(pieces) > 1 else []
    return out


def _pad(text: str, cols: int) -> str:
    return text + " " * max(0, cols - width(text))


def side_by_side(preview: list[dict[str, Any]], stream: str, target: str, total: int | None = None,
                 cols: int = WIDTH) -> list[str]:
    """The terminal's lines for one stream's preview: a head line per record, then the
    record as read on the left and as it will be sent on the right, each line at most
    ``cols`` wide. Narrower than 60 columns, the two come one under the other."""
    out: list[str] = []
    two = cols >= 60
    half = (cols - len(GAP)) // 2
    for i, p in enumerate(preview, 1):
        head = next(_cut(f"── {stream} {i} of {len(preview)}: source id {p['source_id']} ", cols))
        out.append(head + "─" * max(0, cols - width(head)))
        left = _column(shown(p["source"]), half if two else cols)
        sent = p.get("sent")
        right = _column(shown(sent) if sent is not None else [("", NOTHING)], half if two else cols)
        if two:
            out.append(_pad("as read", half) + GAP + f"as sent to {target}"[:half])
            out += [(_pad(a, half) + GAP + b).rstrip() for a, b in zip_longest(left, right, fillvalue="")]
        else:
            out += ["as read:", *left, f"as sent to {target}:", *right]
        if p.get("note"):
            out += list(_cut(p["note"], cols))
    return out
