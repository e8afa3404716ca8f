"""Realvolve Utility API simulator (``vendor-docs/realvolve-utility-api.txt``).

Realvolve is a Rails app: an OAuth2 client-credentials token (Doorkeeper style) plus the
user's ``utility_api_key`` on every call, bracketed ``contact[primary][…]`` params, page
numbers of 1,000 contacts, and no duplicate detection at all. The simulator keeps those
traits so a connector that works here has met the real API's rules.

Assumptions where the doc is silent (each chosen as the plausible strict behaviour):

- Params come from the query string and from a form body (urlencoded or multipart), merged
  as Rails does: ``request_parameters.merge(query_parameters)`` — a *shallow* merge in
  which the query wins, so ``contact[...]`` keys split between query and body keep only
  the query's ``contact``. JSON bodies are not read. Conflicting keys
  (``contact[primary]=x`` beside ``contact[primary][first_name]=y``) or invalid UTF-8
  answer 400.
- The bearer token is read from the ``Authorization`` header only (the doc says "you must
  include a header"); ``/oauth/token`` reads client id/secret from params only, not from
  HTTP Basic. Bad client or grant type: 401 ``{"error": ..., "error_description": ...}``.
  Any number of tokens may be valid at once; a missing, unknown or expired token, or a
  missing or wrong ``utility_api_key``, answers 401 in the same shape.
- ``GET /contacts`` and ``recent_contacts`` rows carry the fields of the create response's
  ``contact`` (company, title, contact_status_id, source_id, birth_date, ...): the doc's
  update call takes "any available field that appears in the GET /contacts calls", and
  its list sample shows only first_name, id, last_name and profile_pic_url.
  ``RealvolveSim(list_fields="sample")`` answers rows of exactly those four, the doc's
  sample, so a connector can be proved to work from names alone.
- ``contact_detail`` answers ``success`` and the five arrays of the doc's sample
  (email_addresses, addresses, phone_numbers, tags, notes) and nothing else: no contact
  object (Get Contact Details' sample response).
- ``POST /contacts`` takes only the params Create Contact lists — contact[primary]
  first_name, last_name, contact_source; contact[details] address[work_address|
  home_address], email_address[work_email|home_email], tags — plus
  contact[primary][workflow_id] and [creator_id], which the doc's own sample request
  sends. Everything else (company, title, status, dates, phones, tag_list) is dropped
  silently, not refused: Rails' strong params drop what they do not permit, and the doc
  lists phones, company and title only for Edit Contact.
- ``update_contact`` takes what Edit Contact lists — first_name, last_name, creator_id,
  addresses, e-mails, phone_number[work_phone|home_phone], tags, tag_list — plus
  contact_source, company and title (its sample request sends them) and, of "any
  available field that appears in the GET /contacts calls", contact_status_id,
  birth_date and home_purchase_anniversary. Other list-row fields are dropped.
- Unknown keys (a misspelt field, ``mobile_phone`` — no call in the doc lists one —,
  ``contact[secondary]``, any param the call does not take) are dropped silently, as a
  Rails app does; no 422 names them. A known key whose value is not one string answers 422.
- Validation (422 ``{"success": false, "msg": ...}``, nothing written): a create needs a
  non-blank first or last name, and an update may not blank both; strings are at most 255
  characters (Rails' string columns); e-mails must look like ``local@domain.tld``; phones
  are digits only ("integer" in the doc), 10 digits or 11 starting with 1;
  ``contact_status_id`` must be one of the statuses; dates are ``YYYY-MM-DD``;
  ``creator_id`` is an integer; ``workflow_id`` must name an existing workflow (seeded:
  2843 and 3939, the doc's ids) and starts it for the contact. An empty value clears the
  field (or removes that category's e-mail, phone or address).
- ``contact_source`` is a source name, matched case-insensitively; an unknown name creates a
  custom source (``is_custom: true``). Tags match account tags case-insensitively; unknown
  names create account tags. A contact never holds the same tag twice. Tags are appended
  on update; ``contact[details][tag_list]=overwrite`` (or a top-level ``tag_list``) makes
  ``contact[details][tags]`` replace the list — an empty ``tags`` then clears it, and
  ``overwrite`` without ``tags`` changes nothing.
- Setting ``work_email`` (etc.) replaces the contact's e-mail of that category in place.
  Category ids: work 1, home 2, mobile 3. Phones are stored as ``843-697-3932`` with
  ``plain_phone_number`` ``+18436973932``; seeded phones that are not valid keep their raw
  text and a null ``plain_phone_number``. One-line addresses split into street number,
  street, city, state and zip when they read "street, city, ST zip"; otherwise they are
  stored whole with null geo fields and ``backfill_required: true``. Nothing is geocoded
  (latitude/longitude are null).
- Every ``update_contact`` sets ``updated_at``; ``add_note`` does not (so a delta sync by
  ``recent_contacts`` does not see new notes). Blank ``note_content`` answers 422.
- ``GET /properties`` returns every property in one response (the doc shows no paging);
  the doc's sample is cut off ("..."), so each property carries ``address_line`` (the
  street), city, state, zipcode, bedrooms, bathrooms, area_in_sq_feet, list_price
  (numbers). No field names a property's contacts: the sample shows none, so a property's
  owner cannot be read from the API.
- No rate limit is published: ``default_limit`` is 10 requests per second, counted per
  ``utility_api_key``; the token endpoint is not counted. Over the limit: 429 with
  ``Retry-After`` and rack-attack's default plain-text body ``Retry later``. Injected 5xx
  answer JSON ``{"status": N, "error": ...}``.
- Orders: contact sources by name (the doc's sample is alphabetical), statuses, account
  tags, workflows and notes by id. ``expires_in`` is whole seconds unless a fault profile
  sets a fractional token lifetime. Seeded person ``uid`` is contact ``904000 + uid``.
- Emails, SMS, showings and e-mail templates are not simulated (404).
"""
from __future__ import annotations

