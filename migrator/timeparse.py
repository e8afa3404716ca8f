"""``--since`` and a record's own time stamps, read one way for every connector."""
from __future__ import annotations

from datetime import datetime, timezone


def utc_time(raw: str) -> datetime:
    """A date or date-time as an aware UTC datetime; one without a zone is UTC.
    ISO 8601 first (strict, fast), then what python-dateutil reads; ValueError or
    OverflowError when it is no time at all."""
    from dateutil import parser
    try:
        when = parser.isoparse(raw.strip())
    except ValueError:
        when = parser.parse(raw)
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def since_time(raw: str) -> datetime:
    """``--since`` as an aware UTC datetime, or the one line a person can act on."""
    from .errors import ConfigError
    try:
        return utc_time(raw)
    except (ValueError, OverflowError):
        raise ConfigError(f"--since {raw!r} is not a date or date-time "
                          "(e.g. 2026-11-30 or '2026-11-30 14:00')") from None
