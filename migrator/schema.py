"""What a target stream accepts, and a validator fast enough to run on every record.

Each target declares its streams with these classes, taken from its vendor doc. The
validator is compiled once per field into a small closure so that a dry run over a
large export costs little more than reading it. Messages are written for the person
who will fix the data: they name the rule and the figure, never a stack trace.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit

import phonenumbers
import us

__all__ = ["AnyOf", "Field", "Ref", "StreamSchema", "Violation", "excerpt",
           "phone_valid", "remember_valid_phone", "FORMATS", "TYPES"]

TYPES = ("string", "int", "float", "bool", "date", "list")
FORMATS = ("email", "phone_e164", "state2", "zip5", "url")


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: str = "string"
    required: bool = False
    max_length: int | None = None
    max_items: int | None = None
    enum: tuple[str, ...] | None = None
    format: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    description: str = ""
    # The vendor's own words when it refuses this field, by rule ("format:email",
    # "required", "enum", "minimum", "maximum"…, or "*"), so `validate` gives the reason
    # the server would give.
    messages: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"field {self.name!r}: unknown type {self.type!r}")
        if self.format is not None and self.format not in FORMATS \
                and not self.format.startswith("date:"):
            raise ValueError(f"field {self.name!r}: unknown format {self.format!r}")


@dataclass(frozen=True, slots=True)
class AnyOf:
    """At least one of ``fields`` must be non-empty (e.g. REI: email or phone)."""

    fields: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Violation:
    field: str
    rule: str
    message: str
    excerpt: str


@dataclass(frozen=True, slots=True)
class Ref:
    """A value that names another stream's record by its source id.

    The engine swaps it for that record's target id before writing, so the validator
    accepts it wherever a value is expected.
    """

    stream: str
    source_id: str


def excerpt(value: Any, limit: int = 40) -> str:
    """``repr`` of a value, cut short enough for a report line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---- formats -------------------------------------------------------------------------

# possessive quantifiers: nothing here ever needs to give characters back
_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]++(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]++)*+"
    r"@(?:(?!-)[A-Za-z0-9-]{1,63}+(?<!-)\.)++"
    r"(?:[A-Za-z]{2,63}+|xn--[A-Za-z0-9-]{1,59}+)")
_E164 = re.compile(r"\+[1-9][0-9]{7,14}")
_ZIP5 = re.compile(r"[0-9]{5}")
_STATES = frozenset(s.abbr for s in us.states.STATES_AND_TERRITORIES) | {"DC"}

_phone_memo: dict[str, bool] = {}
_PHONE_MEMO_MAX = 8192
# any matching type makes a number valid, so the common ones go first
_TYPE_DESCS = ("fixed_line", "mobile", "toll_free", "premium_rate", "shared_cost", "voip",
               "personal_number", "pager", "uan", "voicemail")


def _region_validator(region: str) -> Callable[[str], bool]:
    """phonenumbers' validity test for one region, compiled once from its own metadata.

    The library re-resolves metadata and patterns on every call (about 8 µs); this runs
    the same tests — general pattern, then any number type, each with its lengths.
    """
    from phonenumbers.phonemetadata import PhoneMetadata
    meta = PhoneMetadata.metadata_for_region(region)

    def test(desc: Any) -> tuple[frozenset[int], Callable[[str], Any]] | None:
        if desc is None or not desc.national_number_pattern:
            return None
        return frozenset(desc.possible_length or ()), re.compile(
            desc.national_number_pattern).fullmatch
    general = test(meta.general_desc)
    types = tuple(t for t in (test(getattr(meta, n, None)) for n in _TYPE_DESCS)
                  if t is not None)
    if general is None:
        return lambda nsn: False
    general_lengths, general_match = general

    def valid(nsn: str) -> bool:
        size = len(nsn)
        if (general_lengths and size not in general_lengths) or general_match(nsn) is None:
            return False
        for lengths, fullmatch in types:
            if (not lengths or size in lengths) and fullmatch(nsn) is not None:
                return True
        return False
    return valid


_NanpRules = tuple[tuple["Callable[[str], Any] | None", Callable[[str], bool]], ...]
_nanp_rules: _NanpRules = ()


def _build_nanp_rules() -> _NanpRules:
    from phonenumbers.phonemetadata import PhoneMetadata
    rules = []
    for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[1]:
        meta = PhoneMetadata.metadata_for_region(region)
        if meta is None:
            continue
        lead = re.compile(meta.leading_digits).match if meta.leading_digits else None
        rules.append((lead, _region_validator(region)))
    return tuple(rules)


