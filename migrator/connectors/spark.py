"""Flexmls contacts through the Spark API (``/v1/contacts``), as source and as target.

What sets Spark apart: every request needs ``X-SparkApi-User-Agent``; every answer is a
``{"D": {...}}`` envelope whose ``Code`` says more than its HTTP status (the rate limit is
Code 1550 on 429 *or* 503, and a plain 503 is an outage); a session-signed request covers
its path, every query parameter and its body; and a key holds one session at a time, so
a session is renewed once for every concurrent caller — a second login would end the
session the other workers are using.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Iterable, Mapping
from urllib.parse import urlsplit

import orjson

from ..errors import (AuthError, ConfigError, JobError, RateLimited, RecordError, Retryable,
                      TokenExpired, UncertainWrite)
from ..http import Auth, HttpClient, Request, Response, StaticHeaderAuth, retry_after_seconds
from ..paging import in_order
from ..limits import RateLimit
from ..protocols import Page, Record, StreamInfo, WriteResult
from ..schema import Field, StreamSchema
from .base import Connector, Context, Setting

PAGE_SIZE = 25
SESSION_PATH = "/v1/session"
CONTACTS = "/v1/contacts"

_TEXT_300 = (
    "GivenName", "MiddleName", "FamilyName", "SpouseGivenName", "SpouseMiddleName",
    "SpouseFamilyName", "PrimaryPhoneNumber", "HomePhoneNumber", "WorkPhoneNumber",
    "FaxPhoneNumber", "MobilePhoneNumber", "PagerPhoneNumber", "OtherPhoneNumber",
    "HomeStreetAddress", "HomeLocality", "HomeRegion", "HomePostalCode", "WorkStreetAddress",
    "WorkLocality", "WorkRegion", "WorkPostalCode", "Organization", "Position", "Birthday",
    "Anniversary", "Assistant", "Children", "Status", "Other", "Pets", "ReferredBy",
    "Salutation")

# The doc's "Contacts Description" table, writeable attributes only (OwnerId is writeable
# only alone, as a transfer, so it is not a field of a migrated contact).
CONTACT_FIELDS: tuple[Field, ...] = (
    Field("DisplayName", required=True, max_length=75),
    Field("PrimaryEmail", required=True, max_length=75, format="email"),
    Field("RecordStatus", enum=("Connected", "Unconnected")),
    Field("SecondaryEmails", type="list", max_length=75, format="email"),
    Field("AdditionalNotificationEmails", type="list", max_length=75, format="email",
          description="a subset of SecondaryEmails"),
    *(Field(name, max_length=300) for name in _TEXT_300[:9]),
    Field("MobilePhoneCountryCode", max_length=2),
    *(Field(name, max_length=300) for name in _TEXT_300[9:]),
    Field("Tags", type="list", max_length=75),
    Field("Settings.ReverseProspecting", type="bool",
          description="sent as Settings: {ReverseProspecting: ...}"),
    Field("Note", max_length=10_000),
)

# Every attribute name the doc lists, to find the one a refusal's message is about.
_ATTRIBUTES = frozenset({f.name for f in CONTACT_FIELDS} | {
    "ResourceUri", "Id", "OwnerId", "InvalidEmails", "ModificationTimestamp",
    "CreatedTimestamp", "NewsFeedNotificationUI", "PortalInvitationTimestamp", "Notify",
    "Settings", "VowActive", "VowExists", "PortalLoginName", "UniquePrimaryEmail",
    "_filter", "_orderby", "_expand", "_limit", "_page", "_pagination"})

_PageData = tuple[list[dict[str, Any]], dict[str, Any]]   # Results, Pagination
_AUTH_CODES = frozenset({1000, 1010, 1015})
_RECORD_CODES = frozenset({1035, 1040, 1050, 1053})


def md5hex(text: bytes) -> str:
    return hashlib.md5(text).hexdigest()


def quote_filter_value(value: str) -> str:
    """A value for ``_filter``, quoted so that an apostrophe in an address cannot end it."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def filter_timestamp(raw: str) -> str:
    """``--since`` as the UTC ISO 8601 stamp ``_filter`` takes unquoted."""
    try:
        dt = datetime.fromisoformat(raw.strip())
    except ValueError:
        from dateutil import parser
        try:
            dt = parser.parse(raw)
        except (ValueError, OverflowError):
            raise ConfigError(f"spark: --since {raw!r} is not a date or date-time") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    dt = dt.astimezone(timezone.utc)
    stamp = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if dt.microsecond:
        stamp += f".{dt.microsecond // 1000:03d}"
    return stamp + "Z"


class SparkRefused(RecordError):
    """A record-level refusal in Spark's envelope; ``code`` tells a duplicate (1055) apart."""

    def __init__(self, reason: str, *, code: int, field: str | None = None,
                 status: int | None = None):
        super().__init__(reason, field=field, rule="server", status=status)
        self.code = code


