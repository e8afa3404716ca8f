"""The named transforms a mapping may chain on a field.

A factory receives the argument written in the mapping (None, a scalar, a list or a
dict of options), checks it once — a bad one raises ValueError, which the compiler
reports with the file and line — and returns a plain ``value -> value`` function that
runs on every record. That function raises TransformError when a record's value cannot
be transformed; the mapping decides whether that fails the record or drops the field.

Conventions: None in gives None out (except ``default``); an empty or blank string is
absent data, so parsing transforms (phone, date, number, ZIP, state…) return None for
it rather than an error; a transform that works on text applies to each item of a list.

Phones, names and dates are the expensive ones, so each has a fast path for the common
shape (a NANP number, "First Last", ISO or slashed dates) that gives exactly what the
library would, and falls back to the library for everything else.
"""
from __future__ import annotations

import math
import re
import unicodedata
from datetime import date, datetime, timezone
from functools import lru_cache
from typing import Any, Callable

import phonenumbers
import us
from dateutil import parser as _dateparser
from nameparser import HumanName
from nameparser.config import CONSTANTS as _NAME_CONSTANTS

from migrator.schema import phone_valid, remember_valid_phone

__all__ = ["TRANSFORMS", "Transform", "TransformError", "TransformFactory",
           "build_transform", "get_transform"]

Transform = Callable[[Any], Any]
TransformFactory = Callable[[Any], Transform]


class TransformError(Exception):
    """A record's value that this transform cannot handle; the message is for a person."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


TRANSFORMS: dict[str, TransformFactory] = {}


def _register(name: str, *, positional: str | None = None,
              defaultable: tuple[str, ...] = ()) -> Callable[[TransformFactory], TransformFactory]:
    def deco(factory: TransformFactory) -> TransformFactory:
        factory.positional = positional  # type: ignore[attr-defined]
        factory.defaultable = defaultable  # type: ignore[attr-defined]
        TRANSFORMS[name] = factory
        return factory
    return deco


def get_transform(name: str) -> TransformFactory:
    """The factory registered under ``name``; KeyError if there is none."""
    return TRANSFORMS[name]


def build_transform(name: str, arg: Any = None, defaults: dict[str, Any] | None = None
                    ) -> Transform:
    """Build a transform, filling options the mapping's ``defaults`` provide (e.g. region)."""
    factory = get_transform(name)
    defaultable = getattr(factory, "defaultable", ())
    if defaults and defaultable and any(k in defaults for k in defaultable):
        if arg is None:
            arg = {}
        elif not isinstance(arg, dict):
            positional = getattr(factory, "positional", None)
            arg = {positional: arg} if positional else arg
        if isinstance(arg, dict):
            arg = dict(arg)
            for key in defaultable:
                if key in defaults and key not in arg:
                    arg[key] = defaults[key]
    return factory(arg)


# ---- helpers -------------------------------------------------------------------------


def _options(arg: Any, positional: str | None, allowed: dict[str, Any]
             ) -> dict[str, Any]:
    """Normalise an argument into options, refusing unknown ones."""
    out = dict(allowed)
    if arg is None:
        return out
    if isinstance(arg, dict):
        for key, value in arg.items():
            if key not in allowed:
                raise ValueError(f"unknown option {key!r} (expected {', '.join(allowed)})")
            out[key] = value
        return out
    if positional is None or isinstance(arg, list):
        raise ValueError(f"expected options {', '.join(allowed)} as a mapping, "
                         f"got {_describe(arg)}")
    out[positional] = arg
    return out


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _no_arg(arg: Any) -> None:
    if arg is not None:
        raise ValueError(f"takes no argument (got {_describe(arg)})")


def _text(value: Any) -> str:
    """A scalar as text; containers are an error of the record, not of the mapping."""
    if type(value) is str:
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, dict):
        raise TransformError("expected text, got an object")
    if isinstance(value, (list, tuple)):
        raise TransformError("expected text, got a list")
    return str(value)


def _each(fn: Callable[[Any], Any], on_str: Callable[[str], Any] | None = None) -> Transform:
    """Apply ``fn`` to a value, or to each item of a list; None stays None.

    ``on_str`` is a cheaper version of ``fn`` for plain text, the case of nearly every call.
    """
    text_fn = on_str or fn

    def run(value: Any) -> Any:
        if type(value) is str:
            return text_fn(value)
        if value is None:
            return None
        if type(value) is list:
            return [None if item is None else fn(item) for item in value]
        return fn(value)
    return run


