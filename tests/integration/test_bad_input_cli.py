"""Every user mistake: one line naming what and where, exit code 2, no traceback, and
nothing written to the target."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from migrator.sandbox.data import people
from migrator.sandbox.exports import write_export
from migrator.sandbox.server import SandboxThread, make

ROOT = Path(__file__).resolve().parents[2]
MAPPING = ROOT / "mappings" / "csv-to-rei.yaml"


@pytest.fixture(scope="module")
def rei():
    with SandboxThread({"rei": make("rei", limit=None)}) as sb:
        yield sb


def _job(tmp: Path, *, base_url: str, mapping: str | None = None, extra: str = "", target: str = "") -> Path:
    write_export("csv", tmp / "export.csv", people(20, 3))
    m = tmp / "mapping.yaml"
    m.write_text(mapping if mapping is not None else MAPPING.read_text())
    job = tmp / "job.yaml"
    job.write_text(f"""name: bad
source: {{system: csv, path: export.csv, id_column: id}}
target: {target or f"{{system: rei, api_key: '${{REI_API_KEY}}', base_url: '{base_url}'}}"}
mapping: mapping.yaml
checkpoint: ckpt.sqlite
{extra}""")
    return job


def _cli(*args, env=None, cwd=None):
    import os
    return subprocess.run([sys.executable, "-m", "migrator.cli", *map(str, args)], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, cwd=cwd, timeout=120)


def _one_line(res, pattern):
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, res.stderr
    assert re.search(pattern, lines[0]), lines[0]


CASES = {
    "invalid YAML": (lambda t, u: _job(t, base_url=u, extra="concurrency: [8\n"), r"job.yaml:\d+: invalid YAML"),
    "unknown connector": (lambda t, u: _job(t, base_url=u, target="{system: reii, api_key: x}"),
                          r"job.yaml:3: unknown connector 'reii' \(did you mean 'rei'\?\)"),
    "unknown target field": (lambda t, u: _job(t, base_url=u, mapping=MAPPING.read_text().replace("firstName:", "fristName:", 1)),
                             r"mapping.yaml:\d+: .*'fristName'.*did you mean 'firstName'"),
    "unknown transform": (lambda t, u: _job(t, base_url=u, mapping=MAPPING.read_text().replace("strip, lower]", "strip, lowr]", 1)),
                          r"mapping.yaml:\d+: unknown transform 'lowr' \(did you mean 'lower'\?\)"),
    "plain http to a remote host": (lambda t, u: _job(t, base_url="http://crm.example.com"), r"plain http"),
    "checkpoint directory not writable": (lambda t, u: _unwritable_checkpoint(t, u), r"cannot write there"),
}


def _unwritable_checkpoint(tmp: Path, base_url: str) -> Path:
    """The checkpoint's folder is a file: nothing can be created there (even by root)."""
    (tmp / "blocker").write_text("x")
    job = _job(tmp, base_url=base_url)
    job.write_text(job.read_text().replace("checkpoint: ckpt.sqlite", "checkpoint: blocker/ckpt.sqlite"))
    return job


@pytest.mark.parametrize("case", list(CASES))
def test_mistakes_in_files(case, tmp_path, rei):
    make_job, pattern = CASES[case]
    job = make_job(tmp_path, rei["rei"].base_url)
    res = _cli("run", job, env=rei.env(), cwd=tmp_path)
    _one_line(res, pattern)
    assert rei.call(lambda: len(rei["rei"].inspect_records("contacts"))) == 0


def test_missing_job_file(tmp_path):
    _one_line(_cli("run", tmp_path / "nope.yaml"), r"nope.yaml: no such job file")


def test_missing_credential_variable(tmp_path, rei):
    job = _job(tmp_path, base_url=rei["rei"].base_url)
    _one_line(_cli("validate", job, env={"REI_API_KEY": ""}), r"job.yaml:3: environment variable REI_API_KEY is not set")


def test_wrong_credential_names_the_variable_not_the_value(tmp_path, rei):
    job = _job(tmp_path, base_url=rei["rei"].base_url)
    res = _cli("run", job, env={"REI_API_KEY": "sk-wrong-0123456789"})
    _one_line(res, r"REI_API_KEY")
    assert "sk-wrong-0123456789" not in res.stderr


def test_wrong_base_url_404(tmp_path, rei):
    job = _job(tmp_path, base_url=rei["rei"].base_url + "/wrong-prefix")
    _one_line(_cli("run", job, env=rei.env()), r"answered 404 .* is base_url .* right\?")


def test_connection_refused(tmp_path):
    job = _job(tmp_path, base_url="http://127.0.0.1:9")
    _one_line(_cli("run", job, env={"REI_API_KEY": "x"}), r"cannot reach http://127.0.0.1:9")


def test_checkpoint_of_another_job_and_edited_mapping(tmp_path, rei):
    job = _job(tmp_path, base_url=rei["rei"].base_url)
    assert _cli("run", job, env=rei.env()).returncode in (0, 1)
    held = rei.call(lambda: len(rei["rei"].inspect_records("contacts")))
    (tmp_path / "mapping.yaml").write_text(MAPPING.read_text().replace("strip, lower", "strip, lower, strip", 1))
    _one_line(_cli("run", job, env=rei.env()), r"mapping changed since checkpoint")
    other = tmp_path / "other.yaml"
    other.write_text(job.read_text().replace("path: export.csv", "path: other.csv"))
    write_export("csv", tmp_path / "other.csv", people(5, 9))
    _one_line(_cli("run", other, env=rei.env()), r"written by a different job")
    assert rei.call(lambda: len(rei["rei"].inspect_records("contacts"))) == held
