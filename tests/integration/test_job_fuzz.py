"""Property: whatever is wrong in a job file or its mapping — a wrong type, a number out
of range, a missing or an unknown key — `migrator run` answers one line and exit code 2,
with no traceback and no "internal error", and the target is never touched.

Hypothesis builds the broken files from a good CSV → REI job (REI is a simulator on
loopback). Most examples drive the real CLI entry point in-process (``migrator.cli.main``:
the same parser, loader, checks and engine as the command, without a Python start-up
each); a few run ``python -m migrator.cli`` as a subprocess to prove the two agree.
``MIGRATOR_FUZZ_EXAMPLES`` raises the example count for a longer search."""
from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrator.cli import main
from migrator.registry import CONNECTORS
from migrator.sandbox.data import people
from migrator.sandbox.exports import write_export
from migrator.sandbox.server import SandboxThread, make

EXAMPLES = int(os.environ.get("MIGRATOR_FUZZ_EXAMPLES", "150"))

GOOD_MAPPING: dict[str, Any] = {
    "source": "csv", "target": "rei",
    "streams": {"contacts": {
        "match_on": ["email"],
        "fields": {
            "firstName": {"path": "First Name", "transform": ["strip"]},
            "lastName": "Last Name",
            "email": {"path": "Email", "transform": ["strip", "lower"]},
        }}},
}


@pytest.fixture(scope="module")
def rei():
    with SandboxThread({"rei": make("rei", limit=None)}) as sb:
        yield sb


def good_job(rei) -> dict[str, Any]:
    sim = rei["rei"]
    return {
        "name": "fuzz",
        "source": {"system": "csv", "path": "export.csv", "id_column": "id"},
        "target": {"system": "rei", "api_key": sim.credentials()["REI_API_KEY"], "base_url": sim.base_url,
                   "rate_limit": {"requests": 1000, "per": 1}},
        "mapping": "mapping.yaml",
        "checkpoint": "ckpt.sqlite",
        "reports": "reports",
        "concurrency": 4,
    }


# ---- values --------------------------------------------------------------------------
ANY = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(-3, 3), max_size=2))
NAME = st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=3, max_size=10)