class SessionAuth(Auth):
    """``/v1/session`` login and a signature on every request.

    The login goes through its own client (the auth host may differ from the API host)
    that shares the API client's limiter and request bill: Spark counts it in the key's
    window. While a renewal is under way, new requests wait for it rather than go out
    with the token it is replacing.
    """

    def __init__(self, api_key: str, api_secret: str, login_http: HttpClient, names: str):
        super().__init__()
        self.api_key = api_key
        self.api_secret = api_secret
        self.login_http = login_http
        self.names = names
        self.token: str | None = None

    def login_signature(self) -> str:
        return md5hex(f"{self.api_secret}ApiKey{self.api_key}".encode())

    def request_signature(self, service_path: str, token: str, params: Mapping[str, str],
                          body: bytes | None) -> str:
        text = (f"{self.api_secret}ApiKey{self.api_key}ServicePath{service_path}AuthToken{token}"
                + "".join(k + params[k] for k in sorted(params)))
        return md5hex(text.encode() + (body or b""))

    async def login(self, client: HttpClient) -> None:
        resp = await self.login_http.request(
            "POST", SESSION_PATH, params={"ApiKey": self.api_key, "ApiSig": self.login_signature()},
            kind="auth")
        try:
            token = resp.json()["D"]["Results"][0]["AuthToken"]
        except (TypeError, KeyError, IndexError):
            token = None
        if not isinstance(token, str) or not token:
            raise AuthError(f"spark: {SESSION_PATH} answered without an AuthToken: check {self.names}")
        self.token = token

    async def apply(self, client: HttpClient, req: Request) -> None:
        if self.token is None or self._lock.locked():
            async with self._lock:
                if self.token is None:
                    await self.login(client)
        assert self.token is not None
        params = {k: str(v) for k, v in (req.params or {}).items()}
        service_path = urlsplit(client.base_url).path.rstrip("/") + req.path
        sig = self.request_signature(service_path, self.token, params, req.body_bytes())
        req.params = {**params, "AuthToken": self.token, "ApiSig": sig}