def _is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    return isinstance(value, (list, tuple)) and not value


def _string_arg(arg: Any, what: str) -> str:
    if arg is None or isinstance(arg, (dict, list)) or isinstance(arg, bool):
        raise ValueError(f"needs {what} (got {_describe(arg)})")
    text = _text(arg)
    if not text:
        raise ValueError(f"needs {what} (got an empty string)")
    return text


# ---- text ----------------------------------------------------------------------------


@_register("strip")
def _strip(arg: Any) -> Transform:
    _no_arg(arg)
    return _each(lambda v: _text(v).strip(), str.strip)


@_register("lower")
def _lower(arg: Any) -> Transform:
    _no_arg(arg)
    return _each(lambda v: _text(v).lower(), str.lower)


@_register("upper")
def _upper(arg: Any) -> Transform:
    _no_arg(arg)
    return _each(lambda v: _text(v).upper(), str.upper)


_TITLE_FIX = re.compile(r"(?<=[A-Za-z])'S\b")


@_register("title")
def _title(arg: Any) -> Transform:
    _no_arg(arg)

    def one(value: Any) -> str:
        text = _text(value).title()
        return _TITLE_FIX.sub("'s", text) if "'" in text else text
    return _each(one)


@_register("truncate", positional="n")
def _truncate(arg: Any) -> Transform:
    n = _options(arg, "n", {"n": None})["n"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"needs a length of at least 1 (got {_describe(n)})")

    def one(v: Any) -> str:
        s = _text(v)
        return s if len(s) <= n else s[:n].rstrip()
    return _each(one)


@_register("prefix")
def _prefix(arg: Any) -> Transform:
    text = _string_arg(arg, "the text to add")
    return _each(lambda v: text + _text(v))


@_register("suffix")
def _suffix(arg: Any) -> Transform:
    text = _string_arg(arg, "the text to add")
    return _each(lambda v: _text(v) + text)


@_register("replace")
def _replace(arg: Any) -> Transform:
    if not isinstance(arg, dict):
        raise ValueError(f"needs {{old: ..., new: ...}} (got {_describe(arg)})")
    opts = _options(arg, None, {"old": None, "new": ""})
    if opts["old"] is None or isinstance(opts["old"], (dict, list)) or _text(opts["old"]) == "":
        raise ValueError("needs a non-empty 'old'")
    if opts["new"] is None:
        opts["new"] = ""
    if isinstance(opts["new"], (dict, list)):
        raise ValueError("'new' must be text")
    old, new = _text(opts["old"]), _text(opts["new"])
    return _each(lambda v: _text(v).replace(old, new))


_NON_DIGITS = re.compile(r"[^0-9]+")


@_register("digits")
def _digits(arg: Any) -> Transform:
    _no_arg(arg)

    def one(v: Any) -> str | None:
        return _NON_DIGITS.sub("", _text(v)) or None
    return _each(one)


# ---- lists ---------------------------------------------------------------------------


@_register("join", positional="separator")
def _join(arg: Any) -> Transform:
    sep = _options(arg, "separator", {"separator": ", "})["separator"]
    if not isinstance(sep, str):
        raise ValueError(f"separator must be text (got {_describe(sep)})")

    def run(value: Any) -> Any:
        if type(value) is not list:
            return value
        return sep.join(s for s in (_text(x) for x in value if x is not None) if s.strip())
    return run


_NOTE_TEXT_KEYS = ("content", "Note", "note", "text", "body")
_NOTE_DATE_KEYS = ("created_at", "CreatedTimestamp", "date", "created", "dateAdded")


