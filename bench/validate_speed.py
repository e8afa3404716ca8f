"""Issue 2 figure: `migrator validate` over a 200k-row CSV, records per CPU-second.

    python bench/validate_speed.py [ROWS]

Prints wall time, CPU time (user+sys of the migrator process) and records/s per core.
Goal: >= 20,000 records/s on one core.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _data import write_job  # noqa: E402


def timed(cmd: list[str]) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(proc.pid, 0)
    return time.perf_counter() - t0, ru.ru_utime + ru.ru_stime, ru.ru_maxrss


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    root = Path(tempfile.mkdtemp(prefix="bench-validate-"))
    job = write_job(root, rows)
    wall, cpu, rss = timed([sys.executable, "-m", "migrator.cli", "validate", str(job), "--no-progress"])
    base_wall, base_cpu, _ = timed([sys.executable, "-c", "import migrator.engine, migrator.job, migrator.cli"])
    print(f"validate {rows:,} CSV rows (12 columns, 12 mapped fields with phone/date/state transforms)")
    print(f"  wall {wall:.2f} s, cpu {cpu:.2f} s (interpreter start + imports: {base_cpu:.2f} s), peak RSS {rss / 1024:.0f} MB")
    print(f"  records/s per core: {rows / cpu:,.0f} (excluding start-up: {rows / max(cpu - base_cpu, 1e-9):,.0f})  goal >= 20,000")


if __name__ == "__main__":
    main()
