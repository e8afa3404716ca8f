"""``migrator init csv TARGET --from FILE``: a job and a proposed mapping for any CRM's export.

Reads the file's header and a sample of rows (the encoding and delimiter found as the CSV
reader will need them), asks ``mapping.propose`` what each column means, and writes a
mapping whose comments say, per field, why it was chosen and how sure the guess is, with
the columns nothing reads and the target fields left empty. The user edits it; then
``validate`` runs as for any mapping.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path
from typing import Any

import orjson
import yaml

from .connectors import textfile
from .errors import UserError
from .mapping.propose import Choice, Proposal, propose, target_stream
from .registry import connector_class

SAMPLE_ROWS = 500
_HEAD_BYTES = 1 << 20


def detect_encoding(raw: bytes, path: Path) -> str:
    """A BOM's encoding; else UTF-8 when the head decodes as UTF-8; else charset-normalizer's guess."""
    enc = textfile.choose_encoding(path, "auto", str(path))
    if enc != "utf-8":
        return textfile.codec_name(enc) if enc != "utf-8-sig" else "utf-8"
    try:
        raw.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        if exc.start > len(raw) - 4:      # a character cut by the head's end
            return "utf-8"
    return textfile.guess_encoding(raw) or "cp1252"


def _decode(raw: bytes, encoding: str) -> str:
    text = raw.decode({"utf-8": "utf-8-sig"}.get(encoding, encoding), "replace")
    return text.lstrip("\ufeff")


def detect_delimiter(text: str) -> str:
    """The delimiter of the header line and the lines under it: , ; tab or |."""
    lines = text.splitlines()[:50]
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=",;\t|").delimiter
    except csv.Error:
        head = lines[0] if lines else ""
        return max(",;\t|", key=head.count) if head else ","


def read_sample(path: Path, kind: str, rows: int = SAMPLE_ROWS) -> tuple[list[str], list[dict[str, Any]], dict[str, str]]:
    """The header, up to ``rows`` records and the reader settings (encoding, delimiter)."""
    if not path.is_file():
        raise UserError(f"{path}: no such file (--from)")
    with open(path, "rb") as fh:
        raw = fh.read(_HEAD_BYTES)
    if not raw.strip():
        raise UserError(f"{path}: the file is empty; export it again with its header row")
    encoding = detect_encoding(raw, path)
    text = _decode(raw, encoding)
    if kind == "jsonl":
        header: list[str] = []
        records: list[dict[str, Any]] = []
        for n, line in enumerate(text.splitlines()[:rows], 1):
            if not line.strip():
                continue
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError:
                if n == len(text.splitlines()) and len(raw) == _HEAD_BYTES:
                    break               # the head cut the last line
                raise UserError(f"{path}:{n}: not a JSON object per line (JSONL)") from None
            if not isinstance(rec, dict):
                raise UserError(f"{path}:{n}: a line holds {type(rec).__name__}, not a JSON object")
            records.append(rec)
            header += [k for k in rec if k not in header]
        return header, records, {"encoding": encoding}
    delimiter = detect_delimiter(text)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise UserError(f"{path}: no header row") from None
    header = [h.strip() for h in header]
    if not any(header):
        raise UserError(f"{path}:1: the header row is empty")
    out = []
    for cells in reader:
        if len(out) >= rows:
            break
        out.append(dict(zip(header, cells)))
    return header, out, {"encoding": encoding, "delimiter": delimiter}


def _flow(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False, allow_unicode=True)
    return text.removesuffix("\n...\n").strip()


def _field_spec(c: Choice) -> dict[str, Any]:
    spec: dict[str, Any] = {"path": c.path}
    if c.transforms:
        spec["transform"] = list(c.transforms)
    spec.update(c.extra)
    if c.on_error_drop:
        spec["on_error"] = "drop"
    return spec


def render_mapping(p: Proposal, source: str, file_name: str) -> str:
    today = dt.date.today().isoformat()
    lines = [f"# {file_name} -> {p.target}: proposed by `migrator init {source} {p.target} --from {file_name}`"
             f" on {today}.",
             "#",
             "# A guess from the column names and a sample of the values: read each field, fix what",
             "# is wrong, then  migrator validate job.yaml  shows how each record maps.",
             "# Per field, the comment above it says why it was chosen and how sure the guess is",
             "# (high: name and values agree; medium: one of them; low: a guess from the values only).",
             "#"]
    if p.unmapped:
        lines.append("# Columns nothing reads (add a field for each one you want to keep):")
        for g in p.unmapped:
            lines.append(f"#   {g.column!r}: {g.why}")
    else:
        lines.append("# Every column is read.")
    if p.empty_fields:
        lines.append("#")
        lines.append(f"# {p.target} fields left empty: {', '.join(p.empty_fields)}")
    lines += ["", f"source: {source}", f"target: {p.target}", "streams:", f"  {p.stream}:"]
    if p.target_stream != p.stream:
        lines.append(f"    to: {p.target_stream}")
    if p.match_on:
        lines.append(f"    match_on: {_flow(list(p.match_on))}")
    lines.append("    fields:")
    if not p.choices:
        lines.append("      {}   # nothing matched: write the fields by hand (migrator fields " + p.target + ")")
    for c in p.choices:
        lines.append(f"      # {c.why} — {c.confidence}")
        lines.append(f"      {_flow({c.target: _field_spec(c)})[1:-1]}")
    return "\n".join(lines) + "\n"


def render_job(source: str, target: str, path: Path, settings: dict[str, str], id_column: str | None,
               target_lines: list[str], help_lines: list[str]) -> str:
    name = f"{path.stem}-to-{target}"
    today = dt.date.today().isoformat()
    head = [f"# {name}: written by `migrator init {source} {target} --from {path.name}` on {today}.", "#"]
    if help_lines:
        head += ["# Credentials come from the environment, never from this file. Export them first:", *help_lines]
    head += ["#", "# Then:  migrator validate job.yaml   (dry run)   and   migrator run job.yaml", ""]
    src = ["source:", f"  system: {source}", f"  path: {_flow(str(path))}"]
    enc = settings.get("encoding", "utf-8")
    src.append(f"  encoding: {enc}   # detected from the file")
    if "delimiter" in settings:
        d = settings["delimiter"]
        src.append(f"  delimiter: {_flow('tab' if d == chr(9) else d)}   # detected from the file")
    if id_column:
        src.append(f"  id_column: {_flow(id_column)}")
    else:
        src.append("  # id_column: none found; records are named by their row number")
    body = [f"name: {name}", *src, *target_lines, "mapping: mapping.yaml",
            f"checkpoint: {name}.ckpt.sqlite   # the job's memory: keep it until the migration is over",
            "reports: reports", "concurrency: 8", ""]
    return "\n".join(head + body)


def schema_for(target: str, stream: str | None = None) -> Any:
    cls = connector_class(target)
    if target in ("csv", "jsonl"):
        return None
    schemas = cls.schemas()
    if not schemas:
        raise UserError(f"{target} cannot be written to")
    return schemas.get(stream) if stream else next(iter(schemas.values()))


def proposal_for(path: Path, source: str, target: str, rows: int = SAMPLE_ROWS
                 ) -> tuple[Proposal, dict[str, str]]:
    header, records, settings = read_sample(path, source, rows)
    return propose(header, records, target, schema_for(target, target_stream(target))), settings

