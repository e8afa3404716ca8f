"""No credential reaches a log line, a report, the failures CSV, the checkpoint or an
error message — in a successful run, a run with failures, and a refused one. Files that
hold PII are created 0600; plain http to a remote host is refused unless allowed."""
import os
import stat
import subprocess

import pytest

from tests.integration.harness import CREDENTIALS, ThreadPair


def _everything_written(tmp_path) -> bytes:
    out = b""
    for p in tmp_path.rglob("*"):
        if p.is_file() and p.suffix != ".csv" or p.name.endswith("failures.csv"):
            out += p.read_bytes()
    return out


@pytest.mark.parametrize("source,target", [("realvolve", "rei"), ("spark", "realvolve")])
def test_credentials_never_written_anywhere(tmp_path, source, target):
    with ThreadPair(tmp_path, source, target, n=60) as pair:
        secrets = [pair.env[v] for s in (source, target) for v in CREDENTIALS[s].values()]
        assert all(len(s) >= 16 for s in secrets)
        runs = [subprocess.run(pair.cli(cmd), env=pair.subprocess_env(), capture_output=True, text=True,
                               timeout=120) for cmd in ("validate", "run", "status", "retry")]
        bad_env = {**pair.subprocess_env(), **{v: "wrong-" + pair.env[v] for v in CREDENTIALS[target].values()}}
        refused = subprocess.run(pair.cli("run"), env=bad_env, capture_output=True, text=True, timeout=120)
        assert refused.returncode == 2
        logs = "".join(r.stdout + r.stderr for r in runs + [refused])
        files = _everything_written(tmp_path)
        for secret in secrets:
            assert secret not in logs, "a credential reached the terminal"
            assert secret.encode() not in files, "a credential reached a file"
            assert ("wrong-" + secret) not in refused.stderr
        for p in [tmp_path / "ckpt.sqlite", *(tmp_path / "reports").iterdir()]:
            assert stat.S_IMODE(os.stat(p).st_mode) == 0o600, p


def test_plain_http_to_a_remote_host_needs_an_explicit_yes(tmp_path):
    from migrator.errors import ConfigError
    from migrator.http import check_base_url
    with pytest.raises(ConfigError, match="plain http"):
        check_base_url("rei", "http://rest.reisoftware.com")
    assert check_base_url("rei", "http://rest.reisoftware.com", allow_insecure_http=True)
    assert check_base_url("rei", "http://127.0.0.1:8080/")
    assert check_base_url("rei", "http://[::1]:8080")
    assert check_base_url("rei", "https://rest.reisoftware.com")
