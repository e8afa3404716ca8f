"""REI Software's Contact API — HighLevel's "API 1.0" under another name — as its doc and
HighLevel's public notes describe it.

The traps a migration meets here: a create can silently be an update (the location's
"no duplicates" setting merges a new contact into the one with the same e-mail or phone
and answers with *its* id, HTTP 200 either way); paging is a cursor on a timestamp that
many contacts share; and a burst window (100 per 10 s) sits under a daily quota
(200,000) that a large migration can exhaust. Every answer to a valid key (429s
included) carries ``X-RateLimit-*`` headers so a client can see both coming.

Assumptions where the doc is silent (each the plausible strict reading):

- Auth: ``Authorization: Bearer <location key>`` (scheme case-insensitive). Missing,
  another scheme or a wrong key: 401 ``{"msg": "Api key is invalid."}`` (HighLevel's
  wording). Refusals, not-founds and 5xx share the ``{"msg": ...}`` shape; over the burst
  limit or the daily quota: 429 ``{"msg": "Too many requests, please try again later."}``
  with ``Retry-After`` (whole seconds; until the day turns for the quota).
- Validation errors are HTTP 422. The doc's either-of rules answer with the doc's own
  sentence: ``{"msg": "Email or Phone are required to create contact"}`` (``update``,
  ``lookup`` likewise). Field errors answer one key per failing field:
  ``{"phone": {"message": "...", "rule": "phone"}}`` (HighLevel v1's validator shape).
- Bodies are read only when ``Content-Type`` is ``application/json`` (as express's JSON
  parser does); otherwise the body counts as empty — so the doc's own curl samples, which
  send none, get the "Email or Phone are required" 422. Malformed JSON, or JSON that is
  not an object: 400 ``{"msg": "Invalid JSON body"}``.
- Create/update take the fields of the doc's table ("Create contact will allow this
  fields": firstName … source) plus those its sample body sends (dateOfBirth, country;
  the sample is cut at "View More" — postalCode, companyName, website come from
  HighLevel's uncut sample, and the doc's list filter names "Company Name"). Any other
  key — a misspelt field, ``assignedTo``, ``customFields`` — is **dropped silently**
  (the doc promises nothing about unknown keys; a JSON API on express keeps what it
  reads), so a mapping that sends one is caught by comparing what arrived, not by a 422.
  ``null`` for a known field is refused (omit a field instead), text must be a JSON
  string.
  ``email`` must be a syntactically valid address (``""`` included); ``phone`` must be a
  valid number (region US when no ``+``) and is stored as E.164; ``timezone`` an IANA
  name; ``country`` an ISO 3166 alpha-2 code in upper case; ``dateOfBirth`` YYYY-MM-DD;
  ``dnd`` a boolean; ``tags`` a list of non-empty strings; ``customField`` an object of
  known custom-field ids (``GET /v1/custom-fields/``, HighLevel's v1 endpoint — the REI
  doc only says "You can find it using *Custom Fields* endpoints") to a string, number or
  list of strings. ``website`` is any string (HighLevel's sample sends "35061").
- Answers have the doc's shapes: create, get and update ``{"contact": {...}}``; list
  ``{"contacts": [...], "meta": {...}}`` (meta's keys from HighLevel's notes); lookup
  ``{"contacts": [...]}`` (one list, as the doc's sample); tags ``{"tags": [...]}`` (the
  contact's tags after the call); delete 200 with no body ("This request doesn't return
  a response body"). A contact carries the keys the doc's samples show (id, locationId,
  email, emailLowerCase, fingerprint, timezone, country, source, dateAdded) and the
  writable fields; the samples are cut before anything else, so it also carries
  ``dateUpdated`` (the list sorts by ``date_updated``), contactName, type, assignedTo —
  none of which a connector may rely on in a write's answer: the doc shows ``dateAdded``
  in the create answer, not ``dateUpdated``.
- Tag calls and the workflow call drop keys other than ``tags`` / ``eventStartTime``
  silently too.
- ``name`` fills firstName/lastName (split at the first space) only when neither is
  given. ``contactName`` is the lower-cased full name, else the lower-cased e-mail, as
  HighLevel shows it. Tags are stored lower-cased and trimmed, without repeats.
- Create-or-update (the doc heads its Contact section "Contact create or update.";
  HighLevel's notes: ``allow_duplicates=False``, the default): the fields of
  ``match_order`` (default e-mail, then phone) are tried in turn; the first that matches
  an existing contact (e-mail case-insensitively, phone as E.164) makes the create an
  update of that contact — provided fields overwrite, tags and custom fields merge — and
  a later dedup field whose value belongs to a *different* contact is ignored rather than
  duplicated. The answer is the merged contact — its id and its own (old) ``dateAdded``;
  nothing in it says "merged" (the doc answers 200 either way). ``merged_writes`` counts such merges; ``count_create`` runs only for real
  creates. With ``allow_duplicates=True`` every create is a new record.
- PUT is a partial update that must carry e-mail or phone (the doc's rule); its tags
  *replace* the contact's tags (HighLevel's known behaviour), its custom fields merge.
  With duplicates not allowed, a PUT that gives a dedup field another contact already
  holds answers 400 ``{"msg": "This location does not allow duplicated contacts.",
  "meta": {"contactId", "matchingField"}}``.
- Listing: ``limit`` default 20, values over 100 are capped, non-integers or < 1 are 422.
  ``sortBy`` date_added|date_updated, ``order`` asc|desc, anything else 422.
  ``startAfter`` is the epoch-ms value of the *sort* field and must come with
  ``startAfterId`` (either alone is 422); the page holds the records strictly after
  (startAfter, startAfterId) in the chosen order, ties on the timestamp broken by id in
  the same direction. A cursor takes precedence over the deprecated ``page`` (from 1).
  ``query`` is a case-insensitive substring match on name, e-mail, phone (also by its
  digits), tags and company name. ``meta.total`` counts every match; ``currentPage`` is
  the page's position in the order at this ``limit``; ``nextPageUrl`` repeats the given
  limit/query/sortBy/order with the next cursor, on ``/v1/contacts`` without the slash as
  HighLevel writes it (both spellings are served for GET); on the last page
  nextPageUrl, nextPage, startAfter and startAfterId are null.
- Lookup: e-mail first; only when no contact has that e-mail, the phone. Every contact
  with the matching value is returned (there can be several when duplicates are
  allowed). A phone that does not parse simply matches nothing; a query-string ``+`` that
  arrived decoded as a space (the doc's sample sends it raw) is read back as ``+``.
- Appointments answer ``{}`` (the doc's sample); campaign and workflow calls answer 200
  with the JSON string ``""``. A workflow's optional ``eventStartTime`` must be an ISO
  datetime with an offset. Unknown contact ids answer 404 ``{"msg": "Contact not found"}``.
- Seeded contacts keep the seed's dirt where the platform would hold it (a contact made
  in the app may lack both e-mail and phone; imported duplicates share an e-mail), but a
  seed phone that is not a valid number is stored as null. Every sixth seeded contact
  shares its dateAdded with the next two, so cursor ties are real.
- The key never expires (a location key, not a token), so the ``token_ttl`` fault does
  not apply. The daily quota defaults to 200,000 per key (``daily_quota``).
"""
from __future__ import annotations

