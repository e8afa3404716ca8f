"""What every simulator shares: rate limits counted the vendor's way, daily quotas,
fault injection, request counting and the ``/_sandbox`` inspection routes.

A vendor simulator subclasses ``Simulator``, says how a request names its credential
(``authenticate``), how the vendor answers a refusal (``rate_limited_response``,
``error_response``), and lists its routes. The middleware does the rest, in the order a
real edge would: count → latency → dropped before → auth → window → injected 5xx / 429 →
handler (the write is applied) → dropped after → truncated body.
"""
from __future__ import annotations

import asyncio
import math
from array import array
import random
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson
from aiohttp import web

from .data import CLEAN, Dirt, Person, Property, people, properties

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
BURST_RETRY_AFTER = 1.0  # seconds an injected 429 burst lasts (and tells clients to wait)


class SlidingWindow:
    """At most ``limit`` admitted requests per key in *any* ``period`` seconds.

    The strictest reading of "N requests per T seconds". Refused requests do not count.
    ``max_in_window`` is the largest number admitted within one period, measured at each
    admission (the maximum over all windows is always reached at an admission).
    """

    def __init__(self, limit: int, period: float, clock: Callable[[], float] = time.monotonic):
        self.limit, self.period, self.clock = limit, period, clock
        self._hits: dict[str, deque[float]] = {}
        self.admitted = 0
        self.refused = 0
        self.max_in_window = 0

    def hit(self, key: str) -> float | None:
        """Admit (None) or refuse with the seconds until the window frees a slot."""
        now = self.clock()
        q = self._hits.setdefault(key, deque())
        while q and q[0] <= now - self.period:
            q.popleft()
        if len(q) >= self.limit:
            self.refused += 1
            return max(q[0] + self.period - now, 0.001)
        q.append(now)
        self.admitted += 1
        self.max_in_window = max(self.max_in_window, len(q))
        return None

    def remaining(self, key: str) -> int:
        now = self.clock()
        q = self._hits.get(key, ())
        return self.limit - sum(1 for t in q if t > now - self.period)

    def reset(self) -> None:
        self._hits.clear()
        self.admitted = self.refused = self.max_in_window = 0