def _nanp_valid(nsn: str) -> bool:
    """``phonenumbers.is_valid_number`` for a +1 number, without its per-call overhead.

    The library picks the region as it does here — in its own order, by leading digits
    where a region declares them, else by a full match — then validates for that region.
    """
    global _nanp_rules
    if not _nanp_rules:
        _nanp_rules = _build_nanp_rules()
    for lead, valid in _nanp_rules:
        if lead is not None:
            if lead(nsn):
                return valid(nsn)
        elif valid(nsn):
            return True
    return False


def phone_valid(e164: str) -> bool:
    """Whether ``e164`` is a valid number in E.164 form (memoised, bounded)."""
    known = _phone_memo.get(e164)
    if known is not None:
        return known
    ok = False
    if _E164.fullmatch(e164) is not None:
        if e164[1] == "1" and e164[2] != "0":
            ok = _nanp_valid(e164[2:])
        else:
            try:
                ok = phonenumbers.is_valid_number(phonenumbers.parse(e164, None))
            except phonenumbers.NumberParseException:
                ok = False
    if len(_phone_memo) >= _PHONE_MEMO_MAX:
        _phone_memo.clear()
    _phone_memo[e164] = ok
    return ok


def remember_valid_phone(e164: str) -> None:
    """Record that ``e164`` was just proven valid (by the phone_e164 transform), so that
    validating the mapped record does not parse the same number a second time."""
    if len(_phone_memo) >= _PHONE_MEMO_MAX:
        _phone_memo.clear()
    _phone_memo[e164] = True


def _email_ok(value: str) -> bool:
    if len(value) > 254:
        return False
    if value.isascii():
        if _EMAIL.fullmatch(value) is None:
            return False
        return len(value.partition("@")[0]) <= 64
    import email_validator  # internationalised addresses are rare: pay the import then
    try:
        email_validator.validate_email(value, check_deliverability=False)
    except email_validator.EmailNotValidError:
        return False
    return True