import hashlib
import math
import random
import re
import string
import uuid
import zoneinfo
from bisect import bisect_left, bisect_right, insort
from datetime import date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

import orjson
import phonenumbers
import us
from aiohttp import web
from email_validator import EmailNotValidError, validate_email

from .base import Simulator, Unauthorized, json_response

ALNUM = string.ascii_letters + string.digits
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
TEXT_FIELDS = ("firstName", "lastName", "name", "address1", "city", "state", "postalCode",
               "website", "source", "companyName")
CHECKED_FIELDS = ("email", "phone", "timezone", "country", "dateOfBirth", "dnd", "tags",
                  "customField")
WRITABLE = frozenset(TEXT_FIELDS + CHECKED_FIELDS)
DEDUP_FIELDS = ("email", "phone")
SORT_FIELDS = ("date_added", "date_updated")
DEFAULT_LIMIT, MAX_LIMIT = 20, 100
DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
SEEDED_PHONE = re.compile(r"\+1[2-9]\d{9}")  # data.py's clean numbers: valid by construction
COUNTRIES = frozenset(phonenumbers.SUPPORTED_REGIONS)
CUSTOM_FIELDS = ("Spouse Name", "Anniversary", "Lead Score", "Property Interest", "Notes")
NOT_FOUND = {"msg": "Contact not found"}
EMPTY_STRING = orjson.dumps("")


