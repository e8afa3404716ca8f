"""Every user mistake in a job file: one line naming the file and line, exit code 2."""
import pytest

from migrator.errors import ConfigError, JobError, MappingError, UserError
from migrator.job import load_job
from tests.conftest import file_job


def _job(tmp, text, mapping=None):
    p = tmp / "job.yaml"
    p.write_text(text)
    if mapping is not None:
        (tmp / "mapping.yaml").write_text(mapping)
    return p


GOOD_MAPPING = "source: csv\ntarget: jsonl\nstreams:\n  contacts:\n    fields:\n      email: Email\n"


@pytest.mark.parametrize("text,exc,pattern", [
    ("source: [unclosed\n", JobError, r"job.yaml:\d+: invalid YAML"),
    ("- a list\n", JobError, r"job.yaml:1:"),
    ("source: {system: csv, path: in.csv}\ntarget: {system: jsnl, path: o}\nmapping: mapping.yaml\n",
     JobError, r"job.yaml:2: unknown connector 'jsnl' \(did you mean 'jsonl'\?\)"),
    ("source: {system: csv, path: in.csv}\ntarget: {system: jsonl, path: o}\nmapping: mapping.yaml\nconcurency: 3\n",
     JobError, r"job.yaml:4: unknown job key 'concurency' \(did you mean 'concurrency'\?\)"),
    ("source: {system: csv, path: in.csv, pth: x}\ntarget: {system: jsonl, path: o}\nmapping: mapping.yaml\n",
     JobError, r"job.yaml:1: unknown setting 'pth' for csv \(did you mean 'path'\?\)"),
    ("source: {system: csv, path: '${NOPE_NOT_SET}'}\ntarget: {system: jsonl, path: o}\nmapping: mapping.yaml\n",
     ConfigError, r"job.yaml:1: environment variable NOPE_NOT_SET is not set"),
    ("source: {system: csv, path: in.csv}\ntarget: {system: jsonl, path: o}\nmapping: missing.yaml\n",
     JobError, r"job.yaml:3: mapping file .*missing.yaml does not exist"),
    ("source: {system: csv, path: in.csv}\ntarget: {system: jsonl, path: o}\nmapping: mapping.yaml\non_uncertain: maybe\n",
     JobError, r"job.yaml:4: on_uncertain must be one of retry, skip"),
    ("source: {system: csv}\ntarget: {system: jsonl, path: o}\nmapping: mapping.yaml\n",
     JobError, r"needs 'path'"),
    ("target: {system: jsonl, path: o}\nmapping: mapping.yaml\n", JobError, r"the job needs 'source'"),
])
def test_job_errors(tmp, text, exc, pattern):
    p = _job(tmp, text, GOOD_MAPPING)
    with pytest.raises(exc, match=pattern) as info:
        load_job(p, env={})
    assert isinstance(info.value, UserError)
    assert "\n" not in str(info.value)


def test_missing_job_file(tmp):
    with pytest.raises(JobError, match="no such job file"):
        load_job(tmp / "nope.yaml")


def test_env_interpolation_and_default(tmp):
    p = _job(tmp, "source: {system: csv, path: '${IN_FILE}'}\ntarget: {system: jsonl, path: '${OUT:-o.jsonl}'}\n"
                  "mapping: mapping.yaml\n", GOOD_MAPPING)
    job = load_job(p, env={"IN_FILE": "in.csv"})
    assert job.source.settings["path"] == "in.csv"
    assert job.target.settings["path"] == "o.jsonl"
    assert job.source.origins["path"] == "${IN_FILE}"


def test_unknown_transform_in_mapping_names_file_and_line(tmp):
    p = file_job(tmp, [{"id": "1", "First Name": "a", "Last Name": "b", "Email": "e", "Phone": "", "Tags": ""}],
                 mapping="source: csv\ntarget: jsonl\nstreams:\n  contacts:\n    fields:\n      email: {path: Email, transform: [lowr]}\n")
    with pytest.raises(MappingError, match=r"mapping.yaml:6: .*'lowr'.*did you mean 'lower'"):
        load_job(p)


def test_job_id_ignores_secrets_and_limits(tmp):
    p = file_job(tmp, [{"id": "1", "First Name": "a", "Last Name": "b", "Email": "e", "Phone": "", "Tags": ""}])
    a = load_job(p).job_id
    text = p.read_text().replace("{system: jsonl, path: out.jsonl}", "{system: jsonl, path: out.jsonl, timeout: 5}")
    p.write_text(text)
    assert load_job(p).job_id == a


QUOTA_JOB = "source: {system: csv, path: in.csv}\ntarget: {system: rei, api_key: k}\nmapping: mapping.yaml\n"
REI_MAPPING = "source: csv\ntarget: rei\nstreams:\n  contacts:\n    fields:\n      email: Email\n"


