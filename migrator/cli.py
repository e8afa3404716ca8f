"""``migrator``: the command line. Every user mistake becomes one line and exit code 2."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Sequence

from . import __version__
from .errors import UserError

EXIT_OK, EXIT_FAILED, EXIT_USER, EXIT_INTERRUPTED = 0, 1, 2, 130


def _err(msg: str) -> None:
    print(f"migrator: {msg}", file=sys.stderr)


def _progress(args: argparse.Namespace) -> bool | None:
    return True if args.progress else (False if args.no_progress else None)


def one_writer(args: argparse.Namespace, mode: str, command: Any) -> int:
    """Run ``command(args, mode, job)`` — any command that writes (run, retry) — as the
    job's only writer: the job's lock is taken before anything is written, and a second
    writer exits 2 naming the first."""
    from .job import load_job
    from .lock import JobLock, lock_path

    job = load_job(args.job)
    with JobLock(lock_path(job.checkpoint), args.job, mode):
        return command(args, mode, job)


def cmd_run(args: argparse.Namespace, mode: str, job: Any = None) -> int:
    from .engine import Engine
    from .job import check_reports, load_job
    from .mapping.fill import dead_paths
    from .report import FailureSink, finish, report_paths
    import anyio

    from . import plan as planning

    job = load_job(args.job) if job is None else job
    if mode == "retry":
        nothing = nothing_to_retry(job)
        if nothing:
            print(nothing, file=sys.stderr)
            return EXIT_OK
    check_reports(job)  # before the first write, not after every record is written
    if getattr(args, "stop_at_quota", False):
        job.stop_at_quota = True
    if getattr(args, "on_merge", None):
        job.on_merge = args.on_merge
    plan_only = mode == "run" and getattr(args, "plan", False)
    if plan_only:
        mode = "validate"  # `run --plan`: the validate pass, then the plan; nothing written
    latency = getattr(args, "latency", None)
    sample = getattr(args, "sample", None) if mode == "run" else None
    plan = None
    sink = FailureSink(report_paths(job, mode)[1]) if mode == "validate" else None
    engine = Engine(job, mode=mode, progress=_progress(args), since=getattr(args, "since", None),
                    accept_mapping_change=getattr(args, "accept_mapping_change", False),
                    sink=sink,
                    server=getattr(args, "server", False), show=getattr(args, "show", 0) or 0,
                    sample=sample)

    async def go():
        if mode == "validate":
            return await planning.validate_with_plan(engine, latency)
        ran_plan = None
        if mode == "run":
            ran_plan = await planning.before_run(job, engine.source, engine.target,
                                                 lambda line: print(line, file=sys.stderr), latency,
                                                 engine.since, sample)
        return await engine.run(), ran_plan

    try:
        outcome, plan = anyio.run(go)
    finally:
        if sink is not None:
            sink.close()
    report, text = finish(job, outcome, mode, plan, since=engine.since)
    if getattr(args, "show", 0):
        from .report import preview_text
        print(preview_text(report), file=sys.stderr)
    print(text, file=sys.stderr)
    if plan is not None and mode == "validate":
        planning.save_plan(job, plan)
        print(plan.render(), file=sys.stderr)
    csv_path = report_paths(job, mode)[1]
    if outcome.interrupted or outcome.stopped_reason:
        why = outcome.stopped_reason or "interrupted"
        if mode == "validate":  # nothing was kept: it starts over
            print(f"{why}. validate keeps nothing; run it again with:  migrator validate {args.job}",
                  file=sys.stderr)
        else:
            print(f"{why}. Everything settled so far is in {job.checkpoint}.\n"
                  f"Resume with:  migrator {mode} {args.job}", file=sys.stderr)
        return EXIT_INTERRUPTED
    failed = outcome.total("failed")
    trial_clean = True
    if sample:
        from .trial import after_trial
        trial_clean = after_trial(job, outcome, lambda line: print(line, file=sys.stderr), _progress(args))
    if plan_only:
        return EXIT_OK
    if mode == "validate":
        invalid = failed
        limit = args.max_invalid
        if invalid and (limit is None or invalid > limit):
            return EXIT_FAILED
        if dead_paths(report):  # a path that gave nothing in any record; --max-invalid is about records
            return EXIT_FAILED
        return EXIT_OK
    if failed:
        print(f"{failed} records failed this run; fix them (see {csv_path}) and run:  migrator retry {args.job}",
              file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK if trial_clean else EXIT_FAILED


def cmd_verify(args: argparse.Namespace) -> int:
    """Read only: no job lock, so it runs beside a run."""
    from .job import load_job
    from .verify import verify_job
    from .verify.output import summary, write_outputs

    job = load_job(args.job)
    outcome = verify_job(job, progress=_progress(args), latency=args.latency)
    report_path, csv_path = write_outputs(job, outcome)
    print(summary(outcome, report_path, csv_path), file=sys.stderr)
    return EXIT_OK if outcome.clean else EXIT_FAILED


def cmd_undo(args: argparse.Namespace, mode: str, job: Any) -> int:
    """Take back what the job wrote (its own checkpoint says what), as the job's only writer."""
    import anyio

    from .undo import Undo, summary

    say = lambda line: print(line, file=sys.stderr)  # noqa: E731
    outcome = anyio.run(Undo(job, sample_only=args.sample_only, force=args.force, out=say).run)
    for line in summary(outcome):
        say(line)
    c = outcome.counts
    return EXIT_FAILED if c.get("listed") or c.get("failed") or c.get("kept") else EXIT_OK


