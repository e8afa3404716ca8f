"""The report as a page a person reads and hands on: ``<report>.html`` beside the JSON.

One self-contained file: inline CSS and SVG, no script, no font, no image, nothing
fetched — a strict Content-Security-Policy says so to the browser as well. It reads on a
phone (tables scroll sideways inside their section, the preview's columns stack) and
prints (no backgrounds needed, sections kept whole). Everything shown from a report is
user data — names, values, reasons quoting values — so every text goes through
``html.escape``; nothing is ever inserted unescaped.

``render`` takes any report dict (run, retry, validate, verify): a section whose data is
not in the report is left out.
"""
from __future__ import annotations

import csv
import html
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

from .preview import NOTHING, shown
from .private import private_open

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
MAX_ROWS = 200        # merges, uncertain, refused: the rest is in the JSON report
MAX_REASONS = 50      # failure reasons per stream
MAX_BARS = 720        # chart columns; a longer run is bucketed

CSS = """
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1d2430;
background:#fff;margin:0 auto;max-width:1100px;padding:12px 14px 40px}
h1{font-size:1.35rem;margin:.4rem 0}h2{font-size:1.12rem;margin:1.8rem 0 .5rem;padding-bottom:.2rem;
border-bottom:2px solid #d8dde6}h3{font-size:1rem;margin:1.1rem 0 .4rem}
.meta{color:#4a5568;margin:.2rem 0}.warn{color:#9a3412;font-weight:600}.muted{color:#667085}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(8.5rem,1fr));gap:.5rem;margin:.8rem 0}
.card{border:1px solid #d8dde6;border-radius:6px;padding:.45rem .6rem}
.card b{display:block;font-size:1.25rem;font-variant-numeric:tabular-nums}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;width:100%;font-size:.88rem}
th,td{padding:.28rem .5rem;border-bottom:1px solid #e6e9ef;text-align:left;vertical-align:top}
th{background:#f3f5f9;font-weight:600}
.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td,code{overflow-wrap:break-word}code{font:.85em ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.rate{display:inline-block;width:4.5rem;height:.55rem;background:#e5e8ee;margin-left:.35rem;
vertical-align:middle;border:1px solid #cfd5df}.rate i{display:block;height:100%;background:#2f6fdb}
ul.ex{margin:0;padding-left:1rem}
.chart svg{width:100%;height:auto;display:block;max-height:320px}
.legend span{display:inline-block;margin-right:1rem;white-space:nowrap}
.sw{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem;vertical-align:-1px}
.pv{display:grid;grid-template-columns:1fr 1fr;gap:.8rem;margin-bottom:1rem}
.pv table{font-size:.82rem}.pv th{width:40%}
@media (max-width:640px){body{font-size:14px;padding:8px}.pv{grid-template-columns:1fr}
table{font-size:.8rem}th,td{padding:.22rem .35rem}.rate{display:none}}
@media print{body{max-width:none;font-size:9.5pt;padding:0}.scroll{overflow:visible}
section,.pv,tr,.chart{break-inside:avoid}h2,h3{break-after:avoid}th{background:none}
.card{border-color:#999}.rate{border-color:#666}.rate i{background:#444}}
"""

COUNT_LABELS = {
    "validate": [("read", "read"), ("valid", "valid"), ("invalid", "invalid"), ("skipped", "skipped"),
                 ("duplicate_source_id", "duplicate ids")],
    "write": [("read", "read"), ("done", "written"), ("failed", "failed"), ("skipped", "skipped"),
              ("created", "created"), ("matched", "matched existing"), ("updated", "updated"),
              ("already_settled", "already done"), ("previously_failed", "failed earlier"),
              ("reconciled", "reconciled"), ("uncertain", "uncertain"),
              ("duplicate_source_id", "duplicate ids")],
}
ALWAYS = {"read", "valid", "invalid", "done", "failed", "skipped"}


def e(value: Any) -> str:
    """Any value as escaped text (quotes too: safe in an attribute)."""
    return html.escape("" if value is None else str(value), quote=True)


def num(n: Any) -> str:
    return f"{n:,}" if isinstance(n, int) else e(n)


def html_path(json_path: Path) -> Path:
    """``…-report.json`` → ``…-report.html``."""
    return json_path.with_suffix(".html")


