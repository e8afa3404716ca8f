"""``migrator init SOURCE TARGET``: a starter job and the pair's mapping, ready to edit.

The job holds ``${VAR}`` placeholders for exactly the credentials the two systems need,
with a comment saying where each vendor shows them; the mapping is a copy of the shipped
one for the pair, so the user's edits never touch the installed copy.
"""
from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
from pathlib import Path

from .errors import UserError
from .registry import connector_class
from .resources import init_names, mapping_file
from .sandbox.exports import EXPORTS, id_column

# Spark takes a token or a key and secret: the job shows the token, the pair in a comment.
CHOICES = {"spark": (["access_token"], ["api_key", "api_secret"])}


def _system(name: str) -> str:
    return "csv" if name in EXPORTS else name


def _block(role: str, name: str) -> tuple[list[str], list[str]]:
    """YAML lines of a source/target block, and the comment lines about credentials."""
    system = _system(name)
    cls = connector_class(system)
    lines = [f"{role}:", f"  system: {system}"]
    help_lines: list[str] = []
    if system == "csv":
        lines += [f"  path: {name.replace('-csv', '')}-export.csv   # the CSV exported from the old CRM's UI",
                  f"  id_column: \"{id_column(name)}\""]
        return lines, help_lines
    chosen, alternative = CHOICES.get(system, ([k for k, s in cls.settings_spec.items() if s.secret], []))
    envs = []
    for key in chosen:
        env = cls.settings_spec[key].env
        lines.append(f"  {key}: ${{{env}}}")
        envs.append(env)
    for key in alternative:
        env = cls.settings_spec[key].env
        lines.append(f"  # {key}: ${{{env}}}     # instead of access_token: session auth")
    if cls.default_limit:
        lines.append(f"  # rate_limit: {{requests: {cls.default_limit.requests}, per: {cls.default_limit.per:g}}}"
                     f"   # the default; lower it to leave room for other tools")
    lines.append(f"  base_url: ${{{system.upper()}_BASE_URL:-{cls.default_base_url}}}"
                 f"   # `migrator sandbox` prints {system.upper()}_BASE_URL for its simulator")
    help_lines.append(f"#   {', '.join(envs)}: {cls.credentials_help or 'see ' + cls.title}")
    return lines, help_lines


def _backup_lines(source: str, target: str) -> tuple[list[str], list[str]]:
    """The target block of a backup (``init SOURCE jsonl|csv``): a file per stream."""
    return ["target:", f"  system: {target}",
            f"  path: {source}-backup-{{stream}}.{target}   # one file per stream: contacts, notes…"], []


def render_job(source: str, target: str) -> str:
    src, src_help = _block("source", source)
    dst, dst_help = _backup_lines(source, target) if target in ("csv", "jsonl") else _block("target", target)
    name = f"{source}-to-{target}"
    today = dt.date.today().isoformat()
    helps = src_help + dst_help
    head = [f"# {name}: written by `migrator init {source} {target}` on {today}.",
            "#",
            "# Credentials come from the environment, never from this file. Export them first:"]
    head += helps or ["#   (none: both sides are files)"]
    head += ["#",
             "# Then:  migrator validate job.yaml   (dry run)   and   migrator run job.yaml",
             ""]
    body = [f"name: {name}", *src, *dst,
            "mapping: mapping.yaml",
            f"checkpoint: {name}.ckpt.sqlite   # the job's memory: keep it until the migration is over",
            "reports: reports",
            "concurrency: 8",
            "# A write cut off by a crash, on a target with no lookup (Realvolve, Realeflow):",
            "# retry = write it again (it may then exist twice; the report lists it),",
            "# skip = fail it for you to check (also listed).",
            "on_uncertain: retry",
            ""]
    return "\n".join(head + body)


def _target_lines(target: str) -> tuple[list[str], list[str]]:
    """The target block of a job from ``--from``: a file next to the job, or a CRM's block."""
    if target in ("csv", "jsonl"):
        return ["target:", f"  system: {target}", f"  path: out.{target}"], []
    return _block("target", target)


def init_from(args: argparse.Namespace, source: str, target: str) -> int:
    """``init csv|jsonl TARGET --from FILE``: a job and a mapping proposed from the file itself."""
    from .init_from import proposal_for, render_job as render_file_job, render_mapping

    if source not in ("csv", "jsonl"):
        raise UserError(f"--from reads a CSV or JSONL export: use  migrator init csv {target} --from FILE"
                        f"  (not {source})")
    _, targets = init_names()
    if target not in (*targets, "csv", "jsonl"):
        raise UserError(f"unknown target '{target}'; targets: {', '.join([*targets, 'csv', 'jsonl'])}")
    if args.sample < 1:
        raise UserError(f"--sample must be at least 1 (got {args.sample})")
    path = Path(args.source_file).resolve()
    proposal, settings = proposal_for(path, source, target, args.sample)
    out = Path(args.out)
    job, mapping = out / "job.yaml", out / "mapping.yaml"
    for p in (job, mapping):
        if p.exists():
            raise UserError(f"{p} exists already; choose another --out folder")
    target_lines, help_lines = _target_lines(target)
    out.mkdir(parents=True, exist_ok=True)
    job.write_text(render_file_job(source, target, path, settings, proposal.id_column, target_lines, help_lines),
                   encoding="utf-8")
    mapping.write_text(render_mapping(proposal, source, path.name), encoding="utf-8")
    mapped = len(proposal.columns) - len(proposal.unmapped)
    print(f"wrote {job} and {mapping}: {mapped} of {len(proposal.columns)} columns mapped"
          f" ({settings.get('encoding')}"
          + (f", delimiter {settings['delimiter']!r}" if "delimiter" in settings else "") + ")", file=sys.stderr)
    for g in proposal.unmapped:
        print(f"  not mapped: {g.column!r} ({g.why})", file=sys.stderr)
    print(f"next: read {mapping} (each field says why and how sure), then  migrator validate {job}",
          file=sys.stderr)
    return 0


def init(args: argparse.Namespace) -> int:
    source, target = args.source.lower(), args.target.lower()
    if getattr(args, "source_file", None):
        return init_from(args, source, target)
    mapping = mapping_file(source, target)
    if not mapping.exists():
        sources, targets = init_names()
        hint = (f"; to have one proposed from your file:  migrator init {source} {target} --from FILE"
                if source in ("csv", "jsonl") else "")
        raise UserError(f"no shipped mapping for {source} -> {target}; sources: {', '.join(sources)}; "
                        f"targets: {', '.join(targets)}{hint}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    job, copy = out / "job.yaml", out / "mapping.yaml"
    for p in (job, copy):
        if p.exists():
            raise UserError(f"{p} exists already; choose another --out folder")
    job.write_text(render_job(source, target), encoding="utf-8")
    shutil.copyfile(mapping, copy)
    print(f"wrote {job} and {copy} (from {mapping.name})", file=sys.stderr)
    print(f"next: export the credentials named at the top of {job}, then  migrator validate {job}",
          file=sys.stderr)
    return 0
