"""Bad source data: each bad record fails alone with a reason; a bad source stops cleanly
with one message — never a crash, never an endless loop."""
from pathlib import Path

import orjson
import pytest

from migrator.engine import Engine
from migrator.errors import SourceError
from migrator.job import load_job
from migrator.protocols import Page, Record, StreamInfo
from tests.conftest import run_cli

MAPPING = """source: jsonl
target: jsonl
streams:
  contacts:
    fields:
      first_name: {path: first_name, transform: [strip]}
      email: {path: email, transform: [strip, lower]}
      phone: {path: phone, transform: [phone_e164]}
      tags: {path: tags, transform: [unique]}
"""


def _job(tmp: Path, lines: list[bytes]) -> Path:
    (tmp / "in.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (tmp / "mapping.yaml").write_text(MAPPING)
    job = tmp / "job.yaml"
    job.write_text("name: bad\nsource: {system: jsonl, path: in.jsonl}\ntarget: {system: jsonl, path: out.jsonl}\n"
                   "mapping: mapping.yaml\ncheckpoint: ckpt.sqlite\nreports: reports\n")
    return job


def test_bad_records_fail_alone_with_reasons(tmp):
    good = lambda i, **kw: orjson.dumps({"id": i, "first_name": f"P{i}", "email": f"p{i}@example.com", **kw})
    lines = [
        good(1),
        b'{"id": 2, "first_name": "Broken", "email": ',                       # malformed JSON
        b'[1, 2, 3]',                                                         # not an object
        good(4, email=12345),                                                 # wrong type
        orjson.dumps({"id": 5}),                                              # missing fields
        good(6, first_name="x" * 1_000_000),                                  # a 1 MB name
        good(7, first_name="Zoë 🌵 李小龙"),                                      # unicode and emoji
        good(8, phone="555-CALL-NOW"),                                        # bad phone
        good(1, first_name="Again"),                                          # a duplicate source id
        good(9, tags="not-a-list"),                                           # wrong type for a list
        b"",                                                                  # an empty line
        good(10),
    ]
    res = run_cli("run", str(_job(tmp, lines)), "--no-progress")
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    out = {o["_source_id"]: o for o in map(orjson.loads, (tmp / "out.jsonl").read_bytes().splitlines())}
    assert {"1", "6", "7", "10"} <= set(out)
    assert out["1"]["first_name"] == "P1"                     # the duplicate did not overwrite
    assert out["7"]["first_name"] == "Zoë 🌵 李小龙"
    failures = (tmp / "reports" / "bad-run-failures.csv").read_text()
    assert "line 2: invalid JSON" in failures and "line 3: not a JSON object" in failures
    assert "8,P8,p8@example.com,phone" in failures
    report = orjson.loads((tmp / "reports" / "bad-run-report.json").read_bytes())
    assert report["streams"][0]["counts"]["duplicate_source_id"] == 1


class _Source:
    """A source that misbehaves the way a buggy API can."""

    system = "fake"

    def __init__(self, pages):
        self._pages = pages

    async def open(self): ...
    async def close(self): ...
    async def check_access(self, streams): ...
    def streams(self): return ("contacts",)
    async def info(self, stream): return StreamInfo(stream)
    def use_mapping(self, streams): ...
    def watch_waits(self, notify, stopping=None): ...
    def request_stats(self): return {}

    async def pages(self, stream, cursor):
        for p in self._pages:
            yield p


def _recs(*ids):
    return [Record(str(i), {"id": i, "first_name": f"P{i}", "email": f"p{i}@example.com"}) for i in ids]


def _fake_job(tmp):
    return load_job(_job(tmp, [b'{"id": 0}']))


async def test_empty_pages_and_a_page_past_the_end_finish_cleanly(tmp):
    source = _Source([Page(_recs(1, 2), {"page": 1}), Page([], {"page": 2}), Page(_recs(3), {"page": 3}),
                      Page([], None)])
    outcome = await Engine(_fake_job(tmp), source=source, progress=False).run()
    assert outcome.streams[0].counts["done"] == 3


async def test_a_repeating_cursor_stops_with_a_message(tmp):
    loop = [Page(_recs(i), {"page": 1 if i > 1 else 0}) for i in range(1, 100)]
    with pytest.raises(SourceError, match="gave the cursor .* twice"):
        await Engine(_fake_job(tmp), source=_Source(loop), progress=False).run()
