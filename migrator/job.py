"""Job files: what to move, from where, to where, how, and where to remember it.

```yaml
name: realvolve-to-rei
source: {system: realvolve, client_id: ${REALVOLVE_CLIENT_ID}, ...}
target: {system: rei, api_key: ${REI_API_KEY}, rate_limit: {requests: 100, per: 10}}
mapping: ../mappings/realvolve-to-rei.yaml      # or an inline mapping
checkpoint: realvolve-to-rei.ckpt.sqlite
reports: reports/
concurrency: 8
on_uncertain: retry        # or skip
on_merge: combine          # or update, skip, fail
stop_at_quota: false       # true: a spent daily quota ends the run (resumable) instead of waiting
max_quota_wait: 12h        # wait at most this long for a spent quota (default: as long as it takes)
```

Secrets come from the environment. Every error names the file and line.
"""
from __future__ import annotations

import difflib
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .connectors.base import Connector, Context, parse_rate_limit, parse_timeout
from .errors import ConfigError, JobError, MappingError, UserError
from .mapping import Mapping, compile_mapping, load_mapping
from .registry import connector_class
from .timeparse import since_time
from .yamlutil import load_yaml

JOB_KEYS = {"name", "source", "target", "mapping", "checkpoint", "reports", "concurrency",
            "on_uncertain", "on_merge", "allow_insecure_http", "max_attempts",
            "stop_at_quota", "max_quota_wait"}
# Settings that are a name, a path or a URL: a list, a mapping or true/false there is a slip.
TEXT_SETTINGS = ("base_url", "auth_base_url", "path", "id_column", "source_id_column", "stream",
                 "encoding", "delimiter")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SPAN = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass
class SystemConfig:
    system: str
    cls: type[Connector]
    settings: dict[str, Any]
    origins: dict[str, str]
    where: str


@dataclass
class Job:
    path: Path
    name: str
    source: SystemConfig
    target: SystemConfig
    mapping: Mapping
    checkpoint: Path
    reports: Path
    concurrency: int = 8
    on_uncertain: str = "retry"
    on_merge: str = "combine"
    allow_insecure_http: bool = False
    env_used: list[str] = field(default_factory=list)
    stop_at_quota: bool = False             # `run --stop-at-quota`: stop at a spent quota, don't wait
    max_quota_wait: float | None = None     # seconds; a longer quota wait stops the run instead

    @property
    def job_id(self) -> str:
        """Identity for the checkpoint: systems and non-secret settings, never a secret."""
        def public(cfg: SystemConfig) -> dict[str, Any]:
            secret = {k for k, s in cfg.cls.all_settings().items() if s.secret}
            return {k: v for k, v in sorted(cfg.settings.items())
                    if k not in secret and k not in ("rate_limit", "timeout", "base_url")}
        blob = orjson.dumps({"source": public(self.source), "target": public(self.target)},
                            option=orjson.OPT_SORT_KEYS, default=str)
        return hashlib.sha256(blob).hexdigest()[:32]

    def connector(self, role: str, *, since: str | None = None) -> Connector:
        cfg = self.source if role == "source" else self.target
        if since and role == "source" and not cfg.cls.can_filter_since(cfg.settings):
            from .registry import CONNECTORS, connector_class
            able = [n for n in CONNECTORS if getattr(connector_class(n), "filters_since", False)]
            how = (" without `updated_column` (the column holding when a row last changed)"
                   if "updated_column" in cfg.cls.settings_spec else "")
            raise ConfigError(f"{cfg.where}: --since: {cfg.cls.system} cannot list only the records changed "
                              f"since a time{how}, so a delta run would read and write everything; "
                              f"sources that can: {', '.join(able)}, and csv or jsonl with updated_column")
        if since:
            since_time(since)   # a time that is none: one line, before anything is opened
        ctx = Context(job_dir=self.path.parent, role=role, concurrency=self.concurrency,
                      allow_insecure_http=self.allow_insecure_http, origins=cfg.origins,
                      since=since, where=cfg.where, stop_at_quota=self.stop_at_quota,
                      max_quota_wait=self.max_quota_wait, on_merge=self.on_merge)
        return cfg.cls(cfg.settings, ctx)


