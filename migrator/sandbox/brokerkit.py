"""Brokerkit's lead API (``POST /v2/leads``), as its doc describes it.

Two traps a client must survive. The server upserts: a lead whose e-mail or agent_id
matches an existing one updates that lead, so two source records can land on one target,
and the update answers 204 with no body — no id, no lead. And ``test`` is a dry run only
when it is the JSON boolean ``true``; the doc's own sample sends strings for everything
else, and the string ``"true"`` saves the lead for real.

Every reading this simulator chose where the doc (``vendor-docs/brokerkit-leads-api.txt``)
is silent or ambiguous, with the doc line it rests on — each the strictest plausible one:

- Auth — "Authorization: Token token=YOUR API KEY": exactly that (no quotes, no Bearer);
  anything else answers 401 ("Failed API authorization") ``{"error": "HTTP Token: Access
  denied."}`` with ``WWW-Authenticate: Token realm="Application"`` (Rails' wording).
- "Content-Type: application/json": a POST with another Content-Type answers 400 ("The
  request is erroneous"); so does a body that is not a JSON object. Both before any
  validation.
- Endpoints — the doc has one: "URL | /leads | Method | POST". There is no read: any other
  path or method answers 404 ``{"error": "Not Found"}`` ("404 Not Found | The requested
  resource was not found"), after auth (the 200 row, "Successful GET request", names no
  GET endpoint). Tests inspect what the simulator holds through ``/_sandbox/records/leads``
  or ``inspect_records``, never through a vendor-looking route.
- Unknown keys — the doc lists the parameters ("All other fields are optional") and says
  nothing of others. Rails' strong parameters drop what is not permitted, so an unknown
  or misspelt key (``Email``, ``nickname``) is dropped silently; constructor
  ``refuse_unknown=True`` answers 400 ``found unpermitted parameters`` instead. A mapping
  that writes a field Brokerkit ignores must be caught by our own schema.
- Limits are unpublished: 10 requests per second per key (sliding window); over it,
  429 ``{"error": ...}`` with ``Retry-After``.
- "422 ... failed because of validation errors", sample ``{ "email": [ "is invalid" ],
  "phone": [ "is an invalid number" ] }``: every failing field at once, Rails-style. Text
  fields must be JSON strings; ``null`` or ``""`` means "not given" (an update keeps the
  old value). "should be a valid phone number": a valid number (US the default region),
  stored in E.164. The sample sends ``"birthday": "24/03/1975"`` and answers
  ``"1975-03-24"``: exactly ``DD/MM/YYYY`` in, ISO out. ``active_listings_count`` is a
  whole number >= 0 and comes back as a string (the response shows ``"111"``);
  ``production_ytd`` is a number >= 0. "Should be ..." lists are enforced ("otherwise,
  you will get an error"): ``is not included in the list``. "An integer from 4 to 10".
  "When a parameter is required, it is marked as REQUIRED FIELD" and none is: a new lead
  still needs a name, an e-mail or a phone (``{"base": [...]}``), as a lead with none of
  them names nobody.
- Duplicates — "Records will match on any "email" addresses. 2) Or records will match on
  any "agent_id"": a lead keeps every e-mail address it has been sent (the one shown,
  "Email (Main)", is the latest), and a later lead matching *any* of them updates it;
  e-mails compare case-insensitively, agent_id exactly. The e-mail is tried first, then
  agent_id; when the e-mail matches one lead and the agent_id another, only the e-mail's
  lead is updated ("It will update found records" read as the one record found). A lead
  has one agent_id: a new one replaces it, and the old one matches nothing any more.
  ``merged_writes`` counts the updates.
- Status codes — "201 Created | The resource has been successfully created", "204 No
  Content | The resource has been successfully updated": a create answers 201 with the
  lead (the sample response), an update of a matched lead 204 with no body at all.
- "If the test parameter is set to true ... the response will have "email": null": a dry
  run (``"test": true``) validates, saves nothing, counts nothing and answers 200 with the
  lead body whose ``email``, ``id``, ``created_at`` and ``updated_at`` are null. "IT SHOULD
  BE A BOOLEAN VALUE, NOT A STRING": any other ``test`` value (``false``, ``"true"``,
  ``1``) saves the lead as normal.
- The response shows ``"alt_state": "New York"`` for ``"NY"``: states come back as the
  full name when a US code was sent; no geocoding, so lat/lng are null and zips come back
  as sent. ``owner_email`` / ``referrer_email`` ("Owner", "Referrer") may name anyone with
  a valid address: the simulator makes a team user for each on first use.
"""
from __future__ import annotations

