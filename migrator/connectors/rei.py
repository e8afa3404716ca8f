"""REI Software's Contact API (HighLevel "API 1.0"), as source and target.

What shapes this module:

- Paging is a cursor (``startAfter`` + ``startAfterId`` from ``meta``), so pages come one
  after another. Reading oldest first (``sortBy=date_added&order=asc``) puts contacts
  created during the read at the end instead of shifting pages already read, and a
  cursor the server hands out twice stops the read instead of looping forever.
- Custom fields are keyed by opaque ids on the wire; people name them. Reads add
  ``customFields`` by name, writes accept ``custom.<name>`` and resolve it once per run.
- A create is really "create or update": the location merges a contact with a known
  e-mail (else phone) into the existing one and answers with *its* id. The engine sees
  the merge in its id map, so ``write`` reports what it asked for.
- Every response carries ``X-RateLimit-*``. The headers may lower the limiter (never
  raise it above the configured limit), an exhausted window pauses it, and a 429 with
  the daily budget spent is a quota to wait for, not a burst to retry.
"""
from __future__ import annotations

import time
from datetime import date, datetime
from typing import Any, AsyncIterator, Mapping
from urllib.parse import quote

import orjson

from ..errors import (AuthError, JobError, MappingError, QuotaExhausted, RateLimited, RecordError,
                      UserError)
from ..http import Response, StaticHeaderAuth, error_text, retry_after_seconds
from ..limits import RateLimit
from ..protocols import Page, Record, StreamInfo, WriteResult
from ..schema import AnyOf, Field, StreamSchema
from .base import Connector, Context, Setting

API_KEY_ENV = "REI_API_KEY"
MAX_PAGE = 100
CUSTOM = "custom."
CONTACTS = "/v1/contacts/"
CUSTOM_FIELDS = "/v1/custom-fields/"


class CursorLoop(UserError):
    """The server handed out a paging cursor it had already given: reading on would loop."""


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        return int(float(raw))
    except ValueError:
        return None


def _plain(value: Any) -> Any:
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value