@pytest.mark.parametrize("extra,pattern", [
    ("stop_at_quota: yes\n", r"job.yaml:4: stop_at_quota must be true or false, not 'yes'"),
    ("stop_at_quota: 1\n", r"job.yaml:4: stop_at_quota must be true or false, not 1"),
    ("max_quota_wait: soon\n", r"job.yaml:4: max_quota_wait must be a duration such as 3600, 30m or 12h, not 'soon'"),
    ("max_quota_wait: -5\n", r"job.yaml:4: max_quota_wait must be a duration"),
    ("max_quota_wait: true\n", r"job.yaml:4: max_quota_wait must be a duration"),
    ("stop_at_quta: true\n", r"job.yaml:4: unknown job key 'stop_at_quta' \(did you mean 'stop_at_quota'\?\)"),
])
def test_quota_keys_are_checked_with_file_and_line(tmp, extra, pattern):
    p = _job(tmp, QUOTA_JOB + extra, REI_MAPPING)
    with pytest.raises(JobError, match=pattern):
        load_job(p, env={})


@pytest.mark.parametrize("extra,stop,wait", [
    ("", False, None),
    ("stop_at_quota: true\n", True, None),
    ("max_quota_wait: 90\n", False, 90.0),
    ("max_quota_wait: 30m\n", False, 1800.0),
    ("max_quota_wait: 12h\nstop_at_quota: false\n", False, 43200.0),
    ("max_quota_wait: 1.5d\n", False, 129600.0),
])
def test_quota_keys_reach_the_targets_http_client(tmp, extra, stop, wait):
    job = load_job(_job(tmp, QUOTA_JOB + extra, REI_MAPPING), env={})
    assert (job.stop_at_quota, job.max_quota_wait) == (stop, wait)
    http = job.connector("target").http
    assert (http.stop_at_quota, http.max_quota_wait) == (stop, wait)
    assert job.connector("target").daily_quota == 200_000


def test_quota_keys_do_not_change_the_checkpoints_identity(tmp):
    a = load_job(_job(tmp, QUOTA_JOB, REI_MAPPING), env={}).job_id
    b = load_job(_job(tmp, QUOTA_JOB + "stop_at_quota: true\nmax_quota_wait: 1h\n", REI_MAPPING), env={}).job_id
    assert a == b, "stopping at the quota and resuming without the flag is the same job"


def test_reis_daily_quota_is_overridable_per_job(tmp):
    job = load_job(_job(tmp, QUOTA_JOB.replace("api_key: k}", "api_key: k, daily_quota: 50000}"), REI_MAPPING),
                   env={})
    assert job.connector("target").daily_quota == 50_000


@pytest.mark.parametrize("raw,expected", [
    ({"requests": 10, "per": 2}, (10, 2.0)), ({"requests": "5"}, (5, 1.0)), ({"requests": 3, "per": "0.5"}, (3, 0.5)),
    ("none", None), ("off", None), (False, None),
])
def test_rate_limit_accepted(raw, expected):
    from migrator.connectors.base import parse_rate_limit
    limit = parse_rate_limit(raw, "job.yaml:3")
    assert (limit.requests, limit.per) == expected if expected else limit is None


@pytest.mark.parametrize("raw,said", [
    ({"requests": 10, "per": 0}, "per must be a number of seconds above 0, not 0"),   # was ZeroDivisionError
    ({"requests": -5}, "requests must be a whole number of at least 1, not -5"),      # was a hang
    ({"requests": 0}, "at least 1"), ({"requests": 2.5}, "whole number"), ({"requests": True}, "whole number"),
    ({"requests": 5, "per": float("inf")}, "above 0"), ({"requests": 5, "per": [1]}, "above 0"),
    ({"per": 1}, "'requests' is missing"), ({"requests": 1, "par": 1}, "unknown key 'par'"),
    (5, "rate_limit must be {requests: N, per: SECONDS}"), ("fast", "not 'fast'"), ([1, 2], "not [1, 2]"),
])
def test_rate_limit_refused_in_one_line(raw, said):
    from migrator.connectors.base import parse_rate_limit
    with pytest.raises(JobError) as info:
        parse_rate_limit(raw, "job.yaml:3")
    assert str(info.value).startswith("job.yaml:3: ") and said in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("raw,ok", [(None, 30.0), ("", 30.0), (5, 5.0), ("2.5", 2.5), (0, None), (-1, None),
                                    ("slow", None), (True, None), ([3], None)])
def test_timeout(raw, ok):
    from migrator.connectors.base import parse_timeout
    if ok is not None:
        assert parse_timeout(raw, "job.yaml:2") == ok
    else:
        with pytest.raises(JobError, match=r"job.yaml:2: timeout must be a number of seconds above 0"):
            parse_timeout(raw, "job.yaml:2")