@_register("join_notes")
def _join_notes(arg: Any) -> Transform:
    """Notes as one text that keeps each note's date: "2024-03-01 — text" lines.

    For a target that holds notes as one text field (REI's Notes custom field, Brokerkit's
    note, a Realeflow custom field), so the dates are not lost. Each item is a note object
    (its text and date under the keys ``text`` and ``date`` name, or the usual ones), a
    [date, text] pair, or plain text (no date).
    """
    opts = _options(arg, None, {"separator": "\n\n", "text": None, "date": None})
    sep, text_key, date_key = opts["separator"], opts["text"], opts["date"]
    if not isinstance(sep, str):
        raise ValueError(f"separator must be text (got {_describe(sep)})")
    for key in (text_key, date_key):
        if key is not None and not isinstance(key, str):
            raise ValueError(f"text and date name a key of the note (got {_describe(key)})")
    text_keys = (text_key,) if text_key else _NOTE_TEXT_KEYS
    date_keys = (date_key,) if date_key else _NOTE_DATE_KEYS

    def pick(note: dict[str, Any], keys: tuple[str, ...]) -> Any:
        return next((note[k] for k in keys if note.get(k) not in (None, "")), None)

    def line(item: Any) -> str | None:
        if isinstance(item, dict):
            text, when = pick(item, text_keys), pick(item, date_keys)
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            when, text = item
        else:
            text, when = item, None
        if text is None or not _text(text).strip():
            return None
        text = _text(text).strip()
        day = _parse_date(when, False) if when not in (None, "") else None
        return f"{day:%Y-%m-%d} — {text}" if day is not None else text

    def run(value: Any) -> Any:
        if value is None:
            return None
        items = value if type(value) is list else [value]
        lines = [s for s in (line(x) for x in items if x is not None) if s]
        return sep.join(lines) or None
    return run


@_register("split", positional="separator")
def _split(arg: Any) -> Transform:
    sep = _options(arg, "separator", {"separator": ","})["separator"]
    if not isinstance(sep, str) or not sep:
        raise ValueError(f"separator must be non-empty text (got {_describe(sep)})")

    def one(value: Any) -> list[str]:
        return [p for p in (s.strip() for s in _text(value).split(sep)) if p]

    def run(value: Any) -> Any:
        if value is None:
            return None
        if type(value) is list:
            return [p for item in value if item is not None for p in one(item)]
        return one(value)
    return run


@_register("first")
def _first(arg: Any) -> Transform:
    _no_arg(arg)

    def run(value: Any) -> Any:
        if type(value) is not list:
            return value
        for item in value:
            if not _is_empty(item):
                return item
        return None
    return run


@_register("rest")
def _rest(arg: Any) -> Transform:
    """A list without its first item: the values left once the first has a field of its own."""
    _no_arg(arg)

    def run(value: Any) -> Any:
        if type(value) is not list:
            return value
        return value[1:] or None
    return run


@_register("first_if_new")
def _first_if_new(arg: Any) -> Transform:
    """[candidate, *taken] -> the candidate, unless it is empty or one of the taken values
    (compared ignoring case): to put a value into a free slot without writing it twice,
    e.g. a primary phone into the home slot when it is not already the mobile one."""
    _no_arg(arg)

    def key(item: Any) -> Any:
        return item.casefold() if isinstance(item, str) else item

    def run(value: Any) -> Any:
        if type(value) is not list:
            return value
        if not value or _is_empty(value[0]):
            return None
        taken = {key(item) for item in value[1:] if not _is_empty(item)}
        return None if key(value[0]) in taken else value[0]
    return run


@_register("unique")
def _unique(arg: Any) -> Transform:
    _no_arg(arg)

    def run(value: Any) -> Any:
        if type(value) is not list:
            return value
        seen: set[Any] = set()
        out = []
        for item in value:
            if type(item) is str:
                key: Any = item.casefold()  # text keys never equal the tuples below
            else:
                try:
                    hash(item)
                    key = ("v", item)
                except TypeError:
                    key = ("r", repr(item))
            if key not in seen:
                seen.add(key)
                out.append(item)
        return out
    return run


@_register("drop_empty")
def _drop_empty(arg: Any) -> Transform:
    _no_arg(arg)

    def run(value: Any) -> Any:
        if type(value) is list:
            kept = [item for item in value if not _is_empty(item)]
            return kept or None
        if isinstance(value, str) and not value.strip():
            return None
        return value
    return run


@_register("default")
def _default(arg: Any) -> Transform:
    if arg is None:
        raise ValueError("needs the value to use when the field is empty")
    fallback = arg

    def run(value: Any) -> Any:
        return fallback if _is_empty(value) else value
    return run


# ---- value tables --------------------------------------------------------------------


