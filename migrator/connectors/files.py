"""CSV and JSONL files, as sources and targets.

Users export from one CRM's UI and import into another's, so files are first-class.
Reading streams a page at a time on a worker thread (constant memory); a malformed row
fails alone with its line number. Writing appends a page's records as lines, with the
source id in a column of its own, in one write() to the OS; the output's new size goes to
the checkpoint as the file's *mark*, in the same transaction as those records' ``done``.
The first write of a run cuts the file back to its committed mark, so the lines of a page
whose ``done`` never committed (a crash) are gone before the page is written again:
nothing doubled, and no record needs a checkpoint write before its line is appended.
(Checkpoints from before marks existed settle their pending records by ``lookup``.)
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, AsyncIterator, Iterator, Mapping

import anyio
import orjson

from ..errors import ConfigError, JobError
from ..protocols import Page, Record, StreamInfo, WriteResult
from ..schema import Field, StreamSchema
from .base import Connector, Setting, WritePlanner

PAGE = 500


class OpenSchema(StreamSchema):
    """A file takes whatever fields the mapping gives it."""

    def __init__(self, name: str):
        super().__init__(name, [])

    def field(self, name: str) -> Field | None:
        return Field(name)

    def validate(self, record: dict) -> list:
        return []


class _FileConnector(Connector):
    reads = "file"
    cheap_lookup = True
    batch_writes = True
    settings_spec = {
        "path": Setting("file to read or write; may contain {stream} for several streams", required=True),
        "stream": Setting("stream name of the file's rows", default="contacts"),
        "id_column": Setting("source: column/field holding the record id (default: the row number)"),
        "source_id_column": Setting("target: column that records each row's source id", default="_source_id"),
        "encoding": Setting("text encoding", default="utf-8-sig"),
        "page_size": Setting("rows per page", default=PAGE),
    }

    def __init__(self, settings: Mapping[str, Any], ctx):
        super().__init__(settings, ctx)
        self._outputs: dict[str, "_Appender"] = {}
        self._seen: dict[str, set[str]] = {}
        self._fields: dict[str, list[str]] = {}

    @classmethod
    def schemas(cls) -> dict[str, StreamSchema]:
        return _OpenSchemas()  # type: ignore[return-value]

    def schema(self, stream: str) -> StreamSchema:
        return OpenSchema(stream)

    def streams(self) -> tuple[str, ...]:
        return (str(self.setting("stream")),)

    def path_for(self, stream: str) -> Path:
        raw = str(self.setting("path")).replace("{stream}", stream)
        p = Path(raw)
        return p if p.is_absolute() else (self.ctx.job_dir / p)

    def page_size(self) -> int:
        return int(self.setting("page_size") or PAGE)

    # ---- source -----------------------------------------------------------------
    async def info(self, stream: str) -> StreamInfo:
        path = self.path_for(stream)
        if not path.exists():
            raise ConfigError(f"{self.ctx.where}: source file {path} does not exist")
        return StreamInfo(stream)

    async def pages(self, stream: str, cursor: Any) -> AsyncIterator[Page]:
        path = self.path_for(stream)
        if not path.exists():
            raise ConfigError(f"{self.ctx.where}: source file {path} does not exist")
        reader = self._open_reader(path, cursor)
        try:
            while True:
                page = await anyio.to_thread.run_sync(next, reader, None)
                if page is None:
                    return
                yield page
        finally:
            await anyio.to_thread.run_sync(reader.close)

    def _open_reader(self, path: Path, cursor: Any) -> Iterator[Page]:
        raise NotImplementedError

    # ---- the plan -----------------------------------------------------------------
    def plan_pages(self, stream: str, total: int | None) -> int:
        return max(1, -(-(total or 0) // self.page_size()))

    async def write_planner(self, stream: str, sm: Any) -> WritePlanner:
        """A file costs no request: reading and appending are local (``plan_reads`` is {})."""
        return _LocalPlanner()

    # ---- target -----------------------------------------------------------------
    async def prepare(self, streams: list[Any]) -> None:
        for sm in streams:
            self._fields[sm.target_stream] = list(sm.fields)

    def can_lookup(self, stream: str) -> bool:
        return bool(self.setting("source_id_column"))

    async def lookup(self, stream: str, record: Mapping[str, Any], source_id: str) -> str | None:
        """Whether an interrupted write reached the file (scans it once per run)."""
        if stream not in self._seen:
            path = self.path_for(stream)
            self._seen[stream] = await anyio.to_thread.run_sync(self._scan_ids, path) if path.exists() else set()
        return source_id if source_id in self._seen[stream] else None

    def _scan_ids(self, path: Path) -> set[str]:
        raise NotImplementedError

    async def write(self, stream: str, record: dict[str, Any], *, source_id: str,
                    target_id: str | None = None) -> WriteResult:
        out = self._outputs.get(stream) or await self._open_output(stream)
        out.append(self._line(stream, record, source_id))
        self._mark(out)
        return WriteResult(target_id=source_id, action="created", requests={"append": 1})

    async def write_batch(self, stream: str, batch: list[tuple[str, dict[str, Any]]]) -> list[WriteResult]:
        """A page's lines go to the OS in one write(), then the file's mark is queued: the
        engine queues the page's ``done`` before anything can commit (no await between),
        so the two are one transaction."""
        out = self._outputs.get(stream) or await self._open_output(stream)
        out.append(self._lines(stream, batch))
        self._mark(out)
        return [WriteResult(target_id=sid, action="created") for sid, _ in batch]

    async def _open_output(self, stream: str) -> "_Appender":
        path = self.path_for(stream)
        ckpt = self.checkpoint
        if ckpt is not None:
            settled = await ckpt.mark(_mark_key(path))
            if settled is not None:
                await anyio.to_thread.run_sync(_cut_to, path, int(settled), str(ckpt.path))
            else:  # the first write for this checkpoint: what the file holds now is not ours to cut
                ckpt.set_mark(_mark_key(path), path.stat().st_size if path.exists() else 0)
                await ckpt.commit()
        out = self._outputs.get(stream)
        if out is None:
            out = self._outputs[stream] = self._appender(stream)
        return out

    def _mark(self, out: "_Appender") -> None:
        if self.checkpoint is not None:
            self.checkpoint.set_mark(_mark_key(out.path), out.size)

    def _appender(self, stream: str) -> "_Appender":
        return _Appender(self.path_for(stream))

    def _line(self, stream: str, record: dict[str, Any], source_id: str) -> bytes:
        raise NotImplementedError

    def _lines(self, stream: str, batch: list[tuple[str, dict[str, Any]]]) -> bytes:
        line = self._line
        return b"".join([line(stream, record, sid) for sid, record in batch])

    async def close(self) -> None:
        for out in self._outputs.values():
            out.close()
        self._outputs.clear()


class _LocalPlanner(WritePlanner):
    def add(self, record: dict[str, Any]) -> None:
        """Appending a line is no request."""


class _OpenSchemas(dict):
    """``schemas()`` of a file target: every stream name is open."""

    def get(self, key, default=None):  # type: ignore[override]
        return OpenSchema(key)

    def __getitem__(self, key):
        return OpenSchema(key)

    def __contains__(self, key) -> bool:
        return True


def _mark_key(path: Path) -> str:
    return f"append:{path}"


def _cut_to(path: Path, settled: int, checkpoint: str) -> None:
    """Cut ``path`` back to the ``settled`` bytes the checkpoint vouches for: what lies
    past them was appended by a run that stopped before its ``done`` committed."""
    size = path.stat().st_size if path.exists() else -1
    if size > settled:
        os.truncate(path, settled)
    elif size < settled:
        now = "is missing" if size < 0 else f"holds {size:,} bytes"
        raise ConfigError(f"output {path} {now}, but checkpoint {checkpoint} has {settled:,} bytes of it "
                          "settled: the file changed after the last run, so records counted done may be "
                          "missing from it. Restore the file, or start over with a new checkpoint and output")


class _Appender:
    """Append-only output; each record (or page of records) goes to the OS in one write()
    call. ``size`` is the file's length after the last append: the mark to commit."""

    def __init__(self, path: Path, header: bytes | None = None):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.size = os.fstat(self.fd).st_size
        if header is not None and self.size == 0:
            self.append(header)

    def append(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]
        self.size += len(data)

    def close(self) -> None:
        os.close(self.fd)


