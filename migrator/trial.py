"""``run --sample N``: what a trial says when it ends — which records it wrote, their
``verify``, and the two ways on (the rest, or take the trial back)."""
from __future__ import annotations

import sqlite3
from typing import Any, Callable


def sampled_ids(checkpoint: Any, run: int) -> dict[str, list[str]]:
    """Source ids the trial ``run`` settled as done, by stream."""
    with sqlite3.connect(f"file:{checkpoint}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT stream, source_id FROM records WHERE run=? AND status='done' "
                            "ORDER BY stream, source_id", (run,)).fetchall()
    out: dict[str, list[str]] = {}
    for stream, sid in rows:
        out.setdefault(stream, []).append(sid)
    return out


def after_trial(job: Any, outcome: Any, out: Callable[[str], None], progress: bool | None = None) -> bool:
    """The trial's closing lines: what it wrote, the ``verify`` of exactly those records
    (read back from the target, report and drift CSV beside the run's), how to review and
    go on. True unless verify found drift, a missing record or one held twice."""
    from .verify import verify_job
    from .verify.output import summary, write_outputs

    ids = sampled_ids(job.checkpoint, outcome.run) if outcome.run is not None else {}
    n = sum(len(v) for v in ids.values())
    shown = "; ".join(f"{stream}: {', '.join(v[:5])}{' …' if len(v) > 5 else ''}" for stream, v in ids.items())
    out(f"trial: {n} records written to {job.target.system}, spread over the source ({shown or 'none'}).")
    clean = True
    if ids:
        checked = verify_job(job, source_ids=ids, progress=progress, out=out)
        report_path, csv_path = write_outputs(job, checked)
        out(summary(checked, report_path, csv_path))
        clean = all(v.clean for v in checked.streams)   # what cannot be read back is said, not failed
    out(f"review them in {job.target.system} (the report lists each with its target id), then either\n"
        f"  go on with the rest:    migrator run {job.path}\n"
        f"  or take the trial back: migrator undo {job.path} --sample-only")
    return clean