def write_html(path: Path, report: Mapping[str, Any], failures_csv: Path | None = None,
               *copies: Path) -> Path:
    """Write the page, rendered once, to ``path`` and any ``copies`` (0600, like every
    report: it holds names and values)."""
    text = render(report, failures_csv)
    for out in (path, *copies):
        with private_open(out, "w") as fh:  # type: ignore[call-overload]
            fh.truncate(0)
            fh.write(text)
    return path


def render(report: Mapping[str, Any], failures_csv: Path | None = None) -> str:
    """The whole page. ``failures_csv`` (the report's failures file) gives each example
    failure its name and offending value; without it the examples are source ids."""
    details = _example_details(failures_csv, report) if failures_csv else {}
    title = f"{report.get('mode', 'report')} {report.get('job', '')}: {report.get('source', '')} → {report.get('target', '')}"
    parts = [
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>{e(title)}</title><style>{CSS}</style></head><body>",
        *((_verify(report), _requests(_verify_requests(report))) if report.get("mode") == "verify" else
          (_header(report, title), _counts(report))),
        _preview(report),
        _failures(report, details),
        _fill(report),
        _requests(report),
        _charts(report),
        _merges(report),   # long lists last: the figures above stay on the first screens
        _listed(report),
        "</body></html>\n",
    ]
    return "".join(p for p in parts if p)


# ---- sections --------------------------------------------------------------------------


def _header(r: Mapping[str, Any], title: str) -> str:
    run = f" · run {num(r['run'])}" if r.get("run") else ""
    out = [f"<header><h1>{e(title)}</h1>",
           f'<p class="meta">started {e(r.get("started"))} · ended {e(r.get("ended"))} · '
           f'<span data-n="seconds">{e(r.get("seconds"))}</span> s{run}</p>']
    if r.get("interrupted"):
        out.append('<p class="warn">Interrupted: running the same command again resumes.</p>')
    if r.get("stopped"):
        out.append(f'<p class="warn">Stopped: {e(r["stopped"])}</p>')
    streams = r.get("streams") or []
    total = _total(streams)
    cards = [("read", "records read")]
    if r.get("mode") == "validate":
        cards += [("valid", "valid"), ("invalid", "invalid")]
    else:
        cards += [("done", "written"), ("failed", "failed")]
    cards.append(("skipped", "skipped"))
    out.append('<div class="cards">' + "".join(
        f'<div class="card"><b data-total="{k}">{num(total.get(k, 0))}</b>{e(label)}</div>'
        for k, label in cards) + "</div>")
    out.append('<p class="muted">This report holds people\'s names and values from the data: '
               "share it as you would the data itself.</p></header>")
    return "".join(out)


