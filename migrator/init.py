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


def render_job(source: str, target: str) -> str:
    src, src_help = _block("source", source)
    dst, dst_help = _block("target", target)
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


def init(args: argparse.Namespace) -> int:
    source, target = args.source.lower(), args.target.lower()
    mapping = mapping_file(source, target)
    if not mapping.exists():
        sources, targets = init_names()
        raise UserError(f"no shipped mapping for {source} -> {target}; sources: {', '.join(sources)}; "
                        f"targets: {', '.join(targets)}")
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