import hashlib
import hmac
import itertools
import math
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qsl

import orjson
from aiohttp import web
from dateutil.parser import isoparse

from .base import Simulator, Unauthorized, json_response
from .data import SOURCES, STATUSES, Person, Property

API = "/utility_api/v1"
PARAMS: Any = (web.RequestKey("realvolve_params", dict) if hasattr(web, "RequestKey")
               else "realvolve_params")
TOKEN_TTL = 7200.0
MAX_STRING = 255
CREATOR_ID = 615
ACCOUNT_ID = 143
CONTACT_ID_BASE = 904000
PROPERTY_ID_BASE = 43500

PIC = {"url": None, "large": {"url": None}, "thumb": {"url": None},
       "small_thumb": {"url": None}, "package_image_thumb": {"url": None}}

CONTACT_TEMPLATE: dict[str, Any] = {
    "animoto_link": None, "annual_income": None, "birth_date": None, "blog_link": None,
    "cached_slug": None, "category": None, "client_id": None, "company": None,
    "contact_score": 2, "contact_source_link": None, "contact_source_type_id": None,
    "contact_status_id": None, "created_at": None, "creator_id": CREATOR_ID,
    "deleted_at": None, "dropbox_link": None, "email_folder_link": None,
    "enhanced_google_map_link": None, "evernote_link": None, "facebook_invalid": False,
    "facebook_profile_link": None, "fb_uid": None, "first_name": None,
    "google_drive_link": None, "google_plus_link": None, "has_synced": False,
    "home_purchase_anniversary": None, "id": None, "import_engine": None, "import_id": None,
    "import_session_uuid": None, "import_status_id": None, "imported_at": None,
    "imported_contact_id": None, "imported_referred_by_id": None, "inactive": False,
    "instagram_link": None, "is_special_contact": False, "known_since": None,
    "last_call_date": None, "last_google_synced_at": None, "last_name": None,
    "last_personal_note_date": None, "last_personal_visit_date": None,
    "last_updated_at": None, "lifetime_value": None, "linkedin_invalid": False,
    "linkedin_link": None, "mark_for_deletion": False, "matching_import_uuid": None,
    "pairing_import_uuid": None, "pinterest_link": None, "prefix": None,
    "profile_pic_url": PIC, "propinquity_points": None, "record_type": 0,
    "referred_date": None, "referrer_id": None, "rendered_at": None, "rent_own": "",
    "rss_link": None, "savvycard_link": None, "sex": None, "source": None, "source_id": None,
    "stage": None, "suffix": None, "sync_in_progress": False, "title": None,
    "twitter_handle": None, "twitter_invalid": False, "updated_at": None, "viewed_at": None,
    "year_moved": None, "youtube_link": None,
}

PROPERTY_NULLS = ("acreage", "agent_marketing_narrative", "alarm_code", "animoto_link",
                  "annual_property_tax", "assessor_parcel_number", "association_details",
                  "average_monthly_utility_cost", "blog_link", "brochure_delivery_date",
                  "broker_open_date", "broker_open_time", "buy_side_commission",
                  "youtube_link", "zillow_link")

# What each call takes (anything else under ``contact`` is dropped silently, see above).
CREATE_PRIMARY = frozenset({"first_name", "last_name", "contact_source", "creator_id",
                            "workflow_id"})
UPDATE_PRIMARY = frozenset({"first_name", "last_name", "creator_id", "contact_source", "company",
                            "title", "contact_status_id", "birth_date",
                            "home_purchase_anniversary"})
CREATE_DETAILS: dict[str, dict[str, str]] = {
    "address": {"work_address": "work", "home_address": "home"},
    "email_address": {"work_email": "work", "home_email": "home"},
}
UPDATE_DETAILS: dict[str, dict[str, str]] = {
    **CREATE_DETAILS, "phone_number": {"work_phone": "work", "home_phone": "home"},
}
CATEGORY = {"work": 1, "home": 2, "mobile": 3}
# Text fields the keep-less fault (tests only) may spoil on a create: the names, never e-mail.
KEPT_FIELDS = ("first_name", "last_name")
STATUS_TIME = "2015-06-26T07:15:21Z"
SOURCE_TIME = "2015-06-10T09:56:32Z"

EMAIL_RE = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")
STREET_RE = re.compile(r"(\d+[A-Za-z]?(?:-\d+)?)\s+(.+)")
STATE_ZIP_RE = re.compile(r"([A-Za-z][A-Za-z .]*?)(?:\s+(\d{5}(?:-\d{4})?))?")
KEY_RE = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")
SEG_RE = re.compile(r"\[([^\[\]]*)\]")


