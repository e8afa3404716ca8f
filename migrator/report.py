"""What a person reads after a run: a terminal summary, a JSON report and a failures CSV.

Reports hold PII (source ids, messages with value excerpts): created with mode 0600.
Failures of ``run``/``retry`` come from the checkpoint, so they cover every run of the
job; ``validate`` streams its failures into the CSV as it finds them.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import textwrap
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from . import plan as planning
from .mapping.fill import dead_lines, table_lines
from .identity import value_excerpt
from .preview import side_by_side
from .private import private_open
from .report_html import html_path, write_html

# name and email: the record as the source holds them; value: an excerpt of what was wrong.
CSV_HEADER = ["stream", "source_id", "name", "email", "field", "rule", "value", "message"]
WIDTH = 80   # the summary's lines fit a standard terminal; a path is never broken


def wrap(text: str, indent: str = "  ", more: str = "      ") -> str:
    """One summary line, broken between words to fit WIDTH, the rest indented ``more``."""
    return "\n".join(textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=more,
                                   break_long_words=False, break_on_hyphens=False)) + "\n"


class FailureSink:
    """Streams validation failures into a CSV a spreadsheet opens."""

    def __init__(self, path: Path):
        self.path = path
        self._fh = private_open(path)
        self._fh.truncate(0)
        self._w = csv.writer(self._fh)
        self._w.writerow(CSV_HEADER)
        self.rows = 0

    def __call__(self, stream: str, sid: str, field: str, rule: str, message: str, *,
                 value: str = "", name: str = "", email: str = "") -> None:
        self._w.writerow([stream, sid, name, email, field, rule, value, message])
        self.rows += 1

    def close(self) -> None:
        self._fh.close()


def report_paths(job, mode: str) -> tuple[Path, Path]:
    """The latest report of ``mode`` and its failures file, at fixed names."""
    stem = f"{job.name}-{mode}"
    return job.reports / f"{stem}-report.json", job.reports / f"{stem}-failures.csv"


def run_report_path(job, mode: str, outcome) -> Path:
    """This run's own report, kept beside the others: named by the checkpoint's run
    number (run, retry) or, with no checkpoint (validate), by when it started."""
    run = getattr(outcome, "run", None)
    tag = str(run) if run else dt.datetime.fromtimestamp(outcome.started).strftime("%Y%m%dT%H%M%S")
    return job.reports / f"{job.name}-{mode}-{tag}-report.json"


def iso(ts: float | None) -> str | None:
    """An epoch time as ISO 8601 with the local zone's offset (``2026-12-06T07:32:44.120+00:00``)."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts).astimezone().isoformat(timespec="milliseconds")


def checkpoint_facts(path: Path) -> dict[str, Any]:
    """Merges, uncertain records and status counts, straight from the checkpoint."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        status = [{"stream": s, "status": st, "count": n} for s, st, n in conn.execute(
            "SELECT stream, status, count(*) FROM records GROUP BY stream, status ORDER BY stream, status")]
        merges = _merges(conn)
        refused = [{"stream": s, "source_id": i, "field": f, "reason": e} for s, i, f, e in conn.execute(
            "SELECT stream, source_id, field, error FROM records WHERE status='failed' AND rule='merge' "
            "ORDER BY stream, source_id LIMIT 10000")]
        uncertain = [{"stream": s, "source_id": i, "status": st, "target_id": t, "note": e}
                     for s, i, st, t, e in conn.execute(
                         "SELECT stream, source_id, status, target_id, error FROM records WHERE uncertain=1 LIMIT 10000")]
        return {"status": status, "merges": merges, "merges_refused": refused, "uncertain": uncertain}
    finally:
        conn.close()


def _merges(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Target records that took more than one source record, or a source record matched
    onto a record the target already held (by a natural key: ``matched_key`` is
    ``field=value``). Each lists its source ids in the order they were settled, what
    became of each (``created``, ``updated``, ``matched``) and the keys that matched;
    ``existing`` says the target held the record before this job wrote to it (none of them
    created it, nor was found again after an interruption).

    Every merge holds a record that was not simply created (a later one lands ``updated``
    or ``matched``), so only those target ids are grouped: a million plain creates cost
    one scan, not a sort."""
    rows = conn.execute(
        "WITH hit AS (SELECT DISTINCT stream, target_id FROM records WHERE status='done' "
        "             AND target_id IS NOT NULL AND target_id != '' "
        "             AND (coalesce(action, '') != 'created' OR instr(coalesce(matched_key, ''), '=') > 0)) "
        "SELECT stream, target_id, group_concat(source_id, char(31)), "
        "group_concat(coalesce(action, ''), char(31)), group_concat(coalesce(matched_key, ''), char(31)), "
        "sum(action = 'created' OR coalesce(matched_key, '') LIKE 'lookup after %') "
        "FROM (SELECT r.stream, r.target_id, r.source_id, r.action, r.matched_key FROM records r "
        "      JOIN hit ON hit.stream = r.stream AND hit.target_id = r.target_id "
        "      WHERE r.status='done' ORDER BY r.updated) "
        "GROUP BY stream, target_id HAVING count(*) > 1 OR sum(instr(coalesce(matched_key, ''), '=') > 0) > 0 "
        "ORDER BY stream, target_id LIMIT 10000")
    out = []
    for stream, target_id, ids, actions, keys, created in rows:
        out.append({"stream": stream, "target_id": target_id, "source_ids": ids.split("\x1f"),
                    "actions": actions.split("\x1f"), "keys": [k for k in keys.split("\x1f") if k],
                    "existing": not created})
    _add_placements(conn, out)
    return out