# Text fields the keep-less fault (tests only) may spoil: never e-mail or phone, the keys.
KEPT_FIELDS = ("firstName", "lastName", "companyName", "address1", "city", "website", "source")


def _iso(ms: int) -> str:
    """HighLevel's timestamps: UTC, milliseconds, ``Z``."""
    return (EPOCH + timedelta(milliseconds=ms)).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _ms(dt: datetime) -> int:
    return int(dt.timestamp()) * 1000


def _ms_now() -> int:
    return int(datetime.now(timezone.utc).timestamp() * 1000)


def _aware_datetime(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


def _field_error(message: str, rule: str) -> dict[str, str]:
    return {"message": message, "rule": rule}


def _e164(raw: str) -> str | None:
    """The number as E.164 when it is a valid one, else None."""
    try:
        number = phonenumbers.parse(raw, "US")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


_TIMEZONES: frozenset[str] | None = None


def _timezones() -> frozenset[str]:
    global _TIMEZONES
    if _TIMEZONES is None:
        _TIMEZONES = frozenset(zoneinfo.available_timezones())
    return _TIMEZONES


_STATE_TZ: dict[str, str] = {}


def _state_timezone(state: str) -> str:
    if state not in _STATE_TZ:
        found = us.states.lookup(state) if state else None
        zones = getattr(found, "time_zones", None) or ["America/New_York"]
        _STATE_TZ[state] = zones[0]
    return _STATE_TZ[state]


class ReiSim(Simulator):
    """One REI Software location: its contacts, custom fields and dedup preference."""

    vendor = "rei"
    default_limit = (100, 10.0)

    def __init__(self, *, allow_duplicates: bool = False,
                 match_order: tuple[str, ...] = ("email", "phone"),
                 daily_quota: int | None = 200_000, **kwargs: Any):
        bad = [f for f in match_order if f not in DEDUP_FIELDS]
        if bad or not match_order or len(set(match_order)) != len(match_order):
            raise ValueError(f"match_order must name email and/or phone once each, not {match_order!r}")
        self.allow_duplicates = allow_duplicates
        self.match_order = tuple(match_order)
        super().__init__(daily_quota=daily_quota, **kwargs)

    # ---- store -----------------------------------------------------------------------

    def seed_data(self) -> None:
        self.api_key = "rei_" + hashlib.sha256(f"rei-location-key:{self.seed}".encode()).hexdigest()[:40]
        rng = random.Random(f"rei:{self.seed}")
        self._id_rng = random.Random(f"rei-ids:{self.seed}")
        self.contacts: dict[str, dict[str, Any]] = {}
        self._by_email: dict[str, list[str]] = {}
        self._by_phone: dict[str, list[str]] = {}
        self._ts: dict[str, tuple[int, int]] = {}       # id -> (dateAdded ms, dateUpdated ms)
        self._sorted: dict[str, list[tuple[int, str]]] = {k: [] for k in SORT_FIELDS}  # (ms, id)
        self._haystack: dict[str, tuple[str, ...]] = {}
        self.campaigns: dict[str, set[str]] = {}
        self.workflow_queue: list[dict[str, Any]] = []
        self.merged_writes = 0
        self.location_id = self._new_id()
        self.custom_fields = [
            {"id": self._new_id(), "name": name, "fieldKey": "contact." + name.lower().replace(" ", "_"),
             "dataType": "TEXT", "position": i * 50}
            for i, name in enumerate(CUSTOM_FIELDS)]
        self._field_ids = {f["id"] for f in self.custom_fields}
        fid = {f["name"]: f["id"] for f in self.custom_fields}
        interest = {p.owner_uid: f"{p.street}, {p.city}, {p.state} {p.zip}" for p in self.seed_properties}
        head_ms = 0
        for i, person in enumerate(self.seed_people):
            added = _ms(person.created_at) + rng.randrange(1000)
            if i % 6 in (1, 2):  # every sixth contact shares its dateAdded with the next two
                added = head_ms
            head_ms = added
            updated = max(added, _ms(person.updated_at) + rng.randrange(1000))
            home = person.addresses[0] if person.addresses else None
            phone = person.phone if person.phone and SEEDED_PHONE.fullmatch(person.phone) else (
                _e164(person.phone) if person.phone else None)
            custom: dict[str, Any] = {}
            if person.anniversary:
                custom[fid["Anniversary"]] = person.anniversary.isoformat()
            if person.notes:
                custom[fid["Notes"]] = "\n".join(person.notes)
            if person.uid in interest:
                custom[fid["Property Interest"]] = interest[person.uid]
            if rng.random() < 0.5:
                custom[fid["Lead Score"]] = str(rng.randint(1, 100))
            if rng.random() < 0.2:
                custom[fid["Spouse Name"]] = rng.choice(["Alex", "Sam", "Jordan", "Taylor", "Chris"])
            contact = self._blank(self._new_id(), added, updated, rng)
            contact.update({
                "email": person.email, "emailLowerCase": person.email.lower() if person.email else None,
                "timezone": _state_timezone(home.state) if home else None,
                "country": "US", "source": person.source,
                "firstName": person.first_name, "lastName": person.last_name,
                "phone": phone, "companyName": person.company,
                "address1": home.street if home else None, "city": home.city if home else None,
                "state": home.state if home else None, "postalCode": home.zip if home else None,
                "dateOfBirth": person.birthday.isoformat() if person.birthday else None,
                "tags": list(dict.fromkeys(t.strip().lower() for t in person.tags)),
                "customField": [{"id": k, "value": v} for k, v in custom.items()],
            })
            contact["contactName"] = self._contact_name(contact)
            self._insert(contact, added, updated, keep_sorted=False)
        for keys in self._sorted.values():
            keys.sort()

    def _new_id(self) -> str:
        while True:
            cid = "".join(self._id_rng.choices(ALNUM, k=20))
            if cid not in self.contacts:
                return cid

    def _blank(self, cid: str, added: int, updated: int, rng: random.Random) -> dict[str, Any]:
        return {
            "id": cid, "locationId": self.location_id, "email": None, "emailLowerCase": None,
            "fingerprint": str(uuid.UUID(int=rng.getrandbits(128), version=1)),
            "timezone": None, "country": None, "source": None,
            "dateAdded": _iso(added), "dateUpdated": _iso(updated),
            "contactName": None, "firstName": None, "lastName": None, "phone": None,
            "companyName": None, "address1": None, "city": None, "state": None,
            "postalCode": None, "website": None, "dateOfBirth": None, "dnd": False,
            "tags": [], "type": "lead", "assignedTo": None, "customField": [],
        }

    @staticmethod
    def _contact_name(c: dict[str, Any]) -> str | None:
        name = " ".join(p for p in (c["firstName"], c["lastName"]) if p).strip()
        return (name or c["email"] or "").lower() or None

    def _insert(self, c: dict[str, Any], added: int, updated: int, keep_sorted: bool = True) -> None:
        """Store a contact; seeding appends and sorts once (insort per record is quadratic)."""
        cid = c["id"]
        self.contacts[cid] = c
        self._ts[cid] = (added, updated)
        for key, ms in (("date_added", added), ("date_updated", updated)):
            if keep_sorted:
                insort(self._sorted[key], (ms, cid))
            else:
                self._sorted[key].append((ms, cid))
        self._index(c)

    def _remove(self, cid: str) -> None:
        c = self.contacts.pop(cid)
        added, updated = self._ts.pop(cid)
        for key, ms in (("date_added", added), ("date_updated", updated)):
            keys = self._sorted[key]
            del keys[bisect_left(keys, (ms, cid))]
        self._unindex(c)
        self.campaigns.pop(cid, None)

    def _index(self, c: dict[str, Any]) -> None:
        cid = c["id"]
        if c["emailLowerCase"]:
            self._by_email.setdefault(c["emailLowerCase"], []).append(cid)
        if c["phone"]:
            self._by_phone.setdefault(c["phone"], []).append(cid)
        digits = re.sub(r"\D", "", c["phone"] or "")
        self._haystack[cid] = tuple(v.lower() for v in (
            c["contactName"], c["firstName"], c["lastName"], c["email"], c["phone"], digits,
            c["companyName"], *c["tags"]) if v)

    def _unindex(self, c: dict[str, Any]) -> None:
        cid = c["id"]
        for index, value in ((self._by_email, c["emailLowerCase"]), (self._by_phone, c["phone"])):
            if value and value in index:
                index[value].remove(cid)
                if not index[value]:
                    del index[value]
        self._haystack.pop(cid, None)

    def _touch(self, cid: str) -> None:
        """Stamp dateUpdated with now, keeping the date_updated order sorted."""
        added, old = self._ts[cid]
        now = max(_ms_now(), old)
        keys = self._sorted["date_updated"]
        del keys[bisect_left(keys, (old, cid))]
        insort(keys, (now, cid))
        self._ts[cid] = (added, now)
        self.contacts[cid]["dateUpdated"] = _iso(now)

    def _owners(self, field: str, value: str | None) -> list[str]:
        if not value:
            return []
        index = self._by_email if field == "email" else self._by_phone
        return index.get(value.lower() if field == "email" else value, [])

    # ---- framework hooks -----------------------------------------------------------

    def credentials(self) -> dict[str, str]:
        return {"REI_API_KEY": self.api_key}

    def authenticate(self, request: web.Request) -> str | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token.strip() != self.api_key:
            raise Unauthorized(json_response({"msg": "Api key is invalid."}, 401))
        return self.api_key

    def rate_limited_response(self, retry_after: float) -> web.Response:
        return json_response({"msg": "Too many requests, please try again later."}, 429,
                             {"Retry-After": str(max(1, math.ceil(retry_after)))})

    def error_response(self, status: int) -> web.Response:
        text = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
        return json_response({"msg": text.get(status, "Internal Server Error")}, status)

    def decorate(self, request: web.Request, response: web.StreamResponse, key: str | None) -> None:
        if key is None:
            return
        if self.window is not None:
            response.headers["X-RateLimit-Max"] = str(self.window.limit)
            response.headers["X-RateLimit-Interval-Milliseconds"] = str(int(self.window.period * 1000))
            response.headers["X-RateLimit-Remaining"] = str(max(0, self.window.remaining(key)))
        if self.quota is not None:
            response.headers["X-RateLimit-Limit-Daily"] = str(self.quota.limit)
            response.headers["X-RateLimit-Daily-Remaining"] = str(max(0, self.quota.remaining(key)))

    def inspect_records(self, kind: str) -> list[dict[str, Any]]:
        if kind == "contacts":
            return [orjson.loads(orjson.dumps(self.contacts[cid]))
                    for _, cid in self._sorted["date_added"]]
        if kind == "custom_fields":
            return [dict(f) for f in self.custom_fields]
        if kind == "campaigns":
            return [{"contactId": cid, "campaignIds": sorted(ids)} for cid, ids in self.campaigns.items()]
        if kind == "workflows":
            return [dict(w) for w in self.workflow_queue]
        raise KeyError(kind)

    def routes(self) -> list[web.RouteDef]:
        c = "/v1/contacts/{contactId}"
        return [
            web.get("/v1/custom-fields/", self._h_custom_fields),
            web.get("/v1/contacts/", self._h_list),
            web.get("/v1/contacts", self._h_list),
            web.post("/v1/contacts/", self._h_create),
            web.get("/v1/contacts/lookup", self._h_lookup),
            web.get(c, self._h_get),
            web.put(c, self._h_update),
            web.delete(c, self._h_delete),
            web.get(c + "/appointments/", self._h_appointments),
            web.post(c + "/tags/", self._h_add_tags),
            web.delete(c + "/tags/", self._h_remove_tags),
            web.delete(c + "/campaigns/remove-all", self._h_campaigns_remove_all),
            web.post(c + "/campaigns/{campaignId}", self._h_campaign_add),
            web.delete(c + "/campaigns/{campaignId}", self._h_campaign_remove),
            web.post(c + "/workflow/{workflowId}", self._h_workflow),
        ]

    # ---- request helpers -----------------------------------------------------------

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any] | web.Response:
        if request.content_type != "application/json":
            return {}
        raw = await request.read()
        if not raw.strip():
            return {}
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return json_response({"msg": "Invalid JSON body"}, 400)
        if not isinstance(body, dict):
            return json_response({"msg": "Invalid JSON body"}, 400)
        return body

    def _contact_or_404(self, request: web.Request) -> dict[str, Any] | None:
        return self.contacts.get(request.match_info["contactId"])

    def _validate(self, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The body's fields, cleaned, and the errors keyed by field."""
        clean: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        for key, value in body.items():
            if key not in WRITABLE:
                continue   # dropped silently, as the platform does with keys it does not know
            if key == "dnd":
                if isinstance(value, bool):
                    clean[key] = value
                else:
                    errors[key] = _field_error("dnd must be a boolean", "boolean")
            elif key == "tags":
                if isinstance(value, list) and all(isinstance(t, str) and t.strip() for t in value):
                    clean[key] = list(dict.fromkeys(t.strip().lower() for t in value))
                else:
                    errors[key] = _field_error("tags must be an array of non-empty strings", "array")
            elif key == "customField":
                self._validate_custom(value, clean, errors)
            elif not isinstance(value, str):
                errors[key] = _field_error(f"{key} must be a string", "string")
            elif key == "email":
                try:
                    validate_email(value.strip(), check_deliverability=False)
                    clean[key] = value.strip()
                except EmailNotValidError:
                    errors[key] = _field_error("The email must be a valid email address.", "email")
            elif key == "phone":
                number = _e164(value)
                if number:
                    clean[key] = number
                else:
                    errors[key] = _field_error("Invalid phone number", "phone")
            elif key == "timezone":
                if value in _timezones():
                    clean[key] = value
                else:
                    errors[key] = _field_error("timezone must be a valid IANA time zone", "timezone")
            elif key == "country":
                if value in COUNTRIES:
                    clean[key] = value
                else:
                    errors[key] = _field_error("country must be an ISO 3166 alpha-2 code", "country")
            elif key == "dateOfBirth":
                try:
                    if not DATE_RE.fullmatch(value):
                        raise ValueError(value)
                    clean[key] = date.fromisoformat(value).isoformat()
                except ValueError:
                    errors[key] = _field_error("dateOfBirth must be a date as YYYY-MM-DD", "date")
            else:
                clean[key] = value
        return clean, errors

    def _validate_custom(self, value: Any, clean: dict[str, Any], errors: dict[str, Any]) -> None:
        if not isinstance(value, dict):
            errors["customField"] = _field_error("customField must be an object of custom field ids", "object")
            return
        unknown = [k for k in value if k not in self._field_ids]
        if unknown:
            errors["customField"] = _field_error(f"unknown custom field id: {', '.join(unknown)}", "customField")
            return
        for k, v in value.items():
            ok = (isinstance(v, (str, int, float)) and not isinstance(v, bool)) or (
                isinstance(v, list) and all(isinstance(x, str) for x in v))
            if not ok:
                errors["customField"] = _field_error(f"custom field {k} needs a string, number or list of strings",
                                                     "customField")
                return
        clean["customField"] = dict(value)

    def _update(self, c: dict[str, Any], clean: dict[str, Any], *, merge_tags: bool) -> None:
        """Change a stored contact: re-index it and stamp dateUpdated."""
        self._unindex(c)
        self._apply(c, clean, merge_tags=merge_tags)
        self._index(c)
        self._touch(c["id"])

    @classmethod
    def _apply(cls, c: dict[str, Any], clean: dict[str, Any], *, merge_tags: bool) -> None:
        """Write the cleaned fields into a contact dict (indexes are the caller's)."""
        for key, value in clean.items():
            if key in ("name", "tags", "customField"):
                continue
            c[key] = value
        if "name" in clean and "firstName" not in clean and "lastName" not in clean:
            first, _, last = clean["name"].strip().partition(" ")
            c["firstName"], c["lastName"] = first or None, last.strip() or None
        if "email" in clean:
            c["emailLowerCase"] = clean["email"].lower()
        if "tags" in clean:
            c["tags"] = list(dict.fromkeys([*c["tags"], *clean["tags"]])) if merge_tags else clean["tags"]
        if "customField" in clean:
            merged = {f["id"]: f["value"] for f in c["customField"]}
            merged.update(clean["customField"])
            c["customField"] = [{"id": k, "value": v} for k, v in merged.items()]
        c["contactName"] = cls._contact_name(c)

    # ---- handlers --------------------------------------------------------------------

    async def _h_custom_fields(self, request: web.Request) -> web.Response:
        return json_response({"customFields": self.custom_fields})

    async def _h_list(self, request: web.Request) -> web.Response:
        q = request.query
        errors: dict[str, Any] = {}

        def integer(name: str, default: int | None) -> int | None:
            raw = q.get(name)
            if raw is None:
                return default
            try:
                return int(raw)
            except ValueError:
                errors[name] = _field_error(f"{name} must be an integer", "integer")
                return default

        limit = integer("limit", DEFAULT_LIMIT) or 0
        if "limit" not in errors and limit < 1:
            errors["limit"] = _field_error("limit must be at least 1", "min")
        start_after = integer("startAfter", None)
        start_after_id = q.get("startAfterId")
        page = integer("page", None)
        if page is not None and page < 1:
            errors["page"] = _field_error("page must be at least 1", "min")
        if ("startAfter" in q) != ("startAfterId" in q):
            missing = "startAfterId" if "startAfter" in q else "startAfter"
            errors.setdefault(missing, _field_error(f"{missing} is required with the other cursor field",
                                                    "required"))
        sort_by = q.get("sortBy", "date_added")
        if sort_by not in SORT_FIELDS:
            errors["sortBy"] = _field_error("sortBy must be date_added or date_updated", "in")
        order = q.get("order", "desc")
        if order not in ("asc", "desc"):
            errors["order"] = _field_error("order must be asc or desc", "in")
        if errors:
            return json_response(errors, 422)
        limit = min(limit, MAX_LIMIT)

        keys = self._sorted[sort_by]
        query = q.get("query", "").strip().lower()
        if query:
            digits = re.sub(r"\D", "", query)
            digits = digits if len(digits) >= 3 and not re.search(r"[a-z@]", query) else ""
            keys = [k for k in keys if self._matches(k[1], query, digits)]
        total = len(keys)
        if start_after is not None and start_after_id is not None:
            cursor = (start_after, start_after_id)
            start = bisect_right(keys, cursor) if order == "asc" else total - bisect_left(keys, cursor)
            current = start // limit + 1
        else:
            current = page or 1
            start = min((current - 1) * limit, total)
        end = min(start + limit, total)
        if order == "asc":
            page_keys = keys[start:end]
        else:
            page_keys = keys[total - end:total - start][::-1]
        contacts = [self.contacts[cid] for _, cid in page_keys]
        has_next = end < total
        last = page_keys[-1] if page_keys else None
        next_url = None
        if has_next:
            params = {k: q[k] for k in ("limit", "query", "sortBy", "order") if k in q}
            params.update(startAfter=str(last[0]), startAfterId=last[1])
            next_url = f"{request.url.origin()}/v1/contacts?{urlencode(params)}"
        meta = {"total": total, "nextPageUrl": next_url,
                "startAfterId": last[1] if has_next else None,
                "startAfter": last[0] if has_next else None,
                "currentPage": current, "nextPage": current + 1 if has_next else None,
                "prevPage": current - 1 if current > 1 else None}
        return json_response({"contacts": contacts, "meta": meta})

    def _matches(self, cid: str, query: str, digits: str) -> bool:
        """``digits`` is the query's digits when it reads as a phone number, else ""."""
        if any(query in v for v in self._haystack[cid]):
            return True
        phone = self.contacts[cid]["phone"]
        return bool(digits and phone and digits in phone)

    async def _checked(self, request: web.Request, verb: str) -> dict[str, Any] | web.Response:
        """The request's fields, validated, with the doc's either-of rule; or the refusal."""
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        clean, errors = self._validate(body)
        if errors:
            return json_response(errors, 422)
        if not clean.get("email") and not clean.get("phone"):
            return json_response({"msg": f"Email or Phone are required to {verb} contact"}, 422)
        return clean

    async def _h_create(self, request: web.Request) -> web.Response:
        clean = await self._checked(request, "create")
        if isinstance(clean, web.Response):
            return clean
        target = None
        if not self.allow_duplicates:
            for field in self.match_order:
                owners = self._owners(field, clean.get(field))
                if owners:
                    target = owners[0]
                    break
        if target is not None:
            for field in DEDUP_FIELDS:
                owners = self._owners(field, clean.get(field))
                if owners and target not in owners:
                    del clean[field]  # held by another contact: ignored, never duplicated
            contact = self.contacts[target]
            self._update(contact, clean, merge_tags=True)
            self.merged_writes += 1
            return json_response({"contact": contact})
        now = _ms_now()
        contact = self._blank(self._new_id(), now, now, self._id_rng)
        self._apply(contact, clean, merge_tags=False)
        self._insert(contact, now, now)
        self.count_create(contact["emailLowerCase"] or contact["phone"])
        answer = json_response({"contact": contact})
        if self.keep_less(contact, contact["id"], KEPT_FIELDS) == "lose":
            self._remove(contact["id"])
        return answer

    async def _h_lookup(self, request: web.Request) -> web.Response:
        email = request.query.get("email", "").strip()
        raw_phone = request.query.get("phone", "")
        phone = raw_phone.strip()
        if phone[:1].isdigit() and raw_phone[:1] == " ":
            phone = "+" + phone  # an unencoded "+" arrives as a space
        if not email and not phone:
            return json_response({"msg": "Email or Phone are required to lookup contact."}, 422)
        ids = self._owners("email", email) if email else []
        if not ids and phone:
            ids = self._owners("phone", _e164(phone))
        return json_response({"contacts": [self.contacts[cid] for cid in ids]})

    async def _h_get(self, request: web.Request) -> web.Response:
        contact = self._contact_or_404(request)
        if contact is None:
            return json_response(NOT_FOUND, 404)
        return json_response({"contact": contact})

    async def _h_update(self, request: web.Request) -> web.Response:
        contact = self._contact_or_404(request)
        if contact is None:
            return json_response(NOT_FOUND, 404)
        clean = await self._checked(request, "update")
        if isinstance(clean, web.Response):
            return clean
        if not self.allow_duplicates:
            for field in self.match_order:
                others = [o for o in self._owners(field, clean.get(field)) if o != contact["id"]]
                if others:
                    return json_response({"msg": "This location does not allow duplicated contacts.",
                                          "meta": {"contactId": others[0], "matchingField": field}}, 400)
        self._update(contact, clean, merge_tags=False)
        return json_response({"contact": contact})

    async def _h_delete(self, request: web.Request) -> web.Response:
        contact = self._contact_or_404(request)
        if contact is None:
            return json_response(NOT_FOUND, 404)
        self._remove(contact["id"])
        return web.Response(status=200)

    async def _h_appointments(self, request: web.Request) -> web.Response:
        if self._contact_or_404(request) is None:
            return json_response(NOT_FOUND, 404)
        return json_response({})

    async def _tags_body(self, request: web.Request) -> list[str] | web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        clean, errors = self._validate({"tags": body["tags"]}) if "tags" in body else ({}, {})
        if errors or not clean.get("tags"):
            return json_response(errors or {"tags": _field_error("tags is required", "required")}, 422)
        return clean["tags"]

    async def _h_add_tags(self, request: web.Request) -> web.Response:
        contact = self._contact_or_404(request)
        if contact is None:
            return json_response(NOT_FOUND, 404)
        tags = await self._tags_body(request)
        if isinstance(tags, web.Response):
            return tags
        self._update(contact, {"tags": tags}, merge_tags=True)
        return json_response({"tags": contact["tags"]})

    async def _h_remove_tags(self, request: web.Request) -> web.Response:
        contact = self._contact_or_404(request)
        if contact is None:
            return json_response(NOT_FOUND, 404)
        tags = await self._tags_body(request)
        if isinstance(tags, web.Response):
            return tags
        gone = set(tags)
        self._update(contact, {"tags": [t for t in contact["tags"] if t not in gone]}, merge_tags=False)
        return json_response({"tags": contact["tags"]})

    def _empty_ok(self) -> web.Response:
        return web.Response(body=EMPTY_STRING, content_type="application/json")

    async def _h_campaign_add(self, request: web.Request) -> web.Response:
        if self._contact_or_404(request) is None:
            return json_response(NOT_FOUND, 404)
        self.campaigns.setdefault(request.match_info["contactId"], set()).add(request.match_info["campaignId"])
        return self._empty_ok()

    async def _h_campaign_remove(self, request: web.Request) -> web.Response:
        if self._contact_or_404(request) is None:
            return json_response(NOT_FOUND, 404)
        self.campaigns.get(request.match_info["contactId"], set()).discard(request.match_info["campaignId"])
        return self._empty_ok()

    async def _h_campaigns_remove_all(self, request: web.Request) -> web.Response:
        if self._contact_or_404(request) is None:
            return json_response(NOT_FOUND, 404)
        self.campaigns.pop(request.match_info["contactId"], None)
        return self._empty_ok()

    async def _h_workflow(self, request: web.Request) -> web.Response:
        if self._contact_or_404(request) is None:
            return json_response(NOT_FOUND, 404)
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        errors: dict[str, Any] = {}   # keys other than eventStartTime are dropped silently
        start = body.get("eventStartTime")
        if "eventStartTime" in body and not _aware_datetime(start):
            errors["eventStartTime"] = _field_error(
                "eventStartTime must be a datetime with a timezone offset", "datetime")
        if errors:
            return json_response(errors, 422)
        self.workflow_queue.append({"contactId": request.match_info["contactId"],
                                    "workflowId": request.match_info["workflowId"],
                                    "eventStartTime": start})
        return self._empty_ok()

