"""``migrator ids JOB --out FILE``: the crosswalk of old ids to new ones, for the team's
other tools (a phone system, a spreadsheet of deals, an e-mail tool that still knows the
old CRM's ids).

One row per record the job settled in the target: its stream, its id in the source, its
id in the target and what the job did with it. Read straight from the checkpoint (the
only place that holds the pairs), so it works beside a running job and sends nothing.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator

import orjson

from .checkpoint import read_only
from .errors import UserError
from .private import private_open

COLUMNS = ("stream", "source_id", "target_id", "action")
# How a record reached its target id. Open-ended: a value written by a later command
# (``undone`` by undo) passes through as the checkpoint holds it.
ACTIONS = ("created", "updated", "matched", "merged", "undone")
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def action_of(status: str, action: str | None, matched_key: str | None) -> str:
    """The crosswalk's word for a settled record. ``merged``: written onto a record the
    target held that shares a natural key (``email=…``); ``updated``: written onto a
    record the target held that the target itself chose (REI merging a create);
    ``matched``: settled against an existing record with nothing written; ``undone``:
    removed or put back by ``undo``. A record a delta wrote again keeps the action of its
    first write: the crosswalk says what the job did to each target record."""
    if status == "undone" or action == "undone":
        return "undone"
    if action == "updated" and matched_key and "=" in matched_key:
        return "merged"
    return action or status


def rows(checkpoint: Path) -> Iterator[tuple[str, str, str, str]]:
    """``(stream, source_id, target_id, action)`` of every record done (or undone), in
    stream and source-id order, a row at a time (constant memory)."""
    conn = read_only(checkpoint)
    try:
        for stream, sid, tid, status, action, key in conn.execute(
                "SELECT stream, source_id, target_id, status, action, matched_key FROM records "
                "WHERE status IN ('done', 'undone') OR action = 'undone' ORDER BY stream, source_id"):
            yield stream, sid, tid or "", action_of(status, action, key)
    finally:
        conn.close()


def write_crosswalk(checkpoint: Path, out: Path) -> dict[str, int]:
    """Write the crosswalk to ``out`` (CSV, or JSON Lines by its extension), 0600: it
    pairs people's records across two systems. Returns the rows written by action."""
    fmt = FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise UserError(f"--out {out}: the crosswalk is written as CSV or JSON Lines; "
                        f"name a file ending in .csv or .jsonl")
    counts: dict[str, int] = {}
    try:
        fh = private_open(out, "w" if fmt == "csv" else "wb")
    except OSError as e:
        raise UserError(f"--out {out}: cannot write there ({e.strerror or e})") from None
    with fh:
        fh.truncate(0)
        writer = csv.writer(fh) if fmt == "csv" else None
        if writer is not None:
            writer.writerow(COLUMNS)
        for row in rows(checkpoint):
            if writer is not None:
                writer.writerow(row)
            else:
                fh.write(orjson.dumps(dict(zip(COLUMNS, row))) + b"\n")
            counts[row[3]] = counts.get(row[3], 0) + 1
    return counts
