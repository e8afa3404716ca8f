"""Who a source record is, for a person reading the failures file: the name and e-mail
as the source holds them, whatever the vendor calls its keys.

Pure: no I/O. Keys are compared without case, spaces, dashes or underscores, so
``first_name``, ``First Name``, ``firstName`` and ``GivenName`` all count; a list of
e-mails (or of objects holding one) gives its first.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

LIMIT = 80
_FULL = ("fullname", "displayname", "name", "contactname", "leadname")
_FIRST = ("firstname", "givenname", "first", "fname")
_LAST = ("lastname", "familysurname", "surname", "familyname", "last", "lname")
_EMAIL = ("email", "primaryemail", "emailaddress", "email1", "emailaddresses", "emails", "primaryemailaddress")
_SECRET = re.compile(r"pass(word)?|secret|token|api.?key|ssn|social.?security", re.I)


def _norm(key: Any) -> str:
    return re.sub(r"[\s_\-.]", "", str(key)).lower()


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return ""


def _email(value: Any) -> str:
    if isinstance(value, list):
        for item in value:
            found = _email(item)
            if found:
                return found
        return ""
    if isinstance(value, Mapping):
        for key, inner in value.items():
            if "email" in _norm(key) or _norm(key) in ("address", "value"):
                found = _text(inner)
                if "@" in found:
                    return found
        return ""
    return _text(value)


def _cut(text: str) -> str:
    return text if len(text) <= LIMIT else text[:LIMIT - 1] + "…"


def who(data: Mapping[str, Any] | None) -> tuple[str, str]:
    """``(name, email)`` of a raw source record; empty strings where it holds none."""
    if not isinstance(data, Mapping):
        return "", ""
    keys = {_norm(k): v for k, v in data.items()}

    def first_of(names: tuple[str, ...], pick=_text) -> str:
        for name in names:
            if name in keys:
                found = pick(keys[name])
                if found:
                    return found
        return ""

    name = " ".join(p for p in (first_of(_FIRST), first_of(_LAST)) if p) or first_of(_FULL)
    return _cut(name), _cut(first_of(_EMAIL, _email))


def value_excerpt(field: str | None, value: str) -> str:
    """The offending value as the failures file shows it: never a value a field named
    like a secret holds."""
    if field and _SECRET.search(field):
        return "(hidden)"
    return _cut(value or "")
