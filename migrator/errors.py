"""Typed errors.

Two families matter to the engine: errors that stop the run (``UserError`` and its
children: the CLI prints one line and exits 2) and errors that belong to one record or
one request (``RecordError`` fails the record; ``Retryable`` is retried).  Messages must
never contain a credential's value — name the variable instead.
"""
from __future__ import annotations


class MigratorError(Exception):
    """Base of everything this package raises on purpose."""


# ---- errors that stop the run: one line, exit code 2 -------------------------------


class UserError(MigratorError):
    """Something the user must fix before the run can go on (exit code 2)."""

    exit_code = 2


class JobError(UserError):
    """A malformed or inconsistent job file."""


class MappingError(UserError):
    """A mapping that cannot be compiled against its target's schema."""


class ConfigError(UserError):
    """A missing environment variable, an unwritable path, an insecure URL…"""


class AuthError(UserError):
    """The system refused the credential (401/403). Names the credential, never its value."""


class ConnectError(UserError):
    """The system could not be reached or answered 404 on the first call."""


class CheckpointMismatch(UserError):
    """The checkpoint file belongs to a different job or mapping."""


class RunInProgress(UserError):
    """Another process holds the job's lock: a second writer would share its checkpoint
    and target and double records. Names the holder (pid, host, since when)."""

    def __init__(self, job_file: str, holder: dict | None):
        self.job_file = job_file
        self.holder = holder or {}
        h = self.holder
        who = (f"{'migrator ' + h['command'] + ', ' if h.get('command') else ''}pid {h.get('pid', '?')} "
               f"on host {h.get('host', '?')}, since {h.get('since', '?')}") if h else "its pid was not recorded"
        super().__init__(f"{job_file}: another run of this job is in progress ({who}); "
                         "wait for it or stop it — the checkpoint is shared")


class SourceError(UserError):
    """The source answered something that cannot be read on from (a repeating cursor…)."""


class AccountError(UserError):
    """The account is not usable (e.g. Realeflow AccountStatus is not Active)."""


# ---- errors of one request or record --------------------------------------------------


class RecordError(MigratorError):
    """The target refused this record; the run goes on. ``reason`` is for a person."""

    def __init__(self, reason: str, *, field: str | None = None, rule: str = "server",
                 status: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.field = field
        self.rule = rule
        self.status = status


class Retryable(MigratorError):
    """A transient failure: 5xx, timeout, connection reset. Retried with backoff."""

    cause = "transient"

    def __init__(self, message: str, *, cause: str | None = None):
        super().__init__(message)
        if cause:
            self.cause = cause


class RateLimited(Retryable):
    """429 (or Spark's 1550): every writer of the system pauses for ``retry_after``."""

    cause = "rate_limited"

    def __init__(self, message: str = "rate limited", *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class QuotaExhausted(Retryable):
    """A daily quota is spent; wait until ``reset_at`` (epoch seconds) or stop cleanly.

    The HTTP client waits for the quota itself and retries the refused request. It lets
    the error out, with ``stop`` set, only when the run is to end instead — asked to
    (``--stop-at-quota``), a wait longer than ``max_quota_wait``, or Ctrl-C during the
    wait — and the engine then stops cleanly: never a record failure, always resumable.
    """

    cause = "quota"

    def __init__(self, message: str = "daily quota exhausted", *, reset_at: float | None = None,
                 stop: bool = False):
        super().__init__(message)
        self.reset_at = reset_at
        self.stop = stop


class CredentialExpired(QuotaExhausted, UserError):
    """A credential that cannot be renewed by the tool (a bearer token with no refresh token)
    has expired. The refused request was not carried out: mid-run the engine stops cleanly
    and resumably, as at a spent quota; before the run, it is a one-line user error.
    The message says which variable to renew, never its value."""

    cause = "credential_expired"

    def __init__(self, message: str):
        super().__init__(message, stop=True)


class TokenExpired(Retryable):
    """The access token or session is no longer valid; refresh once and retry."""

    cause = "token_expired"


class UncertainWrite(Retryable):
    """A write was sent but its outcome is unknown (connection dropped, body garbled).

    Retrying blindly may duplicate the record; the engine reconciles it by the target's
    natural-key lookup, or by the job's ``on_uncertain`` policy.
    """

    cause = "uncertain"