# ---- CSV -------------------------------------------------------------------------------

def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return orjson.dumps(value).decode()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class CsvConnector(_FileConnector):
    system = "csv"
    title = "CSV file"
    settings_spec = {**_FileConnector.settings_spec,
                     "delimiter": Setting("field separator", default=",")}

    def _open_reader(self, path: Path, cursor: Any) -> Iterator[Page]:
        return _CsvPages(path, str(self.setting("encoding")), str(self.setting("delimiter")),
                         self.setting("id_column"), int((cursor or {}).get("row", 0)), self.page_size())

    def _scan_ids(self, path: Path) -> set[str]:
        col = str(self.setting("source_id_column"))
        with open(path, newline="", encoding="utf-8") as fh:
            return {row.get(col, "") for row in csv.DictReader(fh)}

    def _appender(self, stream: str) -> _Appender:
        cols = [str(self.setting("source_id_column"))] + self._fields.get(stream, [])
        return _Appender(self.path_for(stream), self._csv_row(cols))

    def _csv_row(self, cells: list[str]) -> bytes:
        buf = io.StringIO()
        csv.writer(buf, delimiter=str(self.setting("delimiter")), lineterminator="\n").writerow(cells)
        return buf.getvalue().encode("utf-8")

    def _line(self, stream: str, record: dict[str, Any], source_id: str) -> bytes:
        cols = self._fields.get(stream) or list(record)
        return self._csv_row([source_id] + [_cell(record.get(c)) for c in cols])

    def _lines(self, stream: str, batch: list[tuple[str, dict[str, Any]]]) -> bytes:
        cols = self._fields.get(stream)
        if not cols:
            return super()._lines(stream, batch)
        buf = io.StringIO()
        csv.writer(buf, delimiter=str(self.setting("delimiter")), lineterminator="\n").writerows(
            [[sid] + [_cell(record.get(c)) for c in cols] for sid, record in batch])
        return buf.getvalue().encode("utf-8")