def _total(streams: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for s in streams:
        for k, v in (s.get("counts") or {}).items():
            if isinstance(v, int):
                total[k] = total.get(k, 0) + v
    return total


def _table(head: list[tuple[str, bool]], rows: Iterable[str], attrs: str = "") -> str:
    """A table in a sideways-scrolling box; ``head``: (label, numeric)."""
    th = "".join(f'<th{" class=n" if n else ""}>{e(h)}</th>' for h, n in head)
    return f'<div class="scroll"><table{attrs}><thead><tr>{th}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def _counts(r: Mapping[str, Any]) -> str:
    streams = r.get("streams") or []
    if not streams:
        return ""
    labels = COUNT_LABELS["validate" if r.get("mode") == "validate" else "write"]
    used = [(k, label) for k, label in labels
            if k in ALWAYS or any((s.get("counts") or {}).get(k) for s in streams)]
    rows = []
    for s in streams:
        c = s.get("counts") or {}
        name = s["stream"] + (f" → {s['target_stream']}" if s.get("target_stream") not in (None, s["stream"]) else "")
        if c.get("stream_already_finished"):
            cells = f'<td colspan="{len(used)}">already finished in an earlier run</td>'
        else:
            cells = "".join(f'<td class="n" data-n="{e(k)}">{num(c.get(k, 0))}</td>' for k, _ in used)
        rows.append(f'<tr data-stream="{e(s["stream"])}"><td>{e(name)}</td>{cells}</tr>')
        if s.get("notice"):
            rows.append(f'<tr><td colspan="{len(used) + 1}" class="muted">note: {e(s["notice"])}</td></tr>')
    return ('<section id="counts"><h2>Records per stream</h2>'
            + _table([("stream", False)] + [(label, True) for _, label in used], rows) + "</section>")


def _example_details(path: Path, report: Mapping[str, Any]) -> dict[tuple[str, str], list[list[str]]]:
    """(stream, source id) → its rows of the failures file (name, field, value…), for the
    example ids only: one pass over the file, whatever its size."""
    wanted = {(s["stream"], sid) for s in report.get("streams") or ()
              for f in s.get("failures") or () for sid in f.get("examples") or ()}
    found: dict[tuple[str, str], list[list[str]]] = {}
    if not wanted:
        return found
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = csv.reader(fh)
            head = next(rows, None)
            if not head:
                return found
            at = {k: i for i, k in enumerate(head)}
            for row in rows:
                key = (row[at["stream"]], row[at["source_id"]]) if len(row) == len(head) else None
                if key in wanted:
                    found.setdefault(key, []).append(
                        [row[at[k]] if k in at else "" for k in ("name", "email", "field", "value")])
    except (OSError, KeyError, csv.Error, UnicodeDecodeError):
        return found   # examples then show their ids only
    return found


def _failures(r: Mapping[str, Any], details: Mapping[tuple[str, str], list[list[str]]]) -> str:
    blocks = []
    for s in r.get("streams") or ():
        failures = s.get("failures") or []
        if not failures:
            continue
        rows = []
        for f in failures[:MAX_REASONS]:
            field = f["reason"].split(":", 1)[0]
            items = []
            for sid in f.get("examples") or []:
                rows_of = details.get((s["stream"], sid)) or []
                d = next((x for x in rows_of if x[2] == field), rows_of[0] if rows_of else None)
                who = ""
                if d is not None:
                    name, email, _, value = d
                    bits = [e(x) for x in (name or email,) if x]
                    if value:
                        bits.append(f"value <code>{e(value)}</code>")
                    who = " — " + ", ".join(bits) if bits else ""
                items.append(f"<li><code>{e(sid)}</code>{who}</li>")
            rows.append(f'<tr data-reason="{e(f["reason"])}"><td class="n" data-n="count">{num(f["count"])}</td>'
                        f'<td>{e(f["reason"])}</td><td><ul class="ex">{"".join(items)}</ul></td></tr>')
        more = (f'<p class="muted">… {len(failures) - MAX_REASONS:,} more reasons in the JSON report.</p>'
                if len(failures) > MAX_REASONS else "")
        blocks.append(f'<h3>{e(s["stream"])}</h3>'
                      + _table([("records", True), ("reason", False), ("examples (source id — name, value)", False)],
                               rows, f' data-stream="{e(s["stream"])}"') + more)
    if not blocks:
        return ""
    return ('<section id="failures"><h2>Failures by reason</h2><p class="muted">Every failed record is '
            "in the failures CSV beside this report.</p>" + "".join(blocks) + "</section>")


def _merges(r: Mapping[str, Any]) -> str:
    merges = r.get("merges") or []
    if not merges:
        return ""
    rows = []
    for m in merges[:MAX_ROWS]:
        ids = m.get("source_ids") or []
        actions = m.get("actions") or []
        placed = m.get("placed") or {}
        who = []
        for i, sid in enumerate(ids):
            what = actions[i] if i < len(actions) else ""
            put = "".join(f"<li>{e(p.get('field'))} <code>{e(p.get('value'))}</code> → {e(p.get('to'))} "
                          f"({e(p.get('how'))})</li>" for p in placed.get(sid) or [])
            who.append(f"<li><code>{e(sid)}</code> {e(what)}{'<ul>' + put + '</ul>' if put else ''}</li>")
        keys = ", ".join(m.get("keys") or [])
        held = "yes" if m.get("existing") else "no"
        rows.append(f'<tr><td>{e(m.get("stream"))}</td><td><code>{e(m.get("target_id"))}</code></td>'
                    f'<td><ul class="ex">{"".join(who)}</ul></td><td>{e(keys)}</td><td>{held}</td></tr>')
    more = (f'<p class="muted">… {len(merges) - MAX_ROWS:,} more in the JSON report.</p>'
            if len(merges) > MAX_ROWS else "")
    return (f'<section id="merges"><h2>Merges: <span data-n="merges">{num(len(merges))}</span></h2>'
            '<p class="muted">Target records that took more than one source record, or a source record '
            "matched onto one the target already held; under each source record, what it put where.</p>"
            + _table([("stream", False), ("target record", False), ("source records and what went where", False),
                      ("matched by", False), ("held before the job", False)], rows) + more + "</section>")


def _rate_cell(filled: int | None, of: int | None) -> str:
    if filled is None or not of:
        return '<td class="n">—</td>'
    pct = 100 * filled / of
    return (f'<td class="n" data-filled="{filled}" data-of="{of}">{num(filled)} / {num(of)} · {pct:.1f}%'
            f'<span class="rate"><i style="width:{pct:.1f}%"></i></span></td>')


def _fill(r: Mapping[str, Any]) -> str:
    blocks = []
    for s in r.get("streams") or ():
        fill = s.get("fill")
        if not fill or not fill.get("fields"):
            continue
        written = fill.get("written") or {}
        wfields, wrecords = written.get("fields") or {}, written.get("records")
        rows = []
        for row in fill["fields"]:
            wf = wfields.get(row["field"]) if written else None
            flag = f' <span class="warn">{e(row["status"])}</span>' if row.get("status") == "missing" else ""
            rows.append(f'<tr data-field="{e(row["field"])}"><td>{e(row["field"])}{flag}</td><td><code>{e(row["path"])}</code></td>'
                        + _rate_cell(row.get("filled"), row.get("read")) + _rate_cell(wf, wrecords) + "</tr>")
        scope = " (first page)" if fill.get("scope") == "first page" else ""
        blocks.append(f"<h3>{e(s['stream'])}{e(scope)}</h3>"
                      + _table([("field", False), ("source path", False), ("in the source", True),
                                ("in what is sent (valid records)", True)], rows, f' data-stream="{e(s["stream"])}"'))
    if not blocks:
        return ""
    return ('<section id="fill"><h2>Fill rates</h2><p class="muted">Of the records read, how many gave each '
            "mapped field a value; of the valid records, how many hold it as sent.</p>" + "".join(blocks) + "</section>")


def request_rows(r: Mapping[str, Any]) -> list[tuple[str, str, str, int | None, int | None]]:
    """(role, system, kind, planned, actual) from whichever the report holds: a run's plan
    beside its actuals, a validate's plan, or the actual requests alone."""
    plan = r.get("plan") or {}
    actual = {role: ((r.get("requests") or {}).get(role) or {}).get("requests") or {}
              for role in ("source", "target")}
    systems = {"source": r.get("source", ""), "target": r.get("target", "")}
    out = []
    for role in ("source", "target"):
        side = (plan.get("requests") or {}).get(role) if isinstance(plan, Mapping) else None
        if isinstance(side, Mapping) and "kinds" in side:
            for k, v in side["kinds"].items():
                out.append((role, side.get("system") or systems[role], k, v.get("planned"), v.get("actual")))
            continue
        planned = side if isinstance(side, Mapping) else {}
        for k in dict.fromkeys([*planned, *actual[role]]):
            out.append((role, systems[role], k, planned.get(k) if planned else None, actual[role].get(k)))
    return out


def _requests(r: Mapping[str, Any]) -> str:
    rows_data = request_rows(r)
    if not rows_data:
        return ""
    rows = [f'<tr data-role="{e(role)}" data-kind="{e(kind)}"><td>{e(system)} ({e(role)})</td><td>{e(kind)}</td>'
            f'<td class="n" data-n="planned">{"—" if p is None else num(p)}</td>'
            f'<td class="n" data-n="actual">{"—" if a is None else num(a)}</td></tr>'
            for role, system, kind, p, a in rows_data]
    notes = []
    plan = r.get("plan") or {}
    if plan.get("note"):
        notes.append(f'<p class="muted">{e(plan["note"])}</p>')
    if plan.get("resumed"):
        notes.append('<p class="muted">This run resumed an earlier one: it spent only what was left.</p>')
    for role in ("source", "target"):
        retries = ((r.get("requests") or {}).get(role) or {}).get("retries") or {}
        if retries:
            notes.append(f'<p class="muted">{e(role)} retries: '
                         + ", ".join(f"{e(k)} {num(v)}" for k, v in sorted(retries.items())) + "</p>")
    return ('<section id="requests"><h2>Requests, planned and actual</h2>'
            + _table([("system", False), ("kind", False), ("planned", True), ("actual", True)], rows)
            + "".join(notes) + "</section>")


def _charts(r: Mapping[str, Any]) -> str:
    blocks = []
    for role in ("source", "target"):
        tl = ((r.get("requests") or {}).get(role) or {}).get("timeline")
        if tl and tl.get("sent"):
            blocks.append(chart(tl, r.get(role, role), role))
    if not blocks:
        return ""
    return ('<section id="pace"><h2>Requests per second against the limit</h2>' + "".join(blocks) + "</section>")


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def chart(tl: Mapping[str, Any], system: str, role: str) -> str:
    """An inline SVG: requests sent in each second (bars), the vendor's limit (dashed),
    over a window longer than a second its rolling average (line), 429 answers (red
    marks) and quota waits (shaded), with its figures in words beneath."""
    sent = {int(t): int(n) for t, n in tl["sent"]}
    limited = {int(t): int(n) for t, n in tl.get("429") or []}
    span = max([*sent, *limited]) + 1
    waits = [(max(0.0, a), min(float(span), b)) for a, b in tl.get("quota_waits") or []]
    limit = tl.get("limit") or None
    rate = limit["requests"] / limit["per"] if limit else None
    series = [sent.get(t, 0) for t in range(span)]
    window: list[float] | None = None
    if limit and limit["per"] > 1:
        per, acc, window = int(math.ceil(limit["per"])), 0, []
        for t, n in enumerate(series):
            acc += n - (series[t - per] if t >= per else 0)
            window.append(acc / limit["per"])
    step = max(1, math.ceil(span / MAX_BARS))
    bars = [sum(series[i:i + step]) / step for i in range(0, span, step)]
    wline = [max(window[i:i + step]) for i in range(0, span, step)] if window else None
    peak = max(series)
    top = max(peak, rate or 0, 1) * 1.12
    W, H, L, R, T, B = 720, 240, 46, 10, 10, 26
    pw, ph = W - L - R, H - T - B
    x = lambda t: L + pw * t / span  # noqa: E731
    y = lambda v: T + ph * (1 - v / top)  # noqa: E731
    bw = pw / len(bars)
    d = "".join(f"M{L + i * bw:.1f} {y(v):.1f}h{max(bw * 0.85, 0.6):.1f}V{T + ph}H{L + i * bw:.1f}Z"
                for i, v in enumerate(bars) if v)
    svg = [f'<svg viewBox="0 0 {W} {H}" role="img" '
           f'aria-label="{e(system)} requests per second">']
    for a, b in waits:
        svg.append(f'<rect x="{x(a):.1f}" y="{T}" width="{max(x(b) - x(a), 1.5):.1f}" height="{ph}" '
                   f'fill="#f59e0b" fill-opacity=".25"><title>quota wait {_clock(a)} → {_clock(b)} '
                   f'({_clock(b - a)})</title></rect>')
    for frac in (0, .5, 1):
        v = top / 1.12 * frac
        svg.append(f'<line x1="{L}" x2="{W - R}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#e2e6ed"/>'
                   f'<text x="{L - 5}" y="{y(v) + 4:.1f}" text-anchor="end" font-size="11" fill="#555">'
                   f'{v:,.0f}</text>')
    for i in range(5):
        t = span * i / 4
        svg.append(f'<text x="{x(t):.1f}" y="{H - 8}" text-anchor="{"start" if i == 0 else "end" if i == 4 else "middle"}" '
                   f'font-size="11" fill="#555">{_clock(t)}</text>')
    svg.append(f'<path d="{d}" fill="#2f6fdb"/>')
    if wline:
        pts = " ".join(f"{L + (i + .5) * bw:.1f},{y(v):.1f}" for i, v in enumerate(wline))
        svg.append(f'<polyline points="{pts}" fill="none" stroke="#111827" stroke-width="1.5"/>')
    if rate is not None:
        svg.append(f'<line x1="{L}" x2="{W - R}" y1="{y(rate):.1f}" y2="{y(rate):.1f}" stroke="#dc2626" '
                   f'stroke-width="1.5" stroke-dasharray="6 4"><title>limit {rate:g}/s</title></line>')
    if limited:
        marks = "".join(f"M{x(t + .5):.1f} {T + 1}l-4 8h8Z" for t in sorted(limited))
        svg.append(f'<path d="{marks}" fill="#b91c1c"><title>429 answers: '
                   + e(", ".join(f"{n} at {_clock(t)}" for t, n in sorted(limited.items())[:30]))
                   + "</title></path>")
    svg.append("</svg>")
    total, n429 = sum(series), sum(limited.values())
    lim = (f'{num(limit["requests"])} requests / {limit["per"]:g} s ({rate:,.4g}/s)' if limit else "none configured")
    legend = ['<span><i class="sw" style="background:#2f6fdb"></i>requests sent'
              + (f" (each bar averages {step} s)" if step > 1 else "") + "</span>"]
    if rate is not None:
        legend.append('<span><i class="sw" style="background:#dc2626"></i>the limit (dashed)</span>')
    if wline:
        legend.append(f'<span><i class="sw" style="background:#111827"></i>average over the vendor\'s '
                      f'{limit["per"]:g} s window</span>')
    legend.append('<span><i class="sw" style="background:#b91c1c"></i>429 answers</span>')
    legend.append('<span><i class="sw" style="background:#f59e0b;opacity:.5"></i>quota waits</span>')
    return (f'<div class="chart" data-role="{e(role)}" data-system="{e(system)}"><h3>{e(system)} ({e(role)})</h3>'
            + "".join(svg)
            + f'<p class="legend">{"".join(legend)}</p>'
            f'<p><span data-n="requests">{num(total)}</span> requests over <span data-n="span">{num(span)}</span> s; '
            f'busiest second <span data-n="peak">{num(peak)}</span>; limit {e(lim)}; '
            f'429 answers: <span data-n="429">{num(n429)}</span>; '
            f'quota waits: <span data-n="quota_waits">{num(len(waits))}</span>.</p></div>')


def _preview(r: Mapping[str, Any]) -> str:
    blocks = []
    for s in r.get("streams") or ():
        for i, p in enumerate(s.get("preview") or [], 1):
            left = _kv(shown(p.get("source")))
            sent = p.get("sent")
            right = _kv(shown(sent)) if sent is not None else f'<p class="muted">{e(NOTHING)}</p>'
            note = f'<p class="warn">{e(p["note"])}</p>' if p.get("note") else ""
            blocks.append(f'<h3>{e(s["stream"])} {i}: source id <code>{e(p.get("source_id"))}</code></h3>{note}'
                          f'<div class="pv" data-stream="{e(s["stream"])}" data-source-id="{e(p.get("source_id"))}">'
                          f'<div data-side="read"><b>as read from {e(r.get("source"))}</b>{left}</div>'
                          f'<div data-side="sent"><b>as it will be sent to {e(r.get("target"))}</b>{right}</div></div>')
    if not blocks:
        return ""
    return '<section id="preview"><h2>Records as read and as they will be sent</h2>' + "".join(blocks) + "</section>"


VERIFY_COLUMNS = [("records", "done"), ("equal", "equal"), ("drifted", "drift"), ("missing", "missing"),
                  ("held_twice", "held twice"), ("unchecked", "unchecked")]


def _verify(r: Mapping[str, Any]) -> str:
    """``verify``'s page: what the target holds against what was sent, per stream; then
    each drifted field, missing record and key held twice (the first MAX_ROWS of each)."""
    streams = r.get("streams") or []
    verdict = ("Everything read back is equal to what was sent." if r.get("clean") else
               "Not proven: " + ", ".join(r.get("unproven") or []) + " could not be read back."
               if not any(s.get("drifted") or s.get("missing") or s.get("held_twice") for s in streams)
               else "The target does not hold everything as it was sent: see below.")
    total = {k: sum(s.get(k) or 0 for s in streams) for k, _ in VERIFY_COLUMNS}
    out = [f'<header><h1>{e("verify " + str(r.get("job", "")) + ": " + str(r.get("target", "")))}</h1>',
           f'<p class="meta">started {e(r.get("started"))} · ended {e(r.get("ended"))} · '
           f'<span data-n="seconds">{e(r.get("seconds"))}</span> s (planned {e(r.get("eta_seconds"))} s)</p>',
           '<p class="warn">Interrupted: running verify again reads everything again.</p>' if r.get("interrupted") else "",
           f'<p class="{"muted" if r.get("clean") else "warn"}" data-verdict="{"clean" if r.get("clean") else "not"}">'
           f"{e(verdict)}</p>",
           '<div class="cards">' + "".join(f'<div class="card"><b data-total="{k}">{num(total[k])}</b>{e(label)}</div>'
                                           for k, label in VERIFY_COLUMNS) + "</div></header>"]
    rows = [f'<tr data-stream="{e(s["stream"])}"><td>{e(s["stream"])}</td>'
            + "".join(f'<td class="n" data-n="{k}">{num(s.get(k) or 0)}</td>' for k, _ in VERIFY_COLUMNS)
            + f'<td>{e(s.get("read_back"))}: {e(s.get("why"))}</td></tr>' for s in streams]
    out.append("" if not rows else '<section id="verify"><h2>Read back per stream</h2>'
               + _table([("stream", False)] + [(label, True) for _, label in VERIFY_COLUMNS] + [("how", False)], rows)
               + "</section>")
    drift = [(s["stream"], d) for s in streams for d in s.get("drift") or ()]
    if drift:
        rows = [f'<tr><td>{e(st)}</td><td><code>{e(d.get("source_id"))}</code></td><td>{e(d.get("field"))}</td>'
                f'<td>{e(d.get("sent"))}</td><td>{e(d.get("held"))}</td></tr>' for st, d in drift[:MAX_ROWS]]
        out.append(f'<section id="drift"><h2>Fields that drifted: {num(len(drift))}</h2>'
                   + _table([("stream", False), ("source id", False), ("field", False), ("sent", False),
                             ("held", False)], rows) + "</section>")
    missing = [(s["stream"], m) for s in streams for m in s.get("missing_records") or ()]
    if missing:
        rows = [f'<tr><td>{e(st)}</td><td><code>{e(m.get("source_id"))}</code></td>'
                f'<td><code>{e(m.get("target_id"))}</code></td></tr>' for st, m in missing[:MAX_ROWS]]
        out.append(f'<section id="missing"><h2>Done but not in the target: {num(len(missing))}</h2>'
                   + _table([("stream", False), ("source id", False), ("target id", False)], rows) + "</section>")
    twice = [(s["stream"], t) for s in streams for t in s.get("held_twice_keys") or ()]
    if twice:
        rows = [f'<tr><td>{e(st)}</td><td>{e(t.get("key"))}</td><td>{e(", ".join(t.get("source_ids") or ()))}</td>'
                f'<td>{e(", ".join(t.get("target_ids") or ()))}</td></tr>' for st, t in twice[:MAX_ROWS]]
        out.append(f'<section id="twice"><h2>Held twice: {num(len(twice))}</h2>'
                   + _table([("stream", False), ("key", False), ("source ids", False), ("target ids", False)], rows)
                   + "</section>")
    return "".join(out)


def _verify_requests(r: Mapping[str, Any]) -> dict[str, Any]:
    """verify's flat bill and actuals, in the shape ``request_rows`` reads (target only)."""
    return {"target": r.get("target", ""), "plan": {"requests": {"target": dict(r.get("planned_requests") or {})}},
            "requests": {"target": {"requests": dict(r.get("requests") or {})}}}


def _kv(lines: list[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in lines)
    return f'<div class="scroll"><table>{rows}</table></div>'


def _listed(r: Mapping[str, Any]) -> str:
    out = []
    refused = r.get("merges_refused") or []
    if refused:
        rows = [f'<tr><td>{e(x.get("stream"))}</td><td><code>{e(x.get("source_id"))}</code></td>'
                f'<td>{e(x.get("field"))}</td><td>{e(x.get("reason"))}</td></tr>' for x in refused[:MAX_ROWS]]
        out.append(f'<section id="refused"><h2>Merges refused: {num(len(refused))}</h2>'
                   + _table([("stream", False), ("source id", False), ("field", False), ("reason", False)], rows)
                   + "</section>")
    uncertain = r.get("uncertain") or []
    if uncertain:
        rows = [f'<tr><td>{e(x.get("stream"))}</td><td><code>{e(x.get("source_id"))}</code></td>'
                f'<td>{e(x.get("status"))}</td><td><code>{e(x.get("target_id"))}</code></td><td>{e(x.get("note"))}</td></tr>'
                for x in uncertain[:MAX_ROWS]]
        out.append(f'<section id="uncertain"><h2>Uncertain: {num(len(uncertain))}</h2><p class="muted">These '
                   "may exist twice or not at all in the target: check them there.</p>"
                   + _table([("stream", False), ("source id", False), ("status", False), ("target id", False),
                             ("note", False)], rows) + "</section>")
    return "".join(out)
