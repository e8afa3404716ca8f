"""Issue 2 / 8 figure: peak RSS of a file -> file run at several sizes.

    python bench/memory_flat.py [ROWS ...]      (default: 10000 1000000)

Memory must stay flat however many records flow: goal, within 50 MB of each other.
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


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [10_000, 1_000_000]
    results = []
    for rows in sizes:
        root = Path(tempfile.mkdtemp(prefix=f"bench-mem-{rows}-"))
        job = write_job(root, rows)
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "migrator.cli", "run", str(job), "--no-progress"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        lines = sum(1 for _ in open(root / "out.jsonl", "rb"))
        results.append((rows, ru.ru_maxrss / 1024, wall, lines, ru.ru_utime + ru.ru_stime))
        print(f"  {rows:>9,} rows: peak RSS {ru.ru_maxrss / 1024:6.1f} MB, wall {wall:7.1f} s, "
              f"cpu {ru.ru_utime + ru.ru_stime:7.1f} s, {rows / wall:,.0f} rec/s, lines written {lines:,}", flush=True)
    rss = [r[1] for r in results]
    print(f"spread of peak RSS: {max(rss) - min(rss):.1f} MB (goal <= 50 MB)")


if __name__ == "__main__":
    main()
