"""Issue 8, figure 7: what resuming costs, against doing the rest fresh.

    python bench/resume.py [--contacts 5000] [--rate 50] [--latency 0.05] [--concurrency 8] [--quick]

Seeded contacts from a JSONL file into the REI Software simulator (limited to --rate per
1 s in the simulator and the job, --latency a request). The first run is killed (SIGKILL,
`MIGRATOR_CRASH_AT=written:N`, N = 90% of the contacts) as a crash would kill it; the CLI
has no stop-after switch. Then `migrator run` again: it reconciles the writes that were
in flight by lookup, skips to its watermark and writes the rest. Then, as the yardstick, a
fresh run of a JSONL holding only the records the crashed run had not settled, with its
own new checkpoint. Each run starts after the simulator's window has emptied.

Time to first new write: from the resume process's start to the first record it settled
by writing (checkpoint time stamps; records settled by a lookup are not new writes).
Figure: resume wall time / fresh wall time for the same remaining records. Goal <= 1.2.
"""
from __future__ import annotations

import json
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _bench import (rate_limited_main, JSONL_SOURCE, MAPPINGS, REI_TARGET, Figure, SandboxProc, done_ids, done_times,  # noqa: E402
                    limit_yaml, print_figure, run_cli, status_counts, tmpdir, window_summary, write_job)
from _data import write_contacts_jsonl  # noqa: E402

GOAL = 1.2


def _job(root: Path, rate: int, concurrency: int) -> Path:
    return write_job(root, source=JSONL_SOURCE, target=REI_TARGET.format(limit=limit_yaml(rate, 1)),
                     mapping=MAPPINGS / "csv-to-rei.yaml", concurrency=concurrency, name="bench-resume")


def run(contacts: int = 5000, rate: int = 50, latency: float = 0.05, concurrency: int = 8) -> Figure:
    root = tmpdir("resume")
    write_contacts_jsonl(root / "contacts.jsonl", contacts)
    job = _job(root, rate, concurrency)
    crash_at = max(1, int(contacts * 0.9))
    calm = 1.0 + 0.2  # the simulator's 1 s window empties
    # The kill cuts connections mid-request; the server's tracebacks about them go to a log.
    with SandboxProc(["rei"], latency=latency, limits={"rei": f"{rate}/1"}, log=root / "sandbox.log") as sb:
        first = run_cli(["run", str(job), "--no-progress"], env={**sb.env, "MIGRATOR_CRASH_AT": f"written:{crash_at}"},
                        check=False)
        if first.returncode != -9:
            raise SystemExit(f"the first run was to be killed at write {crash_at}; it exited {first.returncode}:\n"
                             f"{first.stderr[-1500:]}")
        after_crash = status_counts(root / "ckpt.sqlite")
        settled = done_ids(root / "ckpt.sqlite")
        time.sleep(calm)
        resumed = run_cli(["run", str(job), "--no-progress"], env=sb.env)
        resume_stats = sb.stats("rei")
        with urllib.request.urlopen(f"{sb.url('rei')}/_sandbox/records/contacts", timeout=60) as r:
            held = len(json.loads(r.read()))
        # The yardstick: only the records the crashed run left unsettled, fresh.
        fresh_root = tmpdir("resume-fresh")
        with open(root / "contacts.jsonl", "rb") as src, open(fresh_root / "contacts.jsonl", "wb") as dst:
            for line in src:
                if json.loads(line)["id"] not in settled:
                    dst.write(line)
        remaining = contacts - len(settled)
        time.sleep(calm)
        fresh = run_cli(["run", str(_job(fresh_root, rate, concurrency)), "--no-progress"], env=sb.env)
    new = done_times(root / "ckpt.sqlite", since=resumed.started, new_only=True)
    first_new = new[0] - resumed.started if new else float("nan")
    final = status_counts(root / "ckpt.sqlite")
    fresh_times = done_times(fresh_root / "ckpt.sqlite")
    fresh_done = len(fresh_times)
    fresh_first = fresh_times[0] - fresh.started if fresh_times else float("nan")
    ratio = resumed.wall / fresh.wall
    print(f"resume: {contacts:,} contacts JSONL -> REI sandbox limited to {rate}/1 s, {latency * 1000:.0f} ms "
          f"latency, concurrency {concurrency}; killed at write {crash_at:,}")
    print(f"  after the kill: {after_crash}; {remaining:,} records not settled")
    print(f"  resume: wall {resumed.wall:.2f} s, first new write {first_new:.2f} s after start, "
          f"{len(new):,} new writes; checkpoint now {final}; the target holds {held:,} contacts")
    print(f"  simulator after resume: {window_summary(resume_stats)}")
    print(f"  fresh run of the {remaining:,} remaining: wall {fresh.wall:.2f} s, first write {fresh_first:.2f} s after start, "
          f"{fresh_done:,} written")
    notes = []
    if final.get("done", 0) != contacts:
        notes.append(f"after resume {final.get('done', 0)} of {contacts} done")
    if held != contacts:
        notes.append(f"the target holds {held} contacts, not {contacts}")
    fig = Figure("resume", f"resume {resumed.wall:.1f} s, first new write +{first_new:.2f} s",
                 f"fresh {remaining:,} recs {fresh.wall:.1f} s; goal <= {GOAL}", ratio,
                 ratio <= GOAL and not notes, notes)
    print_figure(fig)
    return fig


def quick() -> Figure:
    return run(contacts=500)


def main() -> None:
    rate_limited_main(run, quick, __doc__, latency=0.05)


if __name__ == "__main__":
    main()
