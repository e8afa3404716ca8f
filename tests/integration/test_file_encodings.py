"""CSV and JSONL sources never lose a row (issue 15): a row whose bytes do not decode
fails alone, with its true line and its id_column value; a header that does not decode,
and a mapping path that names no column, stop the run before anything is touched."""
import csv
from pathlib import Path

import anyio
import orjson
import pytest

from migrator.engine import Engine
from migrator.job import load_job
from tests.conftest import run_cli

HEADER = "id,First Name,Last Name,Notes\n"
MAPPING = """\
source: csv
target: jsonl
streams:
  contacts:
    fields:
      first_name: First Name
      last_name: Last Name
      notes: Notes
"""
ROWS = 12
MULTILINE = 3   # this row's Notes spans two physical lines (quoted), shifting every later line


def _rows(bad: int | None) -> tuple[bytes, dict[int, int]]:
    """The CSV's bytes, UTF-8 but for row ``bad`` in cp1252, and each row's physical line."""
    out, lines, line = bytearray(HEADER.encode()), {}, 2
    for i in range(1, ROWS + 1):
        last = "Müller" if i == bad else ("Zoë" if i % 2 else "Smith")
        notes = '"two\nlines"' if i == MULTILINE else "n"
        out += f"C{i:07d},Hans{i},{last},{notes}\n".encode("cp1252" if i == bad else "utf-8")
        lines[i] = line
        line += 2 if i == MULTILINE else 1
    return bytes(out), lines


def _job(tmp: Path, data: bytes, *, source: str = "", mapping: str = MAPPING, name: str = "in.csv",
         system: str = "csv") -> Path:
    (tmp / name).write_bytes(data)
    (tmp / "mapping.yaml").write_text(mapping)
    job = tmp / "job.yaml"
    job.write_text(f"name: t\nsource: {{system: {system}, path: {name}{source}}}\n"
                   "target: {system: jsonl, path: out.jsonl}\nmapping: mapping.yaml\n"
                   "checkpoint: ckpt.sqlite\nreports: reports\n")
    return job


def _out(tmp: Path) -> dict[str, dict]:
    return {o["_source_id"]: o for o in map(orjson.loads, (tmp / "out.jsonl").read_bytes().splitlines())}