def _interpolate(value: Any, where: str, origins: dict[str, str], key: str, env: dict[str, str],
                 used: list[str], strict: bool = True) -> Any:
    if not isinstance(value, str) or "${" not in value:
        return value

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        used.append(name)
        origins[key] = f"${{{name}}}"
        if name in env and env[name] != "":
            return env[name]
        if default is not None:
            return default
        if not strict:
            return ""
        raise ConfigError(f"{where}: environment variable {name} is not set (needed for '{key}')")
    return _VAR.sub(sub, value)


def _system(doc: Any, role: str, filename: str, env: dict[str, str], used: list[str],
            strict: bool = True) -> SystemConfig:
    node = doc.get(role)
    where = f"{filename}:{doc.line_of(role)}"
    if not isinstance(node, dict) or "system" not in node:
        raise JobError(f"{where}: '{role}' needs a block with 'system: <connector>'")
    if not isinstance(node["system"], str):
        raise JobError(f"{filename}:{node.line_of('system')}: 'system' is a connector name such as rei, "
                       f"not {node['system']!r}")
    cls = connector_class(node["system"], f"{filename}:{node.line_of('system')}")
    known = cls.all_settings()
    origins: dict[str, str] = {}
    settings: dict[str, Any] = {}
    for key, value in node.items():
        kwhere = f"{filename}:{node.line_of(key)}"
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f"; {cls.system} takes: {', '.join(known)}"
            raise JobError(f"{kwhere}: unknown setting '{key}' for {cls.system}{hint}")
        if isinstance(value, dict):
            value = {k: _interpolate(v, kwhere, origins, key, env, used, strict) for k, v in value.items()}
        settings[key] = _interpolate(value, kwhere, origins, key, env, used, strict)
        _check_setting(key, settings[key], kwhere, strict)
    for key, spec in cls.settings_spec.items():
        if strict and spec.required and settings.get(key) in (None, ""):
            var = f" (set it from ${{{spec.env}}})" if spec.env else ""
            raise JobError(f"{where}: {cls.system} {role} needs '{key}'{var}")
    if role == "target" and not cls.writes:
        raise JobError(f"{where}: {cls.system} cannot be a target (its API has no writes)")
    if role == "source" and cls.reads in ("none", "export"):
        raise JobError(f"{where}: {cls.system} cannot be read by API; export a CSV from its UI "
                       f"and use 'system: csv' with the {cls.system}-csv mapping")
    return SystemConfig(cls.system, cls, settings, origins, where)