class Spark(Connector):
    system = "spark"
    title = "Flexmls (Spark API)"
    credentials_help = ("an OAuth2 access token (SPARK_ACCESS_TOKEN), or the API key and secret of your "
                        "Spark Platform developer account (SPARK_API_KEY, SPARK_API_SECRET) for session auth")
    reads = "api"
    writes = True
    settings_spec = {
        "access_token": Setting("OAuth2 bearer token (or use api_key + api_secret for session auth)",
                                secret=True, env="SPARK_ACCESS_TOKEN"),
        "api_key": Setting("API key, for session auth", secret=True, env="SPARK_API_KEY"),
        "api_secret": Setting("API secret, for session auth", secret=True, env="SPARK_API_SECRET"),
        "user_agent": Setting("sent as X-SparkApi-User-Agent on every request", default="crm-migrator/0.1"),
        "auth_base_url": Setting("host of /v1/session (defaults to base_url)"),
    }
    default_base_url = "https://sparkapi.com"
    default_limit = RateLimit(1500, 300)
    source_streams = ("contacts",)
    notes = ("25 contacts a page, fetched concurrently; 1,500 requests / 5 min per IDX key; "
             "a duplicate PrimaryEmail (1055) counts as matched")

    def __init__(self, settings: Mapping[str, Any], ctx: Context):
        super().__init__(settings, ctx)
        self.user_agent = str(self.setting("user_agent"))
        self._expand: tuple[str, ...] = ()
        self._first_pages: dict[tuple, _PageData] = {}
        self._login_http: HttpClient | None = None
        headers = {"X-SparkApi-User-Agent": self.user_agent, "Accept": "application/json"}
        token = self.setting("access_token")
        key, secret = self.setting("api_key"), self.setting("api_secret")
        if token:
            self.session_auth = False
            self.credential_names = self._var("access_token")
            auth: Auth = StaticHeaderAuth({"Authorization": f"Bearer {token}"}, self.credential_names)
        elif key and secret:
            self.session_auth = True
            self.credential_names = f"{self._var('api_key')} and {self._var('api_secret')}"
            auth_base = self.setting("auth_base_url") or self.setting("base_url") or self.default_base_url
            self._login_http = HttpClient(
                self.system, str(auth_base), limit=None, headers=headers, classify=self._classify,
                allow_insecure_http=ctx.allow_insecure_http,
                timeout=float(self.setting("timeout") or 30), connections=2)
            auth = SessionAuth(str(key), str(secret), self._login_http, self.credential_names)
        else:
            where = f"{ctx.where}: " if ctx.where else ""
            raise ConfigError(f"{where}spark needs {self._var('access_token')}, or "
                              f"{self._var('api_key')} and {self._var('api_secret')} for session auth")
        self.make_http(auth=auth, classify=self._classify, headers=headers)
        if self._login_http is not None:
            assert self.http is not None
            self._login_http.limiter = self.http.limiter
            self._login_http.stats = self.http.stats

    def _var(self, setting: str) -> str:
        origin = self.ctx.origins.get(setting)
        if origin:
            return origin.strip("${}")
        spec = self.settings_spec[setting]
        return spec.env or setting

    @classmethod
    def schemas(cls) -> dict[str, StreamSchema]:
        return {"contacts": StreamSchema("contacts", CONTACT_FIELDS)}

    # ---- lifecycle ----------------------------------------------------------------
    async def open(self) -> None:
        await super().open()
        if self._login_http is not None:
            await self._login_http.open()

    async def close(self) -> None:
        await super().close()
        if self._login_http is not None:
            await self._login_http.close()

    # ---- errors ---------------------------------------------------------------------
    def _classify(self, resp: Response) -> Exception | None:
        """Spark's envelope to a typed error; ``None`` leaves the status to HttpClient."""
        ok = 200 <= resp.status < 300
        if not resp.body:
            return None
        try:
            body = orjson.loads(resp.body)
        except orjson.JSONDecodeError:
            if not ok:
                return None
            if resp.request.write:
                return UncertainWrite("spark: the response body was cut short or not JSON")
            return Retryable("spark: the response body was cut short or not JSON", cause="truncated")
        d = body.get("D") if isinstance(body, dict) else None
        if not isinstance(d, dict) or d.get("Success") is not False:
            return None
        code = d.get("Code")
        message = str(d.get("Message") or "").strip()
        said = f"Code {code}: {message}" if message else f"Code {code}"
        if code == 1550:
            return RateLimited(f"spark: rate limited ({said})", retry_after=retry_after_seconds(resp.headers))
        if code == 1020:
            if self.session_auth:
                return TokenExpired(f"spark: session expired ({said})")
            return AuthError(f"spark: the access token has expired ({said}): renew {self.credential_names}")
        if code in _AUTH_CODES:
            return AuthError(f"spark refused the credentials ({said}): check {self.credential_names}")
        if code == 1016:
            return ConfigError(f"spark refused the request ({said}): the X-SparkApi-User-Agent header "
                               "must name the application; set user_agent in the job")
        if code == 1017:
            return AuthError(f"spark: the key is read-only ({said}): POST, PUT and DELETE are refused; "
                             f"check {self.credential_names}")
        if code == 1030:
            return ConfigError(f"spark requires SSL ({said}): use an https base_url")
        if code == 1500:
            return AuthError(f"spark: not available at this key's service level ({said}): "
                             f"check {self.credential_names}")
        if code == 1055 or code in _RECORD_CODES or (
                isinstance(code, int) and code >= 1000 and 400 <= resp.status < 500):
            field = _field_of(d, message)
            if code == 1055 and field is None:
                field = "PrimaryEmail"
            return SparkRefused(f"spark refused the record ({said})", code=int(code), field=field,
                                status=resp.status)
        return None

    # ---- source side ------------------------------------------------------------------
    def use_mapping(self, streams: Iterable[Any]) -> None:
        """Ask for the Notes expansion only when a mapping reads Notes: it makes pages heavier."""
        wants = any("Notes" in getattr(sm, "uses_paths", ()) for sm in streams
                    if getattr(sm, "source_stream", "contacts") == "contacts")
        self._expand = ("Notes",) if wants else ()

    def _list_params(self, page: int) -> dict[str, str]:
        params = {"_pagination": "1", "_limit": str(PAGE_SIZE), "_page": str(page), "_orderby": "Id"}
        if self._expand:
            params["_expand"] = ",".join(self._expand)
        if self.ctx.since:
            params["_filter"] = f"ModificationTimestamp Gt {filter_timestamp(self.ctx.since)}"
        return params

    async def _fetch_page(self, page: int) -> _PageData:
        params = self._list_params(page)
        cached = self._first_pages.pop(tuple(sorted(params.items())), None)
        if cached is not None:
            return cached
        assert self.http is not None
        d = _envelope(await self.http.request("GET", CONTACTS, params=params, kind="page"))
        results = d.get("Results") or []
        paging = d.get("Pagination") or {}
        if not isinstance(results, list) or not isinstance(paging, dict):
            raise Retryable("spark: a contacts page without Results or Pagination", cause="garbled")
        return results, paging

    def _check_stream(self, stream: str) -> None:
        if stream != "contacts":
            raise JobError(f"{self.ctx.where}: spark has no stream '{stream}' (it has: contacts)")

    async def info(self, stream: str) -> StreamInfo:
        """Fetches the first page (kept for ``pages``) for its TotalRows."""
        self._check_stream(stream)
        first = await self._fetch_page(1)
        self._first_pages[tuple(sorted(self._list_params(1).items()))] = first
        total = first[1].get("TotalRows")
        return StreamInfo(stream, total=int(total) if isinstance(total, int) else None)

    async def pages(self, stream: str, cursor: Any) -> AsyncIterator[Page]:
        """Pages in Id (creation) order, so contacts added during the read land at the end;
        up to ``ctx.concurrency`` fetched at once, yielded in order."""
        self._check_stream(stream)
        start = int((cursor or {}).get("page", 0)) + 1
        results, paging = await self._fetch_page(start)
        last = int(paging.get("TotalPages") or 0)

        following = start

        def next_number() -> int | None:
            nonlocal following
            if following >= last:   # `last` is re-read: TotalPages may grow mid-read
                return None
            following += 1
            return following

        def page(n: int, rows: list[dict[str, Any]], p: dict[str, Any]) -> Page:
            total = p.get("TotalRows")
            return Page([Record(str(r.get("Id")), r) for r in rows], None if n >= last else {"page": n},
                        total=int(total) if isinstance(total, int) else None)

        if results:
            yield page(start, results, paging)
        async for n, (rows, p) in in_order(self._fetch_page, next_number, self.ctx.concurrency):
            last = max(last, int(p.get("TotalPages") or 0))
            if rows:
                yield page(n, rows, p)

    # ---- target side ------------------------------------------------------------------
    def can_lookup(self, stream: str) -> bool:
        return stream == "contacts"

    async def lookup(self, stream: str, record: Mapping[str, Any], source_id: str) -> str | None:
        self._check_stream(stream)
        email = record.get("PrimaryEmail")
        if not isinstance(email, str) or not email.strip():
            return None
        return await self._find_by_email(email.strip())

    async def _find_by_email(self, email: str) -> str | None:
        assert self.http is not None
        resp = await self.http.request(
            "GET", CONTACTS, params={"_filter": f"PrimaryEmail Eq {quote_filter_value(email)}",
                                     "_limit": str(PAGE_SIZE)}, kind="lookup")
        wanted = email.casefold()
        for row in _envelope(resp).get("Results") or []:
            if isinstance(row, dict) and str(row.get("PrimaryEmail") or "").casefold() == wanted:
                return str(row["Id"])
        return None

    async def write(self, stream: str, record: dict[str, Any], *, source_id: str,
                    target_id: str | None = None) -> WriteResult:
        self._check_stream(stream)
        assert self.http is not None
        body = {"D": _payload(record)}
        if target_id:
            # A PUT carrying a Note adds a note: not safe to repeat blindly.
            await self.http.request("PUT", f"{CONTACTS}/{target_id}", json=body, kind="update",
                                    write="Note" in body["D"])
            return WriteResult(str(target_id), "updated", requests={"update": 1})
        try:
            resp = await self.http.request("POST", CONTACTS, json=body, kind="create", write=True)
        except SparkRefused as e:
            email = record.get("PrimaryEmail")
            if e.code != 1055 or not isinstance(email, str) or not email.strip():
                raise
            found = await self._find_by_email(email.strip())
            if found is None:
                raise
            return WriteResult(found, "matched", matched_key=f"PrimaryEmail={email.strip()}",
                               requests={"create": 1, "lookup": 1})
        try:
            new_id = _envelope(resp)["Results"][0]["Id"]
        except (KeyError, IndexError, TypeError):
            raise UncertainWrite("spark: the create answered without D.Results[0].Id") from None
        return WriteResult(str(new_id), "created", requests={"create": 1})


def _envelope(resp: Response) -> dict[str, Any]:
    body = resp.json()
    d = body.get("D") if isinstance(body, dict) else None
    if not isinstance(d, dict):
        if resp.request.write:
            raise UncertainWrite('spark: the answer was not a {"D": ...} envelope')
        raise Retryable('spark: the answer was not a {"D": ...} envelope', cause="garbled")
    return d


def _payload(record: Mapping[str, Any]) -> dict[str, Any]:
    """The mapped record as the ``D`` body; ``Settings.X`` fields nest under ``Settings``."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if value is None:
            continue
        head, dot, sub = key.partition(".")
        if dot and head == "Settings":
            out.setdefault("Settings", {})[sub] = value
        else:
            out[key] = value
    return out


def _field_of(d: Mapping[str, Any], message: str) -> str | None:
    """The attribute a refusal is about: ``D.Details`` when given, else the message's words."""
    details = d.get("Details")
    if isinstance(details, list):
        for item in details:
            if isinstance(item, dict) and item:
                return str(next(iter(item)))
    for word in message.replace(",", " ").replace(".", " ").replace(":", " ").replace("'", " ").split():
        if word in _ATTRIBUTES:
            return word
    return None
