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

import codecs
import csv
import io
import os
from datetime import datetime
from pathlib import Path
from typing import Any, AsyncIterator, Iterator, Mapping

import anyio
import orjson

from ..errors import ConfigError, JobError
from ..protocols import Page, Record, StreamInfo, WriteResult
from ..schema import Field, StreamSchema
from . import textfile
from ..timeparse import since_time, utc_time
from .base import Connector, ReadBack, Setting, WritePlanner, number_setting

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
        "encoding": Setting("source: text encoding, e.g. cp1252 (default: UTF-8, or what the file's BOM "
                            "says: UTF-8, UTF-16, UTF-32)", default=textfile.AUTO),
        "page_size": Setting("rows per page", default=PAGE),
        "updated_column": Setting("source: column/field holding when a row last changed, so that `run --since "
                                  "TIME` skips (and counts) the rows older than TIME"),
    }

    @classmethod
    def can_filter_since(cls, settings: Mapping[str, Any]) -> bool:
        """A file is read whole either way; with ``updated_column`` rows older than
        ``--since`` are skipped, so a delta writes only what changed."""
        return bool(settings.get("updated_column"))

    def __init__(self, settings: Mapping[str, Any], ctx):
        super().__init__(settings, ctx)
        self._outputs: dict[str, "_Appender"] = {}
        self._seen: dict[str, set[str]] = {}
        self._fields: dict[str, list[str]] = {}
        self.page_size()  # a bad value is refused before anything is read, not mid-read
        self._whole: set[str] = set()   # target streams written whole (keep_all: a backup)

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
        raw = self.setting("page_size")
        size = PAGE if raw in (None, "") else number_setting(raw)
        if not isinstance(size, int) or size < 1:
            raise JobError(f"{self.ctx.where}: page_size must be a whole number of at least 1, not {raw!r}")
        return size

    # ---- the check before a run (validate and run make it first) -------------------
    async def probe(self, streams: list[str]) -> None:
        """A source file must be there, readable and hold records; a target file's folder
        must take a new file — known before anything is read or written."""
        for stream in streams:
            path = self.path_for(stream)
            if self.ctx.role == "source":
                await anyio.to_thread.run_sync(self._check_readable, path)
            else:
                _check_writable(path, self.ctx.where)

    def _check_readable(self, path: Path) -> None:
        where = f"{self.ctx.where}: " if self.ctx.where else ""
        if not path.exists():
            raise ConfigError(f"{where}source file {path} does not exist")
        if not path.is_file():
            raise ConfigError(f"{where}source {path} is not a file")
        try:
            reader = self._open_reader(path, None)
        except OSError as e:
            raise ConfigError(f"{where}cannot read source file {path} ({e.strerror or e})") from None
        try:
            first = next(reader, None)
        finally:
            reader.close()
        if first is None:
            if getattr(reader, "header", None):
                raise ConfigError(f"{path}: the file holds only its header line: 0 records were read, "
                                  "so there is nothing to migrate (is it the right export?)")
            raise ConfigError(f"{path}: the file is empty: 0 records were read (is it the right export?)")

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
        reader = await anyio.to_thread.run_sync(self._open_reader, path, cursor)
        since = self._since()
        try:
            while True:
                page = await anyio.to_thread.run_sync(next, reader, None)
                if page is None:
                    return
                yield page if since is None else self._changed_since(page, since)
        finally:
            await anyio.to_thread.run_sync(reader.close)

    def _open_reader(self, path: Path, cursor: Any) -> Iterator[Page]:
        raise NotImplementedError

    def _since(self) -> datetime | None:
        column = self.settings.get("updated_column")
        if not self.ctx.since or not column:
            return None
        return since_time(self.ctx.since)

    def _changed_since(self, page: Page, since: datetime) -> Page:
        """The page less its rows whose ``updated_column`` is before ``since`` (counted in
        ``page.older``). A row whose time cannot be read is kept: better written twice
        than lost."""
        column = str(self.settings["updated_column"])
        kept = []
        for record in page.records:
            stamp = (record.data or {}).get(column)
            if record.data is not None and stamp not in (None, ""):
                try:
                    if utc_time(str(stamp)) < since:
                        continue
                except (ValueError, OverflowError):
                    pass
            kept.append(record)
        page.older = len(page.records) - len(kept)
        page.records = kept
        return page

    def cannot_read_by_id(self, stream: str) -> None:
        return None

    async def read_records(self, stream: str, ids: list[str]) -> AsyncIterator[Page]:
        """``retry``: one local pass keeping the failed rows — no request. By id, not by a
        stored offset: fixing the file, the usual step before ``retry``, moves every row
        after the fix. An id no longer in the file fails with that reason."""
        wanted, found = set(ids), set()
        pages = self.pages(stream, None)
        try:
            async for page in pages:
                records = [r for r in page.records if r.source_id in wanted and r.source_id not in found]
                if records:
                    found.update(r.source_id for r in records)
                    yield Page(records, None, len(ids))
        finally:
            await pages.aclose()  # type: ignore[attr-defined]
        missing = [sid for sid in ids if sid not in found]
        if missing:
            yield Page([Record(sid, None, error=f"{self.path_for(stream).name} no longer holds a record "
                               f"with id {sid}") for sid in missing], None, len(ids))

    def _encoding(self, path: Path) -> str:
        return textfile.choose_encoding(path, self.settings.get("encoding"), self.ctx.where)

    async def columns(self, stream: str) -> tuple[str, list[str]] | None:
        """What the file's records hold, known as soon as it opens: a mapping path that
        names none of it is a typo, refused before the run."""
        path = self.path_for(stream)
        if not path.exists():
            return None
        return await anyio.to_thread.run_sync(self._columns, path)

    def _columns(self, path: Path) -> tuple[str, list[str]] | None:
        raise NotImplementedError

    async def count_records(self, stream: str) -> int | None:
        """How many records the file holds, for the progress line's total (a file has no
        count to ask for): one quick pass on a worker thread, abandoned if the run ends first."""
        path = self.path_for(stream)
        if not path.exists():
            return None
        return await anyio.to_thread.run_sync(self._count, path, abandon_on_cancel=True)

    def _count(self, path: Path) -> int:
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
            if getattr(sm, "keep_all", False):
                self._whole.add(sm.target_stream)

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

    # ---- verify: the file's lines, read back on this machine ------------------------------
    async def plan_read_back(self, stream: str, records: int) -> ReadBack:
        return ReadBack("list", {}, f"reads {self.path_for(stream).name} whole, on this machine: no requests")

    async def read_back(self, stream: str, ids: list[str], how: ReadBack,
                        fields: frozenset[str]) -> AsyncIterator[tuple[str, dict[str, Any] | None]]:
        """Every line as ``(its source id, the rest)``: the source id is the target id."""
        path = self.path_for(stream)
        if not path.exists():
            return
        col = str(self.setting("source_id_column"))
        rows = await anyio.to_thread.run_sync(self._held_rows, path)
        for row in rows:
            if isinstance(row, dict) and row.get(col) not in (None, ""):
                tid = str(row.pop(col))
                yield tid, row

    def _held_rows(self, path: Path) -> list[dict[str, Any]]:
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
                settled = path.stat().st_size if path.exists() else 0
                ckpt.set_mark(_mark_key(path), settled)
                ckpt.set_mark("before:" + _mark_key(path), settled)   # what `migrator undo` cuts back to
            ckpt.set_mark(f"start:{ckpt.run}:" + _mark_key(path), int(settled))   # and a trial's undo
            await ckpt.commit()
        out = self._outputs.get(stream)
        if out is None:
            out = self._outputs[stream] = self._appender(stream)
        return out

    # ---- undo: the output cut back to its size before the job (or before a trial) --------
    def cannot_undo(self) -> str | None:
        return None

    def undo_mark(self, stream: str) -> str:
        """The checkpoint mark of ``stream``'s output (``before:``/``start:<run>:`` prefix
        it for its size before the job, before a run)."""
        return _mark_key(self.path_for(stream))

    async def undo_cut(self, stream: str, size: int) -> int:
        """Cut ``stream``'s output to ``size`` bytes; the bytes cut."""
        path = self.path_for(stream)

        def cut() -> int:
            held = path.stat().st_size if path.exists() else 0
            if held > size:
                os.truncate(path, size)
            return max(0, held - size)
        return await anyio.to_thread.run_sync(cut)

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