class Rei(Connector):
    system = "rei"
    title = "REI Software"
    credentials_help = ("the location API key REI Software issues for the Contact API (a Bearer token; "
                        "see 'Contact API' in the REI Software Help Library)")
    reads = "api"
    writes = True
    settings_spec = {
        "api_key": Setting("location API key (Bearer token)", required=True, secret=True, env=API_KEY_ENV),
        "page_size": Setting(f"contacts per page (at most {MAX_PAGE})", default=MAX_PAGE),
        "daily_quota": Setting("requests the key may send per day (for planning)", default=200_000),
    }
    default_base_url = "https://rest.reisoftware.com"
    default_limit = RateLimit(100, 10)
    source_streams = ("contacts",)
    notes = ("cursor paging; a create with a known e-mail/phone updates that contact; "
             "100 requests / 10 s and 200,000 / day per key")

    def __init__(self, settings: Mapping[str, Any], ctx: Context):
        super().__init__(settings, ctx)
        self.page_size = self._page_size()
        self.daily_quota = int(self.setting("daily_quota"))
        self.daily_limit: int | None = None
        self.daily_remaining: int | None = None
        self._first_page: dict[str, Any] | None = None
        self._fields: list[dict[str, Any]] | None = None
        self._field_ids: dict[str, str] = {}
        auth = StaticHeaderAuth({"Authorization": f"Bearer {self.setting('api_key')}"}, API_KEY_ENV)
        self.make_http(auth=auth, classify=self._classify, observe=self._observe,
                       headers={"Accept": "application/json"})

    def _page_size(self) -> int:
        raw = self.setting("page_size")
        try:
            size = int(raw)
        except (TypeError, ValueError):
            size = 0
        if not 1 <= size <= MAX_PAGE:
            # The server caps larger limits silently, which would make every page look short.
            raise JobError(f"{self.ctx.where}: rei page_size must be 1..{MAX_PAGE}, not {raw!r}")
        return size

    @classmethod
    def schemas(cls) -> dict[str, StreamSchema]:
        fields = [
            Field("firstName"), Field("lastName"), Field("name"),
            Field("email", format="email"), Field("phone", format="phone_e164"),
            Field("address1"), Field("city"), Field("state"), Field("postalCode"),
            Field("website"), Field("timezone"), Field("dnd", type="bool"),
            Field("tags", type="list"), Field("source"),
            Field("dateOfBirth", type="date", format="date:%Y-%m-%d"),
            Field("companyName"), Field("country"),
        ]
        return {"contacts": StreamSchema("contacts", fields, rules=(AnyOf(("email", "phone")),),
                                         open_prefixes=(CUSTOM,))}

    # ---- responses ----------------------------------------------------------------
    def _observe(self, resp: Response) -> None:
        """Follow the server's own account of its windows, before it has to refuse."""
        h = resp.headers
        daily = _int_header(h, "X-RateLimit-Daily-Remaining")
        if daily is not None:
            self.daily_remaining = daily
        limit_daily = _int_header(h, "X-RateLimit-Limit-Daily")
        if limit_daily is not None:
            self.daily_limit = limit_daily
        most = _int_header(h, "X-RateLimit-Max")
        interval_ms = _int_header(h, "X-RateLimit-Interval-Milliseconds")
        if not most or not interval_ms or most < 1 or interval_ms < 1:
            return
        window = RateLimit(most, interval_ms / 1000)
        self.http.limiter.follow(window)
        if _int_header(h, "X-RateLimit-Remaining") == 0:
            # A sliding window frees its next slot about one slot's share of the interval
            # later. A client paced at the limit is told "0" after every request, so a
            # pause of the whole interval would cut it to one request per interval; the
            # limiter's own log keeps the window either way.
            self.http.limiter.pause(window.per / window.requests)

    def _classify(self, resp: Response) -> Exception | None:
        status = resp.status
        if status < 400:
            return None
        if status == 429:
            wait = retry_after_seconds(resp.headers)
            if _int_header(resp.headers, "X-RateLimit-Daily-Remaining") == 0:
                reset_at = time.time() + wait if wait is not None else None
                return QuotaExhausted(f"REI Software: the daily request quota of {API_KEY_ENV} is spent",
                                      reset_at=reset_at)
            return RateLimited("REI Software: 429 over the burst limit", retry_after=wait)
        if status in (401, 403):
            why = error_text(resp)
            return AuthError(f"REI Software refused the API key (HTTP {status}"
                             f"{': ' + why if why else ''}): check {API_KEY_ENV}")
        if status in (400, 422):
            return self._refusal(resp)
        return None

    @staticmethod
    def _refusal(resp: Response) -> RecordError:
        """``{"msg": …}`` or one ``{"field": {"message", "rule"}}`` per failing field."""
        try:
            body = orjson.loads(resp.body) if resp.body else None
        except orjson.JSONDecodeError:
            body = None
        if isinstance(body, dict):
            if isinstance(body.get("msg"), str):
                meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
                field = meta.get("matchingField")
                reason = body["msg"]
                if meta.get("contactId"):
                    reason += f" (contact {meta['contactId']} holds this {field or 'value'})"
                return RecordError(reason, field=field, status=resp.status)
            fields = [(k, v) for k, v in body.items() if isinstance(v, dict) and v.get("message")]
            if fields:
                reason = "; ".join(f"{k}: {v['message']}" for k, v in fields)
                return RecordError(reason, field=fields[0][0], status=resp.status)
        return RecordError(error_text(resp) or f"HTTP {resp.status}", status=resp.status)

    # ---- custom fields --------------------------------------------------------------
    async def _custom_fields(self) -> list[dict[str, Any]]:
        if self._fields is None:
            resp = await self.http.request("GET", CUSTOM_FIELDS, kind="meta")
            body = resp.json() or {}
            self._fields = [f for f in body.get("customFields") or [] if isinstance(f, dict) and f.get("id")]
        return self._fields

    async def _resolve(self, names: list[str]) -> dict[str, str]:
        """``{name: id}`` for ``custom.<name>`` fields; exact name first, then any case."""
        fields = await self._custom_fields()
        exact = {f.get("name"): f["id"] for f in fields}
        folded: dict[str, list[str]] = {}
        for f in fields:
            folded.setdefault(str(f.get("name", "")).casefold(), []).append(f["id"])
        out: dict[str, str] = {}
        missing: list[str] = []
        for name in names:
            if name in exact:
                out[name] = exact[name]
            elif len(folded.get(name.casefold(), ())) == 1:
                out[name] = folded[name.casefold()][0]
            else:
                missing.append(name)
        if missing:
            have = ", ".join(sorted(str(f.get("name")) for f in fields)) or "none"
            raise MappingError(
                f"{self.ctx.where + ': ' if self.ctx.where else ''}REI Software has no contact custom field "
                f"named {', '.join(repr(n) for n in missing)}; the location's custom fields are: {have}")
        return out

    # ---- source ---------------------------------------------------------------------
    def _check_stream(self, stream: str) -> None:
        if stream != "contacts":
            raise JobError(f"{self.ctx.where}: rei has no stream '{stream}'; it has contacts")

    async def _page(self, cursor: dict[str, Any] | None) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": self.page_size, "sortBy": "date_added", "order": "asc"}
        if cursor:
            params["startAfter"] = str(cursor["startAfter"])
            params["startAfterId"] = str(cursor["startAfterId"])
        resp = await self.http.request("GET", CONTACTS, params=params, kind="page")
        body = resp.json()
        return body if isinstance(body, dict) else {}

    async def info(self, stream: str) -> StreamInfo:
        self._check_stream(stream)
        if self._first_page is None:
            self._first_page = await self._page(None)
        total = (self._first_page.get("meta") or {}).get("total")
        notice = None
        if self.ctx.since:
            notice = "REI Software's contact list has no updated-since filter: every contact is read"
        return StreamInfo(stream, total=total if isinstance(total, int) else None, notice=notice)

    async def pages(self, stream: str, cursor: Any) -> AsyncIterator[Page]:
        self._check_stream(stream)
        names = {f["id"]: f.get("name") or f["id"] for f in await self._custom_fields()}
        seen: set[tuple[str, str]] = set()
        if cursor:
            seen.add((str(cursor["startAfter"]), str(cursor["startAfterId"])))
        n = 0
        while True:
            if cursor is None and self._first_page is not None:
                body, self._first_page = self._first_page, None
            else:
                body = await self._page(cursor)
            n += 1
            contacts = [c for c in body.get("contacts") or [] if isinstance(c, dict)]
            meta = body.get("meta") or {}
            total = meta.get("total") if isinstance(meta.get("total"), int) else None
            after, after_id = meta.get("startAfter"), meta.get("startAfterId")
            nxt: dict[str, Any] | None = None
            if after is not None and after_id is not None and len(contacts) >= self.page_size:
                key = (str(after), str(after_id))
                if key in seen:
                    raise CursorLoop(
                        f"REI Software handed out the paging cursor startAfter={after}, "
                        f"startAfterId={after_id} a second time (page {n} of this read); stopping "
                        "instead of reading the same contacts forever. Pages before it are kept.")
                seen.add(key)
                nxt = {"startAfter": after, "startAfterId": after_id}
            records = [Record(str(c.get("id")), self._with_names(c, names)) for c in contacts]
            yield Page(records, nxt, total=total)
            if nxt is None:
                return
            cursor = nxt

    @staticmethod
    def _with_names(contact: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
        raw = contact.get("customField")
        pairs: list[tuple[Any, Any]] = []
        if isinstance(raw, list):
            pairs = [(f.get("id"), f.get("value")) for f in raw if isinstance(f, dict)]
        elif isinstance(raw, dict):
            pairs = list(raw.items())
        contact["customFields"] = {names.get(k, k): v for k, v in pairs if k is not None}
        return contact

    # ---- target ---------------------------------------------------------------------
    async def prepare(self, streams: list[Any]) -> None:
        """Resolve every ``custom.<name>`` the mappings use (and prove the key works)."""
        wanted: list[str] = []
        for sm in streams:
            if getattr(sm, "target_stream", None) != "contacts":
                continue
            wanted += [f[len(CUSTOM):] for f in getattr(sm, "fields", {}) if f.startswith(CUSTOM)]
        self._field_ids.update(await self._resolve(list(dict.fromkeys(wanted))))

    def can_lookup(self, stream: str) -> bool:
        return stream == "contacts"

    async def lookup(self, stream: str, record: Mapping[str, Any], source_id: str) -> str | None:
        """Email first, then phone, as the doc's lookup does. A refused key finds nothing."""
        params = {k: str(record[k]) for k in ("email", "phone") if record.get(k)}
        if stream != "contacts" or not params:
            return None
        try:
            resp = await self.http.request("GET", CONTACTS + "lookup", params=params, kind="lookup")
        except RecordError as e:
            if e.status in (400, 422):
                return None
            raise
        found = (resp.json() or {}).get("contacts") or []
        return str(found[0]["id"]) if found and found[0].get("id") else None

    async def _body(self, record: Mapping[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {}
        custom: dict[str, Any] = {}
        for key, value in record.items():
            if value is None:
                continue
            if key.startswith(CUSTOM):
                custom[key[len(CUSTOM):]] = _plain(value)
            else:
                body[key] = _plain(value)
        if custom:
            unresolved = [n for n in custom if n not in self._field_ids]
            if unresolved:
                self._field_ids.update(await self._resolve(unresolved))
            body["customField"] = {self._field_ids[n]: v for n, v in custom.items()}
        return body

    async def write(self, stream: str, record: dict[str, Any], *, source_id: str,
                    target_id: str | None = None) -> WriteResult:
        self._check_stream(stream)
        body = await self._body(record)
        if target_id is None:
            resp = await self.http.request("POST", CONTACTS, json=body, kind="create", write=True)
            contact = (resp.json() or {}).get("contact") or {}
            if not contact.get("id"):
                raise RecordError("REI Software answered the create without a contact id",
                                  status=resp.status)
            return WriteResult(target_id=str(contact["id"]), action="created", requests={"create": 1})
        # PUT replaces the contact's tags; the tags endpoint adds to them.
        tags = body.pop("tags", None)
        path = CONTACTS + quote(str(target_id), safe="")
        await self.http.request("PUT", path, json=body, kind="update")
        requests = {"update": 1}
        if tags:
            await self.http.request("POST", path + "/tags/", json={"tags": tags}, kind="tags")
            requests["tags"] = 1
        return WriteResult(target_id=str(target_id), action="updated", requests=requests)