def _table_key(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip().casefold()


_MISSING = object()


@_register("map")
def _map(arg: Any) -> Transform:
    if not isinstance(arg, dict) or not arg:
        raise ValueError(f"needs a table of values (got {_describe(arg)})")
    fallback: Any = _MISSING
    table_arg = arg
    if "table" in arg and isinstance(arg["table"], dict) and set(arg) <= {"table", "default"}:
        table_arg = arg["table"]
        if "default" in arg:
            fallback = arg["default"]
        if not table_arg:
            raise ValueError("needs a non-empty table")
    table: dict[str, Any] = {}
    originals: dict[str, Any] = {}
    for key, value in table_arg.items():
        if isinstance(key, (dict, list)) or key is None:
            raise ValueError(f"table keys must be plain values (got {_describe(key)})")
        k = _table_key(key)
        if k in table:
            raise ValueError(f"table keys {originals[k]!r} and {key!r} are the same "
                             "(keys are compared as text, ignoring case)")
        table[k] = value
        originals[k] = key

    def one(value: Any) -> Any:
        found = table.get(_table_key(value), _MISSING)
        if found is not _MISSING:
            return found
        if fallback is not _MISSING:
            return fallback
        raise TransformError(f"no mapping for value {_text(value)!r}")

    def run(value: Any) -> Any:
        if value is None:
            return None
        if type(value) is list:
            return [one(item) for item in value if item is not None]
        if isinstance(value, dict):
            raise TransformError("expected a value, got an object")
        return one(value)
    return run


# ---- typed values --------------------------------------------------------------------

_TRUE = frozenset({"yes", "y", "true", "t", "1", "on"})
_FALSE = frozenset({"no", "n", "false", "f", "0", "off"})


@_register("bool")
def _bool(arg: Any) -> Transform:
    _no_arg(arg)

    def one(value: Any) -> bool | None:
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        s = _text(value).strip().lower()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
        if not s:
            return None
        raise TransformError(f"not a yes/no value: {s!r}")
    return _each(one)


_GROUPED = re.compile(r"[+-]?[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]*)?")


def _number_text(value: Any) -> str:
    s = _text(value).strip()
    if s.startswith("$"):
        s = s[1:].lstrip()
    elif s.startswith("-$"):
        s = "-" + s[2:].lstrip()
    if "," in s and _GROUPED.fullmatch(s):
        s = s.replace(",", "")
    return s


@_register("int")
def _int(arg: Any) -> Transform:
    _no_arg(arg)

    def one(value: Any) -> int | None:
        if type(value) is int:
            return value
        if isinstance(value, bool):
            raise TransformError("expected a number, got true/false")
        if isinstance(value, float):
            if value.is_integer():
                return int(value)
            raise TransformError(f"not a whole number: {value!r}")
        s = _number_text(value)
        if not s:
            return None
        try:
            return int(s)
        except ValueError:
            pass
        try:
            f = float(s)
        except ValueError:
            raise TransformError(f"not a number: {s!r}") from None
        if f.is_integer():
            return int(f)
        raise TransformError(f"not a whole number: {s!r}")
    return _each(one)


@_register("float")
def _float(arg: Any) -> Transform:
    _no_arg(arg)

    def one(value: Any) -> float | None:
        if isinstance(value, bool):
            raise TransformError("expected a number, got true/false")
        if isinstance(value, (int, float)):
            f = float(value)
        else:
            s = _number_text(value)
            if not s:
                return None
            try:
                f = float(s)
            except ValueError:
                raise TransformError(f"not a number: {s!r}") from None
        if not math.isfinite(f):
            raise TransformError(f"not a finite number: {value!r}")
        return f
    return _each(one)


# ---- phones --------------------------------------------------------------------------

_PHONE_PUNCT = str.maketrans("", "", " \t().+-")


@_register("phone_e164", positional="region", defaultable=("region",))
def _phone_e164(arg: Any) -> Transform:
    region = _options(arg, "region", {"region": "US"})["region"]
    if not isinstance(region, str) or region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown region {region!r} (a 2-letter country code such as US)")
    region = region.upper()
    nanp = phonenumbers.country_code_for_region(region) == 1
    parse = phonenumbers.parse
    is_valid = phonenumbers.is_valid_number
    e164 = phonenumbers.PhoneNumberFormat.E164

    def nanp_fast(s: str) -> str | None:
        """E.164 for a plain NANP number, or None to let the library decide."""
        digits = s.translate(_PHONE_PUNCT)
        if not (digits.isdigit() and digits.isascii()):
            return None
        if s[0] == "+" or len(digits) == 11:
            if len(digits) != 11 or digits[0] != "1":
                return None
            digits = digits[1:]
        elif len(digits) != 10:
            return None
        out = "+1" + digits
        if phone_valid(out):
            return out
        raise TransformError("not a valid phone number")

    def one(value: Any) -> str | None:
        s = _text(value).strip()
        if not s:
            return None
        if nanp:
            out = nanp_fast(s)
            if out is not None:
                return out
        try:
            number = parse(s, region)
        except phonenumbers.NumberParseException:
            raise TransformError("not a valid phone number") from None
        out = phonenumbers.format_number(number, e164)
        if number.country_code == 1 and not number.italian_leading_zero:
            valid = phone_valid(out)  # the same test, without the library's per-call cost
        else:
            valid = is_valid(number)
        if not valid:
            raise TransformError("not a valid phone number")
        remember_valid_phone(out)
        return out
    return _each(one)


# ---- names ---------------------------------------------------------------------------

_NAME_TOKEN = re.compile(r"[A-Za-z][A-Za-z'\-]*")
_ROMAN = re.compile(r"(?=[mdclxvi])m*(?:c[md]|d?c*)(?:x[cl]|l?x*)(?:i[xv]|v?i*)")
_NAME_SPECIAL = (_NAME_CONSTANTS.titles, _NAME_CONSTANTS.suffix_acronyms,
                 _NAME_CONSTANTS.suffix_not_acronyms, _NAME_CONSTANTS.prefixes,
                 _NAME_CONSTANTS.conjunctions)


def _plain_token(token: str) -> bool:
    if _NAME_TOKEN.fullmatch(token) is None:
        return False
    low = token.lower()
    if _ROMAN.fullmatch(low):
        return False
    return not any(low in group for group in _NAME_SPECIAL)


def _fast_name(text: str) -> tuple[str, str, str] | None:
    """(first, middle, last) when nameparser could only read it one way, else None."""
    if "," in text:
        last_part, _, given_part = text.partition(",")
        if "," in given_part:
            return None
        last, given = last_part.split(), given_part.split()
        if len(last) != 1 or not 1 <= len(given) <= 2:
            return None
        tokens = last + given
        if not all(_plain_token(t) for t in tokens):
            return None
        return given[0], given[1] if len(given) == 2 else "", last[0]
    tokens = text.split()
    if not 1 <= len(tokens) <= 3 or not all(_plain_token(t) for t in tokens):
        return None
    if len(tokens) == 1:
        return tokens[0], "", ""
    if len(tokens) == 2:
        return tokens[0], "", tokens[1]
    return tokens[0], tokens[1], tokens[2]


# Scripts that write the family name first (Chinese, Japanese, Korean), and two-syllable
# family names common enough that a name written without a space is split after them.
_FAMILY_FIRST = ("CJK UNIFIED", "CJK COMPATIBILITY", "HIRAGANA", "KATAKANA", "HANGUL")
_COMPOUND_FAMILY = frozenset({
    "欧阳", "歐陽", "司马", "司馬", "诸葛", "諸葛", "上官", "东方", "東方", "皇甫", "尉迟", "尉遲",
    "公孙", "公孫", "慕容", "夏侯", "令狐", "长孙", "長孫", "宇文", "司徒", "端木", "轩辕", "軒轅",
    "南宫", "南宮", "西门", "西門", "독고", "남궁", "황보", "제갈", "사공", "선우", "서문"})


def _char_script(ch: str) -> str:
    """"east" (family name first), "latin", or "other" for one letter."""
    if ch.isascii():
        return "latin"
    try:
        name = unicodedata.name(ch)
    except ValueError:
        return "other"
    if name.startswith(_FAMILY_FIRST):
        return "east"
    return "latin" if name.startswith("LATIN") else "other"


def _name_script(text: str) -> str:
    """The script of a name's letters: "east" if any is Chinese, Japanese or Korean,
    "latin" if all are Latin, else "other" (Cyrillic, Greek, Arabic, Hebrew…)."""
    scripts = {_char_script(ch) for ch in text if ch.isalpha()}
    if "east" in scripts:
        return "east"
    return "other" if "other" in scripts else "latin"


def _east_asian_split(text: str) -> tuple[str, str, str]:
    """Family name first: "李 小龙" and "李小龙" are both given 小龙, family 李.

    Without a space, the family name is one syllable (Chinese, Korean) unless it is a
    known two-syllable one, or the leading kanji before kana (Japanese), or two of four
    kanji (the usual Japanese shape).
    """
    tokens = text.split()
    if len(tokens) > 1:
        return " ".join(tokens[1:]), "", tokens[0]
    if len(text) < 2:
        return text, "", ""
    if len(text) >= 3 and text[:2] in _COMPOUND_FAMILY:
        return text[2:], "", text[:2]
    kana = [i for i, ch in enumerate(text)
            if unicodedata.name(ch, "").startswith(("HIRAGANA", "KATAKANA"))]
    if kana and kana[0] > 0 and not unicodedata.name(text[0], "").startswith(("HIRAGANA", "KATAKANA")):
        return text[kana[0]:], "", text[:kana[0]]
    if len(text) == 4 and not kana and not unicodedata.name(text[0], "").startswith("HANGUL"):
        return text[2:], "", text[:2]
    return text[1:], "", text[:1]


@lru_cache(maxsize=256)
def _parse_name(text: str) -> tuple[str, str, str]:
    fast = _fast_name(text)
    if fast is not None:
        return fast
    script = _name_script(text)
    if script == "east":
        return _east_asian_split(text)
    if script == "other" and "," not in text and any(
            unicodedata.name(ch, "").startswith(("ARABIC", "HEBREW")) for ch in text):
        # The given name, then the father's and family names, one "last name" for a CRM;
        # nameparser would take "عبد" of "أحمد عبد الله" for a middle name.
        tokens = text.split()
        return tokens[0], "", " ".join(tokens[1:])
    name = HumanName(text)
    return name.first, name.middle, name.last


@_register("split_name")
def _split_name(arg: Any) -> Transform:
    _no_arg(arg)

    def one(value: Any) -> dict[str, str] | None:
        s = _text(value).strip()
        if not s:
            return None
        first, middle, last = _parse_name(s)
        return {"first": first, "last": last, "middle": middle}
    return _each(one)


def _name_part(index: int) -> Transform:
    def one(value: Any) -> str | None:
        s = _text(value).strip()
        if not s:
            return None
        return _parse_name(s)[index] or None
    return _each(one)


@_register("first_name")
def _first_name(arg: Any) -> Transform:
    _no_arg(arg)
    return _name_part(0)


@_register("last_name")
def _last_name(arg: Any) -> Transform:
    _no_arg(arg)
    return _name_part(2)


def _family_first(last: str) -> bool:
    return _name_script(last) == "east"


@_register("join_name")
def _join_name(arg: Any) -> Transform:
    """A full name from its parts [first, (middle,) last], the way its script writes it:
    "Ann Lee", but "李小龙" (family name first, no space) for Chinese, Japanese and Korean,
    so that split_name gives the same parts back."""
    _no_arg(arg)

    def run(value: Any) -> Any:
        if value is None:
            return None
        if type(value) is not list:
            s = _text(value).strip()
            return s or None
        parts = [s for s in (_text(x).strip() for x in value if x is not None) if s]
        if not parts:
            return None
        if len(parts) > 1 and all(_family_first(part) for part in parts):
            return parts[-1] + "".join(parts[:-1])
        return " ".join(parts)
    return run


# ---- dates ---------------------------------------------------------------------------

_ISO_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
                       r"(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?"
                       r"(?:Z|[+-][0-9]{2}:?[0-9]{2})?)?")