class _Reject(Exception):
    """A handler's refusal, carrying the vendor-shaped response."""

    def __init__(self, response: web.Response):
        super().__init__(response.status)
        self.response = response


class _ParamError(ValueError):
    pass


def _fail(status: int, msg: str) -> _Reject:
    return _Reject(json_response({"success": False, "msg": msg}, status))


def _ts(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _digest(text: str, n: int, alphabet: str) -> str:
    num = int.from_bytes(hashlib.sha256(text.encode()).digest(), "big")
    out = []
    for _ in range(n):
        num, r = divmod(num, len(alphabet))
        out.append(alphabet[r])
    return "".join(out)


def _nest(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Rails' nested-param parsing: ``a[b][c]=v`` → ``{"a": {"b": {"c": "v"}}}``,
    ``a[]=v`` appends to a list; a key used both as a value and as a hash is an error."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        m = KEY_RE.fullmatch(key)
        segs = [m.group(1), *SEG_RE.findall(m.group(2))] if m else [key]
        is_list = len(segs) > 1 and segs[-1] == ""
        if is_list:
            segs.pop()
        node = out
        for seg in segs[:-1]:
            child = node.setdefault(seg, {})
            if not isinstance(child, dict):
                raise _ParamError(key)
            node = child
        last = segs[-1]
        existing = node.get(last)
        if is_list:
            if existing is None:
                node[last] = [value]
            elif isinstance(existing, list):
                existing.append(value)
            else:
                raise _ParamError(key)
        elif isinstance(existing, (dict, list)):
            raise _ParamError(key)
        else:
            node[last] = value
    return out


def _format_phone(digits: str) -> tuple[str, str]:
    d = digits[-10:]
    return f"{d[:3]}-{d[3:6]}-{d[6:]}", f"+1{d}"


def _split_address(one_line: str) -> dict[str, Any]:
    parts = [p.strip() for p in one_line.split(",")]
    if parts and parts[-1].upper() in ("US", "USA", "UNITED STATES"):
        parts = parts[:-1]
    fields: dict[str, Any] = {"street_number": None, "address_line": None, "geo_city": None,
                              "geo_state": None, "zipcode": None, "backfill_required": True}
    m = STATE_ZIP_RE.fullmatch(parts[-1]) if len(parts) >= 3 else None
    if not m:
        return fields
    street = ", ".join(parts[:-2])
    sm = STREET_RE.fullmatch(street)
    fields.update(street_number=sm.group(1) if sm else None,
                  address_line=sm.group(2) if sm else street, geo_city=parts[-2] or None,
                  geo_state=m.group(1).strip(), zipcode=m.group(2), backfill_required=False)
    return fields


@dataclass
class _Changes:
    """A validated create/update request, applied only once every field has passed."""

    primary: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    workflow_id: int | None = None
    emails: dict[str, str] = field(default_factory=dict)
    phones: dict[str, str] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)
    tags: list[str] | None = None
    overwrite: bool = False


@dataclass
class _Contact:
    obj: dict[str, Any]
    updated: datetime
    emails: list[dict[str, Any]] = field(default_factory=list)
    phones: list[dict[str, Any]] = field(default_factory=list)
    addresses: list[dict[str, Any]] = field(default_factory=list)
    tag_ids: list[int] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)
    workflow_ids: list[int] = field(default_factory=list)


Handler = Callable[[web.Request], Awaitable[web.Response]]