class _CsvPages:
    def __init__(self, path: Path, encoding: str, delimiter: str, id_column: str | None,
                 skip_rows: int, page_size: int):
        self.fh = open(path, newline="", encoding=encoding, errors="strict")
        self.reader = csv.reader(self.fh, delimiter=delimiter, strict=True)
        self.id_column = id_column
        self.row = 0
        self.page_size = page_size
        self.header = self._header()
        if id_column and id_column not in self.header:
            self.fh.close()
            raise JobError(f"{path}: no column '{id_column}' (id_column); columns are {', '.join(self.header)}")
        for _ in range(skip_rows):
            if self._next_raw() is None:
                break

    def _header(self) -> list[str]:
        try:
            return next(self.reader)
        except StopIteration:
            return []
        except (csv.Error, UnicodeDecodeError) as e:
            raise JobError(f"cannot read the header line: {e}") from None

    def _next_raw(self) -> tuple[int, list[str] | None, str | None] | None:
        try:
            cells = next(self.reader)
        except StopIteration:
            return None
        except (csv.Error, UnicodeDecodeError) as e:
            self.row += 1
            return self.reader.line_num, None, f"line {self.reader.line_num}: unreadable row ({e})"
        self.row += 1
        return self.reader.line_num, cells, None

    def __iter__(self) -> "_CsvPages":
        return self

    def __next__(self) -> Page:
        # One loop, no call per row: reading is a sixth of a file -> file run's CPU.
        records: list[Record] = []
        append = records.append
        header, reader, id_column, size = self.header, self.reader, self.id_column, self.page_size
        width = len(header)
        while len(records) < size:
            try:
                cells = next(reader)
            except StopIteration:
                break
            except (csv.Error, UnicodeDecodeError) as e:
                self.row += 1
                line = reader.line_num
                append(Record(str(self.row), None, error=f"line {line}: unreadable row ({e})", line=line))
                continue
            self.row += 1
            if not any(cells):
                continue
            line = reader.line_num
            if len(cells) != width:
                append(Record(str(self.row), None, error=f"line {line}: expected {width} columns, got {len(cells)}",
                              line=line))
                continue
            data = dict(zip(header, cells))
            append(Record((id_column and data.get(id_column)) or str(self.row), data, line=line))
        if not records:
            raise StopIteration
        return Page(records, {"row": self.row})

    def close(self) -> None:
        self.fh.close()


