"""`pip install .` ships every package of the source tree: a subpackage missing from
pyproject's list works in an editable checkout and fails after a real install (it did:
`migrator verify` was missing from the wheel)."""
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_in_the_tree_is_listed_for_the_wheel():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    in_tree = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "migrator").rglob("__init__.py")}
    assert in_tree <= listed, sorted(in_tree - listed)
