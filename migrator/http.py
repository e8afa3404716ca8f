"""One HTTP client per system per run: limiter, retries, token refresh, typed errors.

Connectors describe requests; this module decides what a response means. The rules:

- every request waits on the system's ``Limiter`` (attempts and retries alike);
- 429 (or a vendor's equivalent, via ``classify``) pauses every caller until
  ``Retry-After`` has passed, then the request goes again;
- a spent daily quota (``QuotaExhausted``) holds every caller until it returns, says so
  through ``on_wait``, then the request goes again — unless the run is to stop at the
  quota (``stop_at_quota``, a wait beyond ``max_quota_wait``, Ctrl-C during the wait):
  then ``QuotaExhausted(stop=True)`` goes up and the engine stops cleanly;
- 5xx, timeouts, resets and garbled bodies of reads retry with capped exponential backoff
  and full jitter;
- a *write* whose outcome is unknown (connection lost after sending, garbled body) is
  never blindly retried here: it raises ``UncertainWrite`` and the engine reconciles it;
- an expired token is refreshed once for all concurrent callers (single flight);
- 401/403 that survive a refresh become ``AuthError`` naming the credential variables,
  never their values; a 404 before any call has succeeded becomes ``ConnectError``.
"""
from __future__ import annotations

import asyncio
import ipaddress
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

import aiohttp
import anyio
import orjson

from . import crashpoints
from .errors import (AuthError, ConfigError, ConnectError, QuotaExhausted, RateLimited,
                     RecordError, Retryable, TokenExpired, UncertainWrite)
from .limits import Limiter, RateLimit


@dataclass(slots=True)
class Request:
    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    data: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    kind: str = "read"        # for the request bill: page, detail, lookup, create, update, tags…
    write: bool = False       # not idempotent: an unknown outcome is uncertain
    auth_generation: int = 0  # which credentials signed it, for single-flight refresh

    def body_bytes(self) -> bytes | None:
        if self.json is not None:
            return orjson.dumps(self.json)
        return None


@dataclass(slots=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes
    request: Request
    _parsed: Any = field(default=None, repr=False)  # the body parsed once, shared by classify and the caller

    def parsed(self) -> Any:
        """The body as JSON, parsed once; raises orjson.JSONDecodeError if it is not JSON."""
        if self._parsed is None and self.body:
            self._parsed = (orjson.loads(self.body),)
        return self._parsed[0] if self._parsed is not None else None

    def json(self) -> Any:
        """Parsed body; a garbled body is a transient fault, or uncertain for a write."""
        try:
            return self.parsed()
        except orjson.JSONDecodeError:
            if self.request.write:
                raise UncertainWrite("the response body was cut short or not JSON") from None
            raise Retryable("the response body was cut short or not JSON", cause="truncated") from None


@dataclass
class RequestStats:
    requests: Counter = field(default_factory=Counter)   # kind -> sent (retries included)
    retries: Counter = field(default_factory=Counter)    # cause -> count
    refreshes: int = 0
    # For the report's chart, per wall-clock second (int epoch): requests sent, 429s
    # answered; and each quota wait as [from, until]. A counter per second, not a list
    # per request: a long run costs a few thousand integers.
    sent: Counter = field(default_factory=Counter)
    limited: Counter = field(default_factory=Counter)
    waits: list = field(default_factory=list)
    limit: RateLimit | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"requests": dict(self.requests), "retries": dict(self.retries),
                               "token_refreshes": self.refreshes}
        if self.sent:
            out["timeline"] = self.timeline()
        return out

    def timeline(self) -> dict[str, Any]:
        """Seconds counted from ``start`` (the first request's second, epoch): ``sent`` and
        ``429`` as ``[[second, n], …]``, ``quota_waits`` as ``[[from, until], …]`` in the
        same seconds, and the limit the run was configured with."""
        start = min(self.sent)
        return {"start": start,
                "sent": [[t - start, n] for t, n in sorted(self.sent.items())],
                "429": [[t - start, n] for t, n in sorted(self.limited.items())],
                "quota_waits": [[round(a - start, 3), round(b - start, 3)] for a, b in self.waits],
                "limit": ({"requests": self.limit.requests, "per": self.limit.per}
                          if self.limit is not None else None)}


