"""Help that teaches: every command says what it does, what each argument means, and
shows an example; the options that need a format or a list of systems give them."""
import argparse
import re

import pytest

from migrator.cli import SINCE_HELP, build_parser
from migrator.registry import CONNECTORS, connector_class
from tests.conftest import file_job, run_cli


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_command_has_a_description_an_example_and_help_for_each_argument():
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    described = {c.dest: c.help for c in sub._choices_actions}
    for name, parser in _subparsers().items():
        assert described.get(name), f"{name} has no one-line description"
        assert parser.description, name
        assert parser.epilog and "example:" in parser.epilog and f"migrator {name}" in parser.epilog, name
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help and action.help != argparse.SUPPRESS, f"migrator {name} {action.dest}: no help"


def test_init_lists_the_names_it_accepts():
    out = run_cli("init", "--help").stdout
    for name in ("realvolve", "realeflow-csv", "brokerkit-csv", "csv", "spark", "rei", "brokerkit"):
        assert re.search(rf"\b{re.escape(name)}\b", out), name


def test_since_gives_its_format_and_exactly_the_sources_that_can_filter():
    able = [n for n in CONNECTORS if getattr(connector_class(n), "filters_since", False)]
    assert sorted(able) == ["realvolve", "rei", "spark"], able
    named = set(re.findall(r"\b[a-z]+\b", SINCE_HELP.rsplit("can filter by time:", 1)[1])) & set(CONNECTORS)
    assert named == set(able), (named, able)
    assert all(n in SINCE_HELP for n in able)
    assert "2026-11-30" in SINCE_HELP and "ISO 8601" in SINCE_HELP


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_is_accepted_before_and_after_the_subcommand(tmp_path, where):
    args = ["--debug", "status", str(tmp_path / "nope.yaml")] if where == "before" else \
        ["status", str(tmp_path / "nope.yaml"), "--debug"]
    res = run_cli(*args)
    assert res.returncode == 2, res.stderr
    assert "unrecognized arguments" not in res.stderr and "no such job file" in res.stderr


def test_since_on_a_source_that_cannot_filter_is_one_line_naming_those_that_can(tmp_path):
    job = file_job(tmp_path, [{"id": "1", "First Name": "A", "Last Name": "B", "Email": "a@x.io", "Tags": ""}])
    res = run_cli("run", str(job), "--since", "2026-11-30", "--no-progress")
    assert res.returncode == 2, res.stderr
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert "csv cannot list only the records changed" in lines[0]
    assert "realvolve" in lines[0] and "spark" in lines[0]
    assert not (tmp_path / "out.jsonl").exists()