def load_job(path: str | Path, env: dict[str, str] | None = None, *, strict_env: bool = True) -> Job:
    """Load and check a job file. ``strict_env=False`` is for commands that never connect
    (``status``): missing credential variables are then not an error."""
    env = dict(os.environ) if env is None else env
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise JobError(f"{p}: no such job file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise JobError(f"{p}: cannot read the job file ({getattr(e, 'strerror', None) or e})") from None
    filename = str(p)
    doc = load_yaml(text, filename, JobError)
    if not isinstance(doc, dict):
        raise JobError(f"{filename}:1: a job file is a mapping with source, target, mapping and checkpoint")
    for key in doc:
        if key not in JOB_KEYS:
            close = difflib.get_close_matches(str(key), sorted(JOB_KEYS), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise JobError(f"{filename}:{doc.line_of(key)}: unknown job key '{key}'{hint}")
    for key in ("source", "target", "mapping"):
        if key not in doc:
            raise JobError(f"{filename}:1: the job needs '{key}'")
    used: list[str] = []
    source = _system(doc, "source", filename, env, used, strict_env)
    target = _system(doc, "target", filename, env, used, strict_env)
    base = p.parent

    schemas = target.cls.schemas()
    m = doc["mapping"]
    if isinstance(m, str):
        mpath = (base / m) if not Path(m).is_absolute() else Path(m)
        if not mpath.exists():
            raise JobError(f"{filename}:{doc.line_of('mapping')}: mapping file {mpath} does not exist")
        mapping = load_mapping(mpath, schemas=schemas, source_streams=None)
    elif isinstance(m, dict):
        mapping = compile_mapping(m, schemas=schemas, filename=filename)
    else:
        raise JobError(f"{filename}:{doc.line_of('mapping')}: 'mapping' is a file path or an inline mapping")
    if mapping.source and mapping.source not in (source.system, doc["source"].get("system")) \
            and source.system not in ("csv", "jsonl"):
        raise MappingError(f"{mapping.path or filename}:1: this mapping is for source '{mapping.source}', "
                           f"but the job reads from '{source.system}'")
    if mapping.target and mapping.target not in (target.system, doc["target"].get("system")) \
            and target.system not in ("csv", "jsonl"):
        raise MappingError(f"{mapping.path or filename}:1: this mapping is for target '{mapping.target}', "
                           f"but the job writes to '{target.system}'")

    def choice(key: str, options: tuple[str, ...], default: str) -> str:
        value = str(doc.get(key, default))
        if value not in options:
            raise JobError(f"{filename}:{doc.line_of(key)}: {key} must be one of {', '.join(options)}")
        return value

    try:
        raw_concurrency = doc.get("concurrency", 8)
        if isinstance(raw_concurrency, (bool, float)):
            raise ValueError
        concurrency = int(raw_concurrency)
        if not 1 <= concurrency <= 256:
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise JobError(f"{filename}:{doc.line_of('concurrency')}: concurrency must be a whole number from 1 to 256") from None
    name = _text(doc, "name", filename) or p.stem
    ckpt = _text(doc, "checkpoint", filename) or f"{p.stem}.ckpt.sqlite"
    reports = _text(doc, "reports", filename) or "reports"
    if doc.get("max_attempts") is not None:
        attempts = doc["max_attempts"]
        if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 100:
            raise JobError(f"{filename}:{doc.line_of('max_attempts')}: max_attempts must be a whole number "
                           f"from 1 to 100, not {attempts!r}")
    return Job(path=p, name=name, source=source, target=target, mapping=mapping,
               checkpoint=(base / ckpt) if not Path(ckpt).is_absolute() else Path(ckpt),
               reports=(base / reports) if not Path(reports).is_absolute() else Path(reports),
               concurrency=concurrency,
               on_uncertain=choice("on_uncertain", ("retry", "skip"), "retry"),
               on_merge=choice("on_merge", ("combine", "update", "skip", "fail"), "combine"),
               allow_insecure_http=_flag(doc, "allow_insecure_http", filename),
               env_used=used,
               stop_at_quota=_flag(doc, "stop_at_quota", filename),
               max_quota_wait=_seconds(doc, "max_quota_wait", filename))


def _check_setting(key: str, value: Any, where: str, strict: bool) -> None:
    """The settings every connector shares, checked where the job file names them: a
    rate limit of zero or below would divide by zero or never admit a request (a hang)."""
    if not strict and isinstance(value, str) and value == "":
        return
    if key == "rate_limit" and value is not None:
        parse_rate_limit(value, where)
    elif key == "timeout":
        parse_timeout(value, where)
    elif key in TEXT_SETTINGS and isinstance(value, (dict, list, bool)):
        raise JobError(f"{where}: {key} must be text, not {value!r}")


def check_reports(job: Job) -> None:
    """The reports folder takes files: checked before the first write, so a run never
    writes every record and then fails to say so."""
    folder = job.reports
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        why = "it is a file" if folder.exists() and not folder.is_dir() else (e.strerror or str(e))
        raise ConfigError(f"{job.path}: reports folder {folder}: cannot write there ({why}); "
                          "set 'reports:' in the job to a folder you can write") from None


def _text(doc: Any, key: str, filename: str) -> str | None:
    value = doc.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, (dict, list, bool)):
        raise JobError(f"{filename}:{doc.line_of(key)}: {key} must be text, not {value!r}")
    return str(value)


def _flag(doc: Any, key: str, filename: str) -> bool:
    value = doc.get(key, False)
    if not isinstance(value, bool):
        raise JobError(f"{filename}:{doc.line_of(key)}: {key} must be true or false, not {value!r}")
    return value


def _seconds(doc: Any, key: str, filename: str) -> float | None:
    """A duration: seconds as a number, or with a unit (``90s``, ``30m``, ``12h``, ``2d``)."""
    value = doc.get(key)
    if value is None:
        return None
    m = _SPAN.fullmatch(str(value)) if not isinstance(value, bool) else None
    if m is None:
        raise JobError(f"{filename}:{doc.line_of(key)}: {key} must be a duration such as 3600, 30m or 12h, "
                       f"not {value!r}")
    return float(m.group(1)) * _UNIT[m.group(2)]


__all__ = ["Job", "SystemConfig", "check_reports", "load_job", "UserError"]