class Auth:
    """Base of credential schemes. ``names`` says which variables to check, for messages."""

    names: str = "the credentials"

    def __init__(self) -> None:
        self.generation = 0
        self._lock = asyncio.Lock()

    async def apply(self, client: "HttpClient", req: Request) -> None:
        """Add headers or parameters to ``req``."""

    async def login(self, client: "HttpClient") -> None:
        """Obtain a fresh token (client_credentials, a session…). Called under a lock."""

    def expired(self, resp: Response) -> bool:
        """Whether this refusal means "refresh and try again"."""
        return False

    async def refresh(self, client: "HttpClient", seen_generation: int) -> None:
        """Renew once for every caller that saw the same stale generation."""
        async with self._lock:
            if self.generation != seen_generation:
                return
            await self.login(client)
            crashpoints.reached("refresh")
            self.generation += 1
            client.stats.refreshes += 1


class StaticHeaderAuth(Auth):
    def __init__(self, headers: dict[str, str], names: str):
        super().__init__()
        self._headers = headers
        self.names = names

    async def apply(self, client: "HttpClient", req: Request) -> None:
        req.headers.update(self._headers)


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_base_url(system: str, base_url: str, allow_insecure_http: bool = False) -> str:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{system}: base_url {base_url!r} is not an http(s) URL")
    if parts.scheme == "http" and not is_loopback(parts.hostname) and not allow_insecure_http:
        raise ConfigError(f"{system}: base_url {base_url} uses plain http; use https "
                          "(or set allow_insecure_http: true in the job, for a test server)")
    return base_url.rstrip("/")


Classifier = Callable[[Response], "Exception | None"]

QUOTA_MIN_WAIT = 1.0        # a quota refusal never retries sooner (a Retry-After of 0 must not spin)
QUOTA_BACKOFF = 60.0        # unknown return time: first wait, doubling…
QUOTA_BACKOFF_CAP = 900.0   # …up to this


def _span(seconds: float) -> str:
    """``3h 12m``, ``4m 5s``, ``9s``: a wait as a person reads it."""
    s = max(0, round(seconds))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    if h:
        return f"{h}h {m}m" if m else f"{h}h"
    if m:
        return f"{m}m {sec}s" if sec else f"{m}m"
    return f"{sec}s"


def _at(when: float, now: float) -> str:
    """``14:05:10 UTC (in 3h 12m)``; the date too when it is not today's (UTC)."""
    from datetime import datetime, timezone
    t = datetime.fromtimestamp(when, timezone.utc)
    fmt = "%H:%M:%S UTC" if t.date() == datetime.fromtimestamp(now, timezone.utc).date() else "%Y-%m-%d %H:%M:%S UTC"
    return f"{t.strftime(fmt)} (in {_span(when - now)})"


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        from email.utils import parsedate_to_datetime
        import time
        try:
            return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
        except (TypeError, ValueError):
            return None


def error_text(resp: Response, limit: int = 300) -> str:
    """A short, human message from an error body (first string value found)."""
    try:
        body = resp.parsed()
    except orjson.JSONDecodeError:
        return resp.body[:limit].decode("utf-8", "replace").strip()
    return _first_message(body)[:limit] if body is not None else ""


def not_the_api(resp: Response, system: str, base_url: str) -> str | None:
    """What is wrong when an answer is not an API's JSON (an HTML page, a web server's
    default site, a proxy's login page): the usual sign of a wrong ``base_url``."""
    try:
        resp.parsed()
        return None
    except orjson.JSONDecodeError:
        pass
    ctype = str(resp.headers.get("Content-Type", "")).split(";")[0].strip()
    what = ("an HTML page" if _looks_like_a_page(resp) else
            f"a body that is not JSON ({ctype or 'no Content-Type'})")
    return (f"{system}: {resp.request.method} {resp.request.path} answered HTTP {resp.status} with {what}, "
            f"not the {system} API — is base_url {base_url} right?")


def _looks_like_a_page(resp: Response) -> bool:
    ctype = str(resp.headers.get("Content-Type", "")).lower()
    return "html" in ctype or resp.body.lstrip()[:1] == b"<"


def _first_message(body: Any) -> str:
    if isinstance(body, str):
        return body
    if isinstance(body, dict):
        for key in ("Message", "message", "msg", "Error", "error", "errors", "detail"):
            if key in body and body[key]:
                return _first_message(body[key])
        if "D" in body:
            return _first_message(body["D"])
        parts = [f"{k}: {_first_message(v)}" for k, v in body.items()
                 if isinstance(v, (str, list)) and v]
        return "; ".join(parts)
    if isinstance(body, list):
        return ", ".join(_first_message(x) for x in body if x is not None)
    return str(body)


