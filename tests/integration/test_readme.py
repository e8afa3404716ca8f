"""The README tells the truth: its runnable blocks run, its commands exist."""
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from migrator.cli import build_parser
from migrator.sandbox.cli import build
from migrator.sandbox.server import SandboxThread

README = Path(__file__).resolve().parents[2] / "README.md"


def runnable_blocks() -> list[list[str]]:
    text = README.read_text()
    blocks = re.findall(r"<!-- runnable[^>]*-->\s*```sh\n(.*?)```", text, re.S)
    return [[l for l in b.splitlines() if l.strip() and not l.startswith("#")] for b in blocks]


def test_runnable_blocks_run_against_the_sandbox(tmp_path):
    blocks = runnable_blocks()
    assert blocks, "the README marks no block as runnable"
    # as the README starts it: `migrator sandbox --empty rei`
    with SandboxThread(build(contacts=40, seed=1, rei={"contacts": 0})) as sb:
        env = {**os.environ, **sb.env()}
        for block in blocks:
            for line in block:
                args = shlex.split(line)
                assert args[0] == "migrator", line
                res = subprocess.run([sys.executable, "-m", "migrator.cli", *args[1:]], cwd=tmp_path, env=env,
                                     capture_output=True, text=True, timeout=300)
                assert res.returncode == 0, f"{line}\n{res.stdout}\n{res.stderr}"
                assert "Traceback" not in res.stderr
    assert (tmp_path / "my-job" / "reports" / "realvolve-to-rei-run-report.json").exists()


def test_every_command_the_readme_names_exists():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    named = set(re.findall(r"`?migrator ([a-z]+)", README.read_text()))
    assert named, "no commands found"
    assert named <= set(sub.choices), named - set(sub.choices)


def test_sandbox_prints_what_a_job_needs():
    proc = subprocess.Popen([sys.executable, "-m", "migrator.cli", "sandbox", "--contacts", "5"],
                            stdout=subprocess.PIPE, text=True)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C" in line:
                break
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(20)
    out = "".join(lines)
    for var in ("REALVOLVE_CLIENT_ID", "REALVOLVE_BASE_URL", "SPARK_ACCESS_TOKEN", "REI_API_KEY",
                "REALEFLOW_API_KEY", "BROKERKIT_API_KEY", "BROKERKIT_BASE_URL"):
        assert f"export {var}=" in out
    assert proc.returncode == 0
    # The whole output pastes into a shell as it is: comments and exports only.
    for line in out.splitlines():
        assert not line.strip() or line.startswith("#") or line.startswith("export "), line
    shell = subprocess.run(["bash", "-c", out + "\necho \"$REI_API_KEY\""], capture_output=True, text=True)
    assert shell.returncode == 0 and shell.stderr == "" and shell.stdout.strip().startswith("rei_"), shell
