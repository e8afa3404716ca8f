"""Issue 15 part 6 (API half): a mapped path that names no key of the source's records is
caught by ``validate`` (exit 1, with a did-you-mean among the keys the source returned),
and ``run`` warns of it at its first page. Against the Realvolve simulator, through the
real CLI and engine.
"""
from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from migrator.mapping.fill import dead_lines
from tests.integration.harness import Pair, ThreadPair, mapping_path

N = 30


def typo_mapping(tmp: Path) -> Path:
    text = mapping_path("realvolve", "rei").read_text()
    for right, wrong in (("path: first_name,", "path: frist_name,"),
                         ('"email_addresses[0].email_address"', '"email_addresses[0].emial_address"')):
        assert right in text
        text = text.replace(right, wrong, 1)
    out = tmp / "typo.yaml"
    out.write_text(text)
    return out


def cli(pair: ThreadPair, monkeypatch, capsys, *args: str) -> tuple[int, str]:
    return pair.main(monkeypatch, capsys, *args)


def report(pair: Pair, mode: str) -> dict:
    return orjson.loads((pair.tmp / "reports" / f"realvolve-to-rei-{mode}-report.json").read_bytes())


def test_validate_fails_on_a_typo_with_did_you_mean(tmp_path, monkeypatch, capsys):
    with ThreadPair(tmp_path, "realvolve", "rei", n=N, mapping=typo_mapping(tmp_path)) as pair:
        # --max-invalid is about invalid records; a path that names nothing fails regardless
        code, err = cli(pair, monkeypatch, capsys, "validate", "--max-invalid", str(N))
        assert code == 1, err
        assert (f"contacts.firstName: path 'frist_name' gave no value in any of {N} records "
                "(did you mean 'first_name'?)") in err
        assert (f"contacts.email: path 'email_addresses[0].emial_address' gave no value in any of {N} "
                "records (did you mean 'email_addresses[0].email_address'?)") in err
        assert "(validate exits 1)" in err
        fill = report(pair, "validate")["streams"][0]["fill"]
        assert fill["scope"] == "all" and fill["records"] == N
        rows = {r["path"]: r for r in fill["fields"]}
        assert rows["frist_name"] == {"field": "firstName", "path": "frist_name", "filled": 0, "read": N,
                                      "rate": 0.0, "status": "missing", "did_you_mean": "first_name"}
        assert rows["last_name"]["filled"] > 0

        # run: warned at the first page, and said again in its summary and report
        code, err = cli(pair, monkeypatch, capsys, "run")
        assert code in (0, 1), err
        assert err.count("warning: contacts.firstName: path 'frist_name'") == 1
        assert "(on the first page; the run went on)" in err
        fill = report(pair, "run")["streams"][0]["fill"]
        assert fill["scope"] == "first page" and 0 < fill["records"] < N
        assert {r["path"]: r["status"] for r in fill["fields"] if not r["filled"]}["frist_name"] == "missing"


def test_validate_prints_fill_rates_and_passes_with_the_shipped_mapping(tmp_path, monkeypatch, capsys):
    with ThreadPair(tmp_path, "realvolve", "rei", n=N) as pair:
        code, err = cli(pair, monkeypatch, capsys, "validate", "--max-invalid", str(N))
        assert code == 0, err
        assert "fill rates:" in err and "source path" in err and "filled/read" in err
        assert "gave no value" not in err or "not an error" in err
        line = next(l for l in err.splitlines() if " first_name " in l and "firstName" in l)
        assert f"/{N}" in line and "%" in line
        fill = report(pair, "validate")["streams"][0]["fill"]
        assert all(r.get("status") != "missing" for r in fill["fields"])


async def test_run_warns_at_its_first_page_and_goes_on(tmp_path):
    lines: list[str] = []
    async with Pair(tmp_path, "realvolve", "rei", n=N, mapping=typo_mapping(tmp_path)) as pair:
        outcome = await pair.run("run", out=lines.append)
    warnings = [l for l in lines if l.startswith("warning: ")]
    assert any(l.startswith("warning: contacts.firstName: path 'frist_name' gave no value in any of "
                            "the first page's") and "(did you mean 'first_name'?)" in l
               and l.endswith("the run goes on") for l in warnings), lines
    assert len(warnings) == 2, warnings   # once, at the first page: not again for later pages
    # it went on through every page; the count is the first page's (the simulator pages by 10)
    (result,) = outcome.streams
    assert result.counts["read"] == N and result.counts["done"] > 0
    assert result.fill is not None and result.fill.checked
    assert 0 < result.fill.records < N


SHIPPED = sorted(p.stem for p in mapping_path("x", "y").parent.glob("*-to-*.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
async def test_no_shipped_mapping_names_a_key_the_simulator_lacks(tmp_path, name):
    """Every path of every shipped mapping names a key its source's records have (the
    simulators follow the vendor docs, so a miss here is a mapping bug)."""
    source, target = name.split("-to-")
    async with Pair(tmp_path, source, target, n=40, mapping=mapping_path(source, target)) as pair:
        outcome = await pair.run("validate")
    report = {"streams": [{"stream": s.stream, "fill": s.fill.to_dict("all")} for s in outcome.streams]}
    assert all(s.fill.records for s in outcome.streams)
    assert dead_lines(report) == []
