"""Realvolve through its Utility API (``/utility_api/v1``), as source and as target.

What sets Realvolve apart: two credentials on every call — an OAuth2 client-credentials
token that lives two hours, and the user's ``utility_api_key`` param; a contact list whose
rows are the only place contact-level fields (company, title, status, dates) can come
from — the doc's sample row shows names alone, so nothing else is relied on — while
every contact costs one ``contact_detail`` call for the five arrays the doc shows
(e-mails, addresses, phones, tags, notes); writes as Rails-style bracketed form params
(``contact[primary][first_name]``): a create takes only what the doc lists for it, so
company, title, status, dates and phones follow in one ``update_contact`` (plan kind
``fill``), and notes one call each; an answer of ``{"success": false}`` that may arrive
with HTTP 200; and no natural-key lookup at all. A create in doubt (its answer lost, or
cut off by a crash) is settled from ``recent_contacts?updated_time=`` — every contact
changed since a little before it was sent (``settle.CLOCK_MARGIN``: the clocks may
differ) — by its names, then by its e-mails through ``contact_detail``; found, whatever
the create had still to do is finished (the idempotent ``update_contact``, and only the
notes the contact does not hold yet); absent, it is sent again; two that match leave it
to the job's ``on_uncertain`` policy.
"""
from __future__ import annotations

import re
import time
from collections import Counter
from contextlib import aclosing
from datetime import date, datetime, timezone
from typing import Any, AsyncIterator, Callable, Mapping

import anyio
import orjson

from ..errors import (AuthError, JobError, QuotaExhausted, RecordError, Retryable,
                      UncertainWrite)
from ..timeparse import since_time, utc_time
from ..http import Auth, HttpClient, Request, Response, error_text
from ..limits import RateLimit
from ..paging import in_order
from ..protocols import Page, Record, StreamInfo, WriteResult
from ..schema import AnyOf, Field, StreamSchema
from . import settle
from .base import Connector, Context, ReadBack, Setting, WritePlanner

TOKEN_PATH = "/oauth/token"
API = "/utility_api/v1"
CONTACTS = f"{API}/contacts"
RECENT = f"{API}/contacts/recent_contacts"
DETAIL = f"{API}/contacts/contact_detail"
SOURCES = f"{API}/contacts/contact_sources"
STATUSES = f"{API}/contacts/contact_statuses"
UPDATE = f"{API}/contacts/update_contact"
ADD_NOTE = f"{API}/contacts/add_note"
PROPERTIES = f"{API}/properties"

LIST_PAGE = 1000              # contacts a list page holds (the doc: "pages are limited to 1000")
LIST_PAGES_AHEAD = 2          # list pages fetched while the current page's details load
CHUNK = 10                    # rows handed to the engine at a time, as their details arrive
DETAIL_KEYS = ("email_addresses", "phone_numbers", "addresses", "tags", "notes")
TOKEN_MARGIN = 60.0           # renew this long before expiry (a tenth of a shorter life)

# Target field -> the doc's bracketed param.
PRIMARY = ("first_name", "last_name", "company", "title", "contact_source", "contact_status_id",
           "birth_date", "home_purchase_anniversary")
DETAILS = {
    "work_email": "email_address", "home_email": "email_address",
    "work_phone": "phone_number", "home_phone": "phone_number",
    "work_address": "address", "home_address": "address",
}
PHONES = ("work_phone", "home_phone")
ARRAYS = {"email_address": "email_addresses", "phone_number": "phone_numbers", "address": "addresses"}
# What Create Contact lists (names, source, addresses, e-mails, tags); the rest of a new
# contact's fields go through update_contact right after the create.
CREATE_FIELDS = frozenset({"first_name", "last_name", "contact_source", "work_email", "home_email",
                           "work_address", "home_address", "tags"})
MAX_STRING = 255

CONTACT_FIELDS: tuple[Field, ...] = (
    Field("first_name", max_length=MAX_STRING),
    Field("last_name", max_length=MAX_STRING),
    Field("company", max_length=MAX_STRING),
    Field("title", max_length=MAX_STRING),
    Field("contact_source", max_length=MAX_STRING,
          description="a contact source's name; an unknown name becomes a custom source"),
    Field("work_email", max_length=MAX_STRING, format="email"),
    Field("home_email", max_length=MAX_STRING, format="email"),
    Field("work_phone", format="phone_e164",
          description="sent as digits only; the API takes a work and a home phone, no mobile"),
    Field("home_phone", format="phone_e164", description="sent as digits only"),
    Field("work_address", max_length=MAX_STRING,
          description="one line, e.g. 3568 Front St, San Diego, CA"),
    Field("home_address", max_length=MAX_STRING,
          description="one line, e.g. 3568 Front St, San Diego, CA"),
    Field("contact_status_id", type="int", minimum=1, maximum=5,
          description="1 Suspect, 2 Prospect, 3 Lead, 4 Client, 5 Past Client (contact_statuses)"),
    Field("birth_date", type="date", format="date:%Y-%m-%d"),
    Field("home_purchase_anniversary", type="date", format="date:%Y-%m-%d"),
    Field("tags", type="list", max_length=MAX_STRING,
          description="tag names; sent comma-separated"),
    Field("notes", type="list", description="one add_note call per note"),
)
NOTE_FIELDS: tuple[Field, ...] = (
    Field("contact_id", required=True, description="the Realvolve contact's id"),
    Field("note_content", required=True),
)

_PARAM_FIELD = re.compile(r"contact\[\w+\](?:\[(\w+)\])+")


