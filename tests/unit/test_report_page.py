"""The HTML report's pure parts: every user text escaped, any report dict rendered, the
chart bucketed for a long run; the preview's columns; the per-second request series."""
from __future__ import annotations

import stat
from collections import Counter

from hypothesis import given, settings, strategies as st

from migrator.http import RequestStats
from migrator.limits import RateLimit
from migrator.preview import side_by_side, width
from migrator.report_html import MAX_BARS, chart, render, request_rows, write_html

EVIL = "<script>alert(1)</script>"
ATTR = '"><img src=x onerror=alert(1)>'


def hostile_report() -> dict:
    """A report whose every user-controlled text is markup."""
    return {
        "job": EVIL, "mode": "run", "source": "csv", "target": "rei", "run": 2,
        "started": "2026-12-06T10:00:00.000+00:00", "ended": "2026-12-06T10:00:09.000+00:00",
        "seconds": 9.0, "interrupted": False, "stopped": EVIL,
        "streams": [{
            "stream": ATTR, "target_stream": EVIL, "total": 3, "notice": EVIL,
            "counts": {"read": 3, "done": 1, "failed": 2, "skipped": 0},
            "fill": {"scope": "all", "records": 3,
                     "fields": [{"field": ATTR, "path": EVIL, "filled": 2, "read": 3, "rate": 0.6667}],
                     "written": {"records": 1, "fields": {ATTR: 1}}},
            "failures": [{"reason": f"email: format — {EVIL}", "count": 2, "examples": [ATTR, "7"]}],
            "preview": [{"source_id": ATTR, "source": {EVIL: EVIL, "n": {"x": [ATTR]}},
                         "sent": {"firstName": EVIL}, "note": f"invalid: {EVIL}"}],
        }],
        "requests": {"source": {}, "target": {
            "requests": {EVIL: 4}, "retries": {ATTR: 1},
            "timeline": {"start": 1, "sent": [[0, 2], [3, 2]], "429": [[3, 1]], "quota_waits": [[1, 2.5]],
                         "limit": {"requests": 10, "per": 1.0}}}},
        "plan": {"note": EVIL},
        "merges": [{"stream": ATTR, "target_id": EVIL, "source_ids": [ATTR, "9"], "actions": [EVIL, "matched"],
                    "keys": [f"email={EVIL}"], "existing": False,
                    "placed": {ATTR: [{"field": EVIL, "value": ATTR, "to": EVIL, "how": "line"}]}}],
        "merges_refused": [{"stream": "c", "source_id": ATTR, "field": EVIL, "reason": EVIL}],
        "uncertain": [{"stream": "c", "source_id": EVIL, "status": "inflight", "target_id": ATTR, "note": EVIL}],
    }


def test_every_user_text_is_escaped(tmp_path):
    failures = tmp_path / "f.csv"
    failures.write_text(f"stream,source_id,name,email,field,rule,value,message\n"
                        f'"{ATTR.replace(chr(34), chr(34) * 2)}","{ATTR.replace(chr(34), chr(34) * 2)}",{EVIL},,email,format,{EVIL},x\n')
    page = render(hostile_report(), failures)
    assert "<script" not in page and "<img" not in page and "onerror=alert(1)>" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 15   # shown, as text, in every section
    for section in ("counts", "preview", "failures", "merges", "fill", "requests", "pace", "refused", "uncertain"):
        assert f'<section id="{section}">' in page, section


@given(st.text(max_size=40), st.text(max_size=40))
@settings(max_examples=60, deadline=None)
def test_any_name_and_value_stay_text(name, value):
    r = hostile_report()
    r["streams"][0]["preview"][0]["source"] = {name: value}
    r["streams"][0]["failures"][0]["reason"] = name
    page = render(r)
    body = page.split("</style>", 1)[1]
    assert "<script" not in body.lower() and "<img" not in body.lower()


