"""Connectors by name. The job loader asks here; the engine never imports a connector."""
from __future__ import annotations

import difflib
import importlib

from .errors import JobError

CONNECTORS: dict[str, str] = {
    "csv": "migrator.connectors.files:CsvConnector",
    "jsonl": "migrator.connectors.files:JsonlConnector",
    "realvolve": "migrator.connectors.realvolve:Realvolve",
    "spark": "migrator.connectors.spark:Spark",
    "rei": "migrator.connectors.rei:Rei",
    "realeflow": "migrator.connectors.realeflow:Realeflow",
    "brokerkit": "migrator.connectors.brokerkit:Brokerkit",
}
ALIASES = {"flexmls": "spark", "rei-software": "rei", "reisoftware": "rei"}


def names() -> list[str]:
    return list(CONNECTORS)


def available() -> list[str]:
    """Connectors whose module is present (connectors land one issue at a time)."""
    out = []
    for name in CONNECTORS:
        try:
            connector_class(name)
        except JobError:
            continue
        out.append(name)
    return out


def connector_class(name: str, where: str = ""):
    key = ALIASES.get(str(name).lower(), str(name).lower())
    target = CONNECTORS.get(key)
    prefix = f"{where}: " if where else ""
    if target is None:
        close = difflib.get_close_matches(key, list(CONNECTORS) + list(ALIASES), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else f"; known: {', '.join(CONNECTORS)}"
        raise JobError(f"{prefix}unknown connector '{name}'{hint}")
    module, _, cls = target.partition(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError):
        raise JobError(f"{prefix}connector '{key}' is not available in this version") from None
