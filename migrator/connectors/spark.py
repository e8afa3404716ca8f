"""Flexmls contacts through the Spark API (``/v1/contacts``), as source and as target.

What sets Spark apart: every request needs ``X-SparkApi-User-Agent``; every answer is a
``{"D": {...}}`` envelope whose ``Code`` says more than its HTTP status (the rate limit is
Code 1550 on 429 *or* 503, and a plain 503 is an outage); a session-signed request covers
its path, every query parameter and its body; and a key holds one session at a time, so
a session is renewed once for every concurrent caller — a second login would end the
session the other workers are using.

As a target, a create is optimistic: a PrimaryEmail the account already holds is refused
(409, Code 1055) and resolved by one lookup, rather than a lookup before every create.
With ``match_on`` the account's contacts (connected and unconnected: the 1055 rule
covers both) are read once when that is cheaper (``dedup.py``), so a duplicate is known
before any create and ``on_merge`` decides: ``combine`` reads the match and PUTs what it
lacks (a second phone in the first free phone field, a second e-mail in SecondaryEmails,
the tags unioned — a PUT replaces them — and the rest as lines of a new note: a PUT's
Note adds a note), ``update`` PUTs the record onto the match, ``skip`` sends nothing,
``fail`` fails it. A resolved 1055 is a merge like any other.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from contextlib import aclosing
from typing import Any, AsyncIterator, Iterable, Mapping
from urllib.parse import urlsplit

import orjson
from yarl import URL

from ..errors import (AuthError, ConfigError, CredentialExpired, JobError, RateLimited, RecordError,
                      Retryable, TokenExpired, UncertainWrite)
from ..timeparse import since_time
from ..http import Auth, HttpClient, Request, Response, StaticHeaderAuth, retry_after_seconds
from ..paging import in_order
from ..limits import RateLimit
from ..protocols import Page, Record, StreamInfo, WriteResult
from ..schema import Field, StreamSchema
from .base import Connector, Context, ReadBack, Setting, WritePlanner, choose_read_back
from .combine import Slots, combine, slots_for_group
from .dedup import (ON_MERGE, Choice, Dedup, KeyLocks, KeyStore, MemoryKeys, PlanState, choose, fresh_index, keys_of,
                    merge_without_writing, shown_key)

PAGE_SIZE = 25
SESSION_PATH = "/v1/session"
GRANT_PATH = "/v1/oauth2/grant"   # the OAuth2 token endpoint the vendor's Ruby client refreshes at
CONTACTS = "/v1/contacts"
LISTS = (CONTACTS, CONTACTS + "/unconnected")   # every contact the 1055 rule compares with
EMAIL = "PrimaryEmail"
PLAN_READ_LIMIT = 1000   # a plan reads the account's contacts only when that costs no more

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
    dt = since_time(raw)
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
        # Signed as sent: the path percent-encoded, as the server sees it.
        service_path = URL(urlsplit(client.base_url).path.rstrip("/") + req.path).raw_path
        sig = self.request_signature(service_path, self.token, params, req.body_bytes())
        req.params = {**params, "AuthToken": self.token, "ApiSig": sig}


class OAuth2Auth(Auth):
    """A bearer token renewed by the OAuth2 refresh grant, once for every concurrent caller
    (``Auth.refresh`` is single flight): a new access token ends the one before it, so two
    workers that each refreshed would knock each other out. Without a refresh token the
    given access token is used as it is until it expires."""

    def __init__(self, access_token: str | None, refresh: tuple[str, str, str] | None,
                 login_http: HttpClient | None, names: str):
        super().__init__()
        self.token = access_token
        self.refresh_grant = refresh        # (refresh token, client id, client secret)
        self.login_http = login_http
        self.names = names

    async def login(self, client: HttpClient) -> None:
        if self.refresh_grant is None or self.login_http is None:
            raise AuthError(f"spark: the access token cannot be renewed: set {self.names}")
        refresh_token, client_id, client_secret = self.refresh_grant
        try:
            resp = await self.login_http.request(
                "POST", GRANT_PATH, json={"client_id": client_id, "client_secret": client_secret,
                                          "grant_type": "refresh_token", "refresh_token": refresh_token},
                kind="auth")
        except (AuthError, RecordError) as e:   # OAuth2's {"error": ...}, not Spark's envelope
            why = getattr(e, "reason", None) or str(e)
            raise AuthError(f"spark: the refresh grant was refused ({why}): check {self.names}") from None
        body = resp.json()
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthError(f"spark: {GRANT_PATH} answered without an access_token: check {self.names}")
        self.token = token
        renewed = body.get("refresh_token")
        if isinstance(renewed, str) and renewed:   # a server that rotates it: keep the new one
            self.refresh_grant = (renewed, client_id, client_secret)

    async def apply(self, client: HttpClient, req: Request) -> None:
        if self.token is None or self._lock.locked():
            async with self._lock:
                if self.token is None:
                    await self.login(client)
        req.headers["Authorization"] = f"Bearer {self.token}"


class Spark(Connector):
    system = "spark"
    title = "Flexmls (Spark API)"
    filters_since = True
    credentials_help = ("an OAuth2 access token (SPARK_ACCESS_TOKEN), with its refresh token, client id and "
                        "secret (SPARK_REFRESH_TOKEN, SPARK_CLIENT_ID, SPARK_CLIENT_SECRET) so it is renewed "
                        "when it expires; or the API key and secret of your Spark Platform developer account "
                        "(SPARK_API_KEY, SPARK_API_SECRET) for session auth")
    reads = "api"
    writes = True
    settings_spec = {
        "access_token": Setting("OAuth2 bearer token (or use api_key + api_secret for session auth)",
                                secret=True, env="SPARK_ACCESS_TOKEN"),
        "refresh_token": Setting("OAuth2 refresh token: renews access_token when it expires (a day)",
                                 secret=True, env="SPARK_REFRESH_TOKEN"),
        "client_id": Setting("OAuth2 client id, for the refresh", secret=True, env="SPARK_CLIENT_ID"),
        "client_secret": Setting("OAuth2 client secret, for the refresh", secret=True,
                                 env="SPARK_CLIENT_SECRET"),
        "api_key": Setting("API key, for session auth", secret=True, env="SPARK_API_KEY"),
        "api_secret": Setting("API secret, for session auth", secret=True, env="SPARK_API_SECRET"),
        "user_agent": Setting("sent as X-SparkApi-User-Agent on every request", default="crm-migrator/0.1"),
        "auth_base_url": Setting("host of /v1/session and /v1/oauth2/grant (defaults to base_url)"),
    }
    default_base_url = "https://sparkapi.com"
    default_limit = RateLimit(1500, 300)
    probe_request = ("GET", CONTACTS, {"_limit": "1"}, None)
    source_streams = ("contacts",)
    notes = ("25 contacts a page, fetched concurrently; 1,500 requests / 5 min per IDX key; "
             "a duplicate PrimaryEmail (1055) counts as matched")
    # on_merge: combine — where a contact holds a second value of what two records share.
    merge_slots = Slots(
        lists=frozenset({"Tags", "SecondaryEmails", "AdditionalNotificationEmails"}),
        second={**slots_for_group(("OtherPhoneNumber", "HomePhoneNumber", "MobilePhoneNumber",
                                   "WorkPhoneNumber", "PrimaryPhoneNumber")),
                EMAIL: ("SecondaryEmails",)},
        note="Note", note_appends=True)

    def __init__(self, settings: Mapping[str, Any], ctx: Context):
        super().__init__(settings, ctx)
        self.user_agent = str(self.setting("user_agent"))
        self._expand: tuple[str, ...] = ()
        self._first_pages: dict[tuple, _PageData] = {}
        self._login_http: HttpClient | None = None
        self._dedup: dict[str, Dedup] = {}
        self._plans: dict[str, PlanState] = {}
        self._locks = KeyLocks()
        self.id_lookups_needed = False   # a create answered with no id: each create costs a lookup
        headers = {"X-SparkApi-User-Agent": self.user_agent, "Accept": "application/json"}
        token = self.setting("access_token")
        key, secret = self.setting("api_key"), self.setting("api_secret")
        grant = tuple(self.setting(n) for n in ("refresh_token", "client_id", "client_secret"))
        where = f"{ctx.where}: " if ctx.where else ""
        self.session_auth = False
        self.refreshable = all(grant)
        if any(grant) and not self.refreshable:
            raise ConfigError(f"{where}spark renews an access token only with all three of "
                              f"{self._var('refresh_token')}, {self._var('client_id')} and "
                              f"{self._var('client_secret')}")

        def login_client() -> HttpClient:
            auth_base = self.setting("auth_base_url") or self.setting("base_url") or self.default_base_url
            return HttpClient(self.system, str(auth_base), limit=None, headers=headers, classify=self._classify,
                              allow_insecure_http=ctx.allow_insecure_http,
                              timeout=float(self.setting("timeout") or 30), connections=2)

        if token or self.refreshable:
            self.credential_names = (f"{self._var('refresh_token')}, {self._var('client_id')} and "
                                     f"{self._var('client_secret')}" if self.refreshable
                                     else self._var("access_token"))
            if self.refreshable:
                self._login_http = login_client()
                auth: Auth = OAuth2Auth(str(token) if token else None,
                                        tuple(str(v) for v in grant),  # type: ignore[arg-type]
                                        self._login_http, self.credential_names)
            else:
                auth = StaticHeaderAuth({"Authorization": f"Bearer {token}"}, self.credential_names)
        elif key and secret:
            self.session_auth = True
            self.credential_names = f"{self._var('api_key')} and {self._var('api_secret')}"
            self._login_http = login_client()
            auth = SessionAuth(str(key), str(secret), self._login_http, self.credential_names)
        else:
            raise ConfigError(f"{where}spark needs {self._var('access_token')} (with "
                              f"{self._var('refresh_token')}, {self._var('client_id')} and "
                              f"{self._var('client_secret')} to renew it), or "
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
            body = resp.parsed()
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
            if self.session_auth or self.refreshable:
                return TokenExpired(f"spark: session expired ({said})")
            return CredentialExpired(
                f"spark: the access token in {self.credential_names} has expired ({said}): renew it, or set "
                f"{self._var('refresh_token')}, {self._var('client_id')} and {self._var('client_secret')} "
                "so the run renews it")
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
        # No _orderby: the doc offers none to this key. Pages come in the server's order.
        params = {"_pagination": "1", "_limit": str(PAGE_SIZE), "_page": str(page)}
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
        """Pages in the server's order (the doc offers this key no ``_orderby``), up to
        ``ctx.concurrency`` fetched at once, yielded in order. A contact that a change
        during the read moved onto a later page is yielded once (its Id seen before)."""
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

        seen: set[str] = set()

        def page(n: int, rows: list[dict[str, Any]], p: dict[str, Any]) -> Page:
            total = p.get("TotalRows")
            fresh = [r for r in rows if str(r.get("Id")) not in seen]
            seen.update(str(r.get("Id")) for r in fresh)
            return Page([Record(str(r.get("Id")), r) for r in fresh], None if n >= last else {"page": n},
                        total=int(total) if isinstance(total, int) else None)

        if results:
            yield page(start, results, paging)
        async for n, (rows, p) in in_order(self._fetch_page, next_number, self.ctx.concurrency):
            last = max(last, int(p.get("TotalPages") or 0))
            if rows:
                yield page(n, rows, p)

    def cannot_read_by_id(self, stream: str) -> str | None:
        return None if stream == "contacts" else f"spark has no stream '{stream}'"

    async def read_records(self, stream: str, ids: list[str]) -> AsyncIterator[Page]:
        """``retry``: ``GET /v1/contacts/<Id>`` per failed contact (the doc's Individual
        Contact), ``ctx.concurrency`` at once, in the order asked; the list's expansion too."""
        self._check_stream(stream)
        assert self.http is not None
        http = self.http
        params = {"_expand": ",".join(self._expand)} if self._expand else None
        todo = iter(range(len(ids)))

        async def one(i: int) -> Record:
            sid = ids[i]
            try:
                d = _envelope(await http.request("GET", f"{CONTACTS}/{sid}", params=params, kind="by_id"))
            except RecordError as e:
                return Record(sid, None, error=f"spark could not give contact {sid} back: {e}")
            rows = d.get("Results") or []
            if not isinstance(rows, list) or not rows or not isinstance(rows[0], dict):
                return Record(sid, None, error=f"spark no longer holds contact {sid}")
            return Record(str(rows[0].get("Id") or sid), rows[0])

        batch: list[Record] = []
        async with aclosing(in_order(one, lambda: next(todo, None), self.ctx.concurrency)) as loaded:
            async for _, rec in loaded:
                batch.append(rec)
                if len(batch) >= PAGE_SIZE:
                    yield Page(batch, None, len(ids))
                    batch = []
        if batch:
            yield Page(batch, None, len(ids))

    # ---- verify: reading back what a run wrote ------------------------------------------
    # The account keeps text as sent and compares e-mails in any case; a create's or a
    # PUT's Note becomes one of the contact's Notes (read with _expand=Notes).
    verify_rules = {"contacts": {"PrimaryEmail": "casefold", "SecondaryEmails": "emails",
                                 "AdditionalNotificationEmails": "emails", "Tags": "list", "Note": "list"}}

    def natural_keys(self, stream: str) -> tuple[str, ...]:
        return (EMAIL,)

    async def plan_read_back(self, stream: str, records: int) -> ReadBack:
        """The first page of each list (connected and unconnected) tells how many contacts
        the account holds: by id (``GET /v1/contacts/<Id>``) or every page of both lists
        (several at a time), whichever is fewer requests."""
        self._check_stream(stream)
        sizes = [(await self._index_page(path, 1, kind="page"))[1] for path in LISTS]
        existing = sum(int(p.get("TotalRows") or 0) for p in sizes)
        pages = sum(max(1, int(p.get("TotalPages") or 0)) for p in sizes)
        self._verify_pages = {path: max(1, int(p.get("TotalPages") or 0)) for path, p in zip(LISTS, sizes)}
        # The list read starts again at the first pages (with the Notes expansion if needed).
        return choose_read_back(records=records, list_requests=pages + len(LISTS), vendor="Flexmls",
                                existing=existing, spent=len(LISTS))

    async def read_back(self, stream: str, ids: list[str], how: ReadBack,
                        fields: frozenset[str]) -> AsyncIterator[tuple[str, dict[str, Any] | None]]:
        self._check_stream(stream)
        assert self.http is not None
        http = self.http
        expand = ("Notes",) if "Note" in fields else ()
        if how.how == "list":
            # The first pages are read again: the plan's were read without the expansion.
            for path in LISTS:
                last = getattr(self, "_verify_pages", {}).get(path, 1)
                numbers = iter(range(1, last + 1))

                async def fetch(n: int, path: str = path) -> _PageData:
                    return await self._index_page(path, n, kind="page", expand=expand)

                async with aclosing(in_order(fetch, lambda: next(numbers, None), self.ctx.concurrency)) as pages:
                    async for _, (rows, _) in pages:
                        for row in rows:
                            if isinstance(row, dict) and row.get("Id"):
                                yield str(row["Id"]), _held(row)
            return
        params = {"_expand": ",".join(expand)} if expand else None
        todo = iter(range(len(ids)))

        async def one(i: int) -> tuple[str, dict[str, Any] | None]:
            tid = ids[i]
            try:
                d = _envelope(await http.request("GET", f"{CONTACTS}/{tid}", params=params, kind="by_id"))
            except RecordError:
                return tid, None
            rows = d.get("Results") or []
            ok = isinstance(rows, list) and rows and isinstance(rows[0], dict)
            return tid, _held(rows[0]) if ok else None

        async with aclosing(in_order(one, lambda: next(todo, None), self.ctx.concurrency)) as loaded:
            async for _, pair in loaded:
                yield pair

    # ---- the plan ---------------------------------------------------------------------
    def plan_reads(self, stream: str, total: int | None) -> dict[str, int]:
        """``TotalPages`` pages of 25; an empty account still costs the first page."""
        return {"page": max(1, -(-(total or 0) // PAGE_SIZE))}

    def plan_pages(self, stream: str, total: int | None) -> int:
        return max(1, -(-(total or 0) // PAGE_SIZE))

    def plan_setup(self, role: str, streams: list[str]) -> dict[str, int]:
        """Session auth logs in once per run (an OAuth token needs no call)."""
        return {"auth": 1} if self.session_auth else {}

    # ---- target side ------------------------------------------------------------------
    async def prepare(self, streams: list[Any]) -> None:
        """For a stream with ``match_on``: choose how to dedup and, for the index, read it."""
        if self.on_merge not in ON_MERGE:
            raise JobError(f"on_merge must be one of {', '.join(ON_MERGE)}, not {self.on_merge!r}")
        mine = [sm for sm in streams if getattr(sm, "target_stream", None) == "contacts"]
        if any(getattr(sm, "match_on", ()) for sm in mine) and "contacts" not in self._dedup:
            self._dedup["contacts"] = await self._start_dedup("contacts", mine)

    @staticmethod
    def _key_fields(streams: list[Any]) -> tuple[str, ...]:
        """PrimaryEmail (what 1055 guards), then any other ``match_on`` field."""
        extra = [f for sm in streams for f in getattr(sm, "match_on", ()) if f != EMAIL]
        return (EMAIL,) + tuple(dict.fromkeys(extra))

    async def _index_page(self, path: str, page: int, kind: str = "index",
                          expand: tuple[str, ...] = ()) -> _PageData:
        assert self.http is not None
        params = {"_pagination": "1", "_limit": str(PAGE_SIZE), "_page": str(page)}
        if expand:
            params["_expand"] = ",".join(expand)
        d = _envelope(await self.http.request("GET", path, params=params, kind=kind))
        results, paging = d.get("Results") or [], d.get("Pagination") or {}
        if not isinstance(results, list) or not isinstance(paging, dict):
            raise Retryable("spark: a contacts page without Results or Pagination", cause="garbled")
        return results, paging

    async def _probe(self) -> tuple[dict[str, _PageData], int, int]:
        """The first page of each list (kept: the index starts with them), the contacts
        they hold and the requests reading all of them costs."""
        firsts = {path: await self._index_page(path, 1) for path in LISTS}
        existing = sum(int(p.get("TotalRows") or 0) for _, p in firsts.values())
        pages = sum(max(1, int(p.get("TotalPages") or 0)) for _, p in firsts.values())
        return firsts, existing, pages

    def _choose(self, existing: int, pages: int, records: int | None) -> Choice:
        return choose(existing=existing, pages=pages, probes=len(LISTS), records=records,
                      per_record="optimistic", vendor="Flexmls")

    async def _start_dedup(self, stream: str, streams: list[Any]) -> "Dedup":
        fields = self._key_fields(streams)
        firsts, existing, pages = await self._probe()
        choice = self._choose(existing, pages, self.expected_records.get(stream))
        if not choice.indexed:
            return Dedup(choice, fields, None)
        store = await fresh_index(self.checkpoint, stream)
        await self._read_index(firsts, fields, store)
        return Dedup(choice, fields, store)

    async def _read_index(self, firsts: dict[str, _PageData], fields: tuple[str, ...], store: KeyStore) -> None:
        """Every contact's keys into ``store``: the pages after each first one, several at a
        time, stored in the order read (the first of two contacts sharing an e-mail wins)."""
        for path, (rows, paging) in firsts.items():
            last = int(paging.get("TotalPages") or 0)
            self._store_rows(rows, fields, store)
            await store.flush()
            numbers = iter(range(2, last + 1))

            async def fetch(n: int, path: str = path) -> _PageData:
                return await self._index_page(path, n)

            async with aclosing(in_order(fetch, lambda: next(numbers, None), self.ctx.concurrency)) as pages:
                async for _, (rows, _) in pages:
                    self._store_rows(rows, fields, store)
                    await store.flush()

    @staticmethod
    def _store_rows(rows: list[Any], fields: tuple[str, ...], store: KeyStore) -> None:
        store.add([(key, str(r["Id"])) for r in rows if isinstance(r, dict) and r.get("Id")
                   for _, key in keys_of(r, fields)], durable=True)

    def can_lookup(self, stream: str) -> bool:
        return stream == "contacts"

    async def lookup(self, stream: str, record: Mapping[str, Any], source_id: str) -> str | None:
        self._check_stream(stream)
        email = record.get(EMAIL)
        if not isinstance(email, str) or not email.strip():
            return None
        return await self._find_by_email(email.strip())

    async def _find_by_email(self, email: str, kind: str = "lookup") -> str | None:
        assert self.http is not None
        resp = await self.http.request(
            "GET", CONTACTS, params={"_filter": f"PrimaryEmail Eq {quote_filter_value(email)}",
                                     "_limit": str(PAGE_SIZE)}, kind=kind)
        wanted = email.casefold()
        for row in _envelope(resp).get("Results") or []:
            if isinstance(row, dict) and str(row.get("PrimaryEmail") or "").casefold() == wanted:
                return str(row["Id"])
        return None

    async def write(self, stream: str, record: dict[str, Any], *, source_id: str,
                    target_id: str | None = None) -> WriteResult:
        self._check_stream(stream)
        body = {"D": _payload(record)}
        if target_id:
            return await self._update(str(target_id), body)
        dedup = self._dedup.get(stream)
        keys = keys_of(record, dedup.fields if dedup is not None else (EMAIL,))
        async with self._locks.hold(k for _, k in keys):
            found: dict[str, str] = {}
            if dedup is not None and dedup.index is not None and keys:
                found = await dedup.index.get([k for _, k in keys])
                hit = next(((name, found[k]) for name, k in keys if k in found), None)
                if hit is not None:
                    result = await self._merged(hit[1], hit[0], record, body, source_id)
                    self._remember(dedup, keys, found, result)
                    return result
            result = await self._create(record, body, source_id)
            if dedup is not None:
                self._remember(dedup, keys, found, result)
            return result

    @staticmethod
    def _remember(dedup: "Dedup", keys: list[tuple[str, str]], found: dict[str, str],
                  result: WriteResult) -> None:
        if dedup.index is not None and result.action in ("created", "updated"):
            dedup.index.add((k, result.target_id) for _, k in keys if k not in found)

    async def _create(self, record: Mapping[str, Any], body: dict[str, Any], source_id: str) -> WriteResult:
        """POST; a 1055 (the e-mail is taken) is resolved by one lookup, then is a merge."""
        assert self.http is not None
        try:
            resp = await self.http.request("POST", CONTACTS, json=body, kind="create", write=True)
        except SparkRefused as e:
            email = record.get(EMAIL)
            if e.code != 1055 or not isinstance(email, str) or not email.strip():
                raise
            found = await self._find_by_email(email.strip())
            if found is None:
                raise
            result = await self._merged(found, EMAIL, record, body, source_id)
            result.requests = {"create": 1, "lookup": 1, **result.requests}
            return result
        new_id = _created_id(_envelope(resp))
        if new_id is not None:
            return WriteResult(new_id, "created", requests={"create": 1})
        # "The standard success/fail response" promises no id: find the new contact by the
        # e-mail the account holds once (1055). Still a create, never a merge.
        self.id_lookups_needed = True
        email = record.get(EMAIL)
        found = await self._find_by_email(email.strip(), kind="id_lookup") \
            if isinstance(email, str) and email.strip() else None
        if found is None:
            raise UncertainWrite("spark: the create succeeded without naming the new contact, and "
                                 "no contact holds its PrimaryEmail")
        return WriteResult(found, "created", requests={"create": 1, "id_lookup": 1})

    async def _merged(self, matched: str, name: str, record: Mapping[str, Any],
                      body: dict[str, Any], source_id: str) -> WriteResult:
        """The record matches contact ``matched`` by ``name``: ``on_merge`` decides."""
        kept = merge_without_writing(self.on_merge, "Flexmls", name, record, matched)
        if kept is not None:
            return kept
        if self.on_merge == "combine":
            result = await self._combine(matched, record, source_id)
        else:
            previous = await self.undo_read("contacts", matched)   # what `migrator undo` puts back
            result = await self._put(matched, body)
            result.previous, result.requests = previous, {"read": 1, **result.requests}
        result.matched_key = shown_key(name, record)
        return result

    async def _combine(self, matched: str, record: Mapping[str, Any], source_id: str) -> WriteResult:
        """Read the contact, then PUT only what the record adds to it (nothing when it adds
        nothing)."""
        assert self.http is not None
        resp = await self.http.request("GET", f"{CONTACTS}/{matched}", kind="read")
        rows = _envelope(resp).get("Results") or []
        held = dict(rows[0]) if rows and isinstance(rows[0], dict) else {}
        for sub, value in (held.pop("Settings", None) or {}).items():
            held[f"Settings.{sub}"] = value
        out = combine(held, record, self.merge_slots, source_id=source_id)
        requests = {"read": 1}
        if out.changes:
            requests.update((await self._put(matched, {"D": _payload(out.changes)})).requests)
        return WriteResult(str(matched), "updated", requests=requests,
                           placements=[p.as_dict() for p in out.placements],
                           previous=self._writable(held), wrote=dict(out.changes))

    # ---- undo: DELETE /v1/contacts/<Id>, and a PUT of the previous values ---------------
    def cannot_undo(self) -> str | None:
        return None

    @classmethod
    def _writable(cls, row: Mapping[str, Any]) -> dict[str, Any]:
        fields = cls.schemas()["contacts"].fields
        return {k: v for k, v in row.items() if k in fields}

    undo_open_kind = "read"

    async def undo_open(self) -> None:
        assert self.http is not None
        await self.http.request("GET", CONTACTS, params={"_limit": "1"}, kind="read")

    async def undo_read(self, stream: str, target_id: str) -> dict[str, Any] | None:
        self._check_stream(stream)
        assert self.http is not None
        try:
            resp = await self.http.request("GET", f"{CONTACTS}/{target_id}", kind="read")
        except RecordError as e:
            if e.status == 404 or getattr(e, "code", None) == 404:
                return None
            raise
        rows = _envelope(resp).get("Results") or []
        if not rows or not isinstance(rows[0], dict):
            return None
        held = dict(rows[0])
        for sub, value in (held.pop("Settings", None) or {}).items():
            held[f"Settings.{sub}"] = value
        return self._writable(held)

    async def undo_delete(self, stream: str, target_id: str) -> None:
        self._check_stream(stream)
        assert self.http is not None
        try:
            await self.http.request("DELETE", f"{CONTACTS}/{target_id}", kind="delete")
        except RecordError as e:
            if not (e.status == 404 or getattr(e, "code", None) == 404):
                raise

    async def undo_restore(self, stream: str, target_id: str, previous: dict[str, Any],
                           now: dict[str, Any], wrote: dict[str, Any]) -> list[str]:
        """One PUT of the previous values that differ. A note a merge added stays: the doc
        gives no way to remove one; nor can a PUT empty a field."""
        self._check_stream(stream)
        back, lost = self.undo_back(previous, now, wrote)
        if back:
            await self._put(str(target_id), {"D": _payload(back)})
        return lost

    def undo_back(self, previous: dict[str, Any], now: dict[str, Any],
                  wrote: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        back: dict[str, Any] = {}
        lost = ["Note (the merge added a note; Flexmls documents no way to remove one)"] if wrote.get("Note") else []
        for key in sorted(set(previous) | set(now)):
            was, is_ = previous.get(key), now.get(key)
            if was == is_:
                continue
            if key == "Note" or was is None or was == "":
                lost.append(f"{key} (Flexmls cannot remove it; it now holds {str(is_)[:40]!r})")
                continue
            back[key] = was
        return back, lost

    async def _update(self, target_id: str, body: dict[str, Any]) -> WriteResult:
        """A record written onto its own contact again (a delta): a PUT's Note adds a note,
        so the Note goes only when the contact does not hold that text yet (one read)."""
        note = body["D"].get("Note")
        if not note:
            return await self._put(target_id, body)
        assert self.http is not None
        resp = await self.http.request("GET", f"{CONTACTS}/{target_id}", params={"_expand": "Notes"},
                                       kind="read")
        rows = _envelope(resp).get("Results") or []
        held = rows[0].get("Notes") if rows and isinstance(rows[0], dict) else None
        if any(isinstance(n, dict) and n.get("Note") == note for n in held or ()):
            body = {"D": {k: v for k, v in body["D"].items() if k != "Note"}}
        result = await self._put(target_id, body)
        result.requests = {"read": 1, **result.requests}
        return result

    async def _put(self, target_id: str, body: dict[str, Any]) -> WriteResult:
        assert self.http is not None
        # A PUT carrying a Note adds a note: not safe to repeat blindly.
        await self.http.request("PUT", f"{CONTACTS}/{target_id}", json=body, kind="update",
                                write="Note" in body["D"])
        return WriteResult(str(target_id), "updated", requests={"update": 1})

    # ---- the plan: writes --------------------------------------------------------------
    async def write_planner(self, stream: str, sm: Any) -> WritePlanner:
        """What writing ``stream`` costs: a create per record; a record that matches a
        contact the account holds (or an earlier record) costs what ``on_merge`` makes it
        — found in the index, or by a refused create and its lookup. The plan reads the
        account's contacts itself when that read is small, to count those matches."""
        self._check_stream(stream)
        state = self._plans.get(stream)
        if state is None:
            fields = self._key_fields([sm])
            firsts, existing, pages = await self._probe()
            state = PlanState(self._choose(existing, pages, None), fields, probes=len(LISTS))
            if existing and pages <= PLAN_READ_LIMIT:
                state.existing = MemoryKeys()
                await self._read_index(firsts, fields, state.existing)
            self._plans[stream] = state
        return _SparkPlanner(self, state, bool(getattr(sm, "match_on", ())))



class _SparkPlanner(WritePlanner):
    """Counts a run's requests by kind, record by record, as ``Spark.write`` will send them
    — both ways, since which way the run goes is known only when every record is counted:
    with the index a match costs what ``on_merge`` makes it; without, a match by e-mail
    first costs its refused create and a lookup."""

    def __init__(self, spark: Spark, state: PlanState, matching: bool):
        super().__init__()
        self.spark, self.state, self.matching = spark, state, matching
        self.optimistic: Counter[str] = Counter()
        self.matched = 0

    def _choice(self) -> Choice:
        state = self.state
        if not self.matching:
            return Choice("optimistic", state.choice.existing, state.choice.pages, state.records,
                          "no match_on, so every record is created; a duplicate e-mail is refused "
                          "(Code 1055) and resolved by one lookup")
        return self.spark._choose(state.choice.existing, state.choice.pages, state.records)

    def add(self, record: dict[str, Any]) -> None:
        state, on_merge = self.state, self.spark.on_merge
        state.records += 1
        keys = keys_of(record, state.fields if self.matching else (EMAIL,))
        hit = state.match(keys)
        if hit is None:
            self.counts["create"] += 1
            self.optimistic["create"] += 1
            if self.spark.id_lookups_needed:   # this account's creates answer no id
                self.counts["id_lookup"] += 1
                self.optimistic["id_lookup"] += 1
            state.remember(keys)
            return
        self.matched += 1
        # combine: a read, then a PUT of what the record adds (counted: most add something);
        # update: a read (what `migrator undo` puts back), then the PUT.
        merged = Counter({"update": 1, "read": 1}) \
            if on_merge in ("update", "combine") else Counter()
        self.counts.update(merged)
        self.optimistic.update(merged + Counter({"create": 1, "lookup": 1}) if hit[0] == EMAIL
                               else Counter({"create": 1}))
        if on_merge in ("update", "combine"):
            state.remember(keys, hit[2])

    def update(self, record: dict[str, Any]) -> None:
        """A delta's PUT onto the contact an earlier run made; with a Note, one read
        first, since a PUT's Note adds a note (``Spark._update``). Either way it goes."""
        extra = Counter({"update": 1, "read": 1 if _payload(record).get("Note") else 0})
        self.counts.update(extra)
        self.optimistic.update(extra)

    def requests(self) -> dict[str, int]:
        choice = self._choice()
        out = Counter(self.counts if choice.indexed else self.optimistic)
        if self.matching and self.state.probe_owner in (None, self):
            self.state.probe_owner = self
            out["index"] = choice.pages if choice.indexed else self.state.probes
        return {k: n for k, n in out.items() if n}

    @property  # type: ignore[override]
    def dedup(self) -> str:
        choice = self._choice()
        way = ("reads the account's contacts once and matches PrimaryEmail locally" if choice.indexed
               else "creates optimistically; a duplicate e-mail (Code 1055) costs one lookup")
        counted = (f"{self.matched} records match a contact the account holds or an earlier record"
                   if self.state.existing is not None or not choice.existing else
                   f"{self.matched} records share an e-mail with an earlier record; matches with the "
                   f"{choice.existing} contacts the account holds are not counted (reading them for the plan "
                   "would cost too much)")
        ids = ("; each create's answer named no contact, so each costs one id_lookup by PrimaryEmail"
               if self.spark.id_lookups_needed else
               "; a create whose answer names no contact (neither Id nor ResourceUri) costs one "
               "id_lookup by PrimaryEmail")
        return (f"{way}: {choice.reason}. {counted}; on_merge: {self.spark.on_merge} (reported as merges)"
                + ids)

    @dedup.setter
    def dedup(self, value: str) -> None:
        pass


def _held(row: Mapping[str, Any]) -> dict[str, Any]:
    """A contact in a mapped record's names: ``Settings.X`` flat, ``Note`` as its notes."""
    out = dict(row)
    for sub, value in (out.pop("Settings", None) or {}).items():
        out[f"Settings.{sub}"] = value
    notes = out.pop("Notes", None)
    if isinstance(notes, list):
        out["Note"] = [n.get("Note") for n in notes if isinstance(n, dict)]
    return out


def _envelope(resp: Response) -> dict[str, Any]:
    body = resp.json()
    d = body.get("D") if isinstance(body, dict) else None
    if not isinstance(d, dict):
        if resp.request.write:
            raise UncertainWrite('spark: the answer was not a {"D": ...} envelope')
        raise Retryable('spark: the answer was not a {"D": ...} envelope', cause="garbled")
    return d


def _created_id(d: Mapping[str, Any]) -> str | None:
    """The new contact's id: ``Id`` when the answer has one, else the last segment of its
    ``ResourceUri`` (``/v1/contacts/<Id>``), else None."""
    rows = d.get("Results")
    row = rows[0] if isinstance(rows, list) and rows and isinstance(rows[0], dict) else {}
    if row.get("Id"):
        return str(row["Id"])
    uri = row.get("ResourceUri")
    if isinstance(uri, str):
        head, _, tail = urlsplit(uri).path.rstrip("/").rpartition("/")
        if tail and head.endswith("/contacts"):
            return tail
    return None


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