def _add_placements(conn: sqlite3.Connection, merges: list[dict[str, Any]]) -> None:
    """``on_merge: combine``: what each merged source record put where — ``placed``, by
    source id, a list of ``{field, value, to, how}`` (``how``: filled, added, appended,
    second, line, lost, overwritten)."""
    if not merges or conn.execute("SELECT 1 FROM sqlite_master WHERE name='placements'").fetchone() is None:
        return
    for m in merges:
        ids = m["source_ids"]
        placed: dict[str, Any] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            placed.update((sid, orjson.loads(text)) for sid, text in conn.execute(
                f"SELECT source_id, placed FROM placements WHERE stream=? AND source_id IN "
                f"({','.join('?' * len(chunk))})", (m["stream"], *chunk)))
        if placed:
            m["placed"] = placed


def write_failures_from_checkpoint(ckpt_path: Path, out: Path) -> int:
    conn = sqlite3.connect(f"file:{ckpt_path}?mode=ro", uri=True)
    n = 0
    try:
        with private_open(out) as fh:
            fh.truncate(0)
            w = csv.writer(fh)
            w.writerow(CSV_HEADER)
            has_context = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE name='failure_context'").fetchone() is not None
            context = ("coalesce(c.name, ''), coalesce(c.email, ''), r.field, r.rule, coalesce(c.value, '')"
                       if has_context else "'', '', r.field, r.rule, ''")
            join = ("LEFT JOIN failure_context c ON c.stream = r.stream AND c.source_id = r.source_id"
                    if has_context else "")
            for stream, sid, name, email, field, rule, value, error in conn.execute(
                    f"SELECT r.stream, r.source_id, {context}, coalesce(r.error, '') FROM records r {join} "
                    "WHERE r.status='failed' ORDER BY r.stream, r.source_id"):
                w.writerow([stream, sid, name, email, field or "", rule or "", value_excerpt(field, value), error])
                n += 1
    finally:
        conn.close()
    return n


def build_report(job, outcome, facts: dict[str, Any] | None, plan: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "job": job.name,
        "mode": outcome.mode,
        "source": job.source.system,
        "target": job.target.system,
        "run": getattr(outcome, "run", None),
        "started": iso(outcome.started),
        "ended": iso(outcome.ended),
        "seconds": round(outcome.ended - outcome.started, 3),
        "interrupted": outcome.interrupted,
        "stopped": outcome.stopped_reason,
        "checkpoint": str(job.checkpoint),
        "streams": [{
            "stream": s.stream, "target_stream": s.target_stream, "total": s.total,
            "notice": s.notice, "counts": dict(s.counts),
            "fill": (s.fill.to_dict("all" if outcome.mode == "validate" else "first page")
                     if getattr(s, "fill", None) is not None and s.fill.records else None),
            "failures": [{"reason": k, "count": n, "examples": s.examples.get(k, [])}
                         for k, n in s.failures.most_common()],
            **({"preview": s.preview} if getattr(s, "preview", None) else {}),
        } for s in outcome.streams],
        "requests": {"source": outcome.source_requests, "target": outcome.target_requests},
        "plan": _iso_times(plan),
        **(facts or {}),
    }