class RealvolveSim(Simulator):
    """The Realvolve Utility API: OAuth2 token + utility_api_key, pages of contacts."""

    vendor = "realvolve"
    default_limit = (10, 1.0)

    def __init__(self, *, page_size: int = 1000, list_fields: str = "full", **kwargs: Any):
        if page_size < 1:
            raise ValueError("page_size must be >= 1")
        if list_fields not in ("full", "sample"):
            raise ValueError("list_fields must be full or sample")
        self.page_size = page_size
        self.list_fields = list_fields
        self._tokens: dict[str, float] = {}
        self.tokens_issued = 0
        super().__init__(**kwargs)
        self.client_id = hashlib.sha256(f"realvolve-client-id-{self.seed}".encode()).hexdigest()
        self.client_secret = hashlib.sha256(f"realvolve-secret-{self.seed}".encode()).hexdigest()
        self.utility_api_key = _digest(f"realvolve-utility-{self.seed}", 40,
                                       "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")

    # ---- seeding -------------------------------------------------------------------

    def seed_data(self) -> None:
        self._contacts: dict[int, _Contact] = {}
        self._ids: list[int] = []
        self._notes: dict[int, dict[str, Any]] = {}
        self._version = 0
        self._recent_cache: dict[datetime, tuple[int, list[int]]] = {}
        self._seq = {"contact": itertools.count(CONTACT_ID_BASE + len(self.seed_people) + 1),
                     "email": itertools.count(537000), "phone": itertools.count(487000),
                     "address": itertools.count(1009000), "note": itertools.count(1578000),
                     "tag": itertools.count(4400), "source": itertools.count(160)}
        self._statuses = {i: {"created_at": STATUS_TIME, "id": i, "name": name,
                              "updated_at": STATUS_TIME}
                          for i, name in enumerate(STATUSES, start=1)}
        self._status_by_name = {s["name"]: i for i, s in self._statuses.items()}
        self._sources: dict[str, dict[str, Any]] = {}
        for name in SOURCES:
            self._add_source(name, custom=False, stamp=SOURCE_TIME)
        self._tags: dict[int, dict[str, Any]] = {}
        self._tags_by_name: dict[str, int] = {}
        self._workflows = {wid: self._workflow(wid, title) for wid, title in
                           ((2843, "New Lead Nurture"), (3939, "Beson: 7 Years"))}
        for person in self.seed_people:
            self._seed_contact(person)
        self._properties = [self._property(p) for p in self.seed_properties]

    def _seed_contact(self, p: Person) -> None:
        cid = CONTACT_ID_BASE + p.uid
        obj = dict(CONTACT_TEMPLATE)
        src = self._sources[p.source.lower()]
        obj.update(id=cid, first_name=p.first_name, last_name=p.last_name,
                   cached_slug=f"{cid}-{_slug(p.full_name)}", company=p.company, title=p.title,
                   birth_date=p.birthday.isoformat() if p.birthday else None,
                   home_purchase_anniversary=p.anniversary.isoformat() if p.anniversary else None,
                   contact_status_id=self._status_by_name[p.status], source_id=src["id"],
                   created_at=_ts(p.created_at), updated_at=_ts(p.updated_at),
                   last_updated_at=_ts(p.updated_at), known_since=p.created_at.year)
        c = _Contact(obj=obj, updated=p.updated_at)
        stamp = _ts(p.created_at)
        for kind, address in p.emails:
            self._set_email(c, kind, address)
        for kind, raw in p.phones:
            digits = raw[1:] if raw.startswith("+1") and raw[1:].isdigit() else None
            self._set_phone(c, kind, digits, stamp, raw=raw)
        for a in p.addresses:
            sm = STREET_RE.fullmatch(a.street)
            self._set_address(c, a.kind, a.one_line, stamp, {
                "street_number": sm.group(1) if sm else None,
                "address_line": sm.group(2) if sm else a.street, "geo_city": a.city,
                "geo_state": a.state, "zipcode": a.zip, "backfill_required": False})
        self._add_tags(c, p.tags, stamp)
        for text in p.notes:
            self._add_note(c, text, p.created_at)
        self._contacts[cid] = c
        self._ids.append(cid)

    def _property(self, p: Property) -> dict[str, Any]:
        prop: dict[str, Any] = dict.fromkeys(PROPERTY_NULLS)
        prop.update(id=PROPERTY_ID_BASE + p.uid, address_line=p.street, city=p.city,
                    state=p.state, zipcode=p.zip, bedrooms=p.bedrooms, bathrooms=p.bathrooms,
                    area_in_sq_feet=p.sqft, list_price=p.list_price,
                    created_at="2019-06-01T12:00:00Z", updated_at="2019-06-01T12:00:00Z")
        return dict(sorted(prop.items()))

    @staticmethod
    def _workflow(wid: int, title: str) -> dict[str, Any]:
        return {"alternate_workflow_id": None, "cached_slug": f"{wid}-{_slug(title)}",
                "created_at": "2016-03-30T22:17:39Z", "creator_id": CREATOR_ID,
                "deleted_at": None, "description": None, "downloaded": True, "id": wid,
                "import_session_uuid": None, "import_status_id": None, "instance": False,
                "is_active_instance": False, "mark_for_deletion": False,
                "matching_import_uuid": None, "pairing_import_uuid": None, "progenitor_id": None,
                "rendered_at": "2015-03-19T10:30:08Z", "title": title,
                "updated_at": "2016-03-30T22:17:39Z", "use_with": "Contact"}

    def _add_source(self, name: str, *, custom: bool, stamp: str) -> dict[str, Any]:
        src = {"account_id": ACCOUNT_ID, "created_at": stamp, "id": next(self._seq["source"]),
               "is_custom": custom, "name": name, "updated_at": stamp}
        self._sources[name.lower()] = src
        return src

    # ---- detail records ------------------------------------------------------------

    def _put(self, items: list[dict[str, Any]], kind: str, new: dict[str, Any] | None,
             seq: str) -> None:
        """Replace (keeping id and created_at), remove, or add the entry of one category."""
        for i, item in enumerate(items):
            if item["google_type"] == kind:
                if new is None:
                    del items[i]
                else:
                    new["id"] = item["id"]
                    if "created_at" in new:
                        new["created_at"] = item["created_at"]
                    items[i] = new
                return
        if new is not None:
            new["id"] = next(self._seq[seq])
            items.append(new)

    def _set_email(self, c: _Contact, kind: str, address: str | None) -> None:
        new = None if not address else {
            "category_id": CATEGORY[kind], "email_address": address, "entity_id": c.obj["id"],
            "entity_type": "Contact", "google_type": kind, "id": None,
            "import_session_uuid": None, "matching_import_uuid": None, "pairing_import_uuid": None}
        self._put(c.emails, kind, new, "email")

    def _set_phone(self, c: _Contact, kind: str, digits: str | None, stamp: str,
                   raw: str | None = None) -> None:
        new = None
        if digits or raw:
            shown, plain = _format_phone(digits) if digits else (raw, None)
            new = {"category_id": CATEGORY[kind], "created_at": stamp, "entity_id": c.obj["id"],
                   "entity_type": "Contact", "google_type": kind, "id": None,
                   "import_session_uuid": None, "matching_import_uuid": None,
                   "pairing_import_uuid": None, "phone_number": shown,
                   "phone_type": "mobile" if kind == "mobile" else "phone",
                   "plain_phone_number": plain, "updated_at": stamp}
        self._put(c.phones, kind, new, "phone")

    def _set_address(self, c: _Contact, kind: str, one_line: str | None, stamp: str,
                     parts: dict[str, Any] | None = None) -> None:
        new = None
        if one_line:
            new = {"address": one_line, "address_line": None, "backfill_required": True,
                   "category_id": CATEGORY[kind], "country": "US", "county": None,
                   "courier_route": None, "created_at": stamp, "direction_prefix": None,
                   "entity_id": c.obj["id"], "entity_type": "Contact", "geo_city": None,
                   "geo_state": None, "google_type": kind, "id": None,
                   "import_session_uuid": None, "imported_address_id": None, "latitude": None,
                   "longitude": None, "matching_import_uuid": None, "name": None,
                   "pairing_import_uuid": None, "street_number": None, "updated_at": stamp,
                   "zipcode": None}
            new.update(parts if parts is not None else _split_address(one_line))
        self._put(c.addresses, kind, new, "address")

    def _tag_id(self, name: str, stamp: str) -> int:
        tid = self._tags_by_name.get(name.lower())
        if tid is None:
            tid = next(self._seq["tag"])
            self._tags[tid] = {"cached_slug": f"{_slug(name) or 'tag'}-"
                                              f"{_digest(name, 10, '0123456789abcdefghijklmnopqrstuvwxyz')}",
                               "id": tid, "name": name, "rendered_at": stamp}
            self._tags_by_name[name.lower()] = tid
        return tid

    def _add_tags(self, c: _Contact, names: list[str], stamp: str) -> None:
        for name in names:
            tid = self._tag_id(name, stamp)
            if tid not in c.tag_ids:
                c.tag_ids.append(tid)

    def _add_note(self, c: _Contact, content: str, when: datetime) -> dict[str, Any]:
        stamp = _ts(when)
        note = {"bcc_email_address_with_ids": None, "body": None,
                "cc_email_address_with_ids": None, "content": content, "created_at": stamp,
                "creator_id": CREATOR_ID, "delivered": True, "delivery_message": None,
                "email_address_with_ids": None, "entity_id": c.obj["id"],
                "entity_type": "Contact", "feed_id": None,
                "feed_timestamp": int(when.timestamp()), "from": "realvolve", "guid": None,
                "id": next(self._seq["note"]), "import_session_uuid": None,
                "mark_for_deletion": False, "matching_import_uuid": None, "note_type": None,
                "pairing_import_uuid": None, "pinned": False, "rendered_at": None,
                "title": None, "to": None, "transitory": False, "updated_at": stamp}
        c.notes.append(note)
        self._notes[note["id"]] = note
        return note

    # ---- the framework's hooks -----------------------------------------------------

    def credentials(self) -> dict[str, str]:
        return {"REALVOLVE_CLIENT_ID": self.client_id,
                "REALVOLVE_CLIENT_SECRET": self.client_secret,
                "REALVOLVE_UTILITY_API_KEY": self.utility_api_key}

    def build_app(self) -> web.Application:
        """Rails-style params must exist before ``authenticate`` (which is synchronous)
        can read a ``utility_api_key`` sent in a form body, so they are parsed first."""
        app = super().build_app()
        app.middlewares.insert(0, self._params_middleware)
        return app

    @web.middleware
    async def _params_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/_sandbox/"):
            return await handler(request)
        try:
            query = _nest(parse_qsl(request.rel_url.raw_query_string, keep_blank_values=True,
                                    encoding="utf-8", errors="strict"))
            body = _nest(await self._body_pairs(request))
        except (_ParamError, UnicodeDecodeError, ValueError):
            return json_response({"success": False, "msg": "Invalid request parameters"}, 400)
        request[PARAMS] = {**body, **query}
        return await handler(request)

    @staticmethod
    async def _body_pairs(request: web.Request) -> list[tuple[str, str]]:
        if not request.can_read_body:
            return []
        if request.content_type == "application/x-www-form-urlencoded":
            raw = (await request.read()).decode("utf-8")
            return parse_qsl(raw, keep_blank_values=True, encoding="utf-8", errors="strict")
        if request.content_type == "multipart/form-data":
            form = await request.post()
            return [(k, v) for k, v in form.items() if isinstance(v, str)]
        return []

    def authenticate(self, request: web.Request) -> str | None:
        if not request.path.startswith(API + "/"):
            return None
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise self._unauthorized("invalid_token", "The access token is missing")
        expires = self._tokens.get(token)
        if expires is None:
            raise self._unauthorized("invalid_token", "The access token is invalid")
        if time.monotonic() >= expires:
            del self._tokens[token]
            raise self._unauthorized("invalid_token", "The access token expired")
        key = request.get(PARAMS, {}).get("utility_api_key")
        if not isinstance(key, str) or not key:
            raise self._unauthorized("invalid_utility_api_key", "utility_api_key is required")
        if not hmac.compare_digest(key.encode(), self.utility_api_key.encode()):
            raise self._unauthorized("invalid_utility_api_key", "utility_api_key is invalid")
        return key

    @staticmethod
    def _unauthorized(error: str, description: str) -> Unauthorized:
        return Unauthorized(json_response(
            {"error": error, "error_description": description}, 401,
            {"WWW-Authenticate": f'Bearer realm="Doorkeeper", error="{error}"'}))

    def rate_limited_response(self, retry_after: float) -> web.Response:
        return web.Response(text="Retry later\n", status=429, content_type="text/plain",
                            headers={"Retry-After": str(max(1, math.ceil(retry_after)))})

    def error_response(self, status: int) -> web.Response:
        reason = {500: "Internal Server Error", 502: "Bad Gateway",
                  503: "Service Unavailable"}.get(status, "Server Error")
        return json_response({"status": status, "error": reason}, status)

    def reset_state(self) -> None:
        self.tokens_issued = 0
        self.seed_data()

    def inspect_records(self, kind: str) -> list[dict[str, Any]]:
        if kind == "contacts":
            out = []
            for cid in self._ids:
                c = self._contacts[cid]
                out.append({**c.obj, **self._details(c),
                            "tag_names": [self._tags[t]["name"] for t in c.tag_ids],
                            "workflow_ids": list(c.workflow_ids)})
        elif kind == "notes":
            out = [self._notes[i] for i in sorted(self._notes)]
        elif kind == "properties":
            out = self._properties
        elif kind == "contact_sources":
            out = self._source_list()
        elif kind == "account_tags":
            out = [self._tags[t] for t in sorted(self._tags)]
        elif kind == "workflows":
            out = list(self._workflows.values())
        else:
            raise KeyError(kind)
        return orjson.loads(orjson.dumps(out))

    # ---- routes --------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        def guard(h: Handler) -> Handler:
            async def run(request: web.Request) -> web.Response:
                try:
                    return await h(request)
                except _Reject as e:
                    return e.response
            return run

        return [
            web.post("/oauth/token", self._h_token),
            web.get(f"{API}/contacts", guard(self._h_contacts)),
            web.post(f"{API}/contacts", guard(self._h_create)),
            web.get(f"{API}/contacts/recent_contacts", guard(self._h_recent)),
            web.get(f"{API}/contacts/contact_detail", guard(self._h_detail)),
            web.get(f"{API}/contacts/contact_sources", guard(self._h_sources)),
            web.get(f"{API}/contacts/contact_statuses", guard(self._h_statuses)),
            web.get(f"{API}/contacts/account_tags", guard(self._h_tags)),
            web.get(f"{API}/contacts/workflows", guard(self._h_workflows)),
            web.post(f"{API}/contacts/update_contact", guard(self._h_update)),
            web.post(f"{API}/contacts/add_note", guard(self._h_add_note)),
            web.post(API + "/contacts/{id}/assign_workflow", guard(self._h_assign_workflow)),
            web.get(f"{API}/properties", guard(self._h_properties)),
        ]

    async def _h_token(self, request: web.Request) -> web.Response:
        p = request[PARAMS]
        cid, secret = p.get("client_id"), p.get("client_secret")
        if not (isinstance(cid, str) and isinstance(secret, str)
                and hmac.compare_digest(cid.encode(), self.client_id.encode())
                and hmac.compare_digest(secret.encode(), self.client_secret.encode())):
            self.stats.unauthorized += 1
            return self._unauthorized("invalid_client", "Client authentication failed due to "
                                      "unknown client or no client authentication included.").response
        if p.get("grant_type") != "client_credentials":
            self.stats.unauthorized += 1
            return self._unauthorized("unsupported_grant_type", "The authorization grant type "
                                      "is not supported by the authorization server.").response
        ttl = self.token_ttl(TOKEN_TTL)
        token = secrets.token_urlsafe(32)
        now = time.monotonic()
        if len(self._tokens) > 256:
            self._tokens = {t: e for t, e in self._tokens.items() if e > now}
        self._tokens[token] = now + ttl
        self.tokens_issued += 1
        return json_response({"access_token": token, "token_type": "bearer",
                              "expires_in": int(ttl) if float(ttl).is_integer() else ttl,
                              "created_at": int(time.time())},
                             headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    # -- reads

    def _row(self, cid: int) -> dict[str, Any]:
        o = self._contacts[cid].obj
        if self.list_fields == "sample":
            return {"first_name": o["first_name"], "id": cid, "last_name": o["last_name"],
                    "profile_pic_url": PIC}
        return o

    def _page(self, ids: list[int], params: dict[str, Any]) -> web.Response:
        raw = params.get("page")
        if raw is None or raw == "":
            page = 1
        elif isinstance(raw, str) and raw.isascii() and raw.isdigit() and int(raw) >= 1:
            page = int(raw)
        else:
            raise _fail(400, "page must be a positive integer")
        size = self.page_size
        pages = -(-len(ids) // size)
        chunk = ids[(page - 1) * size: page * size]
        return json_response({"success": True, "pages": pages,
                              "data": [self._row(cid) for cid in chunk]})

    async def _h_contacts(self, request: web.Request) -> web.Response:
        return self._page(self._ids, request[PARAMS])

    async def _h_recent(self, request: web.Request) -> web.Response:
        params = request[PARAMS]
        raw = params.get("updated_time")
        try:
            since = isoparse(raw) if isinstance(raw, str) and raw else None
        except (ValueError, OverflowError):
            since = None
        if since is None:
            raise _fail(400, "updated_time must be a date-time such as 2016-03-08T01:04:43Z")
        if since.tzinfo is None:
            since = since.replace(tzinfo=timezone.utc)
        cached = self._recent_cache.get(since)
        if cached is None or cached[0] != self._version:
            ids = [cid for cid in self._ids if self._contacts[cid].updated >= since]
            if len(self._recent_cache) >= 8:
                self._recent_cache.clear()
            cached = self._recent_cache[since] = (self._version, ids)
        return self._page(cached[1], params)

    def _find(self, raw: Any) -> _Contact:
        c = None
        if isinstance(raw, str) and raw.isascii() and raw.isdigit():
            c = self._contacts.get(int(raw))
        if c is None:
            raise _fail(404, "Contact not found" if raw else "Couldn't find Contact without an ID")
        return c

    def _details(self, c: _Contact) -> dict[str, Any]:
        return {"email_addresses": c.emails, "addresses": c.addresses,
                "phone_numbers": c.phones, "tags": [self._tags[t] for t in c.tag_ids],
                "notes": c.notes}

    async def _h_detail(self, request: web.Request) -> web.Response:
        c = self._find(request[PARAMS].get("contact_id"))
        return json_response({"success": True, **self._details(c)})

    def _source_list(self) -> list[dict[str, Any]]:
        return sorted(self._sources.values(), key=lambda s: s["name"].lower())

    async def _h_sources(self, request: web.Request) -> web.Response:
        return json_response({"success": True, "data": self._source_list()})

    async def _h_statuses(self, request: web.Request) -> web.Response:
        return json_response({"success": True, "data": list(self._statuses.values())})

    async def _h_tags(self, request: web.Request) -> web.Response:
        return json_response({"success": True, "data": [self._tags[t] for t in sorted(self._tags)]})

    async def _h_workflows(self, request: web.Request) -> web.Response:
        return json_response({"success": True, "data": list(self._workflows.values())})

    async def _h_properties(self, request: web.Request) -> web.Response:
        return json_response({"success": True, "data": self._properties})

    # -- writes

    def _parse_contact(self, params: dict[str, Any], *, create: bool) -> _Changes:
        """Validate every ``contact[...]`` param the call takes before anything is
        written; params it does not take are dropped unread, as Rails' strong params do."""
        raw = params.get("contact", {})
        if not isinstance(raw, dict):
            raise _fail(422, "contact must be given as contact[primary][...] and contact[details][...]")
        ch = _Changes()
        primary = self._section(raw, "primary")
        details = self._section(raw, "details")
        allowed = CREATE_PRIMARY if create else UPDATE_PRIMARY
        groups = CREATE_DETAILS if create else UPDATE_DETAILS
        for key, value in primary.items():
            name = f"contact[primary][{key}]"
            if key not in allowed:
                continue
            value = self._string(name, value).strip()
            if key == "contact_source":
                ch.source = value
            elif key == "workflow_id":
                if value:
                    wid = self._integer(name, value)
                    if wid not in self._workflows:
                        raise _fail(422, f"{name}: workflow {value} does not exist")
                    ch.workflow_id = wid
            elif key == "contact_status_id":
                if value and (not value.isdigit() or int(value) not in self._statuses):
                    raise _fail(422, f"{name}: {value!r} is not a contact status id "
                                     f"({', '.join(map(str, self._statuses))})")
                ch.primary[key] = int(value) if value else None
            elif key == "creator_id":
                ch.primary[key] = self._integer(name, value) if value else CREATOR_ID
            elif key in ("birth_date", "home_purchase_anniversary"):
                ch.primary[key] = self._date(name, value) if value else None
            else:
                ch.primary[key] = value or None
        for key, value in details.items():
            name = f"contact[details][{key}]"
            if key == "tag_list" and create:
                continue
            if key == "tags":
                text = self._string(name, value, limit=None)
                ch.tags = [t.strip() for t in text.split(",") if t.strip()]
                for t in ch.tags:
                    self._string(f"a tag in {name}", t)
            elif key == "tag_list":
                if self._string(name, value).strip() != "overwrite":
                    raise _fail(422, f"{name} accepts only the value overwrite")
                ch.overwrite = True
            elif key in groups:
                self._parse_group(ch, key, value, groups[key])
        if not create and params.get("tag_list") == "overwrite":
            ch.overwrite = True
        return ch

    @staticmethod
    def _section(raw: dict[str, Any], name: str) -> dict[str, Any]:
        section = raw.get(name, {})
        if not isinstance(section, dict):
            raise _fail(422, f"contact[{name}] must be given as contact[{name}][...]")
        return section

    def _parse_group(self, ch: _Changes, group: str, values: Any, kinds: dict[str, str]) -> None:
        if not isinstance(values, dict):
            raise _fail(422, f"contact[details][{group}] must be given as "
                             f"contact[details][{group}][...]")
        for key, value in values.items():
            name = f"contact[details][{group}][{key}]"
            kind = kinds.get(key)
            if kind is None:
                continue
            value = self._string(name, value).strip()
            if group == "email_address":
                if value and not EMAIL_RE.fullmatch(value):
                    raise _fail(422, f"{name}: {value!r} is not a valid e-mail address")
                ch.emails[kind] = value
            elif group == "phone_number":
                if value and not (value.isascii() and value.isdigit() and (
                        len(value) == 10 or (len(value) == 11 and value[0] == "1"))):
                    raise _fail(422, f"{name}: {value!r} is not a phone number "
                                     "(send 10 digits, or 11 starting with 1)")
                ch.phones[kind] = value
            else:
                ch.addresses[kind] = value

    @staticmethod
    def _string(name: str, value: Any, limit: int | None = MAX_STRING) -> str:
        if not isinstance(value, str):
            raise _fail(422, f"{name} must be a single value")
        if limit is not None and len(value) > limit:
            raise _fail(422, f"{name} is too long (maximum is {limit} characters)")
        return value

    @staticmethod
    def _integer(name: str, value: str) -> int:
        if not (value.isascii() and value.isdigit()):
            raise _fail(422, f"{name}: {value!r} is not an integer")
        return int(value)

    @staticmethod
    def _date(name: str, value: str) -> str:
        try:
            if len(value) != 10:
                raise ValueError(value)
            return date.fromisoformat(value).isoformat()
        except ValueError:
            raise _fail(422, f"{name}: {value!r} is not a date (YYYY-MM-DD)") from None

    def _apply(self, c: _Contact, ch: _Changes, when: datetime) -> None:
        stamp = _ts(when)
        c.obj.update(ch.primary)
        if ch.source is not None:
            if not ch.source:
                c.obj["source_id"] = None
            else:
                src = self._sources.get(ch.source.lower()) or self._add_source(
                    ch.source, custom=True, stamp=stamp)
                c.obj["source_id"] = src["id"]
        for kind, value in ch.emails.items():
            self._set_email(c, kind, value or None)
        for kind, value in ch.phones.items():
            self._set_phone(c, kind, value or None, stamp)
        for kind, value in ch.addresses.items():
            self._set_address(c, kind, value or None, stamp)
        if ch.tags is not None:
            if ch.overwrite:
                c.tag_ids = []
            self._add_tags(c, ch.tags, stamp)
        if ch.workflow_id is not None and ch.workflow_id not in c.workflow_ids:
            c.workflow_ids.append(ch.workflow_id)
        c.obj["cached_slug"] = f"{c.obj['id']}-{_slug(self._name(c.obj))}"
        c.obj["updated_at"] = c.obj["last_updated_at"] = stamp
        c.updated = when
        self._version += 1

    @staticmethod
    def _name(obj: dict[str, Any]) -> str:
        return f"{obj.get('first_name') or ''} {obj.get('last_name') or ''}".strip()

    async def _h_create(self, request: web.Request) -> web.Response:
        ch = self._parse_contact(request[PARAMS], create=True)
        if not (ch.primary.get("first_name") or ch.primary.get("last_name")):
            raise _fail(422, "First name or last name is required")
        when = _now()
        cid = next(self._seq["contact"])
        obj = dict(CONTACT_TEMPLATE)
        obj.update(id=cid, created_at=_ts(when), known_since=when.year)
        c = _Contact(obj=obj, updated=when)
        self._apply(c, ch, when)
        self._contacts[cid] = c
        self._ids.append(cid)
        key = c.emails[0]["email_address"].lower() if c.emails else (
            c.phones[0]["plain_phone_number"] if c.phones else None)
        self.count_create(key)
        answer = json_response({"success": True, "msg": "Contact created successfully.",
                                "contact": obj})
        if self.keep_less(obj, str(cid), KEPT_FIELDS) == "lose":
            del self._contacts[cid]
            self._ids.remove(cid)
            self._version += 1
        return answer

    async def _h_update(self, request: web.Request) -> web.Response:
        params = request[PARAMS]
        c = self._find(params.get("contact_id"))
        ch = self._parse_contact(params, create=False)
        merged = {**c.obj, **ch.primary}
        if not (merged.get("first_name") or merged.get("last_name")):
            raise _fail(422, "First name or last name is required")
        self._apply(c, ch, _now())
        return json_response({"success": True, "data": c.obj})

    async def _h_add_note(self, request: web.Request) -> web.Response:
        params = request[PARAMS]
        c = self._find(params.get("contact_id"))
        content = params.get("note_content")
        if not isinstance(content, str) or not content.strip():
            raise _fail(422, "note_content can't be blank")
        return json_response({"success": True, "data": self._add_note(c, content, _now())})

    async def _h_assign_workflow(self, request: web.Request) -> web.Response:
        params = request[PARAMS]
        c = self._find(request.match_info["id"])
        raw = params.get("workflow_id")
        wid = int(raw) if isinstance(raw, str) and raw.isascii() and raw.isdigit() else None
        if wid not in self._workflows:
            raise _fail(404, "Workflow not found")
        if wid not in c.workflow_ids:
            c.workflow_ids.append(wid)
        return json_response({"success": True})