def _url_ok(value: str) -> bool:
    if any(c.isspace() for c in value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


# the groups datetime.strptime uses for these directives, so both accept the same text
_DATE_PARTS = {"d": r"(3[01]|[12]\d|0[1-9]|[1-9]| [1-9])", "m": r"(1[0-2]|0[1-9]|[1-9])",
               "Y": r"(\d\d\d\d)"}


def _date_regex(pattern: str) -> tuple[Callable[[str], Any], tuple[str, ...]] | None:
    """A regex equivalent to strptime for patterns made of %d, %m and %Y only."""
    pieces = re.split(r"%(.)", pattern)
    order: list[str] = []
    rx = []
    for i, piece in enumerate(pieces):
        if i % 2:
            if piece not in _DATE_PARTS or piece in order:
                return None
            order.append(piece)
            rx.append(_DATE_PARTS[piece])
        else:
            rx.append(r"\s+".join(re.escape(p) for p in re.split(r"\s+", piece)))
    if sorted(order) != ["Y", "d", "m"]:
        return None
    return re.compile("".join(rx), re.IGNORECASE).fullmatch, tuple(order)


def _date_checker(pattern: str) -> tuple[Callable[[str], bool], str]:
    example = datetime(1999, 12, 31, 13, 45, 30).strftime(pattern)
    fast = _date_regex(pattern)

    def ok(value: str) -> bool:
        try:
            datetime.strptime(value, pattern)
        except ValueError:
            return False
        return True

    if fast is None:
        return ok, f"must be a date like {example}"
    fullmatch, order = fast
    iy, im, iday = order.index("Y") + 1, order.index("m") + 1, order.index("d") + 1

    def ok_fast(value: str) -> bool:
        m = fullmatch(value)
        if m is None:
            return False
        if int(m[iday]) <= 28:  # a day every month has
            return True
        try:
            date(int(m[iy]), int(m[im]), int(m[iday]))
        except ValueError:
            return False
        return True
    return ok_fast, f"must be a date like {example}"


def _format_checker(fmt: str) -> tuple[Callable[[str], bool], str]:
    if fmt == "email":
        return _email_ok, "is not a valid email address"
    if fmt == "phone_e164":
        return phone_valid, "is not a valid phone number"
    if fmt == "state2":
        return _STATES.__contains__, "must be a 2-letter US state code"
    if fmt == "zip5":
        return (lambda v: _ZIP5.fullmatch(v) is not None), "must be a 5-digit ZIP code"
    if fmt == "url":
        return _url_ok, "is not a valid http(s) URL"
    return _date_checker(fmt[5:])


# ---- per-field checkers --------------------------------------------------------------

Check = Callable[[Any], "list[Violation] | None"]


def _number_text(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _compile_text_rules(f: Field) -> Callable[[str], tuple[str, str] | None] | None:
    """Rules shared by a string field and each item of a list field: (rule, message).

    None when the field has no rule beyond its type."""
    max_length = f.max_length
    enum = frozenset(f.enum) if f.enum is not None else None
    enum_text = ", ".join(f.enum) if f.enum is not None else ""
    fmt_ok, fmt_msg = _format_checker(f.format) if f.format else (None, "")
    fmt_rule = "format:" + f.format.split(":")[0] if f.format else ""

    if enum is None and fmt_ok is None:
        if max_length is None:
            return None

        def length_only(value: str) -> tuple[str, str] | None:
            if len(value) > max_length:
                return "max_length", f"must be at most {max_length} characters (got {len(value)})"
            return None
        return length_only

    def rules(value: str) -> tuple[str, str] | None:
        if max_length is not None and len(value) > max_length:
            return "max_length", f"must be at most {max_length} characters (got {len(value)})"
        if enum is not None and value not in enum:
            return "enum", f"must be one of {enum_text}"
        if fmt_ok is not None and not fmt_ok(value):
            return fmt_rule, fmt_msg
        return None
    return rules


def _compile_field(f: Field) -> Check:
    check = _compile_field_rules(f)
    if not f.messages or check is None:
        return check
    vendor = dict(f.messages)

    def in_vendor_words(value: Any) -> list[Violation] | None:
        bad = check(value)
        if not bad:
            return bad
        return [v if v.rule == "range" else
                Violation(v.field, v.rule, vendor.get(v.rule, vendor.get("*", v.message)), v.excerpt)
                for v in bad]
    return in_vendor_words


def _compile_field_rules(f: Field) -> Check:
    name = f.name
    kind = f.type
    vendor = dict(f.messages)

    if kind == "string" or (kind == "date" and f.format):
        text_rules = _compile_text_rules(f)
        want = "text" if kind == "string" else "a date as text"

        def wrong_type(value: Any) -> list[Violation] | None:
            if isinstance(value, (str, Ref)):
                return None
            return [Violation(name, "type", f"must be {want} (got {_kind(value)})",
                              excerpt(value))]

        if text_rules is None:
            def check_type_only(value: Any) -> list[Violation] | None:
                return None if type(value) is str else wrong_type(value)
            return check_type_only

        def check_text(value: Any) -> list[Violation] | None:
            if type(value) is not str:
                bad_type = wrong_type(value)
                if bad_type is not None or isinstance(value, Ref):
                    return bad_type
            bad = text_rules(value)
            if bad is None:
                return None
            return [Violation(name, bad[0], bad[1], excerpt(value))]
        return check_text

    if kind == "date":
        def check_date(value: Any) -> list[Violation] | None:
            if isinstance(value, (date, Ref)):
                return None
            if isinstance(value, str):
                try:
                    date.fromisoformat(value)
                    return None
                except ValueError:
                    pass
                return [Violation(name, "format:date", "must be a date like 1999-12-31",
                                  excerpt(value))]
            return [Violation(name, "type", f"must be a date (got {_kind(value)})",
                              excerpt(value))]
        return check_date

    if kind in ("int", "float"):
        lo, hi = f.minimum, f.maximum
        want = "a whole number" if kind == "int" else "a number"
        accepted: tuple[type, ...] = (int,) if kind == "int" else (int, float)

        def check_number(value: Any) -> list[Violation] | None:
            if type(value) is bool or not isinstance(value, accepted):
                if isinstance(value, Ref):
                    return None
                return [Violation(name, "type", f"must be {want} (got {_kind(value)})",
                                  excerpt(value))]
            if value != value:
                return [Violation(name, "type", f"must be {want} (got NaN)", excerpt(value))]
            if lo is not None and value < lo:
                return [Violation(name, "range", vendor.get("minimum", f"must be at least {_number_text(lo)}"),
                                  excerpt(value))]
            if hi is not None and value > hi:
                return [Violation(name, "range", vendor.get("maximum", f"must be at most {_number_text(hi)}"),
                                  excerpt(value))]
            return None
        return check_number

    if kind == "bool":
        def check_bool(value: Any) -> list[Violation] | None:
            if type(value) is bool or isinstance(value, Ref):
                return None
            return [Violation(name, "type", f"must be true or false (got {_kind(value)})",
                              excerpt(value))]
        return check_bool

    text_rules = _compile_text_rules(f)
    max_items = f.max_items

    def check_list(value: Any) -> list[Violation] | None:
        if not isinstance(value, (list, tuple)):
            return [Violation(name, "type", f"must be a list (got {_kind(value)})",
                              excerpt(value))]
        out: list[Violation] | None = None
        if max_items is not None and len(value) > max_items:
            out = [Violation(name, "max_items",
                             f"must have at most {max_items} items (got {len(value)})",
                             excerpt(value))]
        for item in value:
            if isinstance(item, str):
                if text_rules is None:
                    continue
                bad = text_rules(item)
                if bad is None:
                    continue
                v = Violation(name, bad[0], f"item {bad[1]}", excerpt(item))
            elif isinstance(item, Ref):
                continue
            else:
                v = Violation(name, "type", f"items must be text (got {_kind(item)})",
                              excerpt(item))
            if out is None:
                out = []
            out.append(v)
        return out
    return check_list


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == ()


class StreamSchema:
    """The declared shape of one target stream."""

    def __init__(self, name: str, fields: Iterable[Field], rules: Iterable[AnyOf] = (),
                 open_prefixes: tuple[str, ...] = ()):
        self.name = name
        self.fields: dict[str, Field] = {}
        for f in fields:
            if f.name in self.fields:
                raise ValueError(f"schema {name}: field {f.name!r} declared twice")
            self.fields[f.name] = f
        self.rules = tuple(rules)
        self.open_prefixes = tuple(open_prefixes)
        for rule in self.rules:
            unknown = [n for n in rule.fields if self.field(n) is None]
            if unknown:
                raise ValueError(f"schema {name}: any_of names unknown field {unknown[0]!r}")
        self._checks: dict[str, Check] = {n: _compile_field(f) for n, f in self.fields.items()}
        self._required = tuple(n for n, f in self.fields.items() if f.required)
        self._required_words = {n: dict(f.messages)["required"] for n, f in self.fields.items()
                                if f.required and "required" in dict(f.messages)}

    def field(self, name: str) -> Field | None:
        """The declared field, or a plain string field for a name under an open prefix."""
        f = self.fields.get(name)
        if f is None and self.open_prefixes and name.startswith(self.open_prefixes) \
                and len(name) > len(next(p for p in self.open_prefixes if name.startswith(p))):
            f = Field(name)
        return f

    def _check_for(self, name: str) -> Check | None:
        check = self._checks.get(name)
        if check is None:
            f = self.field(name)
            if f is None:
                return None
            check = self._checks[name] = _compile_field(f)
        return check

    def validate(self, record: dict) -> list[Violation]:
        """Every rule ``record`` breaks; an empty list means it may be written."""
        out: list[Violation] = []
        checks = self._checks
        for key, value in record.items():
            if not value and (value is None or value == "" or value == [] or value == ()):
                continue
            check = checks.get(key)
            if check is None:
                check = self._check_for(key)
                if check is None:
                    out.append(Violation(key, "unknown", f"is not a field of {self.name}",
                                         excerpt(value)))
                    continue
            bad = check(value)
            if bad:
                out.extend(bad)
        for name in self._required:
            value = record.get(name)
            if not value and _is_empty(value):
                out.append(Violation(name, "required", self._required_words.get(name, "is required"), ""))
        for rule in self.rules:
            for name in rule.fields:
                value = record.get(name)
                if value or not _is_empty(value):
                    break
            else:
                out.append(Violation("|".join(rule.fields), "any_of",
                                     f"at least one of {', '.join(rule.fields)} is required", ""))
        return out

    def describe(self) -> list[dict]:
        """One row per field for ``migrator fields``."""
        any_of: dict[str, list[str]] = {}
        for rule in self.rules:
            for n in rule.fields:
                any_of.setdefault(n, []).extend(o for o in rule.fields if o != n)
        rows = []
        for f in self.fields.values():
            limits = []
            if f.max_length is not None:
                limits.append(f"{'each item ' if f.type == 'list' else ''}≤{f.max_length} chars")
            if f.max_items is not None:
                limits.append(f"≤{f.max_items} items")
            if f.minimum is not None:
                limits.append(f"≥{_number_text(f.minimum)}")
            if f.maximum is not None:
                limits.append(f"≤{_number_text(f.maximum)}")
            rows.append({
                "name": f.name,
                "type": f.type,
                "required": f.required,
                "any_of": ", ".join(any_of.get(f.name, [])),
                "limits": ", ".join(limits),
                "enum": list(f.enum) if f.enum is not None else None,
                "format": f.format,
                "description": f.description,
            })
        for prefix in self.open_prefixes:
            rows.append({"name": f"{prefix}*", "type": "string", "required": False,
                         "any_of": "", "limits": "", "enum": None, "format": None,
                         "description": f"any name starting with {prefix!r}"})
        return rows

    def __repr__(self) -> str:
        return f"StreamSchema({self.name!r}, {len(self.fields)} fields)"