_SEP_DATE = re.compile(r"([0-9]{1,2})([/.\-])([0-9]{1,2})\2([0-9]{4})")
_DAY_MONTH_YEAR = re.compile(r"([0-9]{1,2})[ \-]([A-Za-z]{3,9})\.?,?[ \-]([0-9]{4})")
_MONTH_DAY_YEAR = re.compile(r"([A-Za-z]{3,9})\.? ([0-9]{1,2})(?:st|nd|rd|th)?,? ([0-9]{4})")
_MONTHS = {name.lower(): i for i, name in enumerate(
    ("January", "February", "March", "April", "May", "June", "July", "August", "September",
     "October", "November", "December"), start=1)}
_MONTHS.update({name[:3]: i for name, i in list(_MONTHS.items())})
_MONTHS["sept"] = 9
_EPOCH_TEXT = re.compile(r"-?[0-9]{10,13}")
_DEFAULT_A = datetime(2000, 1, 1)
_DEFAULT_B = datetime(2001, 2, 2)


def _from_epoch(number: float) -> datetime:
    seconds = number / 1000 if abs(number) >= 1e11 else number
    try:
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise TransformError(f"not a valid timestamp: {number!r}") from None


def _parse_date(value: Any, dayfirst: bool) -> date | None:
    if isinstance(value, (date, datetime)):
        return value
    if isinstance(value, bool):
        raise TransformError("expected a date, got true/false")
    if isinstance(value, (int, float)):
        return _from_epoch(value)
    s = _text(value).strip()
    if not s:
        return None
    try:
        if s[4:5] == "-":
            m = _ISO_DATE.fullmatch(s)
            if m is not None:
                return date(int(m[1]), int(m[2]), int(m[3]))
        elif s[0].isdigit():
            m = _SEP_DATE.fullmatch(s)
            if m is not None:
                a, b, year = int(m[1]), int(m[3]), int(m[4])
                day, month = (a, b) if dayfirst else (b, a)
                if month > 12 and day <= 12:
                    day, month = month, day
                return date(year, month, day)
            m = _DAY_MONTH_YEAR.fullmatch(s)
            if m is not None and m[2].lower() in _MONTHS:
                return date(int(m[3]), _MONTHS[m[2].lower()], int(m[1]))
        else:
            m = _MONTH_DAY_YEAR.fullmatch(s)
            if m is not None and m[1].lower() in _MONTHS:
                return date(int(m[3]), _MONTHS[m[1].lower()], int(m[2]))
    except ValueError:
        raise TransformError(f"not a valid date: {s!r}") from None
    if _EPOCH_TEXT.fullmatch(s):
        return _from_epoch(int(s))
    try:
        first = _dateparser.parse(s, dayfirst=dayfirst, default=_DEFAULT_A)
        if first.year == 2000 or first.month == 1 or first.day == 1:
            second = _dateparser.parse(s, dayfirst=dayfirst, default=_DEFAULT_B)
            if (first.year, first.month, first.day) != (second.year, second.month, second.day):
                raise TransformError(f"incomplete date (needs day, month and year): {s!r}")
    except (ValueError, OverflowError, TypeError):
        raise TransformError(f"not a valid date: {s!r}") from None
    return first


