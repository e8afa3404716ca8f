"""What ``verify`` leaves behind: a JSON report, a drift CSV a person can open in a
spreadsheet (both 0600: they hold people's data) and a summary for the terminal."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from ..plan import bill, duration
from ..private import private_open
from ..report import write_report
from ..report_html import html_path, write_html
from .runner import VerifyOutcome

DRIFT_HEADER = ["stream", "source_id", "target_id", "problem", "field", "value_sent", "value_held"]


def verify_paths(job: Any) -> tuple[Path, Path]:
    stem = f"{job.name}-verify"
    return job.reports / f"{stem}-report.json", job.reports / f"{stem}-drift.csv"


def write_outputs(job: Any, outcome: VerifyOutcome) -> tuple[Path, Path]:
    """The report (JSON, and the HTML page beside it) and the drift file: one row per drifted field, missing record and
    record held twice (one row per target id holding the key)."""
    report_path, csv_path = verify_paths(job)
    report = outcome.as_dict()
    write_report(report_path, report)
    write_html(html_path(report_path), report)
    with private_open(csv_path) as fh:
        fh.truncate(0)
        w = csv.writer(fh)
        w.writerow(DRIFT_HEADER)
        for v in outcome.streams:
            for d in v.drift:
                w.writerow([v.stream, d["source_id"], d["target_id"], "drift", d["field"], d["sent"], d["held"]])
            for m in v.missing:
                w.writerow([v.stream, m["source_id"], m["target_id"], "missing", "", "", ""])
            for t in v.twice:
                field, _, value = t["key"].partition("=")
                for tid in t["target_ids"]:
                    w.writerow([v.stream, "; ".join(t["source_ids"]), tid, "held twice", field, value, value])
    return report_path, csv_path


def _cut(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def summary(outcome: VerifyOutcome, report_path: Path | None, csv_path: Path | None) -> str:
    took = outcome.ended - outcome.started
    lines = [f"verify {outcome.job}: {outcome.target} in {took:.1f} s "
             f"(planned {duration(outcome.eta_seconds)}){' (interrupted)' if outcome.interrupted else ''}"]
    for v in outcome.streams:
        if v.how == "none" and v.records:
            lines.append(f"  {v.stream}: {v.records:,} done, not read back — {v.why}")
            continue
        parts = [f"{v.records:,} done", f"equal {v.equal:,}", f"drift {v.drifted:,}",
                 f"missing {len(v.missing):,}", f"held twice {len(v.twice):,}"]
        if v.existence_only:
            parts.append(f"present, nothing to compare {v.existence_only:,}")
        if v.unchecked:
            parts.append(f"unchecked {v.unchecked:,}")
        lines.append(f"  {v.stream}: " + ", ".join(parts))
        if v.unchecked:
            lines.append(f"    unchecked: {v.why}")
        for d in v.drift[:3]:
            lines.append(f"    {d['source_id']}: {d['field']} sent {_cut(d['sent'])!r}, held {_cut(d['held'])!r}")
        for m in v.missing[:3]:
            lines.append(f"    {m['source_id']}: done as {m['target_id']}, not in the target")
        for t in v.twice[:3]:
            lines.append(f"    {t['key']}: held by {', '.join(t['target_ids'])}")
    if outcome.requests:
        lines.append(f"  requests: {bill(outcome.requests)} (planned {bill(outcome.planned)})")
    if report_path is not None:
        lines.append(f"  report: {report_path}")
        lines.append(f"  page:   {html_path(report_path)}")
    wrong = any(not v.clean for v in outcome.streams)
    if csv_path is not None and wrong:
        lines.append(f"  drift, missing and held twice, one per row: {csv_path}")
    if outcome.clean:
        lines.append("  everything read back is as sent")
    elif not wrong and outcome.unproven and not outcome.interrupted:
        lines.append(f"  nothing of {', '.join(outcome.unproven)} could be read back: "
                     "nothing is proven (exit 1)")
    else:
        lines.append("  the target does not hold everything as sent (exit 1)")
    return "\n".join(lines)
