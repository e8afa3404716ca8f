"""Every user mistake: one line naming what and where, exit code 2, no traceback, and
nothing written to the target."""
import re
import subprocess
import sys
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


def _job(tmp: Path, *, base_url: str, mapping: str | None = None, extra: str = "", target: str = "",
         source: str = "{system: csv, path: export.csv, id_column: id}") -> Path:
    write_export("csv", tmp / "export.csv", people(20, 3))
    m = tmp / "mapping.yaml"
    m.write_text(mapping if mapping is not None else MAPPING.read_text())
    job = tmp / "job.yaml"
    job.write_text(f"""name: bad
source: {source}
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


# ---- issue 16 part 1: `validate` proves both sides will take the run -----------------------
def _held(rei) -> int:
    """Contacts the REI simulator holds (the module's simulator is shared by its tests)."""
    return rei.call(lambda: len(rei["rei"].inspect_records("contacts")))


class _NotTheApi(BaseHTTPRequestHandler):
    """A web server's page where the API should be: 200 and HTML (or plain text) to anything."""
    body, ctype = b"<!doctype html><html><body>Welcome to nginx!</body></html>", "text/html"

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", self.ctype)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, *args) -> None:
        pass


class _PlainText(_NotTheApi):
    body, ctype = b"OK", "text/plain"


@contextmanager
def _web_page(handler=_NotTheApi):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_refused_target_key_stops_validate_as_it_stops_run(command, tmp_path, rei):
    """Before: validate read every record, passed (exit 0) and left the refused key to a
    trailing note; now the target's cheapest request comes first, and fails as run fails."""
    job = _job(tmp_path, base_url=rei["rei"].base_url)
    res = _cli(command, job, env={"REI_API_KEY": "sk-wrong-0123456789"}, cwd=tmp_path)
    _one_line(res, r"refused the API key .*check REI_API_KEY")
    assert "sk-wrong-0123456789" not in res.stderr
    assert not (tmp_path / "ckpt.sqlite").exists()


@pytest.mark.parametrize("case,url,pattern", [
    ("unreachable", lambda u: "http://127.0.0.1:9", r"cannot reach http://127.0.0.1:9"),
    ("404", lambda u: u + "/wrong-prefix", r"answered 404 .* is base_url .* right\?"),
])
def test_validate_stops_on_a_target_it_cannot_reach(case, url, pattern, tmp_path, rei):
    job = _job(tmp_path, base_url=url(rei["rei"].base_url))
    _one_line(_cli("validate", job, env=rei.env(), cwd=tmp_path), pattern)


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("handler,what", [(_NotTheApi, "an HTML page"), (_PlainText, "a body that is not JSON")])
def test_a_base_url_answering_a_web_page_is_one_line(command, handler, what, tmp_path):
    """Before: run ended in "internal error: Retryable…" and validate passed."""
    with _web_page(handler) as url:
        job = _job(tmp_path, base_url=url)
        res = _cli(command, job, env={"REI_API_KEY": "x"}, cwd=tmp_path)
    _one_line(res, rf"rei: GET /v1/contacts/ answered HTTP 200 with {what}.*not the rei API — is base_url {url} right\?")


def test_validate_proves_the_source_too(tmp_path):
    """An API source with a refused key stops validate before anything is read."""
    with SandboxThread({"rei": make("rei", contacts=5, limit=None), "spark": make("spark", limit=None)}) as sb:
        env = {**sb.env(), "REI_API_KEY": "sk-wrong-0123456789"}
        job = _job(tmp_path, base_url="", mapping=(ROOT / "mappings" / "rei-to-spark.yaml").read_text(),
                   source="{system: rei, api_key: '${REI_API_KEY}', base_url: '${REI_BASE_URL}'}",
                   target="{system: spark, access_token: '${SPARK_ACCESS_TOKEN}', base_url: '${SPARK_BASE_URL}'}")
        res = _cli("validate", job, env=env, cwd=tmp_path)
        _one_line(res, r"refused the API key .*check REI_API_KEY")
        assert sb.call(lambda: len(sb["spark"].inspect_records("contacts"))) == 0
    assert "sk-wrong" not in res.stderr


def test_brokerkit_validate_checks_the_key_with_a_dry_run_that_saves_nothing(tmp_path):
    with SandboxThread({"brokerkit": make("brokerkit", limit=None)}) as sb:
        target = "{system: brokerkit, api_key: '${BROKERKIT_API_KEY}', base_url: '${BROKERKIT_BASE_URL}'}"
        job = _job(tmp_path, base_url="", target=target,
                   mapping=(ROOT / "mappings" / "csv-to-brokerkit.yaml").read_text())
        _one_line(_cli("validate", job, env={**sb.env(), "BROKERKIT_API_KEY": "wrong"}, cwd=tmp_path),
                  r"BROKERKIT_API_KEY")
        res = _cli("validate", job, "--no-progress", env=sb.env(), cwd=tmp_path)
        assert res.returncode in (0, 1), res.stderr
        assert sb.call(lambda: len(sb["brokerkit"].inspect_records("leads"))) == 0
        assert "probe 1" in res.stderr   # the plan counts the check request


def test_a_target_file_that_cannot_be_written_stops_validate(tmp_path, rei):
    (tmp_path / "blocker").write_text("x")
    job = _job(tmp_path, base_url="", target="{system: jsonl, path: blocker/out.jsonl}",
               mapping="source: csv\ntarget: jsonl\nstreams:\n  contacts:\n    fields:\n      email: Email\n")
    _one_line(_cli("validate", job, cwd=tmp_path), r"cannot write .*out.jsonl: .*blocker is a file")


# ---- issue 16 part 2: no "internal error" and no hang for a user's mistake -----------------
@pytest.mark.parametrize("limit,pattern", [
    ("{requests: 10, per: 0}", r"job.yaml:3: rate_limit per must be a number of seconds above 0, not 0"),
    ("{requests: -5}", r"job.yaml:3: rate_limit requests must be a whole number of at least 1, not -5"),
    ("{requests: 0, per: 1}", r"rate_limit requests must be a whole number of at least 1"),
    ("{requests: many}", r"rate_limit requests must be a whole number of at least 1, not 'many'"),
    ("{requests: 2.5}", r"rate_limit requests must be a whole number"),
    ("{requests: 5, per: -1}", r"rate_limit per must be a number of seconds above 0"),
    ("{requests: 5, par: 1}", r"rate_limit must be .*unknown key 'par'"),
    ("5", r"rate_limit must be \{requests: N, per: SECONDS\}"),
])
def test_a_rate_limit_out_of_range_is_one_line_not_a_hang(limit, pattern, tmp_path, rei):
    """Before: per: 0 was "internal error: ZeroDivisionError" and requests: -5 hung `run`."""
    target = f"{{system: rei, api_key: '${{REI_API_KEY}}', base_url: '{rei['rei'].base_url}', rate_limit: {limit}}}"
    job = _job(tmp_path, base_url="", target=target)
    held = _held(rei)
    _one_line(_cli("run", job, env=rei.env(), cwd=tmp_path), pattern)
    assert _held(rei) == held


def test_a_reports_folder_that_cannot_be_written_is_found_before_the_first_write(tmp_path, rei):
    """Before: "internal error: PermissionError" after every record was written."""
    (tmp_path / "blocker").write_text("x")
    job = _job(tmp_path, base_url=rei["rei"].base_url, extra="reports: blocker/reports\n")
    held = _held(rei)
    _one_line(_cli("run", job, env=rei.env(), cwd=tmp_path), r"reports folder .*cannot write there")
    assert _held(rei) == held


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("content,pattern", [
    ("", r"export.csv: the file is empty: 0 records were read"),
    ("id,First Name,Last Name,Email\n", r"export.csv: the file holds only its header line: 0 records were read"),
])
def test_an_empty_or_header_only_csv_says_so(command, content, pattern, tmp_path, rei):
    """Before: an empty file was "no column 'id'; columns are " and a header alone passed."""
    job = _job(tmp_path, base_url=rei["rei"].base_url)
    (tmp_path / "export.csv").write_text(content)
    held = _held(rei)
    _one_line(_cli(command, job, env=rei.env(), cwd=tmp_path), pattern)
    assert _held(rei) == held
