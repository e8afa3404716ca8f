"""The job's memory: one SQLite file (WAL, mode 0600) per job.

Per record: ``pending`` (read, in a page not yet settled) → ``inflight`` (a write is about
to be sent; committed *before* sending) → ``done`` with its target id, ``failed`` with a
reason, or ``skipped`` by a user's rule. After a crash only ``inflight`` records are
uncertain: their write may or may not have reached the target. Per stream: the cursor
watermark, which only moves past a page whose records are all settled.

A local target (a file) needs neither ``pending`` nor ``inflight``: it keeps a *mark* — how
far its output is settled — in the same transaction as its records' ``done``, and on the
next run cuts whatever lies past the mark. One write per record instead of two.

SQLite work runs in a worker thread, one transaction per batch of operations: callers
queue operations, and whoever needs durability (``commit``) commits everything queued so
far — concurrent writers share one transaction (group commit).
"""
from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import Any, Iterable

import anyio
import orjson

from . import crashpoints
from .errors import CheckpointMismatch, ConfigError
from .private import create_private

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cursors (
    stream TEXT PRIMARY KEY, cursor TEXT, finished INTEGER NOT NULL DEFAULT 0,
    pages INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS records (
    stream TEXT NOT NULL, source_id TEXT NOT NULL, status TEXT NOT NULL,
    target_id TEXT, attempts INTEGER NOT NULL DEFAULT 0, action TEXT, matched_key TEXT,
    field TEXT, rule TEXT, error TEXT, uncertain INTEGER NOT NULL DEFAULT 0,
    run INTEGER NOT NULL DEFAULT 0, updated REAL,
    PRIMARY KEY (stream, source_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_target ON records (stream, target_id);
-- Only failures are looked up by status: an index of every status cost a fifth of each insert.
DROP INDEX IF EXISTS records_status;
CREATE INDEX IF NOT EXISTS records_failed ON records (stream, source_id) WHERE status = 'failed';
CREATE TABLE IF NOT EXISTS runs (
    run INTEGER PRIMARY KEY, mode TEXT, started REAL, ended REAL, outcome TEXT, stats TEXT);
CREATE TABLE IF NOT EXISTS marks (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS target_keys (
    stream TEXT NOT NULL, key TEXT NOT NULL, target_id TEXT NOT NULL,
    PRIMARY KEY (stream, key)) WITHOUT ROWID;
-- on_merge: combine — what each merged record put where, for the report.
CREATE TABLE IF NOT EXISTS placements (
    stream TEXT NOT NULL, source_id TEXT NOT NULL, placed TEXT NOT NULL,
    PRIMARY KEY (stream, source_id)) WITHOUT ROWID;
-- What was sent for a record a target cannot read back (Brokerkit), by natural key,
-- so that a later record with that key is combined with it. Only records with a key.
-- Who a failed record is and what was wrong, for the failures file: the name and e-mail
-- as the source holds them and an excerpt of the offending value. Written only on a
-- failure; read only joined with a record still failed.
CREATE TABLE IF NOT EXISTS failure_context (
    stream TEXT NOT NULL, source_id TEXT NOT NULL, value TEXT, name TEXT, email TEXT,
    PRIMARY KEY (stream, source_id)) WITHOUT ROWID;
-- `migrator undo`: for each record this job wrote onto the target (API targets), where the
-- target held the record before, its previous values, and what the connector wrote when
-- it differs from what was sent (a merge's changes; else `sent` holds it); and how far
-- the undo of each record has come (inflight, undone, listed, kept, failed).
CREATE TABLE IF NOT EXISTS undo_log (
    stream TEXT NOT NULL, source_id TEXT NOT NULL, target_id TEXT NOT NULL, previous TEXT, wrote TEXT,
    at REAL, PRIMARY KEY (stream, source_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS undo_state (
    stream TEXT NOT NULL, source_id TEXT NOT NULL, state TEXT NOT NULL, note TEXT, run INTEGER,
    PRIMARY KEY (stream, source_id)) WITHOUT ROWID;
-- What was sent for each record written (the mapped record, nulls left out): what
-- `migrator verify` compares the target's copy with. Committed with the record's done.
CREATE TABLE IF NOT EXISTS sent (
    stream TEXT NOT NULL, source_id TEXT NOT NULL, body BLOB NOT NULL,
    PRIMARY KEY (stream, source_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sent_records (
    stream TEXT NOT NULL, key TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (stream, key)) WITHOUT ROWID;
"""

SETTLED = ("done", "failed", "skipped")
SENT_SQL = ("INSERT INTO sent VALUES (?, ?, ?) ON CONFLICT (stream, source_id) "
            "DO UPDATE SET body=excluded.body")
UNDO_LOG = ("INSERT INTO undo_log (stream, source_id, target_id, previous, wrote, at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (stream, source_id) DO UPDATE SET target_id=excluded.target_id, "
            "previous=excluded.previous, wrote=excluded.wrote, at=excluded.at")


@dataclass(slots=True)
class Status:
    status: str
    target_id: str | None
    run: int


class Checkpoint:
    def __init__(self, path: Path, conn: sqlite3.Connection, run: int):
        self.path = path
        self._conn = conn
        self.run = run
        self._ops: list[tuple[str, tuple]] = []
        self._undo_rows: list[tuple] = []   # undo_log rows: one executemany per transaction
        self._queued = 0
        self._durable = 0
        self._committing = False
        self._committed = anyio.Event()
        self._lock = anyio.Lock()

    # ---- opening ----------------------------------------------------------------
    @classmethod
    async def open(cls, path: str | Path, *, job_id: str, mapping_digest: str,
                   accept_mapping_change: bool = False, mode: str = "run",
                   create: bool = True) -> "Checkpoint":
        return await anyio.to_thread.run_sync(
            cls._open_sync, Path(path), job_id, mapping_digest, accept_mapping_change, mode, create)

    @classmethod
    def _open_sync(cls, path: Path, job_id: str, digest: str, accept: bool, mode: str,
                   create: bool) -> "Checkpoint":
        exists = path.exists()
        if not exists and not create:
            raise ConfigError(f"no checkpoint at {path}: nothing has run for this job yet")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            create_private(path)
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(SCHEMA)
            _add_columns(conn)
        except (OSError, sqlite3.OperationalError) as e:
            raise ConfigError(f"checkpoint {path}: cannot write there ({getattr(e, 'strerror', None) or e})") from None
        except sqlite3.DatabaseError:
            raise ConfigError(f"checkpoint {path} is not a checkpoint file (not an SQLite database)") from None
        for suffix in ("-wal", "-shm"):
            side = Path(str(path) + suffix)
            if side.exists():
                os.chmod(side, 0o600)
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        if meta:
            if meta.get("job_id") != job_id:
                conn.close()
                raise CheckpointMismatch(
                    f"checkpoint {path} was written by a different job (other source or target); "
                    "point the job at a new checkpoint file")
            if meta.get("mapping_digest") != digest and not accept:
                conn.close()
                raise CheckpointMismatch(
                    f"the mapping changed since checkpoint {path} was written; records already done "
                    "keep the old mapping. Run again with --accept-mapping-change to go on, or use a new checkpoint")
            if meta.get("mapping_digest") != digest:
                conn.execute("UPDATE meta SET value=? WHERE key='mapping_digest'", (digest,))
        else:
            conn.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("job_id", job_id), ("mapping_digest", digest), ("created", str(time.time())),
                ("format", "1")])
        cur = conn.execute("INSERT INTO runs (mode, started) VALUES (?, ?)", (mode, time.time()))
        return cls(path, conn, int(cur.lastrowid or 0))

    async def close(self, outcome: str = "", stats: dict[str, Any] | None = None) -> None:
        with anyio.CancelScope(shield=True):
            await self.commit()
            await anyio.to_thread.run_sync(self._close_sync, outcome, stats)

    def _close_sync(self, outcome: str, stats: dict[str, Any] | None) -> None:
        self._conn.execute("UPDATE runs SET ended=?, outcome=?, stats=? WHERE run=?",
                           (time.time(), outcome, orjson.dumps(stats or {}).decode(), self.run))
        self._conn.close()

    # ---- queued writes -------------------------------------------------------------
    def _queue(self, sql: str, args: tuple) -> None:
        self._ops.append((sql, args))
        self._queued += 1

    def add_pending(self, stream: str, source_ids: Iterable[str]) -> None:
        for sid in source_ids:
            self._queue("INSERT INTO records (stream, source_id, status, run, updated) VALUES (?, ?, 'pending', ?, ?) "
                        "ON CONFLICT (stream, source_id) DO UPDATE SET run=excluded.run "
                        "WHERE records.status NOT IN ('done', 'skipped')",
                        (stream, sid, self.run, time.time()))

    def inflight(self, stream: str, source_id: str) -> None:
        self._queue("UPDATE records SET status='inflight', attempts=attempts+1, updated=? "
                    "WHERE stream=? AND source_id=?", (time.time(), stream, source_id))

    def unmark(self, stream: str, source_id: str) -> None:
        """Back to pending: marked in flight, then never sent (the run is stopping)."""
        self._queue("UPDATE records SET status='pending', attempts=max(attempts-1, 0), updated=? "
                    "WHERE stream=? AND source_id=? AND status='inflight'", (time.time(), stream, source_id))

    # done, failed and skipped insert the record when it has no pending row (a local
    # target's records never get one) and update it when it has.
    def done(self, stream: str, source_id: str, target_id: str, *, action: str = "created",
             matched_key: str | None = None, uncertain: bool = False, delta: bool = False) -> None:
        """``delta``: a record written onto its own target id again (``run --since``) keeps
        the action of its first write — what the job did to the target record (created
        it, merged into one the target held), which undo and the crosswalk go by."""
        if delta:
            self._queue("UPDATE records SET status='done', target_id=?, uncertain=?, field=NULL, rule=NULL, "
                        "error=NULL, run=?, updated=? WHERE stream=? AND source_id=?",
                        (target_id, int(uncertain), self.run, time.time(), stream, source_id))
            return
        self._queue("INSERT INTO records (stream, source_id, status, target_id, action, matched_key, uncertain, "
                    "run, updated) VALUES (?, ?, 'done', ?, ?, ?, ?, ?, ?) ON CONFLICT (stream, source_id) "
                    "DO UPDATE SET status='done', target_id=excluded.target_id, action=excluded.action, "
                    "matched_key=excluded.matched_key, uncertain=excluded.uncertain, field=NULL, rule=NULL, "
                    "error=NULL, run=excluded.run, updated=excluded.updated",
                    (stream, source_id, target_id, action, matched_key, int(uncertain), self.run, time.time()))

    def failed(self, stream: str, source_id: str, error: str, *, field: str | None = None,
               rule: str | None = None, uncertain: bool = False,
               context: tuple[str, str, str] | None = None) -> None:
        """``context``: ``(value excerpt, name, email)`` for the failures file."""
        if context is not None:
            self._queue("INSERT INTO failure_context VALUES (?, ?, ?, ?, ?) ON CONFLICT (stream, source_id) "
                        "DO UPDATE SET value=excluded.value, name=excluded.name, email=excluded.email",
                        (stream, source_id, *context))
        self._queue("INSERT INTO records (stream, source_id, status, error, field, rule, uncertain, run, updated) "
                    "VALUES (?, ?, 'failed', ?, ?, ?, ?, ?, ?) ON CONFLICT (stream, source_id) "
                    "DO UPDATE SET status='failed', error=excluded.error, field=excluded.field, rule=excluded.rule, "
                    "uncertain=excluded.uncertain, run=excluded.run, updated=excluded.updated",
                    (stream, source_id, error, field, rule, int(uncertain), self.run, time.time()))

    def skipped(self, stream: str, source_id: str, reason: str) -> None:
        self._queue("INSERT INTO records (stream, source_id, status, error, rule, run, updated) "
                    "VALUES (?, ?, 'skipped', ?, 'skip', ?, ?) ON CONFLICT (stream, source_id) "
                    "DO UPDATE SET status='skipped', error=excluded.error, rule='skip', run=excluded.run, "
                    "updated=excluded.updated", (stream, source_id, reason, self.run, time.time()))

    def placed(self, stream: str, source_id: str, placements: list[dict[str, Any]]) -> None:
        """What a combined merge put where (queued: it commits with the record's ``done``)."""
        self._queue("INSERT INTO placements VALUES (?, ?, ?) ON CONFLICT (stream, source_id) "
                    "DO UPDATE SET placed=excluded.placed",
                    (stream, source_id, orjson.dumps(placements, default=str).decode()))

    def sent(self, stream: str, source_id: str, record: dict[str, Any]) -> None:
        """What was sent for a record (queued: it commits with the record's ``done``), so
        that ``verify`` compares the target's copy with what the run sent rather than with
        a second reading of a source that may have changed since."""
        self._queue(SENT_SQL, (stream, source_id, orjson.dumps(
            {k: v for k, v in record.items() if v is not None}, default=str)))

    def undo_log(self, stream: str, source_id: str, target_id: str, previous: dict[str, Any] | None,
                 wrote: dict[str, Any] | None) -> None:
        """What undo needs of a write (queued: it commits with the record's ``done``): the
        record as the target held it before (None: this job created it) and what the
        connector wrote, when not the record as sent (None: ``sent`` holds that already)."""
        dump = lambda v: None if v is None else orjson.dumps(v, default=str).decode()  # noqa: E731
        # Kept apart from the other queued writes: interleaved with each record's ``done`` they
        # would cut every executemany run to one statement. Nothing reads undo_log during a run.
        self._undo_rows.append((stream, source_id, target_id, dump(previous), dump(wrote), time.time()))
        self._queued += 1

    def undo_after_delta(self, stream: str, source_id: str) -> None:
        """A delta wrote the record again: undo still puts back what the target held before
        the job's first write (``previous`` stays), and now expects the target to hold what
        the delta sent (``sent``), not what the first write did."""
        self._queue("UPDATE undo_log SET wrote=NULL WHERE stream=? AND source_id=?", (stream, source_id))

    def undo_state(self, stream: str, source_id: str, state: str, note: str | None = None) -> None:
        """How far the undo of one record has come; ``undone`` also frees the record for a
        later run (its status becomes ``undone``, and its stream is read again)."""
        self._queue("INSERT INTO undo_state VALUES (?, ?, ?, ?, ?) ON CONFLICT (stream, source_id) "
                    "DO UPDATE SET state=excluded.state, note=excluded.note, run=excluded.run",
                    (stream, source_id, state, note, self.run))
        if state == "undone":
            self._queue("UPDATE records SET status='undone', run=?, updated=? WHERE stream=? AND source_id=?",
                        (self.run, time.time(), stream, source_id))

    def forget_target_keys(self) -> None:
        """After an undo: the target's natural keys known so far may name deleted records."""
        self._queue("DELETE FROM target_keys", ())

    def set_mark(self, key: str, value: Any) -> None:
        """How far a local target's output is settled; queued right after its write, so it
        commits with the ``done`` of the records that write holds (see ``Connector.mark``)."""
        self._queue("INSERT INTO marks VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value=excluded.value",
                    (key, orjson.dumps(value).decode()))

    async def mark(self, key: str) -> Any:
        """The committed mark of ``key``, or None."""
        def q() -> Any:
            row = self._conn.execute("SELECT value FROM marks WHERE key=?", (key,)).fetchone()
            return None if row is None else orjson.loads(row[0])
        return await self._read(q)

    def advance(self, stream: str, cursor: Any, finished: bool = False) -> None:
        self._queue("INSERT INTO cursors (stream, cursor, finished, pages) VALUES (?, ?, ?, 1) "
                    "ON CONFLICT (stream) DO UPDATE SET cursor=excluded.cursor, finished=excluded.finished, "
                    "pages=cursors.pages+1", (stream, orjson.dumps(cursor).decode(), int(finished)))

    def key_index(self, stream: str) -> "KeyIndex":
        """The target's natural keys → target ids for ``stream`` (a target stream)."""
        return KeyIndex(self, stream)

    def sent_records(self, stream: str) -> "SentRecords":
        """What was sent for keyed records of ``stream`` (a target that cannot be read)."""
        return SentRecords(self, stream)

    def reset_stream(self, stream: str) -> None:
        self._queue("DELETE FROM cursors WHERE stream=?", (stream,))

    async def commit(self) -> None:
        """Make everything queued so far durable (shares a transaction with concurrent callers)."""
        target = self._queued
        while self._durable < target:
            if self._committing:
                await self._committed.wait()
                continue
            self._committing = True
            ops, self._ops = self._ops, []
            undo_rows, self._undo_rows = self._undo_rows, []
            upto = self._queued
            try:
                async with self._lock:
                    await anyio.to_thread.run_sync(self._apply, ops, *([undo_rows] if undo_rows else []))
                self._durable = upto
            except BaseException:
                self._ops[:0] = ops
                self._undo_rows[:0] = undo_rows
                raise
            finally:
                self._committing = False
                event, self._committed = self._committed, anyio.Event()
                event.set()

    def _apply(self, ops: list[tuple[str, tuple]], undo_rows: list[tuple] | None = None) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Runs of one statement (a page's pending marks, its done marks) go as one executemany.
            for sql, group in groupby(ops, key=itemgetter(0)):
                conn.executemany(sql, [args for _, args in group])
            if undo_rows:
                conn.executemany(UNDO_LOG, undo_rows)
            crashpoints.reached("commit")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # ---- reads ------------------------------------------------------------------------
    async def _read(self, fn, *args: Any) -> Any:
        async with self._lock:
            return await anyio.to_thread.run_sync(fn, *args)

    async def cursor(self, stream: str) -> tuple[Any, bool, int]:
        def q() -> tuple[Any, bool, int]:
            row = self._conn.execute("SELECT cursor, finished, pages FROM cursors WHERE stream=?",
                                     (stream,)).fetchone()
            if row is None:
                return None, False, 0
            return (orjson.loads(row[0]) if row[0] is not None else None), bool(row[1]), row[2]
        return await self._read(q)

    async def statuses(self, stream: str, source_ids: list[str]) -> dict[str, Status]:
        return await self._read(_statuses, self._conn, stream, source_ids)

    async def target_ids(self, stream: str, source_ids: list[str]) -> dict[str, str]:
        def q() -> dict[str, str]:
            out: dict[str, str] = {}
            for chunk in _chunks(source_ids, 500):
                marks = ",".join("?" * len(chunk))
                out.update(self._conn.execute(
                    f"SELECT source_id, target_id FROM records WHERE stream=? AND status='done' "
                    f"AND source_id IN ({marks})", (stream, *chunk)))
            return out
        return await self._read(q)

    async def owner_of(self, stream: str, target_id: str) -> str | None:
        """The source id already settled onto ``target_id`` (for merge handling)."""
        def q() -> str | None:
            row = self._conn.execute("SELECT source_id FROM records WHERE stream=? AND target_id=? "
                                     "AND status='done' LIMIT 1", (stream, target_id)).fetchone()
            return row[0] if row else None
        return await self._read(q)

    async def known_keys(self, stream: str, keys: list[str]) -> dict[str, str]:
        def q() -> dict[str, str]:
            out: dict[str, str] = {}
            for chunk in _chunks(keys, 500):
                marks = ",".join("?" * len(chunk))
                out.update(self._conn.execute(
                    f"SELECT key, target_id FROM target_keys WHERE stream=? AND key IN ({marks})",
                    (stream, *chunk)))
            return out
        return await self._read(q)

    async def inflight_sent(self, stream: str) -> dict[str, float]:
        """Source id → when its write was sent, of the records left in flight: ``inflight``
        stamps ``updated`` in the same durable mark that precedes the send, so the send
        time costs nothing more per record."""
        rows = await self._read(lambda: self._conn.execute(
            "SELECT source_id, updated FROM records WHERE stream=? AND status='inflight'", (stream,)).fetchall())
        return {sid: float(at or 0.0) for sid, at in rows}

    async def done_since(self, stream: str, target_ids: list[str]) -> dict[str, float]:
        """Of ``target_ids``, those a record of ``stream`` is done with → when it was marked done."""
        def q() -> dict[str, float]:
            out: dict[str, float] = {}
            for chunk in _chunks(target_ids, 500):
                marks = ",".join("?" * len(chunk))
                for tid, at in self._conn.execute(
                        f"SELECT target_id, min(updated) FROM records WHERE stream=? AND status='done' "
                        f"AND target_id IN ({marks}) GROUP BY target_id", (stream, *chunk)):
                    out[tid] = float(at or 0.0)
            return out
        return await self._read(q)

    async def to_retry(self, stream: str) -> list[str]:
        """Source ids ``retry`` writes again: failed, and left pending or in flight by an
        interrupted run."""
        rows = await self._read(lambda: self._conn.execute(
            "SELECT source_id FROM records WHERE stream=? AND status IN ('failed', 'pending', 'inflight') "
            "ORDER BY source_id", (stream,)).fetchall())
        return [r[0] for r in rows]

    async def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        return await self._read(lambda: self._conn.execute(sql, args).fetchall())


class KeyIndex:
    """A target stream's natural keys (``email=ann@example.com``) → target ids, kept in
    the ``target_keys`` table so that memory stays flat however large the target is.

    Keys are queued like every other checkpoint write and become durable with the next
    commit; until then a small overlay answers for them, so a record written a moment ago
    is matched by the next one. ``add`` keeps the first target id a key was given (a
    target holding two records with one e-mail matches the first read, as its server
    does); add only keys ``get`` did not find.

    Most keys asked for are new (a record being created), and asking SQLite costs a
    worker-thread round trip per record; after ``reset`` every key the table holds went
    through ``add``, so a fixed-size Bloom filter answers "not there" without it.
    """

    def __init__(self, ckpt: Checkpoint, stream: str):
        self.ckpt, self.stream = ckpt, stream
        self._recent: dict[str, tuple[str, int]] = {}   # key -> (target id, queue position)
        self._bloom: _Bloom | None = None                # every key in the table, once reset

    async def reset(self) -> None:
        """Forget the keys of an earlier run: the target may have changed since."""
        self.ckpt._queue("DELETE FROM target_keys WHERE stream=?", (self.stream,))
        self._recent.clear()
        self._bloom = _Bloom()
        await self.ckpt.commit()

    def add(self, pairs: Iterable[tuple[str, str]], *, durable: bool = False) -> None:
        """Queue ``(key, target_id)`` pairs. ``durable``: the caller commits before any
        ``get`` (a prefetch, page by page), so no overlay is kept."""
        ckpt, bloom = self.ckpt, self._bloom
        for key, target_id in pairs:
            ckpt._queue("INSERT OR IGNORE INTO target_keys VALUES (?, ?, ?)", (self.stream, key, target_id))
            if bloom is not None:
                bloom.add(key)
            if not durable and key not in self._recent:
                self._recent[key] = (target_id, ckpt._queued)

    async def get(self, keys: list[str]) -> dict[str, str]:
        """The target ids of those ``keys`` that are known."""
        self._trim()
        out = {k: self._recent[k][0] for k in keys if k in self._recent}
        bloom = self._bloom
        rest = [k for k in keys if k not in out and (bloom is None or k in bloom)]
        if rest:
            out.update(await self.ckpt.known_keys(self.stream, rest))
        return out

    async def flush(self) -> None:
        await self.ckpt.commit()

    def _trim(self) -> None:
        durable = self.ckpt._durable
        recent = self._recent
        while recent:  # queue positions grow with insertion order
            key = next(iter(recent))
            if recent[key][1] > durable:
                return
            del recent[key]

    async def count(self) -> int:
        rows = await self.ckpt.query("SELECT count(*) FROM target_keys WHERE stream=?", (self.stream,))
        return int(rows[0][0])


class SentRecords:
    """Natural key → the record last sent for it, for a target with no read API: a later
    record with that key is combined with it before it is sent. Queued like every other
    checkpoint write (it commits with the record's ``done``); until then an overlay
    answers, so the next record sharing the key sees it at once."""

    def __init__(self, ckpt: Checkpoint, stream: str):
        self.ckpt, self.stream = ckpt, stream
        self._recent: dict[str, tuple[dict[str, Any], int]] = {}

    def put(self, keys: Iterable[str], body: dict[str, Any]) -> None:
        text = orjson.dumps(body, default=str).decode()
        for key in keys:
            self.ckpt._queue("INSERT INTO sent_records VALUES (?, ?, ?) ON CONFLICT (stream, key) "
                             "DO UPDATE SET body=excluded.body", (self.stream, key, text))
            self._recent.pop(key, None)
            self._recent[key] = (body, self.ckpt._queued)

    async def get(self, keys: list[str]) -> dict[str, Any] | None:
        """The record sent for the first of ``keys`` that has one."""
        durable = self.ckpt._durable
        for key in [k for k, (_, at) in self._recent.items() if at <= durable]:
            del self._recent[key]
        for key in keys:
            if key in self._recent:
                return self._recent[key][0]
        if not keys:
            return None
        marks = ",".join("?" * len(keys))
        rows = dict(await self.ckpt.query(
            f"SELECT key, body FROM sent_records WHERE stream=? AND key IN ({marks})", (self.stream, *keys)))
        for key in keys:
            if key in rows:
                return orjson.loads(rows[key])
        return None


class MemorySent:
    """``SentRecords`` in a dict: a connector used without a checkpoint."""

    def __init__(self) -> None:
        self.bodies: dict[str, dict[str, Any]] = {}

    def put(self, keys: Iterable[str], body: dict[str, Any]) -> None:
        for key in keys:
            self.bodies[key] = body

    async def get(self, keys: list[str]) -> dict[str, Any] | None:
        return next((self.bodies[k] for k in keys if k in self.bodies), None)


class _Bloom:
    """A set that may say yes wrongly but never no wrongly, in a fixed 1 MB: about 4%
    false "maybe" at a million keys, 0.01% at 100,000 (a maybe costs one SQLite query)."""

    BITS = 1 << 23

    def __init__(self) -> None:
        self.bits = bytearray(self.BITS >> 3)

    def _spots(self, key: str) -> tuple[int, int, int]:
        h, mask = hash(key), self.BITS - 1
        a, b = h & mask, ((h >> 23) & mask) | 1
        return a, (a + b) & mask, (a + 2 * b) & mask

    def add(self, key: str) -> None:
        bits = self.bits
        for spot in self._spots(key):
            bits[spot >> 3] |= 1 << (spot & 7)

    def __contains__(self, key: str) -> bool:
        bits = self.bits
        return all(bits[spot >> 3] & (1 << (spot & 7)) for spot in self._spots(key))


def read_only(path: str | Path, *, threads: bool = False) -> sqlite3.Connection:
    """Open a checkpoint for ``status`` without touching it. ``threads``: the connection
    is used from worker threads, one at a time (``Snapshot``)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"no checkpoint at {p}: nothing has run for this job yet")
    try:
        conn = sqlite3.connect(f"file:{p}?mode=ro", uri=True, check_same_thread=not threads)
        conn.execute("SELECT 1 FROM meta LIMIT 1")
    except sqlite3.DatabaseError:
        raise ConfigError(f"checkpoint {p} is not a checkpoint file") from None
    return conn


def _add_columns(conn: sqlite3.Connection) -> None:
    """Columns added since a checkpoint's tables were made (``CREATE TABLE IF NOT EXISTS``
    leaves an old table as it is): ``undo_log.at``, when the write its ``previous`` was
    read for was made — undo puts a target record back to the ``previous`` of the job's
    first write onto it, an order a later delta (which rewrites ``records.updated``) keeps."""
    if "at" not in {row[1] for row in conn.execute("PRAGMA table_info(undo_log)")}:
        conn.execute("ALTER TABLE undo_log ADD COLUMN at REAL")


def _statuses(conn: sqlite3.Connection, stream: str, source_ids: list[str]) -> dict[str, Status]:
    out: dict[str, Status] = {}
    for chunk in _chunks(source_ids, 500):
        marks = ",".join("?" * len(chunk))
        for sid, status, tid, run in conn.execute(
                f"SELECT source_id, status, target_id, run FROM records WHERE stream=? "
                f"AND source_id IN ({marks})", (stream, *chunk)):
            out[sid] = Status(status, tid, run)
    return out


class Snapshot:
    """A checkpoint read without being touched, beside a run if one is going: what
    ``validate --since`` plans a delta from — which records an earlier run migrated (a
    delta updates them) and where a delta already under way began."""

    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn
        self._lock = anyio.Lock()

    @classmethod
    async def open(cls, path: str | Path, job_id: str) -> "Snapshot | None":
        """None when nothing has run for this job yet (every record would be created)."""
        def go() -> "Snapshot | None":
            if not Path(path).exists():
                return None
            conn = read_only(path, threads=True)
            row = conn.execute("SELECT value FROM meta WHERE key='job_id'").fetchone()
            if row is not None and row[0] != job_id:
                conn.close()
                raise CheckpointMismatch(
                    f"checkpoint {path} was written by a different job (other source or target); "
                    "a delta of this job cannot be planned from it")
            return cls(conn)
        return await anyio.to_thread.run_sync(go)

    async def _read(self, fn, *args: Any) -> Any:
        async with self._lock:
            return await anyio.to_thread.run_sync(fn, self._conn, *args)

    async def statuses(self, stream: str, source_ids: list[str]) -> dict[str, Status]:
        return await self._read(_statuses, stream, source_ids)

    async def delta_from(self, since: str) -> int:
        """The run a delta from ``since`` began in, if one is under way (``Engine._delta_start``
        keeps it); else the run it would be: every record done so far is an update."""
        def q(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT value FROM marks WHERE key=?", (f"delta:{since}",)).fetchone()
            if row is not None:
                return int(orjson.loads(row[0]))
            return int(conn.execute("SELECT COALESCE(MAX(run), 0) FROM runs").fetchone()[0]) + 1
        return await self._read(q)

    def close(self) -> None:
        self._conn.close()


def _chunks(items: list[str], n: int) -> Iterable[list[str]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]