import math
import re
from datetime import date, datetime, timezone
from typing import Any

import orjson
import phonenumbers
import us
from aiohttp import web
from email_validator import EmailNotValidError, validate_email

from .base import Simulator, Unauthorized, json_response

TEXT_FIELDS = ("first_name", "last_name", "agent_id", "note", "source", "currently_at",
               "alt_address", "alt_city", "alt_state", "alt_zip",
               "office_address", "office_city", "office_state", "office_zip")
PHONE_FIELDS = ("phone", "other_phone", "office_phone")
EMAIL_FIELDS = ("email", "owner_email", "referrer_email")
ENUMS = {
    "bucket": ("default", "backlog", "archived"),
    "status": ("new_lead", "contact_attempt", "contact_made", "appt_set", "needs_evaluated",
               "onboarding", "active"),
    "production_label": ("mega", "super", "mid", "low", "new", "in_school", "not_licensed"),
    "product": ("retention",),
}
OTHER_FIELDS = ("birthday", "kpa_taken", "active_listings_count", "production_ytd", "rating", "test")
ALLOWED = frozenset((*TEXT_FIELDS, *PHONE_FIELDS, *EMAIL_FIELDS, *ENUMS, *OTHER_FIELDS))
STATE_NAMES = {s.abbr: s.name for s in us.states.STATES_AND_TERRITORIES}
BIRTHDAY_RE = re.compile(r"(\d{2})/(\d{2})/(\d{4})")
INT_RE = re.compile(r"-?\d+")
NUMBER_RE = re.compile(r"-?\d+(\.\d+)?")
SEED_STATUS = {"Suspect": "new_lead", "Prospect": "contact_attempt", "Lead": "contact_made",
               "Client": "active", "Past Client": "active"}


