"""Issue 21 part 2: the HTML report of a sandbox run, opened in a real browser.

Headless Chromium (Debian's ``chromium``; ``.ci/run`` installs it) loads the page that
``run`` wrote, its DOM is dumped and parsed, and the numbers it shows are checked
against the JSON report beside it. A net log proves the page asked for nothing over the
network; a screenshot is kept in the test's folder. A contact named
``<script>alert(1)</script>`` shows as text, never as markup.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import stat
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import orjson
import pytest

from migrator.report_html import CSP
from migrator.sandbox.base import Faults
from tests.integration.harness import ThreadPair

N = 24
EVIL = "<script>alert(1)</script>"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-default-apps", "--disable-extensions", "--mute-audio",
                  # nothing leaves this machine, whatever the browser itself would fetch
                  "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no chromium on this machine (.ci/run installs Debian's chromium package)")


def browse(page: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    profile = out / f"profile{len(list(out.glob('profile*')))}"
    return subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()],
                          capture_output=True, text=True, timeout=120)


def page_requests(netlog: Path) -> set[str]:
    """The URLs the *page* asked for, from a Chromium net log: requests with an initiator
    (the page's origin; a file's is ``null``). The browser's own background requests
    (updates, time) have none ("not an origin") and are left out."""
    log = json.loads(netlog.read_text())
    urls: dict[int, str] = {}
    paged: set[int] = set()
    for ev in log.get("events", []):
        params, source = ev.get("params") or {}, ev["source"]["id"]
        if isinstance(params.get("url"), str):
            urls.setdefault(source, params["url"])
        if "initiator" in params and params["initiator"] != "not an origin":
            paged.add(source)
    return {urls[s] for s in paged if s in urls}


class Dom(HTMLParser):
    """The dumped DOM as plain data: the text of each element carrying a ``data-*``
    attribute, with its ancestors' ``data-*`` attributes, and every tag name seen."""

    VOID = {"meta", "br", "img", "link", "input", "hr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, dict[str, str], int | None]] = []   # tag, its data-*, index in found
        self.found: list[tuple[dict[str, str], list[str]]] = []   # (data-* with ancestors', text)
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag in self.VOID:
            return
        data = {k: v or "" for k, v in attrs if k.startswith("data-")}
        at = None
        if data:
            inherited = {k: v for _, a, _ in self.stack for k, v in a.items()}
            self.found.append(({**inherited, **data}, []))
            at = len(self.found) - 1
        self.stack.append((tag, data, at))

    def handle_endtag(self, tag):
        if any(t == tag for t, _, _ in self.stack):
            while self.stack and self.stack.pop()[0] != tag:
                pass

    def handle_data(self, data):
        self.text.append(data)
        at = next((i for _, _, i in reversed(self.stack) if i is not None), None)
        if at is not None:
            self.found[at][1].append(data)

    def values(self, **where: str) -> list[str]:
        return ["".join(parts).strip() for attrs, parts in self.found
                if all(attrs.get(f"data-{k.replace('_', '-')}") == v for k, v in where.items())]

    def number(self, **where: str) -> int:
        (text,) = self.values(**where)
        return int(text.replace(",", ""))


def test_the_run_report_opens_in_a_browser_shows_its_numbers_and_loads_nothing(tmp_path):
    out = tmp_path / "browser"
    out.mkdir()
    # Bursts of 429s, and a daily quota of 8 in a "day" of 1.5 seconds: the chart marks both.
    with ThreadPair(tmp_path, "csv", "rei", n=N, concurrency=8, faults=Faults(burst_429_rate=0.15, burst_len=2, seed=3),
                    target_sim={"daily_quota": 8, "day_seconds": 1.5},
                    target_settings={"rate_limit": "{requests: 10, per: 1}"}) as pair:
        export = tmp_path / "export.csv"
        rows = list(csv.reader(export.open(newline="", encoding="utf-8")))
        rows[1][rows[0].index("First Name")] = EVIL      # and an e-mail that fails: the name is shown
        rows[1][rows[0].index("Email")] = "not an e-mail"
        with export.open("w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows(rows)
        evil_id = rows[1][rows[0].index("id")]
        code = subprocess.run(pair.cli("run"), capture_output=True, text=True, timeout=180,
                              env=pair.subprocess_env(), cwd=tmp_path)
        assert code.returncode in (0, 1), code.stderr
    reports = tmp_path / "reports"
    report = orjson.loads((reports / "csv-to-rei-run-1-report.json").read_bytes())
    page = reports / "csv-to-rei-run-1-report.html"
    assert stat.S_IMODE(page.stat().st_mode) == 0o600
    assert stat.S_IMODE((reports / "csv-to-rei-run-report.html").stat().st_mode) == 0o600
    assert f"page:     {page.relative_to(tmp_path)}" in code.stderr or str(page) in code.stderr

    # Nothing can load: no script, no link, no src/href, no url(), a strict CSP.
    text = page.read_text(encoding="utf-8")
    assert f'<meta http-equiv="Content-Security-Policy" content="{CSP}">' in text
    for needle in ("<script", "<link", " src=", " href=", "url(", "@import", "http://", "https://"):
        assert needle not in text.lower(), needle
    assert EVIL not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text

    netlog = out / "net.json"
    dumped = browse(page, out, "--dump-dom", f"--log-net-log={netlog}")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = Dom()
    dom.feed(dumped.stdout)
    assert "script" not in dom.tags and "svg" in dom.tags
    assert page_requests(netlog) == set()
    # the net log does show what a page asks for: the same check on a page that loads an image
    control, control_log = out / "control.html", out / "control-net.json"
    control.write_text('<!DOCTYPE html><p>x</p><img src="http://127.0.0.1:9/x.png">')
    browse(control, out, "--dump-dom", f"--log-net-log={control_log}")
    assert page_requests(control_log) == {"http://127.0.0.1:9/x.png"}

    # The numbers it shows are the report's.
    (stream,) = report["streams"]
    c = stream["counts"]
    for key in ("read", "done", "failed", "skipped"):
        assert dom.number(stream="contacts", n=key) == c.get(key, 0), key
    assert dom.number(total="done") == c["done"]
    shown = {dom.values(reason=f["reason"], n="count")[0]: f for f in stream["failures"]}
    assert sorted(int(k.replace(",", "")) for k in shown) == sorted(f["count"] for f in stream["failures"])
    target = report["requests"]["target"]
    for kind, n in target["requests"].items():
        assert dom.number(role="target", kind=kind, n="actual") == n
    tl = target["timeline"]
    assert dom.number(role="target", system="rei", n="requests") == sum(n for _, n in tl["sent"]) == sum(
        target["requests"].values())
    assert dom.number(role="target", system="rei", n="429") == target["retries"]["rate_limited"] > 0
    assert dom.number(role="target", system="rei", n="quota_waits") == len(tl["quota_waits"]) > 0
    for row in stream["fill"]["fields"]:
        assert any(f"{row['filled']} / {row['read']}" in v for v in dom.values(stream="contacts", field=row["field"]))

    # The contact named like a script is text: shown as its name beside its id.
    assert any(evil_id in v and EVIL in v for v in dom.values(stream="contacts", reason=next(
        f["reason"] for f in stream["failures"] if evil_id in f["examples"])))

    shot = out / "report.png"
    shoot = browse(page, out, f"--screenshot={shot}", "--window-size=1100,2400", "--hide-scrollbars")
    assert shoot.returncode == 0 and shot.stat().st_size > 10_000, shoot.stderr[-2000:]
    phone = out / "report-phone.png"
    browse(page, out, f"--screenshot={phone}", "--window-size=390,2400", "--hide-scrollbars")
    assert phone.exists()
    if os.environ.get("MIGRATOR_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["MIGRATOR_KEEP_SCREENSHOT"])
        shutil.copy(phone, Path(os.environ["MIGRATOR_KEEP_SCREENSHOT"]).with_suffix(".phone.png"))


def test_the_verify_page_shows_what_the_target_did_not_keep(tmp_path):
    """``verify`` writes its page beside its JSON report: the browser shows the counts per
    stream and each drifted field, as the JSON has them, and loads nothing."""
    out = tmp_path / "browser"
    out.mkdir()
    with ThreadPair(tmp_path, "csv", "rei", n=N, concurrency=4, faults=Faults(keep_less_rate=0.3, seed=5)) as pair:
        ran = subprocess.run(pair.cli("run"), capture_output=True, text=True, timeout=180,
                             env=pair.subprocess_env(), cwd=tmp_path)
        assert ran.returncode in (0, 1), ran.stderr
        checked = subprocess.run(pair.cli("verify"), capture_output=True, text=True, timeout=180,
                                 env=pair.subprocess_env(), cwd=tmp_path)
        assert checked.returncode == 1, checked.stderr
    report = orjson.loads((tmp_path / "reports" / "csv-to-rei-verify-report.json").read_bytes())
    page = tmp_path / "reports" / "csv-to-rei-verify-report.html"
    assert stat.S_IMODE(page.stat().st_mode) == 0o600
    netlog = out / "net.json"
    dumped = browse(page, out, "--dump-dom", f"--log-net-log={netlog}")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    assert page_requests(netlog) == set()
    dom = Dom()
    dom.feed(dumped.stdout)
    (stream,) = report["streams"]
    assert stream["drifted"] + stream["missing"] > 0
    for key in ("records", "equal", "drifted", "missing", "held_twice", "unchecked"):
        assert dom.number(stream="contacts", n=key) == stream[key], key
    assert dom.values(verdict="not")
    text = " ".join(dom.text)
    for d in stream["drift"]:
        assert d["source_id"] in text and d["field"] in text