def _iso_times(section: dict[str, Any] | None) -> dict[str, Any] | None:
    """The plan's times (``created``; ``made`` beside a run's actuals) as ISO 8601."""
    if not section:
        return section
    return {k: iso(v) if k in ("created", "made") and isinstance(v, (int, float)) else v
            for k, v in section.items()}


def write_report(path: Path, report: dict[str, Any]) -> None:
    with private_open(path, "wb") as fh:  # type: ignore[call-overload]
        fh.truncate(0)
        fh.write(orjson.dumps(report, option=orjson.OPT_INDENT_2, default=str))


def summary(report: dict[str, Any], json_path: Path | None, csv_path: Path | None) -> str:
    out = io.StringIO()
    mode = report["mode"]
    out.write(f"\n{mode} {report['job']}: {report['source']} → {report['target']} "
              f"in {report['seconds']:.1f} s{' (interrupted)' if report['interrupted'] else ''}\n")
    for s in report["streams"]:
        c = s["counts"]
        if c.get("stream_already_finished"):
            out.write(f"  {s['stream']}: already finished in an earlier run\n")
            continue
        if mode == "validate":
            # An invalid record is counted as failed too; only one that could not be read
            # at all is failed without being invalid: each is said once.
            unreadable = c.get("failed", 0) - c.get("invalid", 0)
            out.write(wrap(f"{s['stream']}: read {c.get('read', 0)}, valid {c.get('valid', 0)}, "
                           f"invalid {c.get('invalid', 0)}, "
                           + (f"unreadable {unreadable}, " if unreadable > 0 else "")
                           + f"skipped {c.get('skipped', 0)}"
                           + "".join(f", {COUNT_LABELS[k]} {c[k]}" for k in VALIDATE_COUNTS if c.get(k))))
        else:
            parts = [f"read {c.get('read', 0)}", f"written {c.get('done', 0)}",
                     f"failed {c.get('failed', 0)}", f"skipped {c.get('skipped', 0)}"]
            parts += [f"{COUNT_LABELS[k]} {c[k]}" for k in RUN_COUNTS if c.get(k)]
            out.write(wrap(f"{s['stream']}: " + ", ".join(parts)))
        if s.get("notice"):
            out.write(wrap(f"note: {s['notice']}", "    ", "      "))
        for f in s["failures"][:8]:
            ex = ", ".join(f["examples"][:3])
            out.write(wrap(f"{f['count']:>6} × {f['reason']}  (e.g. {ex})", "    ", " " * 13))
        if len(s["failures"]) > 8:
            out.write(f"    … {len(s['failures']) - 8} more reasons in the report\n")
        if mode == "validate":
            for line in table_lines(s.get("fill")):
                out.write(f"    {line}\n")
    dead = dead_lines(report)
    if dead:
        out.write("  mapped paths that name no key of the source's records "
                  + ("(validate exits 1):\n" if mode == "validate" else "(on the first page; the run went on):\n"))
        for line in dead:
            out.write(f"    {line}\n")
    unused = [line for line in dead_lines(report, missing_only=False) if line not in dead]
    if unused and mode == "validate":
        out.write("  mapped paths that gave no value (their keys exist; not an error):\n")
        for line in unused:
            out.write(f"    {line}\n")
    merges = report.get("merges") or []
    if merges:
        several = sum(1 for m in merges if len(m["source_ids"]) > 1)
        onto = sum(len(m["source_ids"]) for m in merges if m.get("existing"))
        parts = []
        if several:
            parts.append(f"{several} target records each received more than one source record")
        if onto:
            parts.append(f"{onto} source records landed on records the target already held")
        out.write(wrap(f"merges: {len(merges)} — {'; '.join(parts) or 'matched by a natural key'} "
                       f"(listed in the report)"))
        hows = Counter(p["how"] for m in merges for ps in (m.get("placed") or {}).values() for p in ps)
        if hows:
            words = {"filled": "filled a field the target lacked", "added": "added to a list (tags, e-mails)",
                     "appended": "appended to the notes", "second": "kept as a second phone or e-mail",
                     "line": "kept as a line of the notes", "lost": "had no place in the target",
                     "overwritten": "overwrote a record the target held before the job (it cannot be read)"}
            out.write(wrap("combined: " + "; ".join(f"{n} {words.get(how, how)}" for how, n in
                                                    sorted(hows.items(), key=lambda kv: -kv[1]))))
    refused = report.get("merges_refused") or []
    if refused:
        out.write(wrap(f"merges refused: {len(refused)} records match a record already in the target and "
                       f"failed (on_merge: fail; listed in the report and the failures file)"))
    uncertain = report.get("uncertain") or []
    if uncertain:
        out.write(wrap(f"uncertain: {len(uncertain)} records may exist twice or not at all in the target "
                       f"(listed in the report)"))
    tr = (report.get("requests") or {}).get("target") or {}
    if tr.get("requests"):
        reqs = ", ".join(f"{k} {v}" for k, v in sorted(tr["requests"].items()))
        retries = ", ".join(f"{k} {v}" for k, v in sorted((tr.get("retries") or {}).items())) or "none"
        out.write(wrap(f"target requests: {reqs}; retries: {retries}"))
    if mode == "run":
        for line in planning.comparison_lines(report.get("plan")):
            out.write(f"  {line}\n")
    if json_path:
        out.write(f"  report:   {json_path}\n")
        out.write(f"  page:     {html_path(json_path)}\n")
    if csv_path:
        out.write(f"  failures: {csv_path}\n")
    return out.getvalue()