def since_stamp(raw: str) -> str:
    """``--since`` as the UTC stamp ``updated_time`` takes; no ``+`` to mangle in a URL."""
    return since_time(raw).strftime("%Y-%m-%dT%H:%M:%SZ")


def phone_digits(value: Any) -> str:
    """The doc sends phones as integers (``8436973932``): a +1 number loses its +1."""
    text = str(value)
    digits = "".join(c for c in text if c.isdigit())
    if text.strip().startswith("+1") and len(digits) == 11:
        return digits[1:]
    return digits


def _body(resp: Response) -> dict[str, Any]:
    body = resp.json()
    return body if isinstance(body, dict) else {}


def _at_or_after(stamp: Any, since: datetime) -> bool:
    """Whether a record's timestamp is not before ``since``; unreadable ones are kept."""
    try:
        return utc_time(str(stamp)) >= since
    except (ValueError, OverflowError):
        return True


def _field_of(message: str) -> str | None:
    """The target field a refusal names, from the bracketed param in its message."""
    m = _PARAM_FIELD.search(message)
    if m:
        name = m.group(1)
        return "tags" if name == "tag_list" else name
    for name in ("note_content", "contact_id"):
        if name in message:
            return name
    return None


class TokenAuth(Auth):
    """A client-credentials token, renewed before it expires and on a 401, plus the
    ``utility_api_key`` param. Renewals are single-flight: every caller that saw the old
    token waits for the one login instead of starting its own."""

    def __init__(self, client_id: str, client_secret: str, utility_api_key: str, names: str):
        super().__init__()
        self._form = {"grant_type": "client_credentials", "client_id": client_id,
                      "client_secret": client_secret}
        self._key = utility_api_key
        self.names = names
        self.token: str | None = None
        self.expires_at = 0.0

    async def apply(self, client: HttpClient, req: Request) -> None:
        if req.path == TOKEN_PATH:
            return
        if self.token is None or time.monotonic() >= self.expires_at:
            await self.refresh(client, self.generation)
        req.headers["Authorization"] = f"Bearer {self.token}"
        req.params = {**(req.params or {}), "utility_api_key": self._key}

    async def login(self, client: HttpClient) -> None:
        started = time.monotonic()
        resp = await client.request("POST", TOKEN_PATH, data=dict(self._form), kind="auth")
        body = _body(resp)
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise Retryable("realvolve: the token answer held no access_token", cause="token")
        try:
            ttl = float(body.get("expires_in") or 7200)
        except (TypeError, ValueError):
            ttl = 7200.0
        self.token = token
        self.expires_at = started + ttl - min(TOKEN_MARGIN, ttl / 10)

    def expired(self, resp: Response) -> bool:
        return resp.status == 401