def rails_time(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _number(value: Any) -> tuple[float | int | None, str | None]:
    """A JSON number or numeric string, or the Rails numericality message."""
    if isinstance(value, bool):
        return None, "is not a number"
    if isinstance(value, (int, float)):
        return (value, None) if math.isfinite(value) else (None, "is not a number")
    if isinstance(value, str) and NUMBER_RE.fullmatch(value.strip()):
        s = value.strip()
        return (int(s) if INT_RE.fullmatch(s) else float(s)), None
    return None, "is not a number"


def _whole(value: Any) -> tuple[int | None, str | None]:
    num, err = _number(value)
    if err:
        return None, err
    if isinstance(num, float):
        return None, "must be an integer"
    return num, None


def validate(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The given, normalised values and the Rails-style error object."""
    out: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}

    def fail(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    for field, value in body.items():
        if field == "test" or value is None or value == "":
            continue
        if field in TEXT_FIELDS:
            if isinstance(value, str):
                out[field] = value
            else:
                fail(field, "is invalid")
        elif field in PHONE_FIELDS:
            try:
                num = phonenumbers.parse(value, "US") if isinstance(value, str) else None
            except phonenumbers.NumberParseException:
                num = None
            if num is None or not phonenumbers.is_valid_number(num):
                fail(field, "is an invalid number")
            else:
                out[field] = phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
        elif field in EMAIL_FIELDS:
            try:
                if not isinstance(value, str):
                    raise EmailNotValidError("not a string")
                validate_email(value.strip(), check_deliverability=False)
                out[field] = value.strip()
            except EmailNotValidError:
                fail(field, "is invalid")
        elif field in ENUMS:
            if value in ENUMS[field]:
                out[field] = value
            else:
                fail(field, "is not included in the list")
        elif field == "birthday":
            m = BIRTHDAY_RE.fullmatch(value) if isinstance(value, str) else None
            try:
                out[field] = date(int(m[3]), int(m[2]), int(m[1])) if m else None
            except ValueError:
                out[field] = None
            if out[field] is None:
                del out[field]
                fail(field, "is invalid")
        elif field == "kpa_taken":
            if isinstance(value, bool) or value in ("true", "false"):
                out[field] = value in (True, "true")
            else:
                fail(field, "is invalid")
        elif field == "active_listings_count":
            n, err = _whole(value)
            if err or n < 0:
                fail(field, err or "must be greater than or equal to 0")
            else:
                out[field] = n
        elif field == "production_ytd":
            n, err = _number(value)
            if err or n < 0:
                fail(field, err or "must be greater than or equal to 0")
            else:
                out[field] = int(n) if float(n).is_integer() else n
        elif field == "rating":
            n, err = _whole(value)
            if err:
                fail(field, err)
            elif n < 4:
                fail(field, "must be greater than or equal to 4")
            elif n > 10:
                fail(field, "must be less than or equal to 10")
            else:
                out[field] = n
    return out, errors


class BrokerkitSim(Simulator):
    """One Brokerkit team's recruiting and retention leads."""

    vendor = "brokerkit"
    default_limit = (10, 1.0)

    def __init__(self, *, seed_existing: bool = False, refuse_unknown: bool = False, **kwargs: Any):
        self.seed_existing = seed_existing
        self.refuse_unknown = refuse_unknown
        super().__init__(**kwargs)

    @property
    def team_id(self) -> int:
        return 4100 + self.seed

    # ---- store -----------------------------------------------------------------

    def seed_data(self) -> None:
        self._leads: dict[int, dict[str, Any]] = {}
        self._by_email: dict[str, int] = {}
        self._by_agent: dict[str, int] = {}
        self._users: dict[str, dict[str, Any]] = {}
        self._next_id, self._next_user = 200001, 9001
        self.merged_writes = 0
        if not self.seed_existing:
            return
        for p in self.seed_people:
            phones = [n for _, n in p.phones if self._valid_phone(n)]
            home = p.addresses[0] if p.addresses else None
            work = next((a for a in p.addresses if a.kind == "work"), None)
            attrs: dict[str, Any] = {
                "first_name": p.first_name, "last_name": p.last_name, "email": p.email,
                "phone": phones[0] if phones else None,
                "other_phone": phones[1] if len(phones) > 1 else None,
                "birthday": p.birthday, "currently_at": p.company or None, "source": p.source,
                "note": p.notes[0] if p.notes else None, "status": SEED_STATUS.get(p.status, "new_lead"),
                "alt_address": home.one_line if home else None, "alt_city": home.city if home else None,
                "alt_state": home.state if home else None, "alt_zip": home.zip if home else None,
                "office_address": work.one_line if work else None,
                "office_city": work.city if work else None,
                "office_state": work.state if work else None, "office_zip": work.zip if work else None,
            }
            attrs = {k: v for k, v in attrs.items() if v not in (None, "")}
            match = self._match(attrs)
            if match is None:
                self._create(attrs, p.created_at, p.updated_at)
            else:
                self._update(match, attrs, p.updated_at)

    @staticmethod
    def _valid_phone(raw: str) -> bool:
        try:
            return phonenumbers.is_valid_number(phonenumbers.parse(raw, "US"))
        except phonenumbers.NumberParseException:
            return False

    def _match(self, attrs: dict[str, Any]) -> int | None:
        """The lead holding the e-mail (any it was ever sent), else the agent_id."""
        email = attrs.get("email")
        if email and email.lower() in self._by_email:
            return self._by_email[email.lower()]
        agent = attrs.get("agent_id")
        return self._by_agent.get(agent) if agent else None

    def _index(self, lead: dict[str, Any]) -> None:
        if lead.get("email"):
            self._by_email.setdefault(lead["email"].lower(), lead["id"])
        if lead.get("agent_id"):
            self._by_agent.setdefault(lead["agent_id"], lead["id"])

    def emails_of(self, lead_id: int) -> list[str]:
        """Every e-mail address the lead matches on (lower-cased), for tests."""
        return sorted(e for e, i in self._by_email.items() if i == lead_id)

    def _create(self, attrs: dict[str, Any], created: datetime, updated: datetime | None = None) -> dict[str, Any]:
        lead = {"bucket": "default", "status": "new_lead", "kpa_taken": False, **attrs,
                "id": self._next_id, "created_at": created, "updated_at": updated or created,
                "referred_at": created.date() if attrs.get("referrer_email") else None}
        self._next_id += 1
        self._leads[lead["id"]] = lead
        self._index(lead)
        return lead

    def _update(self, lead_id: int, attrs: dict[str, Any], now: datetime) -> dict[str, Any]:
        lead = self._leads[lead_id]
        old, new = lead.get("agent_id"), attrs.get("agent_id")
        if old and new and old != new and self._by_agent.get(old) == lead_id:
            del self._by_agent[old]   # one agent_id per lead; every e-mail stays matched
        if attrs.get("referrer_email") and not lead.get("referred_at"):
            lead["referred_at"] = now.date()
        lead.update(attrs)
        lead["updated_at"] = now
        self._index(lead)
        return lead

    def _user(self, email: str | None, now: datetime, keep: bool) -> dict[str, Any] | None:
        if not email:
            return None
        user = self._users.get(email.lower())
        if user is None:
            stamp = rails_time(now)
            user = {"id": self._next_user, "email": email, "title": "", "first_name": None,
                    "last_name": None, "name": email.split("@")[0], "avatar_url": None,
                    "admin": False, "signature": "", "timezone": None, "phone": "",
                    "last_sign_in_at": None, "updated_at": stamp, "created_at": stamp,
                    "avatar": {"medium": None, "small": None, "tiny": None}}
            if keep:
                self._next_user += 1
                self._users[email.lower()] = user
        return user

    def _render(self, lead: dict[str, Any], keep_users: bool = True) -> dict[str, Any]:
        g = lead.get
        created, updated = g("created_at"), g("updated_at")
        now = updated or datetime.now(timezone.utc)
        name = " ".join(x for x in (g("first_name"), g("last_name")) if x)
        retention = g("product") == "retention"
        bucket = g("bucket", "default")
        body = {
            "id": g("id"), "team_id": self.team_id, "status": g("status", "new_lead"), "bucket": bucket,
            "photo_url": None, "first_name": g("first_name"), "last_name": g("last_name"),
            "name": name, "birthday": g("birthday").isoformat() if g("birthday") else None,
            "email": g("email"), "phone": g("phone"), "production_label": g("production_label"),
            "production_ytd": g("production_ytd"), "currently_at": g("currently_at"),
            "source": g("source"), "rating": g("rating"), "kpa_taken": g("kpa_taken", False),
            "active_listings_count": None if g("active_listings_count") is None
            else str(g("active_listings_count")),
            "referred_at": g("referred_at").isoformat() if g("referred_at") else None,
            "anniversary_month": None, "joined_at": None,
            "last_activity_at": rails_time(updated) if updated else None,
            "first_appointment_at": None, "last_appointment_at": None,
            "updated_at": rails_time(updated) if updated else None,
            "created_at": rails_time(created) if created else None,
            "note": g("note"), "links": {},
        }
        for prefix in ("alt", "office"):
            state = g(f"{prefix}_state")
            body.update({f"{prefix}_address": g(f"{prefix}_address"), f"{prefix}_city": g(f"{prefix}_city"),
                         f"{prefix}_state": STATE_NAMES.get(state.upper(), state) if state else None,
                         f"{prefix}_zip": g(f"{prefix}_zip"), f"{prefix}_lat": None, f"{prefix}_lng": None})
        body.update({
            "office_phone": g("office_phone"), "other_phone": g("other_phone"), "agent_id": g("agent_id"),
            "recruiting": not retention, "retention": retention, "archived": bucket == "archived",
            "backlogged": bucket == "backlog",
            "owner": self._user(g("owner_email"), now, keep_users),
            "referrer": self._user(g("referrer_email"), now, keep_users),
        })
        if retention:
            stamp = rails_time(now)
            body["team_member"] = {
                "id": g("id"), "email": g("email"), "title": "", "first_name": g("first_name"),
                "last_name": g("last_name"), "name": name, "avatar_url": None, "admin": False,
                "signature": None, "timezone": None, "phone": "", "last_sign_in_at": None,
                "updated_at": stamp, "created_at": stamp,
                "avatar": {"medium": None, "small": None, "tiny": None},
                "role": {"name": "agent", "invited_at": None, "joined_at": None}}
        return body

    # ---- framework hooks ---------------------------------------------------------

    def credentials(self) -> dict[str, str]:
        return {"BROKERKIT_API_KEY": f"bk{self.seed:04d}e5a7c94f1d3b6082"}

    def authenticate(self, request: web.Request) -> str | None:
        key = self.credentials()["BROKERKIT_API_KEY"]
        if request.headers.get("Authorization") != f"Token token={key}":
            raise Unauthorized(json_response({"error": "HTTP Token: Access denied."}, 401,
                                             {"WWW-Authenticate": 'Token realm="Application"'}))
        return key

    def rate_limited_response(self, retry_after: float) -> web.Response:
        return json_response({"error": "Rate limit exceeded. Try again later."}, 429,
                             {"Retry-After": str(max(1, math.ceil(retry_after)))})

    def error_response(self, status: int) -> web.Response:
        return json_response({"error": "Internal Server Error" if status == 500 else "Service Unavailable"},
                             status)

    def inspect_records(self, kind: str) -> list[dict[str, Any]]:
        if kind == "leads":
            return [self._render(lead) for lead in self._leads.values()]
        raise KeyError(kind)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v2/leads", self._h_create), web.route("*", "/{tail:.*}", self._h_not_found)]

    # ---- handlers ----------------------------------------------------------------

    async def _h_not_found(self, request: web.Request) -> web.Response:
        """Every path and method but ``POST /v2/leads``: Rails' routing 404, after auth."""
        return json_response({"error": "Not Found"}, 404)

    async def _h_create(self, request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            return json_response({"error": "Content-Type must be application/json"}, 400)
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return json_response({"error": "The request body is not valid JSON"}, 400)
        if not isinstance(body, dict):
            return json_response({"error": "The request body must be a JSON object"}, 400)
        unknown = sorted(k for k in body if k not in ALLOWED)
        if unknown and self.refuse_unknown:
            return json_response({"error": f"found unpermitted parameters: {', '.join(unknown)}"}, 400)
        attrs, errors = validate({k: v for k, v in body.items() if k in ALLOWED})
        match = None if errors else self._match(attrs)
        if match is None and not errors and not any(
                attrs.get(k) for k in ("first_name", "last_name", "email", "phone")):
            errors["base"] = ["a lead needs a name, an email or a phone"]
        if errors:
            return json_response(errors, 422)
        if body.get("test") is True:
            dry = {"bucket": "default", "status": "new_lead", "kpa_taken": False, **attrs,
                   "email": None, "referred_at": None}
            return json_response(self._render(dry, keep_users=False), 200)
        now = datetime.now(timezone.utc)
        if match is not None:
            self.merged_writes += 1
            self._update(match, attrs, now)
            return web.Response(status=204)
        lead = self._create(attrs, now)
        self.count_create(attrs["email"].lower() if attrs.get("email") else attrs.get("phone"))
        return json_response(self._render(lead), 201)