def nothing_to_retry(job: Any) -> str | None:
    """What ``retry`` says, before reading anything, when no record is left to write
    again (none failed, none left pending by an interruption); None when some are."""
    from .checkpoint import read_only

    conn = read_only(job.checkpoint)
    try:
        counts = dict(conn.execute("SELECT status, count(*) FROM records GROUP BY status").fetchall())
        unfinished = conn.execute("SELECT count(*) FROM cursors WHERE finished=0").fetchone()[0]
    finally:
        conn.close()
    if any(counts.get(s) for s in ("failed", "pending", "inflight")):
        return None
    done = ", ".join(f"{counts[s]} {s}" for s in ("done", "skipped") if counts.get(s)) or "no records"
    rest = (f"; the run did not finish: resume it with  migrator run {job.path}" if unfinished else "")
    return f"nothing to retry: no record failed ({done}){rest}"


def cmd_status(args: argparse.Namespace) -> int:
    from .checkpoint import read_only
    from .job import load_job

    job = load_job(args.job, strict_env=False)
    conn = read_only(job.checkpoint)
    try:
        print(f"{job.name}: {job.source.system} → {job.target.system}   checkpoint {job.checkpoint}")
        rows = conn.execute("SELECT stream, status, count(*) FROM records GROUP BY stream, status "
                            "ORDER BY stream, status").fetchall()
        streams: dict[str, dict[str, int]] = {}
        for stream, status, n in rows:
            streams.setdefault(stream, {})[status] = n
        cursors = {s: (c, f, p) for s, c, f, p in conn.execute("SELECT stream, cursor, finished, pages FROM cursors")}
        def state(c: tuple | None) -> str:
            return "finished" if c and c[1] else (f"{c[2]} pages settled, resumes after cursor {c[0]}"
                                                  if c else "not started")
        # A delta keeps its own watermark (``<stream> since <TIME>``); its records are the stream's.
        deltas = sorted(k for k in cursors if " since " in k)
        for stream in sorted(set(streams) | set(cursors) - set(deltas)):
            st = streams.get(stream, {})
            print(f"  {stream}: done {st.get('done', 0)}, failed {st.get('failed', 0)}, skipped {st.get('skipped', 0)}, "
                  f"pending {st.get('pending', 0)}, in flight at interruption {st.get('inflight', 0)}"
                  + (f", undone {st['undone']}" if st.get("undone") else "") + f" — {state(cursors.get(stream))}")
        for key in deltas:
            stream, _, since = key.partition(" since ")
            print(f"  {stream}, the delta since {since}: {state(cursors[key])}")
        unc = conn.execute("SELECT count(*) FROM records WHERE uncertain=1").fetchone()[0]
        if unc:
            print(f"  uncertain: {unc} records (see the report)")
        from .lock import lock_path, running
        holder = running(lock_path(job.checkpoint))
        for i, (run, mode, started, ended, outcome) in enumerate(conn.execute(
                "SELECT run, mode, started, ended, outcome FROM runs ORDER BY run DESC LIMIT 5")):
            import datetime as dt
            when = dt.datetime.fromtimestamp(started).isoformat(timespec="seconds")
            if outcome:
                state = outcome
            elif i == 0 and holder is not None:
                state = (f"in progress (pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, "
                         f"since {holder.get('since', '?')})")
            else:
                state = "did not finish (crashed or killed)"
            print(f"  run {run}: {mode} at {when} — {state}")
    finally:
        conn.close()
    return EXIT_OK