# ---- JSONL ------------------------------------------------------------------------------

class JsonlConnector(_FileConnector):
    system = "jsonl"
    title = "JSON Lines file"
    settings_spec = {**_FileConnector.settings_spec,
                     "id_column": Setting("source: field holding the record id (default 'id', else the line number)",
                                          default="id")}

    def _open_reader(self, path: Path, cursor: Any) -> Iterator[Page]:
        cursor = cursor or {}
        return _JsonlPages(path, self.setting("id_column"), int(cursor.get("offset", 0)),
                           int(cursor.get("line", 0)), self.page_size())

    def _scan_ids(self, path: Path) -> set[str]:
        col = str(self.setting("source_id_column"))
        ids: set[str] = set()
        with open(path, "rb") as fh:
            for raw in fh:
                try:
                    ids.add(str(orjson.loads(raw).get(col)))
                except (orjson.JSONDecodeError, AttributeError):
                    continue
        return ids

    def _line(self, stream: str, record: dict[str, Any], source_id: str) -> bytes:
        return self._lines(stream, [(source_id, record)])

    def _lines(self, stream: str, batch: list[tuple[str, dict[str, Any]]]) -> bytes:
        """The source id first, then the record: spliced as bytes, which costs a third of
        dumping a merged dict (the page's lines are most of a file target's CPU)."""
        col, dumps = str(self.setting("source_id_column")), orjson.dumps
        head = b"{" + dumps(col) + b":"
        return b"\n".join([
            head + dumps(sid) + (b"," + dumps(record)[1:] if record else b"}") if col not in record
            else dumps({**record, col: sid})  # a mapped field of that name: the source id wins
            for sid, record in batch]) + b"\n"


class _JsonlPages:
    def __init__(self, path: Path, id_field: str | None, offset: int, line: int, page_size: int):
        self.fh = open(path, "rb")
        self.fh.seek(offset)
        self.line = line
        self.id_field = id_field
        self.page_size = page_size

    def __iter__(self) -> "_JsonlPages":
        return self

    def __next__(self) -> Page:
        records: list[Record] = []
        while len(records) < self.page_size:
            raw = self.fh.readline()
            if not raw:
                break
            self.line += 1
            if not raw.strip():
                continue
            sid = str(self.line)
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError as e:
                records.append(Record(sid, None, error=f"line {self.line}: invalid JSON ({e.msg})", line=self.line))
                continue
            if not isinstance(data, dict):
                records.append(Record(sid, None, error=f"line {self.line}: not a JSON object", line=self.line))
                continue
            if self.id_field and data.get(self.id_field) not in (None, ""):
                sid = str(data[self.id_field])
            records.append(Record(sid, data, line=self.line))
        if not records:
            raise StopIteration
        return Page(records, {"offset": self.fh.tell(), "line": self.line})

    def close(self) -> None:
        self.fh.close()
