"""REI Software's Contact API (HighLevel "API 1.0"), as source and target.

What shapes this module:

- Paging is a cursor (``startAfter`` + ``startAfterId`` from ``meta``), so pages come one
  after another. Reading oldest first (``sortBy=date_added&order=asc``) puts contacts
  created during the read at the end instead of shifting pages already read, and a
  cursor the server hands out twice stops the read instead of looping forever.
- ``run --since TIME`` (a delta after cutover): the doc offers no filter by time, but it
  sorts by ``date_updated``. A delta lists newest-updated first (``order=desc``) and stops
  at the first contact whose ``dateUpdated`` is before TIME: everything after it in that
  order is older. Its cursor is that order's ``(startAfter, startAfterId)``, kept under
  the delta's own checkpoint key, so a resumed delta goes on strictly after the last page
  it settled. A contact changed *while* the delta reads jumps to the top, above the
  cursor: this delta does not see that change, the next delta (``--since`` the start of
  this one) does.
- Custom fields are keyed by opaque ids on the wire; people name them. Reads add
  ``customFields`` by name, writes accept ``custom.<name>`` and resolve it once per run.
- A create is really "create or update": the location merges a contact with a known
  e-mail (else phone) into the existing one and answers with *its* id. With ``match_on``
  the connector knows beforehand: it reads the location's contacts once (``dedup.py``
  says when that beats a lookup per record), so a record that matches one is reported as
  a merge and ``on_merge`` decides — ``combine`` reads the contact (the lookup already
  did) and PUTs what the record adds: fields it lacks, the tags unioned, its note appended
  to the "Notes" custom field and, since a contact holds one e-mail and one phone, any
  value both hold differently as a line of that note; ``update`` sends the same create and
  lets the location merge (one request, tags merged), ``skip`` sends nothing, ``fail``
  fails it.
  A location that allows duplicates answers a new id instead: that stray is deleted, the
  record is written onto the match with PUT, and later merges go that way.
- Without ``match_on`` (or for a record no index knew) the location still merges, and
  its answer does not say so. A create is reported as a merge (``matched``) when the id
  it answers is one this run was already given, or one the checkpoint settled another
  record on in an earlier run of the job, or when the contact's ``dateAdded`` — the one
  date the doc's create answer shows — is older than the answer by more than
  ``MERGE_AGE`` (clocks compared on the server's side, by the answer's ``Date``). Records
  sharing an e-mail or phone are created one after the other, so the first is the create.
- Every response carries ``X-RateLimit-*``. The headers may lower the limiter (never
  raise it above the configured limit), an exhausted window pauses it, and a 429 with
  the daily budget spent is a quota to wait for, not a burst to retry.
"""
from __future__ import annotations

import math
import time
from collections import OrderedDict
from email.utils import parsedate_to_datetime
from datetime import date, datetime
from typing import Any, AsyncIterator, Mapping
from urllib.parse import quote

import orjson

from ..errors import (AuthError, JobError, MappingError, QuotaExhausted, RateLimited,
                      RecordError, UserError)
from ..timeparse import since_time
from ..http import Response, StaticHeaderAuth, error_text, retry_after_seconds
from ..limits import RateLimit
from ..protocols import Page, Record, StreamInfo, WriteResult
from ..schema import AnyOf, Field, StreamSchema
from .base import Connector, Context, Quota, ReadBack, Setting, WritePlanner, choose_read_back
from .combine import Slots, combine
from .dedup import (ON_MERGE, Choice, Dedup, KeyLocks, KeyStore, MemoryKeys, PlanState, choose, fresh_index, keys_of,
                    merge_without_writing, normalize, shown_key)

API_KEY_ENV = "REI_API_KEY"
MAX_PAGE = 100
CUSTOM = "custom."
CONTACTS = "/v1/contacts/"
CUSTOM_FIELDS = "/v1/custom-fields/"
DEDUP_FIELDS = ("email", "phone")   # what the location merges a create on, in its order
PLAN_READ_LIMIT = 1000   # a plan reads the location's contacts only when that costs no more
MERGE_AGE = 60.0         # s: a contact added this long before a create's answer was there before it
CLOCK_SKEW = 300.0       # s: allowed between our clock and the server's when it sends no Date
NOTES_FIELD = "notes"    # the custom field (any case) a combined merge appends notes and lines to
BY_ADDED = ("date_added", "asc")      # a full read: contacts created during it come last
BY_UPDATED = ("date_updated", "desc")  # a delta: newest-updated first, up to the first older one


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


def _server_time(headers: Mapping[str, str]) -> float:
    """The answer's ``Date`` (the server's clock, whole seconds), else ours."""
    try:
        return parsedate_to_datetime(headers["Date"]).timestamp()
    except (KeyError, TypeError, ValueError, IndexError):
        return time.time()