@_register("date", positional="format", defaultable=("dayfirst",))
def _date(arg: Any) -> Transform:
    opts = _options(arg, "format", {"format": "%Y-%m-%d", "dayfirst": False})
    fmt, dayfirst = opts["format"], opts["dayfirst"]
    if not isinstance(fmt, str) or "%" not in fmt:
        raise ValueError(f"format must be a strftime pattern such as %d/%m/%Y (got {fmt!r})")
    try:
        datetime(2000, 1, 1).strftime(fmt)
    except ValueError as exc:
        raise ValueError(f"bad format {fmt!r}: {exc}") from None
    if not isinstance(dayfirst, bool):
        raise ValueError(f"dayfirst must be true or false (got {dayfirst!r})")

    render = _date_formatter(fmt)

    def one(value: Any) -> str | None:
        parsed = _parse_date(value, dayfirst)
        if parsed is None:
            return None
        try:
            return render(parsed)
        except ValueError:
            raise TransformError(f"cannot format date {parsed!r}") from None
    return _each(one)


def _date_formatter(fmt: str) -> Callable[[date], str]:
    """``strftime(fmt)``, done with string formatting when fmt uses only %d, %m and %Y."""
    pieces = re.split(r"%(.)", fmt)
    if any(p not in ("d", "m", "Y") for p in pieces[1::2]):
        return lambda d: d.strftime(fmt)
    template = "".join(
        ("{0.day:02d}", "{0.month:02d}", "{0.year}")[("d", "m", "Y").index(p)] if i % 2
        else p.replace("{", "{{").replace("}", "}}")
        for i, p in enumerate(pieces))
    return template.format