def _failures(tmp: Path, mode: str = "run") -> list[dict]:
    with open(tmp / "reports" / f"t-{mode}-failures.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("bad", [1, 5, 6, 8, ROWS], ids=["first", "page-end", "page-start", "middle", "last"])
def test_an_undecodable_row_fails_alone_with_its_true_line_and_id(tmp, bad):
    data, lines = _rows(bad)
    res = run_cli("run", str(_job(tmp, data, source=", id_column: id, page_size: 5")), "--no-progress")
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    out = _out(tmp)
    assert set(out) == {f"C{i:07d}" for i in range(1, ROWS + 1) if i != bad}   # every other row arrived
    assert out["C0000007" if bad != 7 else "C0000009"]["last_name"] == "Zoë"   # UTF-8 still UTF-8
    assert out["C0000003" if bad != 3 else "C0000001"]["notes" if bad != 3 else "first_name"]
    (failure,) = _failures(tmp)
    assert failure["source_id"] == f"C{bad:07d}"                                 # as the user knows it
    assert failure["message"].startswith(f"line {lines[bad]}: 'Last Name' is not valid utf-8")
    assert r"b'M\xfcller'" in failure["message"] and "'Müller' in cp1252" in failure["message"]
    assert "encoding: cp1252" in failure["message"]


def test_resume_after_a_stop_neither_skips_nor_repeats_around_a_bad_row(tmp):
    data, lines = _rows(6)
    job_path = _job(tmp, data, source=", id_column: id, page_size: 5")
    first = anyio.run(Engine(load_job(job_path), mode="run", progress=False, stop_after=4, out=lambda s: None).run)
    assert first.interrupted
    second = anyio.run(Engine(load_job(job_path), mode="run", progress=False, out=lambda s: None).run)
    ids = [o["_source_id"] for o in map(orjson.loads, (tmp / "out.jsonl").read_bytes().splitlines())]
    assert sorted(ids) == [f"C{i:07d}" for i in range(1, ROWS + 1) if i != 6]   # none twice, none lost
    assert first.total("failed") + second.total("failed") == 1


def test_a_header_that_does_not_decode_names_file_line_and_fix(tmp):
    data = "id,Vorname,Straße\nC1,Jürgen,Hauptstraße 1\n".encode("cp1252")
    mapping = MAPPING.replace("First Name", "Vorname").replace("Last Name", "Straße").replace(
        "      notes: Notes\n", "")
    job = _job(tmp, data, source=", id_column: id", mapping=mapping)
    res = run_cli("validate", str(job), "--no-progress")
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    (line,) = res.stderr.strip().splitlines()
    assert "in.csv:1: the header line is not utf-8" in line and "encoding: cp1252" in line
    job.write_text(job.read_text().replace("id_column: id", "id_column: id, encoding: cp1252"))
    assert run_cli("run", str(job), "--no-progress").returncode == 0
    assert _out(tmp)["C1"] == {"_source_id": "C1", "first_name": "Jürgen", "last_name": "Hauptstraße 1"}


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-be-bom"])
def test_a_bom_says_the_encoding_by_itself(tmp, encoding):
    text = HEADER + "C1,Zoë,Łukasz,李小龙 🌵\n"
    data = (b"\xfe\xff" + text.encode("utf-16-be")) if encoding == "utf-16-be-bom" else text.encode(encoding)
    res = run_cli("run", str(_job(tmp, data, source=", id_column: id")), "--no-progress")
    assert res.returncode == 0, res.stderr
    assert _out(tmp)["C1"] == {"_source_id": "C1", "first_name": "Zoë", "last_name": "Łukasz",
                               "notes": "李小龙 🌵"}


def test_a_row_of_the_wrong_width_is_listed_under_its_id_column(tmp):
    data = (HEADER + "C0000996,A,B,n\nC0000997,only,three\nC0000998,C,D,n\n").encode()
    res = run_cli("run", str(_job(tmp, data, source=", id_column: id")), "--no-progress")
    assert res.returncode == 1, res.stderr
    (failure,) = _failures(tmp)
    assert failure["source_id"] == "C0000997" and failure["message"] == "line 3: expected 4 columns, got 3"
    assert set(_out(tmp)) == {"C0000996", "C0000998"}


def test_jsonl_bad_bytes_and_bad_json_fail_alone(tmp):
    lines = [orjson.dumps({"id": "J1", "first_name": "Zoë"}),
             '{"id": "J2", "first_name": "Müller"}'.encode("cp1252"),
             b'{"id": "J3", "first_name": ',
             orjson.dumps({"id": "J4", "first_name": "Ann"})]
    mapping = "source: jsonl\ntarget: jsonl\nstreams:\n  contacts:\n    fields:\n      first_name: first_name\n"
    job = _job(tmp, codecs_bom() + b"\n".join(lines) + b"\n", mapping=mapping, name="in.jsonl", system="jsonl")
    res = run_cli("run", str(job), "--no-progress")
    assert res.returncode == 1, res.stderr
    assert set(_out(tmp)) == {"J1", "J4"} and _out(tmp)["J1"]["first_name"] == "Zoë"
    failures = {f["source_id"]: f["message"] for f in _failures(tmp)}
    assert set(failures) == {"J2", "3"}
    assert failures["J2"].startswith("line 2: not valid utf-8") and "encoding: cp1252" in failures["J2"]
    assert failures["3"].startswith("line 3: invalid JSON")


def codecs_bom() -> bytes:
    return b"\xef\xbb\xbf"   # a UTF-8 BOM before the first line is skipped, not a JSON error


TYPO = MAPPING.replace("first_name: First Name", "first_name: Frist Name")


@pytest.mark.parametrize("mode", ["validate", "run"])
def test_a_path_naming_no_column_is_refused_before_the_run(tmp, mode):
    data, _ = _rows(None)
    job = _job(tmp, data, source=", id_column: id", mapping=TYPO)
    res = run_cli(mode, str(job), "--no-progress")
    assert res.returncode == 2, res.stderr
    (line,) = res.stderr.strip().splitlines()
    assert line == (f"migrator: {tmp / 'mapping.yaml'}:6: 'Frist Name', which is not a column of {tmp / 'in.csv'} "
                    "(did you mean 'First Name'?)")
    assert not (tmp / "out.jsonl").exists() and not (tmp / "ckpt.sqlite").exists()


@pytest.mark.parametrize("where,expected", [
    ("      notes: {template: '{Frist Name} {Last Name}'}\n", "mapping.yaml:8"),
    ("    skip_if: [{path: Nots, equals: x}]\n", "mapping.yaml:5"),
])
def test_templates_and_conditions_are_checked_too(tmp, where, expected):
    mapping = MAPPING.replace("      notes: Notes\n", where if "notes" in where else "      notes: Notes\n")
    if "skip_if" in where:
        mapping = mapping.replace("    fields:\n", where + "    fields:\n")
    data, _ = _rows(None)
    res = run_cli("validate", str(_job(tmp, data, source=", id_column: id", mapping=mapping)), "--no-progress")
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith(f"migrator: {tmp / expected}: ") and "did you mean" in res.stderr


def test_jsonl_keys_come_from_the_first_page(tmp):
    mapping = "source: jsonl\ntarget: jsonl\nstreams:\n  contacts:\n    fields:\n      email: adress.email\n"
    data = orjson.dumps({"id": 1, "address": {"email": "a@example.com"}}) + b"\n"
    res = run_cli("validate", str(_job(tmp, data, mapping=mapping, name="in.jsonl", system="jsonl")), "--no-progress")
    assert res.returncode == 2, res.stderr
    assert "mapping.yaml:6: path 'adress.email' reads 'adress'" in res.stderr
    assert "(did you mean 'address'?)" in res.stderr


@pytest.mark.parametrize("data", [b"", HEADER.encode()], ids=["empty", "header-only"])
def test_an_empty_or_header_only_file_is_no_crash(tmp, data):
    """Nothing to migrate is said in one line (issue 16), not passed as a success."""
    said = "holds only its header line: 0 records were read" if data else "the file is empty: 0 records were read"
    for mapping in (None, TYPO):
        res = run_cli("validate", str(_job(tmp, data, source=", id_column: id", mapping=mapping or MAPPING)),
                      "--no-progress")
        assert res.returncode == 2, res.stderr
        (line,) = res.stderr.strip().splitlines()
        assert said in line and "Traceback" not in res.stderr


@pytest.mark.parametrize("setting,sep", [("';'", ";"), ("tab", "\t"), ('"\\t"', "\t")])
def test_delimiter(tmp, setting, sep):
    data = "id,First Name,Last Name,Notes\nC1,Ann,Lee,n\n".replace(",", sep).encode()
    res = run_cli("run", str(_job(tmp, data, source=f", id_column: id, delimiter: {setting}")), "--no-progress")
    assert res.returncode == 0, res.stderr
    assert _out(tmp)["C1"]["last_name"] == "Lee"


def test_a_bad_delimiter_or_encoding_is_one_line(tmp):
    data, _ = _rows(None)
    for source, said in ((", delimiter: ';;'", "delimiter must be one character"),
                         (", encoding: cp-1252", "unknown encoding 'cp-1252'")):
        res = run_cli("validate", str(_job(tmp, data, source=source)), "--no-progress")
        assert res.returncode == 2, res.stderr
        (line,) = res.stderr.strip().splitlines()
        assert said in line and "job.yaml:2" in line