def test_the_page_is_private(tmp_path):
    out = write_html(tmp_path / "r.html", hostile_report(), None, tmp_path / "latest.html")
    for p in (out, tmp_path / "latest.html"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
        assert p.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_a_minimal_report_renders():
    page = render({"mode": "verify", "job": "j", "streams": []})
    assert page.startswith("<!DOCTYPE html>") and "verify j" in page
    assert "<section" not in page


def test_request_rows_from_each_kind_of_report():
    actual = {"source": {"requests": {"page": 3}}, "target": {"requests": {"create": 7, "tags": 1}}}
    run = {"source": "realvolve", "target": "rei", "requests": actual,
           "plan": {"requests": {"source": {"system": "realvolve", "kinds": {"page": {"planned": 3, "actual": 3}}},
                                 "target": {"system": "rei", "kinds": {"create": {"planned": 6, "actual": 7}}}}}}
    assert request_rows(run) == [("source", "realvolve", "page", 3, 3), ("target", "rei", "create", 6, 7)]
    validate = {"source": "realvolve", "target": "rei", "requests": {"source": {"requests": {"page": 3}}},
                "plan": {"requests": {"source": {"page": 3}, "target": {"create": 6}}}}
    assert request_rows(validate) == [("source", "realvolve", "page", 3, 3), ("target", "rei", "create", 6, None)]
    retry = {"source": "realvolve", "target": "rei", "requests": actual, "plan": None}
    assert request_rows(retry) == [("source", "realvolve", "page", None, 3), ("target", "rei", "create", None, 7),
                                   ("target", "rei", "tags", None, 1)]


def test_a_long_run_is_bucketed_and_its_figures_are_exact():
    seconds = 10 * 3600
    tl = {"start": 0, "sent": [[t, 3 + t % 2] for t in range(seconds)], "429": [[100, 2], [7000, 1]],
          "quota_waits": [[200.0, 3800.0]], "limit": {"requests": 200, "per": 60.0}}
    svg = chart(tl, "rei", "target")
    assert svg.count("M") < 4 * MAX_BARS + 50   # one bar per bucket, not per second
    assert f'data-n="requests">{sum(3 + t % 2 for t in range(seconds)):,}<' in svg
    assert 'data-n="429">3<' in svg and 'data-n="quota_waits">1<' in svg and 'data-n="peak">4<' in svg
    assert "each bar averages 50 s" in svg and "60 s window" in svg


def test_request_stats_count_per_second_and_give_a_timeline():
    stats = RequestStats(limit=RateLimit(10, 1.0))
    assert "timeline" not in stats.as_dict()   # nothing sent: the report holds no chart
    stats.sent.update({1000: 4, 1002: 1})
    stats.limited[1002] += 1
    stats.waits.append((1000.5, 1001.75))
    assert stats.as_dict()["timeline"] == {"start": 1000, "sent": [[0, 4], [2, 1]], "429": [[2, 1]],
                                           "quota_waits": [[0.5, 1.75]], "limit": {"requests": 10, "per": 1.0}}
    assert isinstance(stats.sent, Counter)


def test_preview_columns_fit_and_hold_everything():
    p = [{"source_id": "1", "source": {"name": "山田太郎" * 8, "emails": [{"a": "x@y.z"}], "blank": ""},
          "sent": {"firstName": "山田", "notes": "word " * 30}, "note": "invalid: " + "z" * 100}]
    for cols in (80, 50):
        lines = side_by_side(p, "contacts", "rei", cols=cols)
        assert all(width(line) <= cols for line in lines), cols
        text = "".join("".join(lines).split())
        left = "".join("".join(line.split(" │")[0] for line in lines[2:]).split())
        assert "山田太郎" * 8 in left and "emails[0].a:x@y.z" in text
        assert "empty:blank" in text and "z" * 100 in text
    assert side_by_side([{"source_id": "2", "source": {"a": "\x1b[31mred"}, "sent": None, "note": None}],
                        "c", "rei")[2].find("\x1b") == -1   # a terminal escape in the data is not sent to it


def test_preview_hides_a_value_named_like_a_secret():
    lines = side_by_side([{"source_id": "1", "source": {"portal": {"password": "hunter2"}, "name": "Ann"},
                           "sent": {"firstName": "Ann"}, "note": None}], "c", "rei")
    text = "\n".join(lines)
    assert "hunter2" not in text and "portal.password: (hidden)" in text and "name: Ann" in text
