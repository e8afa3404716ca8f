"""Where the shipped mappings are: the checkout's mappings/ folder, or the installed copy."""
from __future__ import annotations

from pathlib import Path


def mappings_dir() -> Path:
    here = Path(__file__).resolve().parent
    installed = here / "mappings"            # a wheel puts them inside the package
    if installed.is_dir():
        return installed
    return here.parent / "mappings"          # a checkout (or an editable install)


def mapping_file(source: str, target: str) -> Path:
    return mappings_dir() / f"{source}-to-{target}.yaml"


def shipped_pairs() -> list[tuple[str, str]]:
    out = []
    for p in sorted(mappings_dir().glob("*-to-*.yaml")):
        source, _, target = p.stem.partition("-to-")
        out.append((source, target))
    return out


def init_names() -> tuple[list[str], list[str]]:
    """The source and target names ``migrator init`` accepts: one mapping ships per pair."""
    pairs = shipped_pairs()
    return sorted({s for s, _ in pairs}), sorted({t for _, t in pairs})