# ---- US addresses --------------------------------------------------------------------


def _state_key(text: str) -> str:
    return " ".join(text.replace(".", "").lower().split())


_STATES: dict[str, Any] = {}
for _state in us.states.STATES_AND_TERRITORIES + [us.states.DC]:
    _STATES[_state_key(_state.abbr)] = _state
    _STATES[_state_key(_state.name)] = _state


@_register("state_abbrev", positional="to")
def _state_abbrev(arg: Any) -> Transform:
    to = _options(arg, "to", {"to": "abbr"})["to"]
    if to not in ("abbr", "name"):
        raise ValueError(f"'to' must be abbr or name (got {to!r})")
    attr = "abbr" if to == "abbr" else "name"

    def one(value: Any) -> str | None:
        s = _text(value)
        if not s.strip():
            return None
        state = _STATES.get(s.lower()) or _STATES.get(_state_key(s))
        if state is None:
            raise TransformError(f"not a US state: {s.strip()!r}")
        return getattr(state, attr)
    return _each(one)


_ZIP_PLUS4 = re.compile(r"([0-9]{5})(?:[-\s]?([0-9]{4}))?")
_ZIP4 = re.compile(r"[0-9]{4}")


def _zip_parts(value: Any) -> tuple[str, str | None] | None:
    """A US ZIP code's five digits and its +4 (or None); None for an empty value. Four
    digits are a ZIP whose leading zero a spreadsheet dropped."""
    if isinstance(value, bool):
        raise TransformError("not a valid ZIP code")
    s = _text(value).strip()
    if not s:
        return None
    m = _ZIP_PLUS4.fullmatch(s)
    if m is not None:
        return m[1], m[2]
    if _ZIP4.fullmatch(s):
        return "0" + s, None
    raise TransformError(f"not a valid ZIP code: {s!r}")


