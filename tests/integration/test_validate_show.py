"""Issue 21 part 3: ``validate --show N`` prints N records side by side — as the source
gave them and as they will be sent — in 80 columns, and puts them in the HTML report.
Through the real CLI against the Realvolve simulator (nested records) into REI."""
from __future__ import annotations

import html

import orjson

from migrator.preview import width
from tests.integration.harness import ThreadPair

N = 12


def squeeze(text: str) -> str:
    return "".join(text.split())


def test_validate_show_prints_records_as_read_and_as_sent_in_80_columns(tmp_path, monkeypatch, capsys):
    with ThreadPair(tmp_path, "realvolve", "rei", n=N) as pair:
        code, err = pair.main(monkeypatch, capsys, "validate", "--show", "3", "--max-invalid", str(N))
        assert code == 0, err
        records = pair.call(lambda: pair.source_sim.inspect_records("contacts"))
    report = orjson.loads((tmp_path / "reports" / "realvolve-to-rei-validate-report.json").read_bytes())
    (stream,) = report["streams"]
    preview = stream["preview"]
    assert [p["source_id"] for p in preview] == [str(r["id"]) for r in records[:3]]

    lines = err.splitlines()
    heads = [i for i, line in enumerate(lines) if line.startswith("── contacts ")]
    assert len(heads) == 3
    assert all(width(line) <= 80 for line in lines[heads[0]:heads[-1] + 20]), "wider than 80 columns"
    ends = heads[1:] + [next(j for j in range(heads[-1], len(lines)) if not lines[j].strip())]
    for i, end, (p, record) in zip(heads, ends, zip(preview, records)):
        assert f"source id {record['id']}" in lines[i]
        assert lines[i + 1].startswith("as read") and "as sent to rei" in lines[i + 1]
        # each column read back whole (a long line goes on, indented, on the next)
        left = squeeze("".join(line.split(" │")[0] for line in lines[i + 2:end]))
        right = squeeze("".join(line.split(" │", 1)[1] for line in lines[i + 2:end] if " │" in line))
        # the source record as read, nested keys dotted; the mapped one as sent
        assert squeeze(f"first_name: {record['first_name']}") in left
        email = record["email_addresses"][0]["email_address"] if record.get("email_addresses") else None
        if email:
            assert squeeze(f"email_addresses[0].email_address: {email}") in left
        for key, value in (p["sent"] or {}).items():
            if isinstance(value, str) and value:
                assert squeeze(f"{key}: {value}") in right
        assert p["source"]["first_name"] == record["first_name"]

    # the same records in the HTML report, escaped
    page = (tmp_path / "reports" / "realvolve-to-rei-validate-report.html").read_text(encoding="utf-8")
    assert page.count('class="pv"') == 3
    for p in preview:
        assert f'data-source-id="{html.escape(p["source_id"])}"' in page
        assert f"<td>{html.escape(str(p['source']['first_name']))}</td>" in page


def test_show_is_a_count(tmp_path, monkeypatch, capsys):
    with ThreadPair(tmp_path, "realvolve", "rei", n=2) as pair:
        from migrator.cli import main
        for bad in ("-1", "three"):
            try:
                main(["validate", "--show", bad, str(tmp_path / "job.yaml")])
            except SystemExit as e:
                assert e.code == 2
            else:
                raise AssertionError("accepted --show " + bad)
            assert "--show" in capsys.readouterr().err
        code, err = pair.main(monkeypatch, capsys, "validate", "--max-invalid", "2")
        assert code == 0 and "── contacts" not in err   # without --show, no preview