class HttpClient:
    """The only place a connector's requests are sent from."""

    def __init__(self, system: str, base_url: str, *, limit: RateLimit | None,
                 auth: Auth | None = None, headers: dict[str, str] | None = None,
                 classify: Classifier | None = None, timeout: float = 30.0,
                 max_attempts: int = 8, backoff_base: float = 0.25, backoff_cap: float = 20.0,
                 allow_insecure_http: bool = False, observe: Callable[[Response], None] | None = None,
                 connections: int = 64, stop_at_quota: bool = False, max_quota_wait: float | None = None,
                 on_wait: Callable[[str], None] | None = None, spread: int | None = None):
        self.system = system
        self.base_url = check_base_url(system, base_url, allow_insecure_http)
        self.limiter = Limiter(limit, spread=spread)
        self.auth = auth
        self.headers = dict(headers or {})
        self.classify = classify
        self.observe = observe
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.connections = connections
        self.stats = RequestStats(limit=limit)
        self._session: aiohttp.ClientSession | None = None
        self._any_success = False
        self._rng = random.Random()
        self.stop_at_quota = stop_at_quota
        self.max_quota_wait = max_quota_wait   # seconds a spent quota may keep the run waiting
        self.on_wait = on_wait                 # told, in one line, when a quota wait starts
        self.quota_backoff, self.quota_backoff_cap = QUOTA_BACKOFF, QUOTA_BACKOFF_CAP
        self._quota_since: float | None = None  # when this spell of refusals began (wall clock)
        self._quota_unknown = 0                 # refusals in a row that did not say when it returns

    async def open(self) -> None:
        if self._session is None:
            # The limiter's window counts from when a request goes on the wire: the last
            # of "headers out" (a GET) and "body out" (a POST sends both in one write).
            on_wire = aiohttp.TraceConfig()

            async def sent(session: Any, ctx: Any, params: Any) -> None:
                self.limiter.sent_now(ctx.trace_request_ctx)

            on_wire.on_request_headers_sent.append(sent)
            on_wire.on_request_chunk_sent.append(sent)
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                connector=aiohttp.TCPConnector(limit=self.connections),
                json_serialize=lambda o: orjson.dumps(o).decode(), trace_configs=[on_wire])

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _backoff(self, attempt: int) -> float:
        return self._rng.uniform(0, min(self.backoff_cap, self.backoff_base * 2 ** attempt))

    async def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                      json: Any = None, data: Any = None, headers: dict[str, str] | None = None,
                      kind: str = "read", write: bool = False) -> Response:
        attempt = 0
        refreshes = 0
        while True:
            req = Request(method, path, dict(params) if params else None, json, data,
                          {**self.headers, **(headers or {})}, kind, write)
            try:
                resp = await self._send(req)
                error = self._classify(resp)
                if error is None:
                    self._any_success = True
                    self.limiter.on_success()
                    self._quota_since, self._quota_unknown = None, 0
                    return resp
                raise error
            except TokenExpired:
                refreshes += 1
                if self.auth is None or refreshes > 3:
                    raise AuthError(f"{self.system} keeps refusing a fresh token: check {self._names()}") from None
                self.stats.retries["token_expired"] += 1
                await self.auth.refresh(self, req.auth_generation)
            except RateLimited as e:
                self.stats.retries["rate_limited"] += 1
                self.stats.limited[int(time.time())] += 1
                self.limiter.on_rate_limited(e.retry_after)
                attempt += 1
                if attempt > self.max_attempts * 6:
                    raise
            except QuotaExhausted as e:
                if e.stop:
                    raise
                self.stats.retries["quota"] += 1
                self._quota_refused(e)
            except UncertainWrite:
                self.stats.retries["uncertain"] += 1
                raise
            except Retryable as e:
                self.stats.retries[e.cause] += 1
                attempt += 1
                if attempt >= self.max_attempts:
                    raise
                await anyio.sleep(self._backoff(attempt))

    def _names(self) -> str:
        return self.auth.names if self.auth else "the credentials"

    def _quota_refused(self, e: QuotaExhausted) -> None:
        """Hold the whole system until the quota returns, and say so once; or raise
        ``QuotaExhausted(stop=True)`` when the run is to stop instead. The refused request
        was not carried out, so sending it again later is safe, writes included."""
        now = time.time()
        held = self.limiter.held_until
        known = e.reset_at is not None
        if e.reset_at is not None:
            until = max(e.reset_at, now + QUOTA_MIN_WAIT)
        elif held is not None:
            return  # sent before the hold began: it waits with the rest
        else:
            until = now + min(self.quota_backoff_cap, self.quota_backoff * 2 ** self._quota_unknown)
            self._quota_unknown += 1
        if held is not None and until <= held:
            return
        if self._quota_since is None:
            self._quota_since = now
        returns = f"it returns at {_at(until, now)}" if known else "the server does not say when it returns"
        stop = None
        if self.stop_at_quota:
            stop = f"{e}; stopped at the quota, as asked; {returns}"
        elif self.max_quota_wait is not None and until - self._quota_since > self.max_quota_wait:
            why = f"{returns}, a longer wait than" if known else "it has stayed spent longer than"
            stop = f"{e}; {why} max_quota_wait ({_span(self.max_quota_wait)}) allows; stopped"
        if stop is not None:
            self.limiter.hold(until, stop, stop=True)
            raise QuotaExhausted(stop, reset_at=e.reset_at, stop=True) from None
        stopped = f"{e}; stopped while waiting for it; {returns}"
        held = self.limiter.hold(until, stopped)
        if held:   # one spell of refusals is one wait, however often it is moved later
            waits = self.stats.waits
            if waits and waits[-1][1] > now:
                waits[-1] = (waits[-1][0], until)
            else:
                waits.append((now, until))
        if held and self.on_wait is not None:
            wait = (f"waiting until {_at(until, now)}" if known else
                    f"the server does not say when it returns; trying again at {_at(until, now)}")
            self.on_wait(f"{e}; {wait} — Ctrl-C stops, and running the same command again resumes")

    async def _send(self, req: Request) -> Response:
        if self._session is None:
            await self.open()
        assert self._session is not None
        # Sign after waiting on the limiter: a signature or session must not age in the queue.
        slot = await self.limiter.acquire()
        if self.auth is not None:
            await self.auth.apply(self, req)
            req.auth_generation = self.auth.generation
        self.stats.requests[req.kind] += 1
        self.stats.sent[int(time.time())] += 1
        body = req.body_bytes()
        headers = dict(req.headers)
        if body is not None:
            headers.setdefault("Content-Type", "application/json")
        url = self.base_url + req.path
        started = time.monotonic()
        try:
            async with self._session.request(req.method, url, params=req.params,
                                             data=body if body is not None else req.data,
                                             headers=headers, trace_request_ctx=slot) as r:
                raw = await r.read()
                resp = Response(r.status, r.headers, raw, req)
            self.limiter.answered_in(time.monotonic() - started, slot)
        except aiohttp.ClientConnectorError as e:
            # Never sent: safe to retry, and a run that never connected has a wrong URL.
            if not self._any_success:
                raise ConnectError(f"{self.system}: cannot reach {self.base_url} ({e.os_error.strerror or e})") from None
            raise Retryable(f"{self.system}: connection failed", cause="connect") from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError,
                aiohttp.ClientResponseError, asyncio.TimeoutError) as e:
            cause = "timeout" if isinstance(e, asyncio.TimeoutError) else "disconnect"
            if req.write:
                raise UncertainWrite(f"{self.system}: {cause} after sending {req.kind}") from None
            raise Retryable(f"{self.system}: {cause}", cause=cause) from None
        if self.observe is not None:
            self.observe(resp)
        return resp

    def _classify(self, resp: Response) -> Exception | None:
        # An HTML page before any answer was the API's (or a probe's answer that is not
        # JSON) means base_url names something else: no retry will change that.
        if 200 <= resp.status < 300 and resp.body and (resp.request.kind == "probe" or not self._any_success):
            wrong = not_the_api(resp, self.system, self.base_url) if (
                resp.request.kind == "probe" or _looks_like_a_page(resp)) else None
            if wrong and resp.body.lstrip()[:1] in (b"{", b"["):
                return Retryable(wrong, cause="truncated")  # JSON cut short on the way: asked again
            if wrong:
                return ConnectError(wrong)
        if self.classify is not None:
            verdict = self.classify(resp)
            if verdict is not None:
                return verdict
        status = resp.status
        if 200 <= status < 300:
            return None
        if status == 429:
            return RateLimited(f"{self.system}: 429", retry_after=retry_after_seconds(resp.headers))
        if status in (401, 403):
            if self.auth is not None and self.auth.expired(resp):
                return TokenExpired(f"{self.system}: token expired")
            return AuthError(f"{self.system} refused the credentials (HTTP {status}): check {self._names()}")
        if status == 404 and not self._any_success:
            return ConnectError(f"{self.system}: {resp.request.method} {resp.request.path} answered 404 — "
                                f"is base_url {self.base_url} right?")
        if status == 408 or status >= 500:
            return Retryable(f"{self.system}: HTTP {status}", cause="5xx")
        return RecordError(error_text(resp) or f"HTTP {status}", status=status)