def _stamp(value: Any) -> float | None:
    """``dateAdded``/``dateUpdated`` (``2020-10-29T09:31:30.255Z``) as epoch seconds."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo is not None else None


def _plain(value: Any) -> Any:
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value


class Rei(Connector):
    system = "rei"
    title = "REI Software"
    filters_since = True   # by reading newest-updated first and stopping at --since (module doc)
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
    probe_request = ("GET", CONTACTS, {"limit": "1"}, None)
    source_streams = ("contacts",)
    notes = ("cursor paging; a create with a known e-mail/phone updates that contact; "
             "100 requests / 10 s and 200,000 / day per key")
    sequential_reads = ("page",)  # each page's cursor comes from the page before

    def __init__(self, settings: Mapping[str, Any], ctx: Context):
        super().__init__(settings, ctx)
        self.page_size = self._page_size()
        self._since = self._since_time()   # --since as epoch seconds: a delta's stop
        self.daily_quota = int(self.setting("daily_quota"))
        self.daily_limit: int | None = None
        self.daily_remaining: int | None = None
        self._first_page: dict[str, Any] | None = None
        self._fields: list[dict[str, Any]] | None = None
        self._field_ids: dict[str, str] = {}
        self._dedup: dict[str, Dedup] = {}
        self._plans: dict[str, PlanState] = {}
        self._locks = KeyLocks()
        self._server_merges = True       # False once the location is seen to allow duplicates
        # ids creates answered lately -> (dateAdded ms, the record's keys); older ones show by age
        self._answered: OrderedDict[str, tuple[float, frozenset[str]]] = OrderedDict()
        self._run_start: float | None = None        # the server's clock (s) at this run's first answer
        self._earlier_runs = False                  # the checkpoint holds records settled before this run
        self._job_streams: tuple[str, ...] = ()
        self.merge_slots = Slots(lists=frozenset({"tags"}))   # its note: the Notes custom field, if any
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

    def _since_time(self) -> float | None:
        if not self.ctx.since:
            return None
        return since_time(self.ctx.since).timestamp()

    def _order(self) -> tuple[str, str]:
        """How the source lists contacts: by ``date_updated`` newest first for a delta."""
        return BY_UPDATED if self._since is not None else BY_ADDED

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
        if self._run_start is None:
            self._run_start = _server_time(h)
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
            # Our own log keeps the window: a "0" that our own sends explain is our pacing
            # at the limit, told after nearly every request, and a pause for it would put
            # each send behind the last response. A "0" our sends do not explain means
            # another client spends this key too; then wait one slot's share of the
            # interval, when a sliding window frees its next slot.
            limiter = self.http.limiter
            if limiter.recent(window.per) < window.requests - max(2, window.requests // 10):
                limiter.pause(window.per / window.requests)

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
            body = resp.parsed()
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

    async def _page(self, cursor: dict[str, Any] | None, *, kind: str = "page",
                    limit: int | None = None, order: tuple[str, str] = BY_ADDED) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit or self.page_size, "sortBy": order[0], "order": order[1]}
        if cursor:
            params["startAfter"] = str(cursor["startAfter"])
            params["startAfterId"] = str(cursor["startAfterId"])
        resp = await self.http.request("GET", CONTACTS, params=params, kind=kind)
        body = resp.json()
        return body if isinstance(body, dict) else {}

    async def info(self, stream: str) -> StreamInfo:
        self._check_stream(stream)
        if self._first_page is None:
            self._first_page = await self._page(None, order=self._order())
        total = (self._first_page.get("meta") or {}).get("total")
        if self._since is not None:   # meta.total counts every contact, not those changed since
            total = None
        return StreamInfo(stream, total=total if isinstance(total, int) else None)

    async def pages(self, stream: str, cursor: Any) -> AsyncIterator[Page]:
        """Cursor pages, one after another; a delta's end at its first contact updated
        before ``--since`` (a contact without a readable ``dateUpdated`` is kept)."""
        self._check_stream(stream)
        order = self._order()
        names = {f["id"]: f.get("name") or f["id"] for f in await self._custom_fields()}
        seen: set[tuple[str, str]] = set()
        if cursor:
            seen.add((str(cursor["startAfter"]), str(cursor["startAfterId"])))
        n = 0
        while True:
            if cursor is None and self._first_page is not None:
                body, self._first_page = self._first_page, None
            else:
                body = await self._page(cursor, order=order)
            n += 1
            contacts = [c for c in body.get("contacts") or [] if isinstance(c, dict)]
            older = self._first_older(contacts)
            if older is not None:
                contacts = contacts[:older]
            meta = body.get("meta") or {}
            total = meta.get("total") if isinstance(meta.get("total"), int) and self._since is None else None
            after, after_id = meta.get("startAfter"), meta.get("startAfterId")
            nxt: dict[str, Any] | None = None
            if older is None and after is not None and after_id is not None and len(contacts) >= self.page_size:
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

    def _first_older(self, contacts: list[dict[str, Any]]) -> int | None:
        """In a delta, the position of the first contact updated before ``--since``."""
        if self._since is None:
            return None
        for i, c in enumerate(contacts):
            stamp = _stamp(c.get("dateUpdated"))
            if stamp is not None and stamp < self._since:
                return i
        return None

    def cannot_read_by_id(self, stream: str) -> str | None:
        return None if stream == "contacts" else f"rei has no stream '{stream}'"

    async def read_records(self, stream: str, ids: list[str]) -> AsyncIterator[Page]:
        """``retry``: ``GET /v1/contacts/:id`` per failed contact (the doc's "Get contact
        by id"), ``ctx.concurrency`` at once, in the order asked, with custom fields named
        as ``pages`` names them."""
        from contextlib import aclosing

        from ..paging import in_order

        self._check_stream(stream)
        names = {f["id"]: f.get("name") or f["id"] for f in await self._custom_fields()}
        todo = iter(range(len(ids)))

        async def one(i: int) -> Record:
            sid = ids[i]
            try:
                resp = await self.http.request("GET", CONTACTS + quote(sid, safe=""), kind="by_id")
            except RecordError as e:
                return Record(sid, None, error=f"REI Software could not give contact {sid} back: {e}")
            body = resp.json()
            contact = body.get("contact") if isinstance(body, dict) else None
            if not isinstance(contact, dict):
                return Record(sid, None, error=f"REI Software no longer holds contact {sid}")
            return Record(str(contact.get("id") or sid), self._with_names(contact, names))

        batch: list[Record] = []
        async with aclosing(in_order(one, lambda: next(todo, None), self.ctx.concurrency)) as loaded:
            async for _, rec in loaded:
                batch.append(rec)
                if len(batch) >= self.page_size:
                    yield Page(batch, None, len(ids))
                    batch = []
        if batch:
            yield Page(batch, None, len(ids))

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

    # ---- verify: reading back what a run wrote ------------------------------------------
    # The location stores phones as E.164, tags trimmed and lower-cased, e-mails as sent
    # (it compares them in lower case), countries as upper-case ISO codes.
    verify_rules = {"contacts": {"email": "casefold", "phone": "e164", "tags": "tags",
                                 "dateOfBirth": "date", "country": "upper"}}

    def natural_keys(self, stream: str) -> tuple[str, ...]:
        return DEDUP_FIELDS

    async def plan_read_back(self, stream: str, records: int) -> ReadBack:
        """The list's first page tells how many contacts the location holds (kept for the
        read): by id (``GET /v1/contacts/:id``) or the whole list (cursor pages of 100, one
        after another), whichever is fewer requests; plus the custom-field list."""
        self._check_stream(stream)
        first = await self._page(None, kind="page", limit=MAX_PAGE)
        self._first_page = first
        existing = (first.get("meta") or {}).get("total")
        existing = existing if isinstance(existing, int) else len(first.get("contacts") or [])
        how = choose_read_back(records=records, list_requests=max(1, math.ceil(existing / MAX_PAGE)),
                               vendor="REI Software", existing=existing, spent=1, sequential=True)
        how.requests["meta"] = 1
        return how

    async def read_back(self, stream: str, ids: list[str], how: ReadBack,
                        fields: frozenset[str]) -> AsyncIterator[tuple[str, dict[str, Any] | None]]:
        self._check_stream(stream)
        await self._custom_fields()
        if how.how == "list":
            body, self._first_page = self._first_page, None
            seen: set[tuple[str, str]] = set()
            while True:
                if body is None:
                    body = await self._page(None, kind="page", limit=MAX_PAGE)
                for c in body.get("contacts") or []:
                    if isinstance(c, dict) and c.get("id"):
                        yield str(c["id"]), self._held(c)
                meta = body.get("meta") or {}
                after, after_id = meta.get("startAfter"), meta.get("startAfterId")
                if after is None or after_id is None or not body.get("contacts"):
                    return
                if (str(after), str(after_id)) in seen:
                    raise CursorLoop(f"REI Software handed out the paging cursor startAfter={after}, "
                                     f"startAfterId={after_id} twice while verify read its contacts")
                seen.add((str(after), str(after_id)))
                body = await self._page({"startAfter": after, "startAfterId": after_id}, kind="page",
                                        limit=MAX_PAGE)
        from contextlib import aclosing

        from ..paging import in_order
        todo = iter(range(len(ids)))

        async def one(i: int) -> tuple[str, dict[str, Any] | None]:
            tid = ids[i]
            try:
                resp = await self.http.request("GET", CONTACTS + quote(tid, safe=""), kind="by_id")
            except RecordError:
                return tid, None
            contact = (resp.json() or {}).get("contact")
            return tid, self._held(contact) if isinstance(contact, dict) else None

        async with aclosing(in_order(one, lambda: next(todo, None), self.ctx.concurrency)) as loaded:
            async for _, pair in loaded:
                yield pair

    def _held(self, contact: dict[str, Any]) -> dict[str, Any]:
        """A contact in a mapped record's names; ``name`` as the two names it was split into."""
        out = self._as_record(contact)
        out["name"] = " ".join(p for p in (contact.get("firstName"), contact.get("lastName")) if p) or None
        return out

    # ---- the plan ---------------------------------------------------------------------
    def plan_reads(self, stream: str, total: int | None) -> dict[str, int]:
        """A page per ``page_size`` contacts, and one more when the last is full: only a
        short page ends the cursor. ``info`` reads the first page, which ``pages`` reuses."""
        if total is None:
            return {"page": 1}
        return {"page": total // self.page_size + 1}

    def plan_pages(self, stream: str, total: int | None) -> int:
        return max(1, -(-(total or 0) // self.page_size))

    def plan_setup(self, role: str, streams: list[str]) -> dict[str, int]:
        """The custom-field list, once per run: reads name the fields, writes resolve them."""
        return {"meta": 1}

    async def quota(self, probe: bool = False) -> Quota | None:
        """The daily quota the server announces (a ``daily_quota`` set in the job may lower
        it: a key shared with other tools) and what ``X-RateLimit-Daily-Remaining`` last
        said; the probe is the custom-field list, which the run reads anyway and keeps."""
        if probe and self.daily_remaining is None:
            await self._custom_fields()
        limit = self.daily_limit or self.daily_quota
        if self.daily_limit and self.settings.get("daily_quota") not in (None, ""):
            limit = min(limit, self.daily_quota)
        return Quota(limit, self.daily_remaining)

    # ---- target ---------------------------------------------------------------------
    async def prepare(self, streams: list[Any]) -> None:
        """Resolve every ``custom.<name>`` the mappings use (and prove the key works); for a
        stream with ``match_on``, choose how to dedup and, for the index, read it."""
        wanted: list[str] = []
        matched = False
        for sm in streams:
            if getattr(sm, "target_stream", None) != "contacts":
                continue
            wanted += [f[len(CUSTOM):] for f in getattr(sm, "fields", {}) if f.startswith(CUSTOM)]
            matched = matched or bool(getattr(sm, "match_on", ()))
        self._field_ids.update(await self._resolve(list(dict.fromkeys(wanted))))
        if self.on_merge not in ON_MERGE:
            raise JobError(f"on_merge must be one of {', '.join(ON_MERGE)}, not {self.on_merge!r}")
        if matched and self.on_merge == "combine":
            await self._notes_slot()
        if matched and "contacts" not in self._dedup:
            self._dedup["contacts"] = await self._start_dedup("contacts", streams)
        self._job_streams = tuple(str(sm.name) for sm in streams
                                  if getattr(sm, "target_stream", None) == "contacts" and getattr(sm, "name", None))
        ckpt = self.checkpoint
        if ckpt is not None and self._job_streams and hasattr(ckpt, "query"):
            marks = ",".join("?" * len(self._job_streams))
            self._earlier_runs = bool(await ckpt.query(
                f"SELECT 1 FROM records WHERE stream IN ({marks}) AND status='done' AND run < ? LIMIT 1",
                (*self._job_streams, ckpt.run)))

    async def _notes_slot(self) -> None:
        """A combined merge appends to the location's "Notes" custom field (named as the
        mapping names it); without one, a value both records hold differently has no place."""
        fields = await self._custom_fields()
        ids = [f["id"] for f in fields if str(f.get("name", "")).casefold() == NOTES_FIELD]
        if len(ids) == 1:
            mine = {fid: name for name, fid in self._field_ids.items()}
            name = mine.get(ids[0]) or next(str(f.get("name")) for f in fields if f["id"] == ids[0])
            self._field_ids.setdefault(name, ids[0])
            self.merge_slots = Slots(lists=frozenset({"tags"}), note=CUSTOM + name)

    @staticmethod
    def _key_fields(streams: list[Any]) -> tuple[str, ...]:
        """The location merges on e-mail, then phone, whatever ``match_on`` says; other
        ``match_on`` fields are matched too, after those."""
        extra = [f for sm in streams if getattr(sm, "target_stream", None) == "contacts"
                 for f in getattr(sm, "match_on", ()) if f not in DEDUP_FIELDS]
        return DEDUP_FIELDS + tuple(dict.fromkeys(extra))

    async def _probe(self) -> tuple[dict[str, Any], int]:
        """The first page of the location's contacts (kept: the index starts with it) and
        how many it holds."""
        first = await self._page(None, kind="index", limit=MAX_PAGE)
        total = (first.get("meta") or {}).get("total")
        if not isinstance(total, int):
            total = len(first.get("contacts") or [])
        return first, total

    def _choose(self, existing: int, records: int | None) -> Choice:
        return choose(existing=existing, pages=max(1, math.ceil(existing / MAX_PAGE)), probes=1,
                      records=records, per_record="lookup", vendor="REI Software")

    async def _start_dedup(self, stream: str, streams: list[Any]) -> "Dedup":
        fields = self._key_fields(streams)
        first, existing = await self._probe()
        choice = self._choose(existing, self.expected_records.get(stream))
        if not choice.indexed:
            return Dedup(choice, fields, None)
        store = await fresh_index(self.checkpoint, stream)
        await self._read_index(first, fields, store)
        return Dedup(choice, fields, store)

    async def _read_index(self, first: dict[str, Any], fields: tuple[str, ...], store: KeyStore) -> int:
        """Every contact's keys into ``store``, page by page (oldest first, as the location
        picks the oldest of two contacts sharing an e-mail). Returns the requests spent
        after ``first``."""
        body, spent = first, 0
        seen: set[tuple[str, str]] = set()
        while True:
            pairs = [(key, str(c["id"])) for c in body.get("contacts") or [] if isinstance(c, dict) and c.get("id")
                     for _, key in keys_of(c, fields)]
            store.add(pairs, durable=True)
            await store.flush()
            meta = body.get("meta") or {}
            after, after_id = meta.get("startAfter"), meta.get("startAfterId")
            if after is None or after_id is None or not body.get("contacts"):
                return spent
            cursor = (str(after), str(after_id))
            if cursor in seen:
                raise CursorLoop(f"REI Software handed out the paging cursor startAfter={after}, "
                                 f"startAfterId={after_id} twice while its contacts were read for dedup")
            seen.add(cursor)
            body = await self._page({"startAfter": after, "startAfterId": after_id}, kind="index", limit=MAX_PAGE)
            spent += 1

    def can_lookup(self, stream: str) -> bool:
        return stream == "contacts"

    async def lookup(self, stream: str, record: Mapping[str, Any], source_id: str) -> str | None:
        """Email first, then phone, as the doc's lookup does. A refused key finds nothing."""
        if stream != "contacts":
            return None
        found = await self._lookup_contact(record)
        return str(found["id"]) if found else None

    async def _lookup_contact(self, record: Mapping[str, Any]) -> dict[str, Any] | None:
        params = {k: str(record[k]) for k in DEDUP_FIELDS if record.get(k)}
        if not params:
            return None
        try:
            resp = await self.http.request("GET", CONTACTS + "lookup", params=params, kind="lookup")
        except RecordError as e:
            if e.status in (400, 422):
                return None
            raise
        found = (resp.json() or {}).get("contacts") or []
        return found[0] if found and isinstance(found[0], dict) and found[0].get("id") else None

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
        if target_id is not None:
            return await self._put(str(target_id), body, action="updated")
        dedup = self._dedup.get(stream)
        keys = keys_of(record, dedup.fields) if dedup is not None else []
        if not keys:
            async with self._locks.hold(k for _, k in keys_of(record, DEDUP_FIELDS)):
                return await self._create_new(body, record, source_id)
        assert dedup is not None
        async with self._locks.hold(k for _, k in keys):
            if dedup.index is not None:
                found = await dedup.index.get([k for _, k in keys])
                hit = next(((name, found[k]) for name, k in keys if k in found), None)
                requests = {}
            else:
                found = {}
                contact = await self._lookup_contact(record)
                hit = (self._matched_field(record, contact, dedup.fields), str(contact["id"])) if contact else None
                requests = {"lookup": 1}
            if hit is None:
                result = await self._create_new(body, record, source_id)
                if dedup.index is not None:
                    dedup.index.add((k, result.target_id) for _, k in keys)
                result.requests = {**requests, **result.requests}
                return result
            name, matched = hit
            kept = merge_without_writing(self.on_merge, "REI Software", name, record, matched)
            if kept is not None:
                kept.requests = requests
                return kept
            if self.on_merge == "combine":
                result = await self._combine(matched, record, source_id,
                                             None if dedup.index is not None else contact)
            else:
                result = await self._merge(matched, body, record, dedup.fields)
            if dedup.index is not None:
                dedup.index.add((k, result.target_id) for _, k in keys if k not in found)
            result.matched_key = shown_key(name, record)
            result.requests = {**requests, **result.requests}
            return result

    @staticmethod
    def _matched_field(record: Mapping[str, Any], contact: Mapping[str, Any], fields: tuple[str, ...]) -> str:
        for name in fields:
            mine = normalize(name, record.get(name))
            if mine is not None and mine == normalize(name, contact.get(name)):
                return name
        return fields[0]

    async def _post(self, body: dict[str, Any]) -> tuple[dict[str, Any], Response]:
        resp = await self.http.request("POST", CONTACTS, json=body, kind="create", write=True)
        contact = (resp.json() or {}).get("contact") or {}
        if not contact.get("id"):
            raise RecordError("REI Software answered the create without a contact id", status=resp.status)
        return contact, resp

    async def _create_new(self, body: dict[str, Any], record: Mapping[str, Any], source_id: str) -> WriteResult:
        """A create the location may have merged: ``matched`` (with the key it shares) when
        the answer names a contact that was there before, else ``created``."""
        contact, resp = await self._post(body)
        cid = str(contact["id"])
        mine = frozenset(k for _, k in keys_of(record, DEDUP_FIELDS))
        before = self._answered.get(cid)
        merged = before is not None or await self._existed(contact, resp, source_id)
        self._remember(cid, contact, resp, mine)
        if not merged:
            return WriteResult(cid, "created", requests={"create": 1})
        shared = [(name, k) for name, k in keys_of(record, DEDUP_FIELDS) if before is None or k in before[1]]
        name = (shared or [("email" if record.get("email") else "phone", "")])[0][0]
        return WriteResult(cid, "matched", shown_key(name, record), requests={"create": 1})

    async def _existed(self, contact: Mapping[str, Any], resp: Response, source_id: str) -> bool:
        """Was the contact a create answered there before it? Its ``dateAdded`` against the
        answer's time, then — for one added before this run — the checkpoint of the job."""
        added = _stamp(contact.get("dateAdded"))
        has_date = "Date" in resp.headers
        now = _server_time(resp.headers)
        margin = MERGE_AGE if has_date else MERGE_AGE + CLOCK_SKEW
        if added is not None and now - added > margin:
            return True
        start = self._run_start if self._run_start is not None else now
        if not self._earlier_runs or (added is not None and added >= start + 1 + (0 if has_date else CLOCK_SKEW)):
            return False
        marks = ",".join("?" * len(self._job_streams))
        rows = await self.checkpoint.query(
            f"SELECT 1 FROM records WHERE stream IN ({marks}) AND target_id=? AND status='done' "
            f"AND source_id != ? LIMIT 1", (*self._job_streams, str(contact["id"]), source_id))
        return bool(rows)

    def _remember(self, cid: str, contact: Mapping[str, Any], resp: Response, keys: frozenset[str]) -> None:
        """Keep the ids creates answered while their age cannot tell a merge; forget older."""
        now = _server_time(resp.headers)
        added = _stamp(contact.get("dateAdded"))
        self._answered[cid] = (added if added is not None else now, keys)
        self._answered.move_to_end(cid)
        horizon = now - 2 * (MERGE_AGE + CLOCK_SKEW)
        while self._answered:
            first = next(iter(self._answered))
            if self._answered[first][0] >= horizon:
                break
            del self._answered[first]

    async def _merge(self, matched: str, body: dict[str, Any], record: Mapping[str, Any],
                     fields: tuple[str, ...]) -> WriteResult:
        """``on_merge: update``: the location's own create-or-update, one request with the
        tags merged — unless it turns out to allow duplicates; then PUT and tags. The
        contact is read first: its values are what ``migrator undo`` puts back."""
        previous = await self._previous(matched)
        if not self._server_merges:
            result = await self._put(matched, body, action="updated")
            result.previous, result.requests = previous, {"read": 1, **result.requests}
            return result
        contact, resp = await self._post(dict(body))
        answered = str(contact["id"])
        if answered == matched:
            return WriteResult(matched, "updated", requests={"read": 1, "create": 1}, previous=previous)
        if answered in self._answered or await self._existed(contact, resp, ""):
            # Merged into another contact: the location's match order differs from ours
            # (its previous values were not read: undo lists it).
            return WriteResult(answered, "updated", requests={"read": 1, "create": 1})
        # A new contact: this location allows duplicates. Undo it, then update the match.
        self._server_merges = False
        await self.http.request("DELETE", CONTACTS + quote(answered, safe=""), kind="delete")
        put = await self._put(matched, body, action="updated")
        return WriteResult(matched, "updated", requests={"read": 1, "create": 1, "delete": 1, **put.requests},
                           previous=previous)

    async def _previous(self, contact_id: str) -> dict[str, Any] | None:
        """The contact as the location holds it, in the mapped record's names."""
        return await self.undo_read("contacts", contact_id)

    # ---- undo: DELETE /v1/contacts/:id, and a PUT of the previous values ----------------
    def cannot_undo(self) -> str | None:
        return None

    undo_open_kind = "meta"

    async def undo_open(self) -> None:
        await self._custom_fields()   # its names are needed to read custom fields back anyway

    async def undo_read(self, stream: str, target_id: str) -> dict[str, Any] | None:
        self._check_stream(stream)
        try:
            resp = await self.http.request("GET", CONTACTS + quote(str(target_id), safe=""), kind="read")
        except RecordError as e:
            if e.status == 404:
                return None
            raise
        contact = (resp.json() or {}).get("contact")
        if not isinstance(contact, dict):
            return None
        await self._custom_fields()
        return self._as_record(contact)

    async def undo_delete(self, stream: str, target_id: str) -> None:
        self._check_stream(stream)
        try:
            await self.http.request("DELETE", CONTACTS + quote(str(target_id), safe=""), kind="delete")
        except RecordError as e:
            if e.status != 404:
                raise

    async def undo_restore(self, stream: str, target_id: str, previous: dict[str, Any],
                           now: dict[str, Any], wrote: dict[str, Any]) -> list[str]:
        """One PUT of every previous value that differs — its tags replace the contact's,
        as the doc's PUT does. A field the contact did not have cannot be emptied: the
        location refuses ``null``."""
        self._check_stream(stream)
        back, lost = self.undo_back(previous, now, wrote)
        if back:
            body = await self._body(back)
            if not body.get("email") and not body.get("phone"):   # the doc: e-mail or phone is required
                for key in DEDUP_FIELDS:
                    if previous.get(key):
                        body[key] = previous[key]
                        break
            await self.http.request("PUT", CONTACTS + quote(str(target_id), safe=""), json=body, kind="update")
        return lost

    def undo_back(self, previous: dict[str, Any], now: dict[str, Any],
                  wrote: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        back: dict[str, Any] = {}
        lost: list[str] = []
        for key in sorted(set(previous) | set(now)):
            was, is_ = previous.get(key), now.get(key)
            if was == is_ or (key == "tags" and not was and not is_):
                continue
            if was in (None, "") and key != "tags":
                lost.append(f"{key} (REI Software cannot empty a field; it now holds {str(is_)[:40]!r})")
                continue
            back[key] = was if key != "tags" else list(was or [])
        return back, lost

    async def _combine(self, matched: str, record: Mapping[str, Any], source_id: str,
                       contact: dict[str, Any] | None) -> WriteResult:
        """``on_merge: combine``: the contact as the location holds it (read by id, unless
        the lookup brought it), then one PUT of what the record adds — the tags as their
        union (a PUT replaces them), the note field whole."""
        requests: dict[str, int] = {}
        if contact is None:
            resp = await self.http.request("GET", CONTACTS + quote(matched, safe=""), kind="read")
            contact = (resp.json() or {}).get("contact") or {}
            requests["read"] = 1
        previous = self._as_record(contact)
        out = combine(previous, record, self.merge_slots, source_id=source_id)
        if out.changes:
            body = await self._body(out.changes)
            for key in DEDUP_FIELDS:   # the doc: "Email or Phone are required to update contact"
                if out.record.get(key) and key not in body:
                    body[key] = out.record[key]
            await self.http.request("PUT", CONTACTS + quote(matched, safe=""), json=body, kind="update")
            requests["update"] = 1
        return WriteResult(matched, "updated", requests=requests,
                           placements=[p.as_dict() for p in out.placements], previous=previous,
                           wrote=dict(out.changes))

    def _as_record(self, contact: Mapping[str, Any]) -> dict[str, Any]:
        """A contact in the names a mapped record uses: schema fields, ``custom.<name>``."""
        fields = set(self.schemas()["contacts"].fields)
        out = {k: v for k, v in contact.items() if k in fields}
        theirs = {f["id"]: str(f.get("name") or f["id"]) for f in self._fields or ()}
        mine = {fid: name for name, fid in self._field_ids.items()}
        for fid, value in self._with_names(dict(contact), {**theirs, **mine})["customFields"].items():
            out[CUSTOM + str(fid)] = value
        return out

    async def _put(self, target_id: str, body: dict[str, Any], *, action: str) -> WriteResult:
        # PUT replaces the contact's tags; the tags endpoint adds to them.
        body = dict(body)
        tags = body.pop("tags", None)
        path = CONTACTS + quote(str(target_id), safe="")
        await self.http.request("PUT", path, json=body, kind="update")
        requests = {"update": 1}
        if tags:
            await self.http.request("POST", path + "/tags/", json={"tags": tags}, kind="tags")
            requests["tags"] = 1
        return WriteResult(target_id=str(target_id), action=action, requests=requests)

    # ---- the plan: writes --------------------------------------------------------------
    async def write_planner(self, stream: str, sm: Any) -> WritePlanner:
        """What writing ``stream`` costs: a create per record, and with ``match_on`` the
        location's contacts read once (or a lookup per record, when that is cheaper).

        The plan reads the contacts itself when the read is small: matches change the count
        (skip, fail: a matched record sends nothing; update: a read first, for ``migrator
        undo``; combine: a read and a PUT)."""
        self._check_stream(stream)
        if not getattr(sm, "match_on", ()):
            return _ReiUpdates("REI Software merges a create with a known e-mail, else phone, into that "
                               "contact; without match_on such merges are not known before the run (the run reports "
                               "each one it meets)")
        state = self._plans.get(stream)
        if state is None:
            fields = self._key_fields([sm])
            first, existing = await self._probe()
            state = PlanState(self._choose(existing, None), fields, probes=1)
            pages = max(1, math.ceil(existing / MAX_PAGE))
            if existing and pages <= PLAN_READ_LIMIT:
                state.existing = MemoryKeys()
                await self._read_index(first, fields, state.existing)
            self._plans[stream] = state
        return _ReiPlanner(self, state)



class _ReiUpdates(WritePlanner):
    def update(self, record: dict[str, Any]) -> None:
        """A delta's PUT (``Rei._put``); a PUT replaces the contact's tags, so the tags go
        after it to the tags endpoint, which adds them."""
        self.counts["update"] += 1
        if record.get("tags"):
            self.counts["tags"] += 1


class _ReiPlanner(_ReiUpdates):
    """Counts a run's requests by kind, record by record, as ``Rei.write`` will send them."""

    def __init__(self, rei: Rei, state: PlanState):
        super().__init__()
        self.rei, self.state = rei, state
        self.keyed = 0
        self.matched = 0
        self.combined = 0
        self.read_first = 0   # on_merge: update reads the contact first, for `migrator undo`

    def add(self, record: dict[str, Any]) -> None:
        state = self.state
        state.records += 1
        keys = keys_of(record, state.fields)
        if not keys:
            self.counts["create"] += 1
            return
        self.keyed += 1
        hit = state.match(keys)
        if hit is None:
            self.counts["create"] += 1
            state.remember(keys)
            return
        self.matched += 1
        if self.rei.on_merge == "update":
            self.counts["create"] += 1
            self.read_first += 1
            state.remember(keys, hit[2])
        elif self.rei.on_merge == "combine":   # a read (unless looked up), then a PUT
            self.counts["update"] += 1
            self.combined += 1
            state.remember(keys, hit[2])

    def _choice(self) -> Choice:
        state = self.state
        return self.rei._choose(state.choice.existing, state.records)

    def requests(self) -> dict[str, int]:
        out = dict(self.counts)
        choice = self._choice()
        if self.state.probe_owner in (None, self):   # one read of the list for the target stream
            self.state.probe_owner = self
            out["index"] = choice.pages if choice.indexed else 1
        if not choice.indexed:
            out["lookup"] = self.keyed
            out["read"] = self.read_first
        else:
            out["read"] = self.combined + self.read_first
        return {k: n for k, n in out.items() if n}

    @property  # type: ignore[override]
    def dedup(self) -> str:
        choice = self._choice()
        way = ("reads REI Software's contacts once and matches e-mail, then phone, locally"
               if choice.indexed else "looks each record up by e-mail, then phone")
        if self.state.existing is not None or not choice.existing:
            matches = f"{self.matched} records match a contact the location holds or an earlier record"
        elif self.rei.on_merge == "update":
            matches = (f"{self.matched} records share a key with an earlier record; matches with the "
                       f"{choice.existing} contacts the location holds cost the same create")
        else:
            matches = (f"{self.matched} records share a key with an earlier record; matches with the "
                       f"{choice.existing} contacts the location holds are not counted (reading them for "
                       "the plan would cost too much)")
        return f"{way}: {choice.reason}. {matches}; on_merge: {self.rei.on_merge} (reported as merges)"

    @dedup.setter
    def dedup(self, value: str) -> None:
        pass