def _as_int(value: Any) -> int | None:
    """What the loader could take for a whole number (YAML's, or text holding one)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _whole_in(lo: int, hi: int) -> Callable[[Any], bool]:
    return lambda v: (n := _as_int(v)) is not None and lo <= n <= hi and not isinstance(v, float)


def bad(valid: Callable[[Any], bool], *extra: st.SearchStrategy) -> st.SearchStrategy:
    """Values of any type (and ``extra`` near misses) that ``valid`` refuses."""
    return st.one_of(ANY, *extra).filter(lambda v: not valid(v))


BAD_CONCURRENCY = bad(_whole_in(1, 256), st.sampled_from([0, -1, 257, 10**9, 8.5, "eight"]))
BAD_ATTEMPTS = bad(lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 100),
                   st.sampled_from([0, -1, 101]))
BAD_CHOICE = {"on_uncertain": bad(lambda v: v is None or str(v) in ("retry", "skip")),
              "on_merge": bad(lambda v: v is None or str(v) in ("combine", "update", "skip", "fail"))}
BAD_FLAG = bad(lambda v: isinstance(v, bool))
BAD_DURATION = st.one_of(st.sampled_from(["soon", "-5", "12 hours", "1w", True, [1], {"h": 1}]),
                         st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=5))
BAD_TEXT = st.one_of(st.lists(st.integers(), min_size=1, max_size=2), st.booleans(),
                     st.dictionaries(NAME, st.integers(), min_size=1, max_size=2))
BAD_REQUESTS = bad(lambda v: (n := _as_int(v)) is not None and n >= 1 and not isinstance(v, float),
                   st.sampled_from([0, -5, "many", 2.5]))
BAD_PER = bad(lambda v: v is None or ((n := _as_number(v)) is not None and 0 < n < float("inf")),
              st.sampled_from([0, -1, "never", 0.0]))
BAD_TIMEOUT = bad(lambda v: v in (None, "") or ((n := _as_number(v)) is not None and 0 < n < float("inf")),
                  st.sampled_from([0, -1, "slow"]))
BAD_PAGE_SIZE = bad(lambda v: v in (None, "") or _whole_in(1, 10**12)(v), st.sampled_from([-1, "big", 2.5]))
BAD_DELIMITER = bad(lambda v: v in (None, "") or str(v).lower() in ("tab", "\\t") or len(str(v)) == 1,
                    st.sampled_from([";;", "comma"]))


# ---- mutations: each makes the good job or mapping wrong in one way ----------------------
Mutation = Callable[[dict, dict], None]


class _Named:
    """A mutation that prints as what it does (Hypothesis shows it in a failing example)."""

    def __init__(self, what: str, apply: Mutation):
        self.what, self.apply = what, apply

    def __call__(self, job: dict, mapping: dict) -> None:
        self.apply(job, mapping)

    def __repr__(self) -> str:
        return self.what


def _set(where: str, key: str, value: Any) -> Mutation:
    def apply(job: dict, mapping: dict) -> None:
        node = job if where == "job" else job.get(where)
        if isinstance(node, dict):
            node[key] = value
    return _Named(f"{where}.{key} = {value!r}", apply)


def _drop(where: str, key: str) -> Mutation:
    def apply(job: dict, mapping: dict) -> None:
        node = job if where == "job" else job.get(where)
        if isinstance(node, dict):
            node.pop(key, None)
    return _Named(f"del {where}.{key}", apply)


def _rate_limit(limit: Any) -> Mutation:
    return _set("target", "rate_limit", limit)


def _dig(node: Any, *keys: str) -> Any:
    """``node[k1][k2]…``, or None where an earlier mutation left no mapping to go into."""
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _field(name: str, spec: Any) -> Mutation:
    def apply(job: dict, mapping: dict) -> None:
        fields = _dig(mapping, "streams", "contacts", "fields")
        if isinstance(fields, dict):
            fields[name] = spec
    return _Named(f"mapping field {name} = {spec!r}", apply)


def _stream_key(key: str, value: Any) -> Mutation:
    def apply(job: dict, mapping: dict) -> None:
        stream = _dig(mapping, "streams", "contacts")
        if isinstance(stream, dict):
            stream[key] = value
    return _Named(f"mapping stream.{key} = {value!r}", apply)


def _mapping_key(key: str, value: Any) -> Mutation:
    def apply(job: dict, mapping: dict) -> None:
        mapping[key] = value
    return _Named(f"mapping.{key} = {value!r}", apply)


def _mapping_drop(key: str) -> Mutation:
    def apply(job: dict, mapping: dict) -> None:
        mapping.pop(key, None)
    return _Named(f"del mapping.{key}", apply)


JOB_MUTATIONS = st.one_of(
    # missing keys
    st.sampled_from(["source", "target", "mapping"]).map(lambda k: _drop("job", k)),
    st.sampled_from(["source", "target"]).map(lambda w: _drop(w, "system")),
    st.just(_drop("source", "path")), st.just(_drop("target", "api_key")),
    # unknown keys
    NAME.filter(lambda k: k not in ("name", "source", "target", "mapping", "checkpoint", "reports",
                                    "concurrency")).map(lambda k: _set("job", k + "_x", 1)),
    st.tuples(st.sampled_from(["source", "target"]), NAME).map(lambda t: _set(t[0], t[1] + "_x", "1")),
    # wrong types and out-of-range numbers
    BAD_CONCURRENCY.map(lambda v: _set("job", "concurrency", v)),
    BAD_ATTEMPTS.map(lambda v: _set("job", "max_attempts", v)),
    st.sampled_from(sorted(BAD_CHOICE)).flatmap(lambda k: BAD_CHOICE[k].map(lambda v: _set("job", k, v))),
    st.tuples(st.sampled_from(["allow_insecure_http", "stop_at_quota"]), BAD_FLAG).map(lambda t: _set("job", *t)),
    BAD_DURATION.map(lambda v: _set("job", "max_quota_wait", v)),
    st.tuples(st.sampled_from(["name", "checkpoint", "reports"]), BAD_TEXT).map(lambda t: _set("job", *t)),
    st.one_of(ANY.filter(lambda v: not isinstance(v, str))).map(lambda v: _set("job", "mapping", v)),
    st.sampled_from(["no-such-mapping.yaml", ".", "export.csv", "/dev/null"]).map(lambda v: _set("job", "mapping", v)),
    st.tuples(st.sampled_from(["checkpoint", "reports"]), st.sampled_from(["export.csv/x", "export.csv"]))
      .map(lambda t: _set("job", t[0], t[1] if t[0] == "reports" else t[1] + "/ckpt.sqlite")),
    st.sampled_from([".", "missing.csv", "mapping.yaml/x.csv"]).map(lambda v: _set("source", "path", v)),
    st.tuples(st.sampled_from(["source", "target"]), ANY.filter(lambda v: not isinstance(v, dict)))
      .map(lambda t: _set("job", *t)),
    st.tuples(st.sampled_from(["source", "target"]),
              st.one_of(NAME.filter(lambda v: v not in CONNECTORS), ANY.filter(lambda v: not isinstance(v, str))))
      .map(lambda t: _set(t[0], "system", t[1])),
    BAD_TEXT.map(lambda v: _set("target", "base_url", v)),
    BAD_TEXT.map(lambda v: _set("source", "path", v)),
    st.sampled_from(["ftp://example.com", "http://crm.example.com", "not a url"]).map(
        lambda v: _set("target", "base_url", v)),
    BAD_REQUESTS.map(lambda v: _rate_limit({"requests": v, "per": 1})),
    BAD_PER.map(lambda v: _rate_limit({"requests": 10, "per": v})),
    ANY.filter(lambda v: v not in (False, None, "none", "off") and not isinstance(v, dict)).map(_rate_limit),
    NAME.map(lambda k: _rate_limit({"requests": 10, "per": 1, k + "_x": 1})),
    st.just(_rate_limit({"per": 1})),
    BAD_TIMEOUT.map(lambda v: _set("target", "timeout", v)),
    BAD_PAGE_SIZE.map(lambda v: _set("source", "page_size", v)),
    BAD_DELIMITER.map(lambda v: _set("source", "delimiter", v)),
    st.sampled_from(["utf-9", "latin-7", "no-such-codec"]).map(lambda v: _set("source", "encoding", v)),
    BAD_TEXT.map(lambda v: _set("source", "id_column", v)),
    st.just(_set("source", "id_column", "No Such Column")),
)

FIELD_SPECS = st.one_of(
    st.just({"path": "Email", "transform": ["lowr"]}),
    st.just({"path": "Email", "pth": "x"}),
    st.just({"path": "No Such Column"}),
    ANY.filter(lambda v: not isinstance(v, (str, dict)) and v is not None).map(lambda v: {"path": "Email", "transform": v}),
    st.lists(st.integers(), min_size=1, max_size=2),
    st.integers(), st.booleans(),
)

MAPPING_MUTATIONS = st.one_of(
    st.sampled_from(["streams"]).map(_mapping_drop),
    ANY.filter(lambda v: not isinstance(v, dict) or v == {}).map(lambda v: _mapping_key("streams", v)),
    NAME.filter(lambda k: k not in ("source", "target", "defaults", "streams")).map(lambda k: _mapping_key(k, 1)),
    st.sampled_from(["spark", "realvolve", "brokerkit"]).map(lambda v: _mapping_key("target", v)),
    st.tuples(st.sampled_from(["firstName", "email", "fristName", "no_such_field"]), FIELD_SPECS)
      .map(lambda t: _field(*t)),
    st.just(_field("fristName", "First Name")),
    NAME.filter(lambda k: k not in ("from", "to", "where", "fields")).map(lambda k: _stream_key(k, 1)),
    ANY.filter(lambda v: v is not None and not isinstance(v, (list, str)))
      .map(lambda v: _stream_key("match_on", v)),
    st.just(_stream_key("match_on", ["no_such_field"])),
    ANY.filter(lambda v: not isinstance(v, dict) or not v).map(lambda v: _stream_key("fields", v)),
    ANY.filter(lambda v: not isinstance(v, list) and v is not None).map(lambda v: _stream_key("skip_if", v)),
)

BROKEN = st.lists(st.one_of(JOB_MUTATIONS, MAPPING_MUTATIONS), min_size=1, max_size=3)


def _write(tmp: Path, job: dict, mapping: dict) -> Path:
    """JSON is YAML: each file as indented JSON, so every key has a line of its own."""
    write_export("csv", tmp / "export.csv", people(5, 3))
    (tmp / "mapping.yaml").write_text(json.dumps(mapping, indent=2))
    path = tmp / "job.yaml"
    path.write_text(json.dumps(job, indent=2))
    return path


def _broken(rei, mutations: list[Mutation]) -> tuple[dict, dict]:
    job, mapping = good_job(rei), copy.deepcopy(GOOD_MAPPING)
    for mutate in mutations:
        mutate(job, mapping)
    return job, mapping


def _assert_one_line(code: int, err: str, files: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, f"exit {code}: {err}\n{files}"
    assert "Traceback" not in err and "internal error" not in err, f"{err}\n{files}"
    assert len(lines) == 1, f"{err}\n{files}"


def _held(rei) -> int:
    return rei.call(lambda: len(rei["rei"].inspect_records("contacts")))


def test_the_good_job_runs(rei, tmp_path):
    """The property means something only if the unbroken job is accepted."""
    job, mapping = _broken(rei, [])
    path = _write(tmp_path, job, mapping)
    held = _held(rei)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["run", str(path), "--no-progress"])
    assert code == 0, err.getvalue()
    assert _held(rei) == held + 5


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])
@given(mutations=BROKEN)
def test_every_broken_job_is_one_line_and_exit_2(rei, mutations):
    job, mapping = _broken(rei, mutations)
    held = _held(rei)
    with tempfile.TemporaryDirectory() as d:
        path = _write(Path(d), job, mapping)
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["run", str(path), "--no-progress"])
        _assert_one_line(code, err.getvalue(), f"job: {job}\nmapping: {mapping}")
    assert _held(rei) == held


@settings(max_examples=int(os.environ.get("MIGRATOR_FUZZ_CLI_EXAMPLES", "4")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(mutations=BROKEN)
def test_the_command_agrees(rei, mutations):
    """The same property through ``python -m migrator.cli``: the process's own exit code
    and stderr, nothing caught by the test's harness."""
    job, mapping = _broken(rei, mutations)
    held = _held(rei)
    with tempfile.TemporaryDirectory() as d:
        path = _write(Path(d), job, mapping)
        res = subprocess.run([sys.executable, "-m", "migrator.cli", "run", str(path), "--no-progress"],
                             capture_output=True, text=True, timeout=120, cwd=d)
        _assert_one_line(res.returncode, res.stderr, f"job: {job}\nmapping: {mapping}")
    assert _held(rei) == held
