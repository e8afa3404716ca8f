"""Regenerate samples/: a job per shipped pair (as `migrator init` writes it), the demo's
job, and small CSV exports in the shapes Realeflow and Brokerkit users get.

    python samples/make_samples.py
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

from migrator.demo import JOB as DEMO_JOB
from migrator.init import render_job
from migrator.resources import shipped_pairs
from migrator.sandbox.data import DIRTY, people
from migrator.sandbox.exports import write_export

HERE = Path(__file__).resolve().parent


def main() -> None:
    jobs = HERE / "jobs"
    jobs.mkdir(exist_ok=True)
    for source, target in shipped_pairs():
        text = render_job(source, target)
        text = re.sub(r" on \d{4}-\d{2}-\d{2}\.", ".", text)          # stable across days
        text = text.replace("mapping: mapping.yaml", f"mapping: ../../mappings/{source}-to-{target}.yaml")
        text = re.sub(r"path: (\S+-export\.csv)", r"path: ../\1", text)
        (jobs / f"{source}-to-{target}.yaml").write_text(text, encoding="utf-8")
    (HERE / "demo-job.yaml").write_text(DEMO_JOB.replace("mapping: mapping.yaml",
                                                         "mapping: ../mappings/realvolve-to-rei.yaml"))
    persons = people(12, seed=5, dirt=DIRTY)
    write_export("realeflow-csv", HERE / "realeflow-export.csv", persons)
    write_export("brokerkit-csv", HERE / "brokerkit-export.csv", persons)
    write_export("csv", HERE / "csv-export.csv", persons)
    print(f"wrote {len(shipped_pairs())} jobs and 3 exports into {HERE}", file=sys.stderr)


if __name__ == "__main__":
    main()