def preview_text(report: dict[str, Any], cols: int = WIDTH) -> str:
    """``validate --show``: each stream's records as read beside them as they will be sent."""
    lines: list[str] = []
    for s in report["streams"]:
        if s.get("preview"):
            lines += side_by_side(s["preview"], s["stream"], report["target"], cols=cols)
    return "\n".join(lines)


# The summary's words for a stream's counts, and which it shows after a run and after a
# validate (a delta's: validate --since plans it from the checkpoint, run --since does it).
COUNT_LABELS = {"already_settled": "already done", "created": "created", "matched": "matched existing",
                "updated": "updated", "reconciled": "reconciled after interruption", "uncertain": "uncertain",
                "duplicate_source_id": "duplicate source ids", "previously_failed": "failed earlier",
                "to_update": "to update", "older_than_since": "unchanged since --since",
                "not_updatable": "changed but not updatable"}
RUN_COUNTS = ("already_settled", "created", "matched", "updated", "reconciled", "uncertain",
              "duplicate_source_id", "previously_failed", "older_than_since", "not_updatable")
VALIDATE_COUNTS = ("to_update", "already_settled", "previously_failed", "older_than_since", "not_updatable")


def finish(job, outcome, mode: str, plan=None, since: str | None = None) -> tuple[dict[str, Any], str]:
    """After a run: write the JSON report (and, for run/retry, the failures CSV from the
    checkpoint); return the report and its terminal summary. ``validate`` reports the
    plan it made; ``run`` sets the plan it printed (``plan``: a trial's share), else the
    stored one, beside its actual requests — a delta (``since``) its own plan, from
    ``validate --since``, never the whole one."""
    latest, csv_path = report_paths(job, mode)
    json_path = run_report_path(job, mode, outcome)
    facts = None
    if mode != "validate":
        write_failures_from_checkpoint(job.checkpoint, csv_path)
        facts = checkpoint_facts(job.checkpoint)
    section = None
    if mode == "validate" and plan is not None:
        section = plan.to_dict()
    elif mode == "run":   # the plan the run printed (a trial's share), else the stored one
        section = planning.planned_vs_actual(plan or planning.load_plan(job, since), outcome, since)
    report = build_report(job, outcome, facts, section)
    write_report(json_path, report)
    write_report(latest, report)  # a copy, not a symlink: 0600 itself, and survives the run's file
    write_html(html_path(json_path), report, csv_path, html_path(latest))
    return report, summary(report, json_path, csv_path)
