"""Backup first (issue 20, part 1): ``migrator init SOURCE jsonl|csv`` writes a job whose
shipped mapping keeps every field each API source returns, nested lists included."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from migrator.cli import main
from migrator.engine import Engine

from tests.integration.harness import Pair, read_file_target

API_SOURCES = ("realvolve", "realeflow", "spark", "rei")
N = 40


async def source_records(pair: Pair) -> dict[str, dict[str, dict[str, Any]]]:
    """Every record of every stream as the source connector reads it, by source id."""
    job = pair.job()
    source = job.connector("source")
    await source.open()
    try:
        source.use_mapping(list(job.mapping.streams.values()))
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for sm in job.mapping.streams.values():
            got = out.setdefault(sm.name, {})
            async for page in source.pages(sm.source_stream, None):
                for r in page.records:
                    assert r.data is not None
                    got[r.source_id] = r.data
        return out
    finally:
        await source.close()


def plain(value: Any) -> Any:
    """A value as JSON carries it (what a backup can promise to keep)."""
    return json.loads(json.dumps(value, default=str))


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@pytest.mark.parametrize("source", API_SOURCES)
async def test_the_backup_of_each_api_source_equals_its_records_field_for_field(tmp_path: Path, source: str,
                                                                                fmt: str) -> None:
    async with Pair(tmp_path, source, fmt, n=N) as pair:
        outcome = await Engine(pair.job(), mode="run", progress=False).run()
        assert outcome.total("failed") == 0
        expected = await source_records(pair)
    assert set(expected) == set(pair.job().mapping.streams)
    for stream, records in expected.items():
        assert records, f"the {source} simulator holds no {stream}"
        rows = read_file_target(tmp_path / f"out-{stream}.{fmt}")
        assert len(rows) == len(records), stream   # one line per record, none doubled
        by_id = {row.pop("_source_id"): row for row in rows}
        assert set(by_id) == set(records)
        for sid, record in records.items():
            row = by_id[sid]
            if fmt == "jsonl":
                assert row == plain(record), (stream, sid)
                continue
            more = json.loads(row.pop("_more") or "{}")
            got = {}
            for key, cell in row.items():   # a column per listed field; text as it is, the rest JSON
                value = record.get(key)
                got[key] = cell if isinstance(value, str) else (None if cell == "" else json.loads(cell))
            got.update(more)
            assert set(got) == set(record), (stream, sid, set(got) ^ set(record))
            assert got == plain(record), (stream, sid)


def test_init_writes_a_backup_job_for_every_api_source(tmp_path: Path, capsys) -> None:
    for source in API_SOURCES:
        for fmt in ("jsonl", "csv"):
            out = tmp_path / f"{source}-{fmt}"
            assert main(["init", source, fmt, "--out", str(out)]) == 0
            job = (out / "job.yaml").read_text()
            assert f"system: {fmt}" in job and "{stream}" in job and "base_url" not in job.split("target:")[1]
            assert "keep_all: true" in (out / "mapping.yaml").read_text()


def test_keep_all_is_refused_for_a_crm_target(tmp_path: Path) -> None:
    from migrator.errors import MappingError
    from migrator.mapping import load_mapping
    from migrator.registry import connector_class

    text = "source: realvolve\ntarget: rei\nstreams:\n  contacts:\n    keep_all: true\n"
    with pytest.raises(MappingError, match=r"<mapping>:5: keep_all .* only a file takes"):
        load_mapping(text, schemas=connector_class("rei").schemas())
