"""The README's first command and the starter-job command, as a user runs them."""
import os
import re
import stat

import yaml

from migrator.job import load_job
from tests.conftest import run_cli


def test_demo_runs_a_whole_migration(tmp):
    # 300: the interrupted run writes 120, more than one page of REI's index (100)
    res = run_cli("demo", "--contacts", "300", "--no-progress", "--dir", str(tmp / "d"), timeout=300,
                  env={"COLUMNS": "80"})
    assert res.returncode == 0, res.stderr
    err = res.stderr
    assert "1/3  migrator validate" in err and "3/3  migrator run again" in err
    assert "(interrupted)" in err
    # It reads clean at 80 columns: only a path (the demo's folder) may make a line longer.
    lines = err.splitlines()
    too_long = [line for line in lines if len(line.replace(str(tmp / "d"), "d")) > 80]
    assert not too_long, too_long
    # An invalid record is counted once in validate's summary, not also as failed.
    [validate_line] = [line for line in lines if line.startswith("  contacts: read 300, valid")]
    assert "invalid" in validate_line and "failed" not in validate_line
    # The stop says the count the summary prints after it.
    assert "stopping after 120 writes, as asked" in err
    [interrupted] = [i for i, line in enumerate(lines) if line.endswith("(interrupted)")]
    assert ", written 120, " in lines[interrupted + 1], lines[interrupted + 1]
    # The resumed run reads the target's index again: said in words.
    assert re.search(r"index 1 → \d+: every run first reads the records", err), err
    assert "this run resumed, so it read them again" in " ".join(err.split())
    assert "contacts created twice: 0" in err
    assert "Traceback" not in err
    ckpt = tmp / "d" / "demo.ckpt.sqlite"
    assert stat.S_IMODE(os.stat(ckpt).st_mode) == 0o600
    # `migrator status` needs no credentials: it only reads the checkpoint.
    st = run_cli("status", str(tmp / "d" / "job.yaml"), env={"REI_API_KEY": ""})
    assert st.returncode == 0, st.stderr
    assert "contacts: done" in st.stdout and "finished" in st.stdout


def test_init_writes_job_and_mapping(tmp):
    res = run_cli("init", "realvolve", "rei", "--out", str(tmp / "j"))
    assert res.returncode == 0, res.stderr
    job_text = (tmp / "j" / "job.yaml").read_text()
    for var in ("${REALVOLVE_CLIENT_ID}", "${REALVOLVE_CLIENT_SECRET}", "${REALVOLVE_UTILITY_API_KEY}", "${REI_API_KEY}"):
        assert var in job_text
    assert "settings > integrations" in job_text.lower() or "REALVOLVE_UTILITY_API_KEY:" in job_text
    doc = yaml.safe_load(job_text)
    assert doc["source"]["system"] == "realvolve" and doc["target"]["system"] == "rei"
    env = {"REALVOLVE_CLIENT_ID": "a", "REALVOLVE_CLIENT_SECRET": "b", "REALVOLVE_UTILITY_API_KEY": "c",
           "REI_API_KEY": "d"}
    job = load_job(tmp / "j" / "job.yaml", env=env)
    assert "contacts" in job.mapping.streams
    again = run_cli("init", "realvolve", "rei", "--out", str(tmp / "j"))
    assert again.returncode == 2 and "exists already" in again.stderr


def test_init_unknown_pair_is_one_line(tmp):
    res = run_cli("init", "realvolve", "outlook", "--out", str(tmp / "x"))
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "no shipped mapping" in res.stderr


def test_missing_credential_names_the_variable(tmp):
    run_cli("init", "realvolve", "rei", "--out", str(tmp / "j"))
    res = run_cli("validate", str(tmp / "j" / "job.yaml"), env={"REALVOLVE_CLIENT_ID": ""}, cwd=tmp)
    assert res.returncode == 2
    assert "environment variable REALVOLVE_CLIENT_ID is not set" in res.stderr
    assert res.stderr.count("\n") == 1