class Realvolve(Connector):
    system = "realvolve"
    title = "Realvolve (Utility API)"
    filters_since = True
    reads = "api"
    writes = True
    settings_spec = {
        "client_id": Setting("OAuth application id", required=True, secret=True,
                             env="REALVOLVE_CLIENT_ID"),
        "client_secret": Setting("OAuth application secret", required=True, secret=True,
                                 env="REALVOLVE_CLIENT_SECRET"),
        "utility_api_key": Setting("the user's key from settings > integrations", required=True,
                                   secret=True, env="REALVOLVE_UTILITY_API_KEY"),
        "tags": Setting("on update: append tags (default) or overwrite the contact's tags",
                        default="append"),
    }
    default_base_url = "https://start.realvolve.com"
    default_limit = RateLimit(10, 1.0)
    probe_request = ("GET", STATUSES, None, None)   # a short list; a target reads it anyway
    source_streams = ("contacts", "notes", "properties")
    notes = ("one contact_detail call per contact (emails, phones, tags, notes); a new contact "
             "with company, title, status, dates or phones costs a create and an update_contact; "
             "no published rate limit (10/s by default); no lookup: duplicates are not detected")

    def __init__(self, settings: Mapping[str, Any], ctx: Context):
        super().__init__(settings, ctx)
        mode = str(self.setting("tags") or "append")
        if mode not in ("append", "overwrite"):
            raise JobError(f"{ctx.where}: realvolve tags must be append or overwrite, not {mode!r}")
        self._overwrite_tags = mode == "overwrite"
        self.auth = TokenAuth(str(self.setting("client_id")), str(self.setting("client_secret")),
                              str(self.setting("utility_api_key")), self._var("utility_api_key"))
        self.make_http(auth=self.auth, classify=self._classify,
                       headers={"Accept": "application/json"})
        self._first_pages: dict[tuple[str, str | None], dict[str, Any]] = {}
        self._keep: Callable[[], bool] | None = None   # run --sample: the trial's pick, per listed contact
        self._totals: dict[str, int | None] = {}
        self._names: dict[str, dict[Any, str]] | None = None
        self._names_lock = anyio.Lock()
        self._created: set[str] = set()          # contact ids this run's creates were answered with
        self._sending: Counter[tuple] = Counter()   # who the creates in flight are (settle.words, e-mails)
        self._job_streams: dict[str, str] = {}   # target stream -> the job's stream (its checkpoint rows)

    def _var(self, setting: str) -> str:
        origin = self.ctx.origins.get(setting)
        if origin:
            return origin.strip("${}")
        return self.settings_spec[setting].env or setting

    @classmethod
    def schemas(cls) -> dict[str, StreamSchema]:
        return {
            "contacts": StreamSchema("contacts", CONTACT_FIELDS,
                                     rules=(AnyOf(("first_name", "last_name")),)),
            "notes": StreamSchema("notes", NOTE_FIELDS),
        }

    # ---- errors ---------------------------------------------------------------------
    def _classify(self, resp: Response) -> Exception | None:
        status = resp.status
        if resp.request.path == TOKEN_PATH and status in (400, 401, 403):
            return AuthError(f"realvolve refused the client credentials (HTTP {status}): check "
                             f"{self._var('client_id')} and {self._var('client_secret')}")
        if status == 429 or status == 408 or status >= 500:
            return None
        if 200 <= status < 300:
            try:
                body = resp.json()
            except Retryable as e:
                return e
        else:
            try:
                body = resp.parsed()
            except orjson.JSONDecodeError:
                return None
        if not isinstance(body, dict):
            return None
        if status == 401:
            said = f"{body.get('error', '')} {body.get('error_description', '')} {body.get('msg', '')}"
            if "utility_api_key" in said:
                return AuthError(f"realvolve refused the utility_api_key (HTTP 401): "
                                 f"check {self._var('utility_api_key')}")
            return None
        if status == 403:
            return None
        if body.get("success") is False:
            message = error_text(resp) or f"HTTP {status}"
            return RecordError(message, field=_field_of(message), rule="server", status=status)
        return None

    # ---- source -----------------------------------------------------------------------
    def filters_since_stream(self, stream: str) -> bool:
        """Contacts by ``recent_contacts``, notes by their ``updated_at``; the properties
        list takes no time and its doc shows no date: it is read whole."""
        return stream != "properties"

    def _listing(self, stream: str) -> tuple[str, str | None]:
        """Where a stream's contacts are listed: all of them, or those updated since."""
        if stream == "contacts" and self.ctx.since:
            return RECENT, since_stamp(self.ctx.since)
        return CONTACTS, None

    async def _list_page(self, listing: tuple[str, str | None], number: int) -> dict[str, Any]:
        path, since = listing
        params: dict[str, Any] = {"page": number}
        if since is not None:
            params["updated_time"] = since
        body = _body(await self.http_client.request("GET", path, params=params, kind="page"))
        rows = body.get("data")
        return {"pages": int(body.get("pages") or 0),
                "data": [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []}

    @property
    def http_client(self) -> HttpClient:
        assert self.http is not None
        return self.http

    async def info(self, stream: str) -> StreamInfo:
        """Contacts: page 1 (kept for ``pages``) gives the page count; the last page,
        the exact total. Notes and properties are counted only as they are read."""
        if stream not in self.source_streams:
            raise JobError(f"realvolve has no stream {stream!r}; it has {', '.join(self.source_streams)}")
        if stream != "contacts":
            return StreamInfo(stream)
        listing = self._listing(stream)
        first = await self._list_page(listing, 1)
        self._first_pages[listing] = first
        pages = first["pages"]
        if pages <= 1:
            total: int | None = len(first["data"])
        else:
            last = await self._list_page(listing, pages)
            total = (pages - 1) * len(first["data"]) + len(last["data"])
        self._totals[stream] = total
        return StreamInfo(stream, total=total)

    def picks_before_fetch(self, stream: str) -> bool:
        """A trial's contacts are picked from the list rows, before their
        ``contact_detail``: a trial of 1,000 of 10,000 costs 1,000 detail calls, not
        10,000. (A note is found only inside its contact's details: not for notes.)"""
        return stream == "contacts"

    def sample_rows(self, stream: str, keep: Callable[[], bool]) -> bool:
        if not self.picks_before_fetch(stream):
            return False
        self._keep = keep
        return True

    async def pages(self, stream: str, cursor: Any) -> AsyncIterator[Page]:
        if stream == "properties":
            body = _body(await self.http_client.request("GET", PROPERTIES, kind="page"))
            rows = [p for p in body.get("data") or [] if isinstance(p, dict)]
            yield Page([Record(str(p.get("id")), p) for p in rows], None, len(rows))
            return
        if stream not in ("contacts", "notes"):
            raise JobError(f"realvolve has no stream {stream!r}; it has {', '.join(self.source_streams)}")
        after = int((cursor or {}).get("page", 0))
        notes_since = utc_time(since_stamp(self.ctx.since)) if stream == "notes" and self.ctx.since else None
        total = self._totals.get(stream)
        keep = self._keep if stream == "contacts" else None
        async with aclosing(self._contact_pages(self._listing(stream), after, keep)) as loaded:
            async for number, part, rows, details, ends, last in loaded:
                if stream == "contacts":
                    records = [self._contact_record(row, d) for row, d in zip(rows, details)]
                else:
                    records = [r for row, d in zip(rows, details)
                               for r in self._note_records(row, d, notes_since)]
                # A chunk short of its page's end resumes at that page (its settled records are skipped).
                cursor = None if last else {"page": number} if ends else {"page": number - 1, "part": part}
                yield Page(records, cursor, total)

    async def _contact_pages(self, listing: tuple[str, str | None], after: int,
                             keep: Callable[[], bool] | None = None
                             ) -> AsyncIterator[tuple[int, int, list[dict], list[Any], bool, bool]]:
        """``(page, part, rows, details, page_ends, last)`` in order, CHUNK rows at a time.

        A page's details (up to 1,000 calls) load through a rolling window of
        ``ctx.concurrency`` together with the next list pages, and rows are handed on in
        chunks as their details arrive: the engine starts writing after the first chunk,
        not after the whole page (at Realvolve's 10 requests/s, 100 s later).
        """
        await self._load_names()
        number = after + 1
        first = self._first_pages.pop(listing, None)
        body = first if first is not None and number == 1 else await self._list_page(listing, number)
        pages, rows = body["pages"], _kept(body["data"], keep)
        ahead: dict[int, dict[str, Any]] = {}
        width = max(1, self.ctx.concurrency)
        while rows or number <= pages:
            wanted = [n for n in range(number + 1, min(pages, number + LIST_PAGES_AHEAD) + 1) if n not in ahead]
            todo = iter([-n for n in wanted] + list(range(len(rows))))  # negative: a list page

            async def load(i: int, rows: list[dict] = rows) -> Any:
                return await self._list_page(listing, -i) if i < 0 else await self._detail(rows[i].get("id"))

            part, chunk_rows, chunk_details = 0, [], []
            async with aclosing(in_order(load, lambda: next(todo, None), width)) as loaded:
                async for i, value in loaded:
                    if i < 0:
                        ahead[-i] = value
                        pages = max(pages, value["pages"])
                        continue
                    chunk_rows.append(rows[i])
                    chunk_details.append(value)
                    if len(chunk_rows) == CHUNK or i == len(rows) - 1:
                        part += 1
                        ends = i == len(rows) - 1
                        yield number, part, chunk_rows, chunk_details, ends, ends and number >= pages
                        chunk_rows, chunk_details = [], []
            if not rows:
                yield number, 1, [], [], True, number >= pages
            number += 1
            if number > pages:
                return
            body = ahead.pop(number, None) or await self._list_page(listing, number)
            pages, rows = max(pages, body["pages"]), _kept(body["data"], keep)

    def cannot_read_by_id(self, stream: str) -> str | None:
        if stream == "contacts":
            return None
        if stream == "notes":
            return "realvolve gives a note only inside its contact's details, so every contact is read to find it"
        return f"realvolve gives its {stream} in one list, read whole"

    async def read_records(self, stream: str, ids: list[str]) -> AsyncIterator[Page]:
        """``retry``: a contact is its list row (names: ``contact_detail`` has none) and its
        ``contact_detail`` (``_listed``)."""
        if stream != "contacts":
            raise JobError(f"realvolve cannot read one {stream} record by its id")
        async with aclosing(self._listed(ids)) as listed:
            async for found in listed:
                yield Page([self._contact_record(row, d) if row is not None else
                            Record(sid, None, error=f"realvolve no longer lists contact {sid}")
                            for sid, row, d in found], None, len(ids))

    async def _listed(self, ids: list[str]) -> AsyncIterator[list[tuple[str, dict[str, Any] | None, Any]]]:
        """``(id, list row, contact_detail or the error that failed it)`` of contacts
        ``ids``, a list page's worth at a time; the ids no page holds come last, with no
        row. The list pages are walked until every contact is found, and
        ``contact_detail`` is asked for those alone: a list page per page, not a detail
        per contact of the account. Page 1 may be the one ``plan_read_back`` kept."""
        await self._load_names()
        wanted, found = set(ids), set()
        listing = self._listing("contacts")
        number, pages = 1, 1
        while number <= pages and len(found) < len(wanted):
            body = (self._first_pages.pop(listing, None) if number == 1 else None) or \
                await self._list_page(listing, number)
            pages = max(pages, body["pages"])
            rows = [r for r in body["data"] if str(r.get("id")) in wanted and str(r.get("id")) not in found]
            if rows:
                todo = iter(range(len(rows)))
                details: list[Any] = [None] * len(rows)

                async def load(i: int, rows: list[dict] = rows) -> Any:
                    return await self._detail(rows[i].get("id"))

                async with aclosing(in_order(load, lambda: next(todo, None), self.ctx.concurrency)) as loaded:
                    async for i, detail in loaded:
                        details[i] = detail
                found.update(str(r.get("id")) for r in rows)
                yield [(str(r.get("id")), r, d) for r, d in zip(rows, details)]
            number += 1
        missing = [sid for sid in dict.fromkeys(ids) if sid not in found]
        if missing:
            yield [(sid, None, None) for sid in missing]

    async def _detail(self, contact_id: Any) -> dict[str, Any] | Exception:
        """One contact's details, or the error that fails this contact alone."""
        try:
            resp = await self.http_client.request("GET", DETAIL, params={"contact_id": contact_id},
                                                  kind="detail")
            return _body(resp)
        except (RecordError, Retryable) as e:
            return e

    async def _load_names(self) -> None:
        """Status and source names, once per run: records carry ids only."""
        async with self._names_lock:
            if self._names is not None:
                return
            names: dict[str, dict[Any, str]] = {}
            for key, path in (("status", STATUSES), ("source", SOURCES)):
                body = _body(await self.http_client.request("GET", path, kind="meta"))
                names[key] = {item.get("id"): item.get("name") for item in body.get("data") or []
                              if isinstance(item, dict)}
            self._names = names

    def _contact_record(self, row: dict[str, Any], detail: Any) -> Record:
        sid = str(row.get("id"))
        if isinstance(detail, Exception):
            return Record(sid, None, error=f"contact_detail of contact {sid} failed: {detail}")
        data = dict(row)
        for key in DETAIL_KEYS:
            data[key] = detail.get(key) or []
        names = self._names or {}
        data["contact_status"] = names.get("status", {}).get(data.get("contact_status_id"))
        data["contact_source"] = names.get("source", {}).get(data.get("source_id"))
        return Record(sid, data)

    def _note_records(self, row: dict[str, Any], detail: Any, since: datetime | None) -> list[Record]:
        cid = row.get("id")
        if isinstance(detail, Exception):
            return [Record(f"contact-{cid}", None,
                           error=f"the notes of contact {cid} could not be read: {detail}")]
        out = []
        for note in detail.get("notes") or []:
            if not isinstance(note, dict):
                continue
            if since is not None and not _at_or_after(note.get("updated_at"), since):
                continue
            out.append(Record(str(note.get("id")), {**note, "contact_id": cid}))
        return out

    # ---- verify: the list row and contact_detail, as retry reads them ----------------------
    # Phones are stored as 843-697-3932 beside plain_phone_number +18436973932; e-mails,
    # source names and tags match case-insensitively; notes compare by their content.
    verify_rules = {"contacts": {"work_email": "casefold", "home_email": "casefold", "work_phone": "e164",
                                 "home_phone": "e164", "contact_source": "casefold", "tags": "tags",
                                 "birth_date": "date", "home_purchase_anniversary": "date", "notes": "list"}}

    async def plan_read_back(self, stream: str, records: int) -> ReadBack:
        """Contact-level fields (names, company, title, status, source, dates) are only in
        the list rows and the five arrays only in ``contact_detail``, so every list page is
        read (page 1 now, kept: it tells how many) and one detail per record; plus the
        source and status names. A note has no read of its own."""
        if stream != "contacts":
            return ReadBack("none", {}, f"Realvolve gives a {stream[:-1]} back only inside its contact's details")
        listing = self._listing("contacts")
        self._first_pages[listing] = first = await self._list_page(listing, 1)
        pages = max(1, first["pages"])
        listed = f"{pages:,} list page{'s' if pages != 1 else ''}"
        return ReadBack("by_id", {"page": pages, "detail": records, "meta": 2},
                        f"reads the {listed} (names, company, title, status, source and dates are only "
                        f"in a list row) and one contact_detail per record ({records:,}: e-mails, phones, "
                        f"addresses, tags, notes); a contact held twice is not looked for: Realvolve "
                        f"lists no e-mail in its rows")

    async def read_back(self, stream: str, ids: list[str], how: ReadBack,
                        fields: frozenset[str]) -> AsyncIterator[tuple[str, dict[str, Any] | None]]:
        async with aclosing(self._listed(ids)) as listed:
            async for found in listed:
                for sid, row, detail in found:
                    yield sid, None if row is None else self._held(row, detail)

    def _held(self, row: dict[str, Any], detail: Any) -> dict[str, Any]:
        """A contact in the names a mapped record uses. A field its list row does not carry
        (the doc's sample row has names alone) or a detail that could not be read is
        ``SKIP``: not shown, so not compared."""
        from ..verify.compare import SKIP
        shown = not isinstance(detail, Exception)
        data = self._contact_record(row, detail if shown else {}).data or {}
        held: dict[str, Any] = {name: row[name] if name in row else SKIP for name in PRIMARY}
        held["contact_source"] = data.get("contact_source") if "source_id" in row else SKIP
        for name, group in DETAILS.items():
            items = data.get(ARRAYS[group]) or []
            kind = name.split("_")[0]
            value = next((i for i in items if isinstance(i, dict) and i.get("google_type") == kind), {})
            held[name] = (value.get("plain_phone_number") or value.get("phone_number") if name in PHONES
                          else value.get(group)) if shown else SKIP
        held["tags"] = [t.get("name") for t in data.get("tags") or [] if isinstance(t, dict)] if shown else SKIP
        held["notes"] = [n.get("content") for n in data.get("notes") or [] if isinstance(n, dict)] \
            if shown else SKIP
        return held

    # ---- the plan -----------------------------------------------------------------------
    def plan_reads(self, stream: str, total: int | None) -> dict[str, int]:
        """Contacts: ``info`` reads page 1 (kept) and the last page (for the exact total),
        then every page after the first is read, and each contact costs a
        ``contact_detail``. Notes read the same list again, details included: ``total``
        counts notes, so the contact count comes from the contacts stream when this run
        read it (else ``total`` stands in for it, an estimate)."""
        if stream == "properties":
            return {"page": 1}
        listed = total or 0
        if stream == "notes":
            listed = self._totals.get("contacts") or listed
        pages = -(-listed // LIST_PAGE)
        if stream == "contacts":
            return {"page": max(1, pages) + (1 if pages > 1 else 0), "detail": listed}
        return {"page": max(1, pages), "detail": listed}

    def plan_pages(self, stream: str, total: int | None) -> int:
        """Contacts arrive CHUNK at a time with their details (notes: all their notes)."""
        if stream == "properties":
            return 1
        listed = (self._totals.get("contacts") if stream == "notes" else None) or total or 0
        return max(1, -(-listed // CHUNK))

    def plan_setup(self, role: str, streams: list[str]) -> dict[str, int]:
        """One token per run (it lives two hours); a reader loads the status and source
        names once, a writer proves its credentials with one call before writing."""
        if role == "target":
            return {"auth": 1, "meta": 1}
        named = any(s in ("contacts", "notes") for s in streams)
        return {"auth": 1, "meta": 2} if named else {"auth": 1}

    async def write_planner(self, stream: str, sm: Any) -> WritePlanner:
        return _NotesPlanner(self, stream)

    # ---- target -----------------------------------------------------------------------
    async def prepare(self, streams: list[Any]) -> None:
        """One cheap call proves the token and the utility_api_key before any write."""
        for sm in streams:
            name, target = getattr(sm, "name", None), getattr(sm, "target_stream", None)
            if name and target:
                self._job_streams.setdefault(target, name)
        await self.http_client.request("GET", STATUSES, kind="meta")

    async def _known(self, ids: list[str]) -> dict[str, float]:
        """Of these contact ids, those a record of the job is already done with."""
        name = self._job_streams.get("contacts")
        if self.checkpoint is None or name is None or not ids:
            return {}
        return await self.checkpoint.done_since(name, ids)

    async def settler(self, stream: str, since: float, known: Any) -> "_CrashSettler | None":
        """The contacts a crash left in flight, settled from one listing of those changed
        since a little before the first was sent, read before the run writes anything."""
        if stream != "contacts":
            return None
        try:
            return _CrashSettler(self, await self._recent(since), known)
        except QuotaExhausted:
            raise
        except (Retryable, RecordError) as e:   # nothing can be settled: on_uncertain decides, saying why
            return _CrashSettler(self, None, known, f"recent_contacts could not be read ({e})")

    async def _recent(self, since: float) -> list[dict[str, Any]]:
        """Every contact row ``recent_contacts`` lists as changed since ``since`` (less the margin)."""
        stamp = datetime.fromtimestamp(since - settle.CLOCK_MARGIN, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        async def page(number: int) -> dict[str, Any]:
            return await settle.read_again(lambda: self._list_page((RECENT, stamp), number))
        first = await page(1)
        rows = list(first["data"])
        for number in range(2, first["pages"] + 1):
            rows += (await page(number))["data"]
        return rows

    @staticmethod
    def _who(record: Mapping[str, Any]) -> tuple[tuple[str, ...], frozenset[str]]:
        """A contact as a create leaves it: its names, and the e-mails the create carries."""
        names = settle.words(f"{record.get('first_name') or ''} {record.get('last_name') or ''}")
        emails = frozenset(settle.email(record.get(k)) for k in ("work_email", "home_email") if record.get(k))
        return names, emails

    async def _find(self, record: Mapping[str, Any], rows: list[dict[str, Any]], claimed: set[str],
                    ) -> tuple[settle.Settled, dict[str, Any]]:
        """The one contact among ``rows`` a create of ``record`` made — same names, then
        (through ``contact_detail``) its e-mails — and that contact's details."""
        names, emails = self._who(record)
        ids = [str(r.get("id")) for r in rows if r.get("id") is not None
               and settle.words(f"{r.get('first_name') or ''} {r.get('last_name') or ''}") == names
               and str(r.get("id")) not in claimed and str(r.get("id")) not in self._created]
        ids = list(dict.fromkeys(ids))
        if ids:
            held = await self._known(ids)
            ids = [i for i in ids if i not in held]
        found: list[str] = []
        details: dict[str, dict[str, Any]] = {}
        for cid in ids:
            async def read(cid: str = cid) -> dict[str, Any]:
                return _body(await self.http_client.request("GET", DETAIL, params={"contact_id": cid},
                                                            kind="detail"))
            detail = await settle.read_again(read)
            have = {settle.email(e.get("email_address")) for e in detail.get("email_addresses") or []
                    if isinstance(e, dict)}
            if emails <= have:
                found.append(cid)
                details[cid] = detail
        result = settle.one_match(found)
        return result, details.get(str(result.target_id), {})

    async def _settle_lost(self, record: Mapping[str, Any], sent: float) -> tuple[settle.Settled, dict[str, Any]]:
        """Whether a create sent at ``sent`` whose answer was lost made a contact."""
        if self._sending[self._who(record)] > 1:
            return settle.undecided("another contact with the same names and e-mails was being created "
                                    "at the same time"), {}
        return await self._find(record, await self._recent(sent), set())

    async def write(self, stream: str, record: dict[str, Any], *, source_id: str,
                    target_id: str | None = None) -> WriteResult:
        if stream == "contacts":
            return await self._write_contact(record, target_id)
        if stream == "notes":
            if target_id is not None:
                raise RecordError("Realvolve's API cannot edit a note, only add one", rule="target")
            note_id = await self._add_note(record.get("contact_id"), record.get("note_content"))
            return WriteResult(target_id=note_id, action="created", requests={"note": 1})
        raise JobError(f"realvolve cannot write stream {stream!r}; it takes contacts and notes")

    def contact_params(self, record: Mapping[str, Any],
                       only: frozenset[str] | None = None, but: frozenset[str] = frozenset()
                       ) -> dict[str, str]:
        """The doc's bracketed params of one mapped contact (of the fields in ``only``,
        less those in ``but``); empty values are left out."""
        def wanted(name: str) -> bool:
            return (only is None or name in only) and name not in but
        params: dict[str, str] = {}
        for name in PRIMARY:
            value = record.get(name)
            if value not in (None, "") and wanted(name):
                text = value.isoformat() if isinstance(value, date) else str(value)
                params[f"contact[primary][{name}]"] = text
        for name, group in DETAILS.items():
            value = record.get(name)
            if value in (None, "") or not wanted(name):
                continue
            text = phone_digits(value) if name in PHONES else str(value)
            params[f"contact[details][{group}][{name}]"] = text
        if not wanted("tags"):
            return params
        tags = [str(t).strip() for t in record.get("tags") or [] if str(t).strip()]
        if tags:
            bad = next((t for t in tags if "," in t), None)
            if bad is not None:
                raise RecordError(f"tag {bad!r} holds a comma, which Realvolve reads as two tags",
                                  field="tags", rule="format")
            params["contact[details][tags]"] = ", ".join(tags)
        return params

    async def _create(self, params: dict[str, str], record: Mapping[str, Any], requests: dict[str, int]) -> str:
        """Create a contact; one whose answer is lost is looked for among the contacts
        changed since it was sent — found, its id; absent, sent again (three times at most)."""
        who = self._who(record)
        self._sending[who] += 1
        try:
            for attempt in range(3):
                sent = time.time()
                requests["create"] = requests.get("create", 0) + 1
                try:
                    resp = await self.http_client.request("POST", CONTACTS, data=params, kind="create",
                                                          write=True)
                    contact = _body(resp).get("contact")
                    cid = contact.get("id") if isinstance(contact, dict) else None
                    if cid is None:
                        raise UncertainWrite("realvolve answered the create without a contact id")
                except UncertainWrite as e:
                    try:
                        settled, _ = await self._settle_lost(record, sent)
                    except QuotaExhausted:
                        raise
                    except (Retryable, RecordError) as why:
                        settled = settle.undecided(f"recent_contacts could not be read ({why})")
                    self.settled["landed" if settled.found else "not_landed" if settled.decided
                                 else "undecided"] += 1
                    if settled.found:
                        cid = settled.target_id
                    elif settled.decided and attempt < 2:
                        continue   # it never landed: send it again
                    else:
                        raise UncertainWrite(f"{e}; {settled.why or 'sent three times'}") from None
                self._created.add(str(cid))
                return str(cid)
        finally:
            self._sending[who] -= 1
        raise AssertionError("unreachable")

    async def _write_contact(self, record: dict[str, Any], target_id: str | None) -> WriteResult:
        notes = [str(n) for n in record.get("notes") or [] if str(n).strip()]
        rest: dict[str, str] = {}
        requests: dict[str, int] = {}
        if target_id is None:
            params = self.contact_params(record, only=CREATE_FIELDS)
            rest = self.contact_params(record, but=CREATE_FIELDS)
            cid: Any = await self._create(params, record, requests)
            action = "created"
            if rest:
                await self._fill(cid, rest, notes=len(notes))
        else:
            params = self.contact_params(record)
            cid = target_id
            if self._overwrite_tags and "contact[details][tags]" in params:
                params["contact[details][tag_list]"] = "overwrite"
            await self.http_client.request("POST", UPDATE, data={"contact_id": str(cid), **params},
                                           kind="update")
            action = "updated"
            requests["update"] = 1
            if notes:   # an update by id (a delta): add only the notes the contact lacks
                notes = await self._missing_notes(cid, notes)
                requests["detail"] = 1
        if rest:
            requests["fill"] = 1
        await self._add_notes(cid, notes, Counter(), action, target_id is None, requests)
        return WriteResult(target_id=str(cid), action=action, requests=requests)

    async def finish(self, cid: str, record: Mapping[str, Any], detail: Mapping[str, Any]) -> None:
        """What a create cut off by a crash may have left undone on the contact it made:
        the fields ``update_contact`` sets (idempotent: sent again) and the notes — only
        those the contact does not hold yet, counted by text, so none is doubled."""
        notes = [str(n) for n in record.get("notes") or [] if str(n).strip()]
        rest = self.contact_params(record, but=CREATE_FIELDS)
        if rest:
            await self._fill(cid, rest, notes=len(notes))
        landed = Counter(str(n.get("content")) for n in detail.get("notes") or [] if isinstance(n, dict))
        await self._add_notes(cid, notes, landed, "created", True, {})

    async def _add_notes(self, cid: Any, notes: list[str], landed: Counter, action: str, fresh: bool,
                         requests: dict[str, int]) -> None:
        """Add ``notes`` to contact ``cid``, less those ``landed`` already (by text)."""
        for k, text in enumerate(notes, start=1):
            occurrences = notes[:k].count(text)
            if occurrences <= landed[text]:
                continue
            try:
                await self._add_note_once(cid, text, occurrences, fresh=fresh, requests=requests)
            except (RecordError, Retryable) as e:
                reason = e.reason if isinstance(e, RecordError) else str(e)
                done = f"notes 1-{k - 1} were added" if k > 2 else (
                    "note 1 was added" if k == 2 else "no note was added")
                again = "create the contact again" if fresh else "add its notes again"
                raise RecordError(
                    f"contact {cid} was {action} in Realvolve, but note {k} of {len(notes)} failed "
                    f"({reason}); {done}. Add the rest to contact {cid} by hand: retrying this "
                    f"record would {again}", field="notes", rule="partial") from None

    async def _fill(self, cid: Any, params: dict[str, str], *, notes: int) -> None:
        """Set what a create cannot carry (company, title, status, dates, phones) with one
        ``update_contact``. It is idempotent, so a lost answer is simply sent again (the
        client's retries); a refusal leaves a created contact without those fields, which
        is said, since retrying the record would create the contact a second time."""
        try:
            await self.http_client.request("POST", UPDATE, data={"contact_id": str(cid), **params},
                                           kind="fill")
        except (RecordError, Retryable) as e:
            reason = e.reason if isinstance(e, RecordError) else str(e)
            names = sorted({m.group(1) for m in map(_PARAM_FIELD.fullmatch, params) if m})
            raise RecordError(
                f"contact {cid} was created in Realvolve, but update_contact for "
                f"{', '.join(names)} failed ({reason}){'; its notes were not added' if notes else ''}. "
                f"Set {'those fields and notes' if notes else 'those fields'} on contact {cid} by "
                f"hand: retrying this record would create the contact again",
                field=e.field if isinstance(e, RecordError) and e.field else (names[0] if names else None),
                rule="partial") from None

    async def _missing_notes(self, cid: Any, notes: list[str]) -> list[str]:
        """Of ``notes``, those the contact does not hold yet (by text, counting repeats):
        ``add_note`` adds, so writing a record onto its contact again must not repeat them."""
        detail = _body(await self.http_client.request(
            "GET", DETAIL, params={"contact_id": cid}, kind="detail"))
        held = Counter(n.get("content") for n in detail.get("notes") or [] if isinstance(n, dict))
        out = []
        for text in notes:
            if held[text] > 0:
                held[text] -= 1
            else:
                out.append(text)
        return out

    async def _add_note_once(self, contact_id: Any, text: str, occurrences: int, *, fresh: bool,
                             requests: dict[str, int]) -> None:
        """Add a note; on a lost answer to a just-created contact's note, count that
        contact's notes with this text to learn whether it landed before sending again."""
        for attempt in range(3):
            requests["note"] = requests.get("note", 0) + 1
            try:
                await self._add_note(contact_id, text)
                return
            except UncertainWrite:
                if not fresh or attempt == 2:
                    raise
            requests["detail"] = requests.get("detail", 0) + 1
            detail = _body(await self.http_client.request(
                "GET", DETAIL, params={"contact_id": contact_id}, kind="detail"))
            landed = sum(1 for n in detail.get("notes") or []
                         if isinstance(n, dict) and n.get("content") == text)
            if landed >= occurrences:
                return

    async def _add_note(self, contact_id: Any, text: Any) -> str:
        if contact_id in (None, ""):
            raise RecordError("contact_id is required", field="contact_id", rule="required")
        if text is None or not str(text).strip():
            raise RecordError("note_content is required", field="note_content", rule="required")
        resp = await self.http_client.request(
            "POST", ADD_NOTE, data={"contact_id": str(contact_id), "note_content": str(text)},
            kind="note", write=True)
        note = _body(resp).get("data")
        note_id = note.get("id") if isinstance(note, dict) else None
        if note_id is None:
            raise UncertainWrite("realvolve answered add_note without a note id")
        return str(note_id)


class _CrashSettler:
    """The contacts a crash left in flight, settled from the contacts changed since a
    little before the first was sent (listed once, before the run writes anything): a
    contact with the same names and e-mails that no record of the job holds is the one
    — then what its create left undone is finished; none means it never landed."""

    def __init__(self, conn: Realvolve, rows: list[dict[str, Any]] | None, known: Any, why: str = ""):
        self.conn, self.rows, self.known, self.why = conn, rows, known, why
        self.claimed: set[str] = set()
        self.lock = anyio.Lock()

    async def settle(self, record: Mapping[str, Any], sent: float) -> settle.Settled:
        if self.rows is None:
            return settle.undecided(self.why)
        async with self.lock:   # two records in doubt never take one contact
            result, detail = await self.conn._find(record, self.rows, self.claimed)
            if result.found:
                self.claimed.add(str(result.target_id))
        if result.found:
            await self.conn.finish(str(result.target_id), record, detail)
        return result


AT_MOST = ("; a delta's notes are planned at most: each contact's detail is read and only the "
           "notes it lacks are added")


class _NotesPlanner(WritePlanner):
    """A contact costs its create, one ``update_contact`` (``fill``) when it has fields a
    create does not take (company, title, status, dates, phones), and one ``add_note``
    per note (tags go with the create); a note record costs its ``add_note``. A record
    that fails here before any request (a tag with a comma, a blank note) costs nothing."""

    def __init__(self, conn: Realvolve, stream: str):
        super().__init__(dedup="Realvolve has no lookup and does not dedup: every record becomes a "
                               "new contact, so duplicates in the source stay duplicates")
        self.conn, self.stream = conn, stream

    def add(self, record: dict[str, Any]) -> None:
        if self.stream == "notes":
            if record.get("contact_id") not in (None, "") and str(record.get("note_content") or "").strip():
                self.counts["note"] += 1
            return
        notes = self._notes(record)
        if notes is None:
            return
        self.counts["create"] += 1
        if self.conn.contact_params(record, but=CREATE_FIELDS):
            self.counts["fill"] += 1
        if notes:
            self.counts["note"] += notes

    def update(self, record: dict[str, Any]) -> None:
        """A delta's ``update_contact`` by id (every field in one call); with notes, one
        read of the contact's detail and an ``add_note`` per note it lacks — planned as
        every note (at most; a note the contact holds is not sent again). Realvolve cannot
        edit a note: a note record changed since an earlier run fails at no cost."""
        notes = None if self.stream == "notes" else self._notes(record)
        if notes is None:
            return
        self.counts["update"] += 1
        if notes:
            self.counts["detail"] += 1
            self.counts["note"] += notes
            if AT_MOST not in self.dedup:
                self.dedup += AT_MOST

    def _notes(self, record: dict[str, Any]) -> int | None:
        """The contact's notes that are not blank; None when it fails before any request."""
        try:
            self.conn.contact_params(record)
        except RecordError:
            return None
        return sum(1 for n in record.get("notes") or [] if str(n).strip())


def _kept(rows: list[dict[str, Any]], keep: Callable[[], bool] | None) -> list[dict[str, Any]]:
    """The list rows whose details are fetched: all, or a trial's (``keep`` asked once per row)."""
    return rows if keep is None else [r for r in rows if keep()]