class DailyQuota:
    """A per-credential request budget that refills every ``day`` seconds (test-sized)."""

    def __init__(self, limit: int, day: float = 86400.0, clock: Callable[[], float] = time.time):
        self.limit, self.day, self.clock = limit, day, clock
        self._used: dict[str, tuple[int, int]] = {}  # key -> (day number, used)
        self.refused = 0

    def _day(self) -> int:
        return int(self.clock() // self.day)

    def take(self, key: str) -> bool:
        d = self._day()
        day, used = self._used.get(key, (d, 0))
        if day != d:
            used = 0
        if used >= self.limit:
            self.refused += 1
            return False
        self._used[key] = (d, used + 1)
        return True

    def remaining(self, key: str) -> int:
        d = self._day()
        day, used = self._used.get(key, (d, 0))
        return self.limit - (used if day == d else 0)

    def resets_at(self) -> float:
        return (self._day() + 1) * self.day

    def reset(self) -> None:
        self._used.clear()
        self.refused = 0


@dataclass(frozen=True)
class Faults:
    """What goes wrong, and how often (rates 0..1 per request)."""

    latency: float = 0.0          # seconds added to every request
    jitter: float = 0.0           # plus uniform 0..jitter seconds
    error_rate: float = 0.0       # 500 / 502 / 503 before the handler runs
    burst_429_rate: float = 0.0   # chance a request starts a burst of 429s
    burst_len: int = 5            # requests refused in a burst
    drop_before_rate: float = 0.0  # connection dropped; nothing applied
    drop_after_rate: float = 0.0   # write applied, then the connection dropped
    truncate_rate: float = 0.0     # response body cut short (write applied)
    token_ttl: float | None = None  # seconds a token/session lives (vendor default if None)
    keep_less_rate: float = 0.0    # a create answered as usual that keeps less (see keep_less)
    seed: int = 0


PROFILES: dict[str, Faults] = {
    "none": Faults(),
    "latency": Faults(latency=0.05, jitter=0.02),
    "flaky": Faults(latency=0.005, jitter=0.01, error_rate=0.05, burst_429_rate=0.01,
                    drop_before_rate=0.01, drop_after_rate=0.01, truncate_rate=0.01),
    "soak": Faults(latency=0.002, jitter=0.01, error_rate=0.05, burst_429_rate=0.02 / 5,
                   burst_len=5, drop_after_rate=0.01, truncate_rate=0.01),
    "tokens": Faults(token_ttl=3.0),
    "keepless": Faults(keep_less_rate=0.05),
}

# What a create that keeps less does, in turn: what a real service that answers 200 may do.
KEEP_LESS = ("drop", "cut", "lose", "reformat")


def faults_profile(name: str) -> Faults:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown fault profile {name!r}; choose one of {', '.join(PROFILES)}") from None


@dataclass
class Stats:
    requests: Counter = field(default_factory=Counter)       # "GET /v1/contacts/" -> n
    faults: Counter = field(default_factory=Counter)         # "5xx", "429_burst", "drop_after"…
    creates_by_key: Counter = field(default_factory=Counter)  # natural key -> creates
    kept_less: list = field(default_factory=list)            # {id, what, field, sent, kept} per spoiled create
    rate_limited: int = 0
    unauthorized: int = 0
    # When each request arrived (time.monotonic), refused ones included: how a test or a
    # bench sees the largest count in any window even with the simulator's limit off.
    arrivals: array = field(default_factory=lambda: array("d"))

    def as_dict(self, arrivals: bool = False) -> dict[str, Any]:
        d = {"requests": dict(self.requests), "faults": dict(self.faults),
             "creates_by_key": {k: v for k, v in self.creates_by_key.items()},
             "kept_less": list(self.kept_less),
             "rate_limited": self.rate_limited, "unauthorized": self.unauthorized}
        if arrivals:
            d["arrivals"] = self.arrivals.tolist()
        return d


def most_in_any_window(arrivals: Any, period: float) -> int:
    """The largest number of ``arrivals`` (sorted times) within any ``period`` seconds,
    counted as a vendor counts its sliding window."""
    best = start = 0
    for i, t in enumerate(arrivals):
        while arrivals[start] <= t - period:
            start += 1
        best = max(best, i - start + 1)
    return best


class Unauthorized(Exception):
    """Raised by ``authenticate``; carries the vendor-shaped response."""

    def __init__(self, response: web.Response):
        super().__init__("unauthorized")
        self.response = response


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status,
                        content_type="application/json", headers=headers)