def _check_writable(path: Path, where: str) -> None:
    """Whether a file can be created (or appended to) at ``path``, its missing folders
    made as the writer makes them — checked without creating anything."""
    at = f"{where}: " if where else ""
    if path.is_dir():
        raise ConfigError(f"{at}target {path} is a folder; name a file")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ConfigError(f"{at}cannot write {path}: {folder} is a file, not a folder")
    if not os.access(path if path.exists() else folder, os.W_OK):
        raise ConfigError(f"{at}cannot write {path}: permission denied")


class _LocalPlanner(WritePlanner):
    def add(self, record: dict[str, Any]) -> None:
        """Appending a line is no request."""

    def update(self, record: dict[str, Any]) -> None:
        """A delta appends the record's new version: no request either."""


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

MORE = "_more"   # keep_all into CSV: the keys no column names, as one JSON object


def _json_cell(value: Any) -> str:
    """A backup's cell: text as it is, anything else (a list, an object, a number) as
    JSON, so that nested lists survive a CSV and read back as they were."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value, default=str).decode()


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
                     "delimiter": Setting("field separator: one character, e.g. ';', or tab", default=",")}

    def __init__(self, settings: Mapping[str, Any], ctx):
        super().__init__(settings, ctx)
        self._delimiter()  # refused before anything is read

    def _delimiter(self) -> str:
        raw = str(self.setting("delimiter"))
        delimiter = {"tab": "\t", "\\t": "\t"}.get(raw.lower(), raw)
        if len(delimiter) != 1:
            raise JobError(f"{self.ctx.where}: delimiter must be one character, such as ';' or \"\\t\" "
                           f"(a tab), not {raw!r}")
        return delimiter

    def _open_reader(self, path: Path, cursor: Any) -> Iterator[Page]:
        pages = _CsvPages(path, self._encoding(path), self._delimiter(),
                          self.setting("id_column"), int((cursor or {}).get("row", 0)), self.page_size())
        column = self.settings.get("updated_column")
        if column and pages.header and column not in pages.header:
            pages.close()
            raise JobError(f"{path}: no column '{column}' (updated_column); columns are {', '.join(pages.header)}")
        return pages

    def _columns(self, path: Path) -> tuple[str, list[str]] | None:
        reader = self._open_reader(path, None)
        reader.close()
        return (f"a column of {path}", reader.header) if reader.header else None

    def _count(self, path: Path) -> int:
        with open(path, newline="", encoding=self._encoding(path), errors="replace") as fh:
            rows = sum(1 for cells in csv.reader(fh, delimiter=self._delimiter()) if cells)
        return max(0, rows - 1)  # the header

    def _scan_ids(self, path: Path) -> set[str]:
        col = str(self.setting("source_id_column"))
        with open(path, newline="", encoding="utf-8") as fh:
            return {row.get(col, "") for row in csv.DictReader(fh)}

    def _held_rows(self, path: Path) -> list[dict[str, Any]]:
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh, delimiter=self._delimiter()))

    def comparable(self, stream: str, field: str, value: Any) -> Any:
        """A cell holds text: what was sent compares as the cell it was written as."""
        from ..verify.compare import comparable
        return comparable(value if isinstance(value, str) else _cell(value))

    def _appender(self, stream: str) -> _Appender:
        cols = [str(self.setting("source_id_column"))] + self._fields.get(stream, [])
        if stream in self._whole:
            cols.append(MORE)
        return _Appender(self.path_for(stream), self._csv_row(cols))

    def _whole_row(self, stream: str, source_id: str, record: dict[str, Any]) -> list[str]:
        """keep_all: the named columns, then every other key of the record in ``_more``."""
        cols = self._fields.get(stream) or []
        named = set(cols)
        rest = {k: v for k, v in record.items() if k not in named}
        return ([source_id] + [_json_cell(record.get(c)) for c in cols]
                + [orjson.dumps(rest, default=str).decode() if rest else ""])

    def _csv_row(self, cells: list[str]) -> bytes:
        buf = io.StringIO()
        csv.writer(buf, delimiter=self._delimiter(), lineterminator="\n").writerow(cells)
        return buf.getvalue().encode("utf-8")

    def _line(self, stream: str, record: dict[str, Any], source_id: str) -> bytes:
        if stream in self._whole:
            return self._csv_row(self._whole_row(stream, source_id, record))
        cols = self._fields.get(stream) or list(record)
        return self._csv_row([source_id] + [_cell(record.get(c)) for c in cols])

    def _lines(self, stream: str, batch: list[tuple[str, dict[str, Any]]]) -> bytes:
        cols = self._fields.get(stream)
        if not cols or stream in self._whole:
            return super()._lines(stream, batch)
        buf = io.StringIO()
        csv.writer(buf, delimiter=self._delimiter(), lineterminator="\n").writerows(
            [[sid] + [_cell(record.get(c)) for c in cols] for sid, record in batch])
        return buf.getvalue().encode("utf-8")


class _CsvPages:
    """Rows a page at a time. Bytes that do not decode are marked (``textfile``), so the
    row holding them fails alone with its true line, and every other row arrives."""

    def __init__(self, path: Path, encoding: str, delimiter: str, id_column: str | None,
                 skip_rows: int, page_size: int):
        self.path, self.encoding = path, encoding
        self.marks = textfile.Marks()
        self.marks.decoding_here()
        self.fh = open(path, newline="", encoding=encoding, errors=textfile.MARK)
        self.reader = csv.reader(self.fh, delimiter=delimiter, strict=True)
        self.id_column = id_column
        self.row = 0
        self.page_size = page_size
        self.guess: str | None = None
        try:
            self.header = self._header()
        except BaseException:
            self.fh.close()
            raise
        if id_column and self.header and id_column not in self.header:  # an empty file has no rows to name
            self.fh.close()
            raise JobError(f"{path}: no column '{id_column}' (id_column); columns are {', '.join(self.header)}")
        self.id_index = self.header.index(id_column) if id_column and self.header else -1
        for _ in range(skip_rows):
            if self._next_raw() is None:
                break

    def _header(self) -> list[str]:
        try:
            header = next(self.reader)
        except StopIteration:
            return []
        except csv.Error as e:
            raise JobError(f"{self.path}:{self.reader.line_num}: cannot read the header line: {e}") from None
        marked = [c for c in header if textfile.count_marks(c)] if self.marks.pending else []
        if marked:
            raw = textfile.unmark(marked[0], self.encoding)
            with open(self.path, "rb") as fh:
                guess = textfile.guess_encoding(fh.read(1 << 16))
            fix = (f"set `encoding: {guess}` in the job's source" if guess and not guess.startswith("utf")
                   else "set `encoding:` in the job's source to the file's encoding (e.g. cp1252)")
            raise JobError(f"{self.path}:{self.reader.line_num}: the header line is not "
                           f"{textfile.codec_name(self.encoding)} ({textfile.bad_text(raw, guess)}); {fix}")
        return header

    def _next_raw(self) -> tuple[int, list[str] | None, str | None] | None:
        try:
            cells = next(self.reader)
        except StopIteration:
            return None
        except csv.Error as e:
            self.row += 1
            return self.reader.line_num, None, f"line {self.reader.line_num}: unreadable row ({e})"
        self.row += 1
        if self.marks.pending:
            self.marks.pending -= textfile.count_marks("".join(cells))
        return self.reader.line_num, cells, None

    def __iter__(self) -> "_CsvPages":
        return self

    def __next__(self) -> Page:
        # One loop, no call per row: reading is a sixth of a file -> file run's CPU.
        records: list[Record] = []
        append = records.append
        header, reader, id_column, size = self.header, self.reader, self.id_column, self.page_size
        marks = self.marks
        marks.decoding_here()
        width = len(header)
        while len(records) < size:
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                self.row += 1
                line = reader.line_num
                append(Record(str(self.row), None, error=f"line {line}: unreadable row ({e})", line=line))
                continue
            self.row += 1
            if not any(cells):
                continue
            line = reader.line_num
            if marks.pending and (bad := self._undecodable(cells, line)) is not None:
                append(Record(self._row_id(cells), None, error=bad, line=line))
                continue
            if len(cells) != width:
                append(Record(self._row_id(cells), None,
                              error=f"line {line}: expected {width} columns, got {len(cells)}", line=line))
                continue
            data = dict(zip(header, cells))
            append(Record((id_column and data.get(id_column)) or str(self.row), data, line=line))
        if not records:
            raise StopIteration
        return Page(records, {"row": self.row})

    def _row_id(self, cells: list[str]) -> str:
        """A row that fails is listed under its id_column value, as the user knows it,
        when that cell can be read; else under its row number."""
        i = self.id_index
        if 0 <= i < len(cells) and cells[i] and not textfile.count_marks(cells[i]):
            return cells[i]
        return str(self.row)

    def _undecodable(self, cells: list[str], line: int) -> str | None:
        found = textfile.count_marks("".join(cells))
        if not found:
            return None
        self.marks.pending -= found
        at = next(i for i, c in enumerate(cells) if textfile.count_marks(c))
        raw = textfile.unmark(cells[at], self.encoding)
        if self.guess is None:
            self.guess = textfile.guess_encoding(textfile.unmark(",".join(cells), self.encoding)) or ""
        guess = self.guess if self.guess and not self.guess.startswith("utf") else "cp1252"
        column = self.header[at] if at < len(self.header) else f"column {at + 1}"
        enc = textfile.codec_name(self.encoding)
        return (f"line {line}: {column!r} is not valid {enc}: {textfile.bad_text(raw, self.guess)}; "
                f"re-save the file as {enc}, or set `encoding: {guess}` in the job's source "
                f"if all of it is {guess}")

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
                           int(cursor.get("line", 0)), self.page_size(), self._encoding(path))

    def _columns(self, path: Path) -> tuple[str, list[str]] | None:
        reader = self._open_reader(path, None)
        try:
            page = next(reader, None)
        finally:
            reader.close()
        keys = dict.fromkeys(k for r in (page.records if page else []) if r.data for k in r.data)
        return (f"a key in the first {self.page_size()} lines of {path}", list(keys)) if keys else None

    def _count(self, path: Path) -> int:
        with open(path, "rb") as fh:
            return sum(1 for raw in fh if raw.strip())

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

    def _held_rows(self, path: Path) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        with open(path, "rb") as fh:
            for raw in fh:
                try:
                    out.append(orjson.loads(raw))
                except orjson.JSONDecodeError:
                    continue
        return out

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
    """Lines a page at a time, as bytes (the cursor is a byte offset). A line that is not
    valid JSON, or holds bytes that do not decode, fails alone with its line number."""

    def __init__(self, path: Path, id_field: str | None, offset: int, line: int, page_size: int,
                 encoding: str = "utf-8"):
        codec = textfile.codec_name(encoding)
        if codec.startswith(("utf-16", "utf-32")):
            raise JobError(f"{path}: this JSON Lines file is {codec}; JSON Lines are UTF-8 "
                           "(re-save it as UTF-8)")
        self.encoding = None if codec == "utf-8" else encoding  # None: orjson reads the bytes
        self.fh = open(path, "rb")
        if offset == 0 and self.fh.read(3) != codecs.BOM_UTF8:
            self.fh.seek(0)
        elif offset:
            self.fh.seek(offset)
        self.line = line
        self.id_field = id_field
        self.page_size = page_size
        self.guess: str | None = None

    def __iter__(self) -> "_JsonlPages":
        return self

    def __next__(self) -> Page:
        records: list[Record] = []
        encoding = self.encoding
        while len(records) < self.page_size:
            raw = self.fh.readline()
            if not raw:
                break
            self.line += 1
            if not raw.strip():
                continue
            sid = str(self.line)
            try:
                data = orjson.loads(raw if encoding is None else raw.decode(encoding))
            except (orjson.JSONDecodeError, UnicodeDecodeError) as e:
                sid, why = self._unreadable(raw, e)
                records.append(Record(sid, None, error=f"line {self.line}: {why}", line=self.line))
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

    def _unreadable(self, raw: bytes, e: Exception) -> tuple[str, str]:
        """Why a line cannot be read, and the id it is listed under: its id field when the
        line is JSON with a few bytes that do not decode, else its line number."""
        encoding = self.encoding or "utf-8"
        try:
            raw.decode(encoding)
        except UnicodeDecodeError as bad:
            if self.guess is None:
                self.guess = textfile.guess_encoding(raw) or ""
            guess = self.guess if self.guess and not self.guess.startswith("utf") else "cp1252"
            piece = raw[max(0, bad.start - 20):bad.end + 20]
            why = (f"not valid {textfile.codec_name(encoding)} at byte {bad.start} of the line: "
                   f"{textfile.bad_text(piece, self.guess)}; re-save the file as UTF-8, or set "
                   f"`encoding: {guess}` in the job's source if all of it is {guess}")
            try:
                data = orjson.loads(raw.decode(encoding, "replace"))
                sid = data.get(self.id_field) if isinstance(data, dict) and self.id_field else None
            except orjson.JSONDecodeError:
                sid = None
            sid = str(sid) if sid not in (None, "") else ""
            return (sid if sid and "\ufffd" not in sid else str(self.line)), why
        return str(self.line), f"invalid JSON ({getattr(e, 'msg', e)})"

    def close(self) -> None:
        self.fh.close()
