"""The live progress line through the real engine and CLI, and a stop that is exact."""
import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios

import anyio
import orjson

from migrator.engine import Engine
from migrator.job import load_job
from tests.conftest import PHONE_MAPPING, contacts_rows, file_job, run_cli


def _engine(job, **kw):
    return Engine(load_job(job), out=lambda s: None, **kw)


def test_a_csv_source_bar_has_a_total_counted_or_from_the_plan(tmp):
    job = file_job(tmp, contacts_rows(3000))
    engine = _engine(job, progress=True)
    anyio.run(engine.run)
    assert engine._bars[0].total == 3000, "counted on a worker thread while the run went on"
    # After validate, the run takes the stored plan's count: nothing to count again.
    assert run_cli("validate", str(job), "--no-progress").returncode == 0
    (tmp / "out.jsonl").unlink()
    (tmp / "ckpt.sqlite").unlink()
    engine = _engine(job, progress=True)
    engine.source.count_records = None  # the plan's total only
    anyio.run(engine.run)
    assert engine._bars[0].total == 3000


def test_stop_after_stops_at_exactly_its_count(tmp):
    job = file_job(tmp, contacts_rows(2000))
    out: list[str] = []
    first = anyio.run(Engine(load_job(job), progress=False, stop_after=700, out=out.append).run)
    assert first.interrupted and "stopping after 700 writes, as asked" in out
    assert first.streams[0].counts["done"] == 700   # before: a page more
    assert len((tmp / "out.jsonl").read_bytes().splitlines()) == 700
    anyio.run(Engine(load_job(job), progress=False, out=out.append).run)
    ids = [orjson.loads(x)["_source_id"] for x in (tmp / "out.jsonl").read_bytes().splitlines()]
    assert len(ids) == len(set(ids)) == 2000


def _in_a_terminal(args, cols=80):
    """Run the CLI with stderr on a pseudo-terminal ``cols`` wide; what it drew."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, cols, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.Popen([sys.executable, "-m", "migrator.cli", *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=120)
    os.close(master)
    return proc.returncode, b"".join(chunks).decode("utf-8", "replace")


def test_the_progress_line_in_an_80_column_terminal(tmp):
    rows = contacts_rows(3000)
    rows[7]["Phone"] = "555-CALL-NOW"
    job = file_job(tmp, rows, mapping=PHONE_MAPPING)
    code, drawn = _in_a_terminal(["run", str(job)])
    frames = [re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", f).strip()
              for f in re.split(r"[\r\n]", drawn) if "run contacts" in f]
    assert frames, drawn
    for frame in frames:
        assert len(frame) <= 79, frame
        assert all(w in frame for w in ("read ", "written ", "failed ", "skipped ")), frame
    assert "100%" in frames[-1] and "failed 1" in frames[-1] and "written 2,999" in frames[-1], frames[-1]

    code, drawn = _in_a_terminal(["validate", str(job)])
    frames = [f for f in re.split(r"[\r\n]", drawn) if "validate contacts" in f]
    assert frames and all("written" not in f and "invalid" in f for f in frames), drawn