class Simulator:
    """Base of the vendor simulators. Subclasses set ``vendor`` and ``default_limit``."""

    vendor: str = "base"
    default_limit: tuple[int, float] | None = None   # (N requests, per T seconds)

    def __init__(self, *, contacts: int = 0, seed: int = 0, dirt: Dirt = CLEAN,
                 faults: Faults | None = None, limit: tuple[int, float] | None | bool = True,
                 daily_quota: int | None = None, day_seconds: float = 86400.0):
        self.seed = seed
        self.faults = faults or Faults()
        self._rng = random.Random(self.faults.seed or seed)
        lim = self.default_limit if limit is True else (limit or None)
        self.window: SlidingWindow | None = SlidingWindow(*lim) if lim else None
        self.quota: DailyQuota | None = DailyQuota(daily_quota, day_seconds) if daily_quota else None
        self.stats = Stats()
        self._burst_left = 0
        self._burst_until = 0.0
        self.base_url: str = ""
        self.seed_people: list[Person] = people(contacts, seed, dirt) if contacts else []
        self.seed_properties: list[Property] = properties(self.seed_people, seed) if contacts else []
        self.seed_data()

    # ---- for subclasses ------------------------------------------------------------

    def seed_data(self) -> None:
        """Load ``self.seed_people`` / ``self.seed_properties`` into the vendor's store."""

    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    def authenticate(self, request: web.Request) -> str | None:
        """Return the credential key requests are counted under, or raise Unauthorized.
        ``None`` means the route needs no credential (e.g. the token endpoint)."""
        return None

    def rate_limited_response(self, retry_after: float) -> web.Response:
        return json_response({"message": "Too Many Requests"}, 429,
                             {"Retry-After": str(max(1, math.ceil(retry_after)))})

    def error_response(self, status: int) -> web.Response:
        return json_response({"message": "Internal Server Error"}, status)

    def decorate(self, request: web.Request, response: web.StreamResponse, key: str | None) -> None:
        """Add vendor headers (e.g. X-RateLimit-*) to every answered response."""

    def credentials(self) -> dict[str, str]:
        """Environment variables a job needs to reach this simulator."""
        return {}

    def extra_stats(self) -> dict[str, Any]:
        """Vendor counters (tokens issued, merged writes…) for ``/_sandbox/stats``."""
        return {}

    def inspect_records(self, kind: str) -> list[dict[str, Any]]:
        """The stored records of ``kind`` ("contacts", "notes", "properties", …)."""
        raise KeyError(kind)

    def reset_state(self) -> None:
        """Forget every write; re-seed."""
        self.seed_data()

    # ---- shared machinery ----------------------------------------------------------

    def count_create(self, key: str | None) -> None:
        """Call from a create handler with the record's natural key (lower-cased e-mail…)."""
        if key:
            self.stats.creates_by_key[key] += 1

    def keep_less(self, stored: dict[str, Any], record_id: str, fields: tuple[str, ...]) -> str | None:
        """The keep-less fault (``keep_less_rate``; off by default): after a create was
        stored and its answer made, keep less than it acknowledged — in turn drop one of
        ``fields``, cut a long one to half, lose the whole record (the caller deletes it
        when this returns ``"lose"``), or keep one reformatted (upper case). ``fields``
        are the simulator's text fields a migration fills, never the record's natural
        key. Harsher than the doc, never friendlier; each one is listed in the stats."""
        if not self._chance(self.faults.keep_less_rate):
            return None
        what = KEEP_LESS[len(self.stats.kept_less) % len(KEEP_LESS)]
        filled = [f for f in fields if isinstance(stored.get(f), str) and stored[f].strip()]
        if what != "lose" and not filled:
            return None
        name, kept = None, None
        if what == "drop":
            name = filled[0]
            stored[name] = None
        elif what == "cut":
            name = max(filled, key=lambda f: len(stored[f]))
            kept = stored[name] = stored[name][: max(1, len(stored[name]) // 2)]
        elif what == "reformat":
            changes = [f for f in filled if stored[f].upper() != stored[f]]
            if not changes:
                return None
            name = changes[0]
            kept = stored[name] = stored[name].upper()
        self.stats.faults["keep_less"] += 1
        self.stats.kept_less.append({"id": record_id, "what": what, "field": name, "kept": kept})
        return what

    def duplicates(self) -> dict[str, int]:
        return {k: n for k, n in self.stats.creates_by_key.items() if n > 1}

    def reset(self) -> None:
        self.stats = Stats()
        self._burst_left = 0
        if self.window:
            self.window.reset()
        if self.quota:
            self.quota.reset()
        self.reset_state()

    def token_ttl(self, default: float) -> float:
        return self.faults.token_ttl if self.faults.token_ttl is not None else default

    def set_faults(self, faults: Faults) -> None:
        self.faults = faults

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=32 * 1024 ** 2)
        app.router.add_get("/_sandbox/stats", self._h_stats)
        app.router.add_get("/_sandbox/records/{kind}", self._h_records)
        app.router.add_post("/_sandbox/reset", self._h_reset)
        app.add_routes(self.routes())
        return app

    async def _h_stats(self, request: web.Request) -> web.Response:
        """``?arrivals=1`` adds every request's arrival time (monotonic seconds)."""
        d = self.stats.as_dict(arrivals=request.query.get("arrivals") == "1")
        d.update(self.extra_stats())
        if self.window:
            d["window"] = {"limit": self.window.limit, "period": self.window.period,
                           "admitted": self.window.admitted, "refused": self.window.refused,
                           "max_in_window": self.window.max_in_window}
        if self.quota:
            d["quota"] = {"limit": self.quota.limit, "refused": self.quota.refused}
        return json_response(d)

    async def _h_records(self, request: web.Request) -> web.Response:
        try:
            return json_response(self.inspect_records(request.match_info["kind"]))
        except KeyError:
            return json_response({"error": "unknown kind"}, 404)

    async def _h_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return json_response({"ok": True})

    def _chance(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate

    @web.middleware
    async def _middleware(self, request: web.Request, handler) -> web.StreamResponse:
        if request.path.startswith("/_sandbox/"):
            return await handler(request)
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else request.path
        self.stats.requests[f"{request.method} {route}"] += 1
        self.stats.arrivals.append(time.monotonic())
        f = self.faults
        if self._chance(f.drop_before_rate):
            self.stats.faults["drop_before"] += 1
            return self._drop(request)
        try:
            key = self.authenticate(request)
        except Unauthorized as e:
            self.stats.unauthorized += 1
            return e.response
        if key is not None:
            if self.window is not None:
                wait = self.window.hit(key)
                if wait is not None:
                    self.stats.rate_limited += 1
                    resp = self.rate_limited_response(wait)
                    self.decorate(request, resp, key)
                    return resp
            if self.quota is not None and not self.quota.take(key):
                self.stats.rate_limited += 1
                resp = self.rate_limited_response(max(self.quota.resets_at() - time.time(), 0.001))
                self.decorate(request, resp, key)
                return resp
        # A 429 burst refuses up to burst_len requests, but only until the Retry-After it
        # announced has passed: a client that waits as told is served again.
        now = time.monotonic()
        if self._burst_left > 0 and now >= self._burst_until:
            self._burst_left = 0
        if self._burst_left > 0 or self._chance(f.burst_429_rate):
            if self._burst_left <= 0:
                self._burst_left = f.burst_len
                self._burst_until = now + BURST_RETRY_AFTER
                self.stats.faults["429_burst"] += 1
            self._burst_left -= 1
            self.stats.rate_limited += 1
            resp = self.rate_limited_response(max(self._burst_until - now, 0.001))
            self.decorate(request, resp, key)
            return resp
        # Latency after the window check: the vendor counts a request when it arrives.
        if f.latency or f.jitter:
            await asyncio.sleep(f.latency + (self._rng.random() * f.jitter if f.jitter else 0.0))
        if self._chance(f.error_rate):
            self.stats.faults["5xx"] += 1
            resp = self.error_response(self._rng.choice([500, 502, 503]))
            self.decorate(request, resp, key)
            return resp
        response = await handler(request)
        is_write = request.method in WRITE_METHODS
        if is_write and self._chance(f.drop_after_rate):
            self.stats.faults["drop_after"] += 1
            return self._drop(request)
        if self._chance(f.truncate_rate) and isinstance(response, web.Response) and response.body:
            self.stats.faults["truncated"] += 1
            body = bytes(response.body)
            response = web.Response(body=body[: max(1, len(body) // 2)], status=response.status,
                                    content_type=response.content_type)
        self.decorate(request, response, key)
        return response

    @staticmethod
    def _drop(request: web.Request) -> web.StreamResponse:
        if request.transport is not None:
            request.transport.close()
        raise web.HTTPInternalServerError()  # never reaches the client: the socket is gone