@_register("zip5")
def _zip5(arg: Any) -> Transform:
    _no_arg(arg)

    def one(value: Any) -> str | None:
        parts = _zip_parts(value)
        return None if parts is None else parts[0]
    return _each(one)


@_register("zip")
def _zip(arg: Any) -> Transform:
    """A US ZIP code as "12345", or "12345-6789" when it has its +4: for targets whose doc
    does not ask for five digits (zip5 cuts the +4)."""
    _no_arg(arg)

    def one(value: Any) -> str | None:
        parts = _zip_parts(value)
        if parts is None:
            return None
        return f"{parts[0]}-{parts[1]}" if parts[1] else parts[0]
    return _each(one)


@_register("join_address")
def _join_address(arg: Any) -> Transform:
    """[street, city, state, zip] as one line "street, city, ST zip" that a target can split
    again: an empty city keeps its place ("1 Main St, , CA 94105") instead of letting the
    state and ZIP pass for the city."""
    _no_arg(arg)

    def run(value: Any) -> Any:
        if value is None:
            return None
        if type(value) is not list:
            return _text(value).strip() or None
        parts = [("" if x is None else _text(x).strip()) for x in value] + ["", "", "", ""]
        street, city, state, zip_code = parts[:4]
        slots = [street, city, " ".join(p for p in (state, zip_code) if p)]
        while slots and not slots[-1]:
            slots.pop()
        return ", ".join(slots) or None
    return run


_ADDRESS_PARTS = ("street", "city", "state", "zip")
_NOT_STREET = frozenset({"PlaceName", "StateName", "ZipCode", "CountryName", "Recipient",
                         "NotAddress"})


@lru_cache(maxsize=256)
def _parse_address(text: str) -> tuple[str | None, str | None, str | None, str | None]:
    import usaddress  # its model takes a moment to load; only mappings that use it pay
    try:
        tagged, _kind = usaddress.tag(text)
    except usaddress.RepeatedLabelError:
        raise TransformError(f"could not read address: {text!r}") from None
    street = " ".join(v.strip(" ,;") for k, v in tagged.items() if k not in _NOT_STREET)

    def part(label: str) -> str | None:
        v = tagged.get(label)
        return v.strip(" ,;") or None if v else None
    parts = (street or None, part("PlaceName"), part("StateName"), part("ZipCode"))
    if parts == (None, None, None, None):
        raise TransformError(f"could not read address: {text!r}")
    return parts


@_register("address_part", positional="part")
def _address_part(arg: Any) -> Transform:
    part = _options(arg, "part", {"part": None})["part"]
    if part not in _ADDRESS_PARTS:
        raise ValueError(f"part must be one of {', '.join(_ADDRESS_PARTS)} (got {part!r})")
    index = _ADDRESS_PARTS.index(part)

    def one(value: Any) -> str | None:
        s = " ".join(_text(value).split())
        if not s:
            return None
        return _parse_address(s)[index]
    return _each(one)