def cmd_ids(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .crosswalk import write_crosswalk
    from .job import load_job

    job = load_job(args.job, strict_env=False)
    out = Path(args.out)
    counts = write_crosswalk(job.checkpoint, out)
    made = ", ".join(f"{n} {action}" for action, n in sorted(counts.items())) or "no record done yet"
    print(f"wrote {sum(counts.values())} rows to {out} ({made})", file=sys.stderr)
    return EXIT_OK


def cmd_connectors(args: argparse.Namespace) -> int:
    from .registry import CONNECTORS, connector_class
    for name in CONNECTORS:
        try:
            cls = connector_class(name)
        except UserError:
            print(f"  {name:<10} (not available in this version)")
            continue
        reads = {"api": "reads by API", "export": "reads a CSV export", "file": "reads files",
                 "none": "cannot be read"}[cls.reads]
        writes = "writes by API" if cls.writes and cls.reads != "file" else ("writes files" if cls.writes else "cannot be written")
        limit = f"; default limit {cls.default_limit}" if cls.default_limit else ""
        print(f"  {name:<10} {cls.title}: {reads}, {writes}{limit}")
        if cls.notes:
            print(f"             {cls.notes}")
    return EXIT_OK


def cmd_fields(args: argparse.Namespace) -> int:
    from .registry import connector_class
    cls = connector_class(args.connector)
    schemas = cls.schemas()
    if cls.system in ("csv", "jsonl"):
        print(f"{cls.system} accepts any field names the mapping gives it.")
        return EXIT_OK
    if not schemas:
        print(f"{cls.system} cannot be written to.")
        return EXIT_OK
    names = [args.stream] if args.stream else list(schemas)
    for name in names:
        if name not in schemas:
            raise UserError(f"{cls.system} has no stream '{name}'; it has {', '.join(schemas)}")
        schema = schemas[name]
        print(f"{cls.system} {name}:")
        rules = getattr(schema, "rules", ())
        for row in schema.describe():
            limits = []
            if row.get("required"):
                limits.append("required")
            for key in ("max_length", "max_items", "format", "minimum", "maximum"):
                if row.get(key) not in (None, ""):
                    limits.append(f"{key.replace('_', ' ')} {row[key]}")
            if row.get("enum"):
                limits.append("one of " + ", ".join(row["enum"]))
            desc = f"  — {row['description']}" if row.get("description") else ""
            print(f"  {row['name']:<24} {row.get('type', 'string'):<7} {'; '.join(limits)}{desc}")
        for rule in rules:
            print(f"  rule: at least one of {', '.join(rule.fields)}")
    return EXIT_OK


def cmd_sandbox(args: argparse.Namespace) -> int:
    from .sandbox.cli import serve
    return serve(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import demo
    return demo(args)


def cmd_init(args: argparse.Namespace) -> int:
    from .init import init
    return init(args)


SINCE_HELP = ("only records changed since then, for a delta run after cutover: a date or date-time "
              "such as 2026-11-30 or '2026-11-30 14:00' (ISO 8601; UTC unless it names a zone). Records an "
              "earlier run migrated are updated by their target id, new ones created; the report counts "
              "them apart. A CSV or JSONL source filters by the job's updated_column (older rows are "
              "skipped and counted). Sources that can filter by time: realvolve (recent_contacts), "
              "spark (ModificationTimestamp), rei (newest-updated first, up to the first older contact)")


def _count(text: str) -> int:
    """A whole number ≥ 0, or argparse's one-line error (exit 2)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {n}")
    return n


def _examples(*lines: str) -> str:
    return "example:\n" + "\n".join(f"  {line}" for line in lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="migrator", description=(
        "Move a real-estate team's CRM data from one system to another: read, map, validate, "
        "write under the target's rate limits, resume after any interruption."),
        epilog="Start with  migrator demo  (no account needed), then  migrator init SOURCE TARGET. "
               "Each command has its own --help.")
    p.add_argument("--version", action="version", version=f"migrator {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help: str, *examples: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help, epilog=_examples(*examples),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        # also after the subcommand (`migrator run job.yaml --debug`); SUPPRESS keeps the
        # top-level value when it is not given here
        sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks of unexpected errors")
        return sp

    def job_cmd(name: str, help: str, *examples: str) -> argparse.ArgumentParser:
        sp = command(name, help, *examples)
        sp.add_argument("job", help="the job file (YAML), e.g. my-job/job.yaml from migrator init")
        sp.add_argument("--progress", action="store_true", help="always show progress bars")
        sp.add_argument("--no-progress", action="store_true",
                        help="never show progress bars (default: shown on a terminal only)")
        return sp

    r = job_cmd("run", "migrate; run it again after an interruption to resume",
                "migrator run my-job/job.yaml", "migrator run my-job/job.yaml --plan",
                "migrator run my-job/job.yaml --since 2026-11-30", "migrator run my-job/job.yaml --sample 50")
    r.add_argument("--since", metavar="TIME", help=SINCE_HELP)
    r.add_argument("--sample", type=int, metavar="N",
                   help="a trial: print its share of the plan, write N records spread over the whole "
                        "source (every k-th), verify "
                        "them (exit 1 if the target kept less than sent) and stop to review them; the next "
                        "run writes the rest and never a trial record again; "
                        "`migrator undo JOB --sample-only` takes the trial back")
    r.add_argument("--plan", action="store_true",
                   help="print the plan (records, requests by kind, ETA, daily-quota fit) and exit, "
                        "writing nothing; it reads and validates the whole source first, as validate does")
    v = job_cmd("validate", "dry run: read, map and validate every record; write nothing",
                "migrator validate my-job/job.yaml", "migrator validate my-job/job.yaml --max-invalid 20",
                "migrator validate my-job/job.yaml --show 3")
    v.add_argument("--max-invalid", type=int, default=None, metavar="N",
                   help="exit 0 when at most N records are invalid (default: any invalid record exits 1)")
    v.add_argument("--show", type=_count, default=0, metavar="N",
                   help="print each stream's first N records side by side: as the source gave them and "
                        "as they will be sent (also in the HTML report)")
    v.add_argument("--server", action="store_true",
                   help="also have the target check each valid record in its own dry run, saving nothing "
                        "(Brokerkit: test: true)")
    t = job_cmd("retry", "write again only the records that failed (after fixing the data or the mapping)",
                "migrator retry my-job/job.yaml", "migrator retry my-job/job.yaml --accept-mapping-change")
    for sp in (r, t):
        sp.add_argument("--accept-mapping-change", action="store_true",
                        help="go on although the mapping changed since the checkpoint was written "
                             "(records already done keep what the old mapping wrote)")
    v.add_argument("--since", metavar="TIME",
                   help="plan the delta `run --since TIME` will make: read only what changed since then "
                        "and count, from the checkpoint, which records it updates and which it creates; "
                        "the plan is kept apart from the whole migration's")
    for sp in (r, v):
        sp.add_argument("--latency", type=float, default=None, metavar="SECONDS",
                        help="what one request takes, for the plan's ETA (default: each system's typical latency)")
    for sp in (r, t):
        sp.add_argument("--stop-at-quota", action="store_true",
                        help="when a daily request quota is spent, stop (resumable) instead of waiting for it")
        sp.add_argument("--on-merge", choices=("combine", "update", "skip", "fail"), default=None,
                        help="what a record that matches one already in the target does: combine both (the "
                             "default: fill what it lacks, add tags and notes, keep a second value where the "
                             "target can hold one), update it (the vendor's overwrite), skip it, or fail; "
                             "overrides the job's on_merge")
    vf = job_cmd("verify", "read back every record the job wrote and compare it with what was sent: "
                 "drift, missing records, records held twice (reads only; works beside a run); exit 0 "
                 "only when all it read is equal and something could be read",
                 "migrator verify my-job/job.yaml", "migrator verify my-job/job.yaml --no-progress")
    vf.add_argument("--latency", type=float, default=None, metavar="SECONDS",
                    help="what one request takes, for the bill's ETA (default: the target's typical latency)")
    u = job_cmd("undo", "take back what the job wrote: delete the records it created and put back the values "
                "of those it changed (planned, checkpointed, resumable); a file target is cut back",
                "migrator undo my-job/job.yaml", "migrator undo my-job/job.yaml --sample-only")
    u.add_argument("--sample-only", action="store_true",
                   help="take back only the trial (`run --sample N`), not the records later runs wrote")
    u.add_argument("--force", action="store_true",
                   help="also undo records someone changed in the target after the migration "
                        "(by default they are listed and left as they are)")
    st = command("status", "what is done, pending and failed, from the checkpoint (works beside a run)",
                 "migrator status my-job/job.yaml")
    st.add_argument("job", help="the job file (YAML)")
    ids = command("ids", "the crosswalk: one row per record the job settled — stream, source id, target id, "
                  "action (created, updated, matched, merged, undone) — for the team's other tools",
                  "migrator ids my-job/job.yaml --out ids.csv", "migrator ids my-job/job.yaml --out ids.jsonl")
    ids.add_argument("job", help="the job file (YAML)")
    ids.add_argument("--out", required=True, metavar="FILE",
                     help="where to write it: CSV, or JSON Lines when FILE ends in .jsonl (readable by you only)")
    command("connectors", "the systems this version can read and write, and their default limits",
            "migrator connectors")
    f = command("fields", "what a target accepts: fields, types, limits, rules",
                "migrator fields rei", "migrator fields realeflow properties")
    f.add_argument("connector", help="a system name, as migrator connectors lists them (e.g. rei)")
    f.add_argument("stream", nargs="?", help="one stream only (e.g. contacts); default: all of them")
    s = command("sandbox", "serve simulators of the five CRM APIs on loopback, with their credentials",
                "migrator sandbox", "migrator sandbox --contacts 1000 --only rei --only realvolve")
    from .sandbox.options import add_arguments as add_sandbox_arguments
    add_sandbox_arguments(s)
    d = command("demo", "a whole migration between two built-in sandbox CRMs (no account, no network)",
                "migrator demo", "migrator demo --contacts 500 --dir /tmp/demo")
    d.add_argument("--contacts", type=int, default=2000, metavar="N", help="contacts in the simulated source")
    d.add_argument("--dir", default="migrator-demo", help="where the demo writes its job, checkpoint and reports")
    d.add_argument("--no-progress", action="store_true", help="never show progress bars")
    from .resources import init_names
    sources, targets = init_names()
    i = command("init", "write a starter job file and mapping for a pair of systems, or propose a mapping "
                "from any CRM's CSV or JSONL export (--from)",
                "migrator init realvolve rei --out my-job", "migrator init realeflow-csv spark --out my-job",
                "migrator init csv rei --from old-crm-export.csv --out my-job",
                "migrator init jsonl spark --from contacts.jsonl --sample 2000 --out my-job")
    i.add_argument("source", help=f"where the data comes from: {', '.join(sources)}; "
                                  "with --from: csv or jsonl")
    i.add_argument("target", help=f"where it goes: {', '.join(targets)} (with --from also csv, jsonl)")
    i.add_argument("--out", default=".", help="folder for the job and mapping files (default: here)")
    i.add_argument("--from", dest="source_file", metavar="FILE",
                   help="an export from any CRM: read its header and first rows, detect its encoding "
                        "and delimiter, and propose a mapping (each field says why and how sure)")
    i.add_argument("--sample", type=int, default=500, metavar="N",
                   help="with --from: how many rows to read for the guess (default 500)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_USER
    handlers: dict[str, Any] = {
        "run": lambda a: cmd_run(a, "run") if a.plan else one_writer(a, "run", cmd_run),
        "validate": lambda a: cmd_run(a, "validate"), "retry": lambda a: one_writer(a, "retry", cmd_run),
        "undo": lambda a: one_writer(a, "undo", cmd_undo),
        "status": cmd_status, "verify": cmd_verify, "connectors": cmd_connectors, "ids": cmd_ids,
        "fields": cmd_fields, "sandbox": cmd_sandbox, "demo": cmd_demo, "init": cmd_init,
    }
    try:
        return handlers[args.command](args)
    except UserError as e:
        _err(str(e).splitlines()[0] if str(e) else type(e).__name__)
        return EXIT_USER
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `migrator fields rei | head`: the reader left; nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as e:  # a bug, not the user's fault: still one line unless --debug
        if args.debug or os.environ.get("MIGRATOR_DEBUG"):
            raise
        _err(f"internal error: {type(e).__name__}: {e} (run with --debug for details, and please report it)")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
