"""Flexmls' Spark API contacts service, as its doc and the platform's notes describe it.

What a client trips on: every request needs ``X-SparkApi-User-Agent``; every answer is the
``{"D": {...}}`` envelope and a failure is told by its ``Code`` more than its status (the
rate limit answers 503 by default, as the older error table has it, and so does an
injected outage — only ``Code`` 1550 means "slow down"); a session-signed request covers
every query parameter and the body; and only one session per API key lives at a time,
so two workers that each re-authenticate knock each other out (``sessions_opened``
counts how often that happened).

Readings where the doc and the notes are silent or ambiguous (each the strictest
plausible one, with the doc line it rests on; "doc" is ``spark-flexmls-contacts-api.txt``,
"notes" is ``vendor-notes.md``):

- Credentials: one API key. The OAuth2 bearer token (``Bearer`` or ``OAuth`` scheme — the
  vendor's Ruby client sends ``OAuth``) is issued to that key, so bearer and session
  requests share its rate window. No credential at all, an unknown token or a wrong
  signature answer 401 Code 1000; a session past its 24 hours (``token_ttl``), idle for
  an hour, or ended by a newer session answers 401 Code 1020 (notes: "Session auth").
  ``POST /v1/session`` without ``ApiKey`` or ``ApiSig`` answers 400 Code 1050; its other
  methods answer 405, as the auth page says.
- OAuth2 access tokens expire (the doc names no lifetime; the vendor's Ruby client,
  ``BaseOAuth2Provider#session_timeout``, takes a day when the grant names none): a day
  here, ``access_token_ttl=`` or a fault profile's ``token_ttl`` for tests. An expired
  token answers 401 Code 1020, the notes' "session token expired: authenticate again".
  The only way to a new one is the OAuth2 refresh grant the Ruby client sends
  (``grant_type_refresh.rb``): ``POST /v1/oauth2/grant`` with a JSON body of
  ``client_id`` (the API key), ``client_secret`` (its secret), ``grant_type:
  refresh_token`` and ``refresh_token``; it answers ``{"access_token", "refresh_token",
  "expires_in"}``. The authorization-code grant needs a person at a browser and always
  answers ``invalid_grant``; other grant types ``unsupported_grant_type``; a wrong client
  401 ``invalid_client`` (OAuth2's error shape, which the Ruby client reads as
  ``body["error"]``). A new access token ends the one before it (one credential per key
  at a time, as the notes say of sessions): requests still carrying the old one get
  1020, so a client must refresh once for all its workers. The refresh token is not
  rotated (the answer repeats it). The grant endpoint is not counted in the key's window.
- ``POST /v1/contacts`` answers "The standard success/fail response" (doc, POST
  Response) — HTTP 201, ``{"D": {"Success": true, "Results": [{"ResourceUri":
  "/v1/contacts/<Id>"}]}}`` — and no ``Id``: the doc does not promise one there.
  ``create_answer="id"`` adds it (as the GET sample's rows have), ``"bare"`` answers only
  ``{"D": {"Success": true}}``, so a client can be proved against all three.
- A create body is the doc's ``{"D": {<contact>}}`` or what the vendor's Ruby client
  sends, ``{"D": {"Contacts": [<contact>, …]}}``; every contact of a batch is checked
  before any is stored (all or nothing), and the answer has one ``Results`` row each.
- Unknown attributes (a misspelt key, one the "Contacts Description" table does not
  list) are dropped silently, as real services do; only what the table marks
  ``Writeable: No`` is refused (1053). A PUT of unknown keys only changes nothing.
- Order: the doc shows no sort for an IDX key but ``_orderby=-Score`` under the Activity
  expansion (Private role), so ``_orderby=Score`` answers 403 Code 1500 and any other
  ``_orderby`` 400 Code 1040 (notes: "the field cannot be searched"). Without it, rows
  come in the order the account stores them — oldest first — which the doc does not
  promise; ``_page``/``_limit``/``_pagination`` are the notes' paging.
- The session signature is ``secret + "ApiKey" + key + "ServicePath" + path +
  "AuthToken" + token`` then every other query parameter but ``ApiSig`` sorted by name
  (name then decoded value), then the raw body; the path is the one sent, percent-encoded
  (the Ruby client signs ``URI.escape(path)``). On a request with a body the signature
  is checked before anything else looks at the body; on a session that is already
  dead a wrong body signature answers 1020, not 1000.
- A missing ``X-SparkApi-User-Agent`` is refused before the credential is looked at and
  does not count against the window (the sandbox stats count it as unauthorized).
- Error bodies: ``{"D": {"Success": false, "Code": N, "Message": "..."}}``; a 1053 adds
  ``"Details": [{"<Field>": "<why>"}]`` (the vendor's Ruby client reads ``D.Details`` on
  1053). Codes the table leaves out follow the Ruby client's ``ResponseCodes``: an
  unknown contact or path is HTTP 404 Code 404, a method the doc says is not implemented
  is HTTP 405 Code 405. An injected 5xx carries Code = its HTTP status.
- PUT and DELETE answer 200 ``{"D": {"Success": true}}``.
- Query parameters: a parameter given but blank is invalid (``_filter``/``_orderby`` →
  1040, the others → 1053). ``_pagination`` is ``0``, ``1`` or ``count``; ``_page`` an
  integer ≥ 1; ``_limit`` 0–25; ``_expand`` a comma list of the doc's expansions
  (Activity and Portal need a Private/Portal role: 403 Code 1500 for this IDX key; an
  unknown one is 1053). Unknown parameters are ignored (but signed).
- ``_filter`` grammar: ``Field Op Value[,Value…]`` joined by ``And`` / ``Or`` (And binds
  tighter), ``Not``, parentheses; keywords are case-sensitive. Character fields take
  quoted strings with ``Eq``/``Ne`` (a comma list means any of them), compared
  case-insensitively, ``*`` a wildcard over the whole value — except the doc's
  DisplayName rule (a wildcard and no whitespace: any one word of the name matches).
  Timestamps take unquoted ISO 8601 values (a bare date is midnight, no zone is UTC)
  with ``Eq Ne Gt Ge Lt Le`` and ``Bt a,b`` (inclusive). ``Tags`` ``Eq`` matches a
  contact holding the tag. Anything else, or a field the table marks unsearchable, is
  1040.
- Writes: body ``{"D": {...}}`` as ``application/json`` (else 1035 — also when the JSON
  is not an object holding an object ``D``). Attributes the table marks unwriteable are
  1053; so is a value of the wrong JSON type, an address
  without one ``@`` and a dotted domain (PrimaryEmail, SecondaryEmails, each at most 75
  characters like PrimaryEmail), AdditionalNotificationEmails not a subset of
  SecondaryEmails, RecordStatus other than Connected/Unconnected or going back to
  Unconnected. DisplayName and PrimaryEmail missing, null or blank → 1050 (on PUT only
  when given). ``Notify`` (boolean) is accepted on POST only. A PUT with nothing to
  change is 1050. ``OwnerId`` may only be sent alone on PUT (the transfer; a 26-digit
  account id); a contact transferred to another agent leaves this user's contacts.
- The 1055 rule compares PrimaryEmail case-insensitively with every other contact's.
  Seeded contacts are what the account already holds, dirt and all: they may lack a
  PrimaryEmail or share one (hence the UniquePrimaryEmail expansion); only writes are
  held to the constraints.
- Contacts created ``Unconnected`` are listed by ``/v1/contacts/unconnected`` only.
- Seeded values: US phone numbers as ``212-555-0100`` (others as the source had them),
  Birthday / Anniversary as ``YYYY-MM-DD``, the lead source as ReferredBy. Timestamps
  are UTC with milliseconds and ``Z``. Ids are 24 digits: creation time, a sequence,
  ``000000``, strictly increasing, so Id order is creation order.
- ``reset_state`` re-seeds contacts and zeroes ``sessions_opened`` but keeps live
  sessions, so a client mid-run is not logged out by a sandbox reset.
"""
from __future__ import annotations

import hashlib
import math
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import orjson
from aiohttp import web

from .base import Simulator, Unauthorized, json_response
from .data import Person

UTC = timezone.utc
SESSION_IDLE = 3600.0
SESSION_TTL = 86400.0
ACCESS_TOKEN_TTL = 86400.0   # the vendor's Ruby client: BaseOAuth2Provider#session_timeout, "1.day"
GRANT_PATH = "/v1/oauth2/grant"
CREATE_ANSWERS = ("uri", "id", "bare")
MAX_LIMIT = 25
DEFAULT_LIMIT = 10
OWNER_ID = "20100815223215294334000000"
OWNER_ID_RE = re.compile(r"\d{26}")
EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
US_PHONE_RE = re.compile(r"\+1(\d{3})(\d{3})(\d{4})")

TEXT_300 = (
    "GivenName", "MiddleName", "FamilyName", "SpouseGivenName", "SpouseMiddleName",
    "SpouseFamilyName", "PrimaryPhoneNumber", "HomePhoneNumber", "WorkPhoneNumber",
    "FaxPhoneNumber", "MobilePhoneNumber", "PagerPhoneNumber", "OtherPhoneNumber",
    "HomeStreetAddress", "HomeLocality", "HomeRegion", "HomePostalCode", "WorkStreetAddress",
    "WorkLocality", "WorkRegion", "WorkPostalCode", "Organization", "Position", "Birthday",
    "Anniversary", "Assistant", "Children", "Status", "Other", "Pets", "ReferredBy",
    "Salutation")
MAX_LEN: dict[str, int] = {"DisplayName": 75, "PrimaryEmail": 75, "MobilePhoneCountryCode": 2,
                           **{f: 300 for f in TEXT_300}}
LIST_FIELDS = ("SecondaryEmails", "AdditionalNotificationEmails", "Tags")
WRITEABLE = frozenset(MAX_LEN) | frozenset(LIST_FIELDS) | {"RecordStatus", "Settings", "Note"}
READ_ONLY = frozenset({
    "ResourceUri", "Id", "InvalidEmails", "ModificationTimestamp", "CreatedTimestamp",
    "NewsFeedNotificationUI", "PortalInvitationTimestamp", "VowActive", "VowExists",
    "PortalLoginName", "UniquePrimaryEmail", "LastListingEventTimestamp",
    "UnapprovedListingEventCount", "UnreadListingEventCount",
    "LastListingNotificationEventTimestamp", "UnapprovedListingNotificationEventCount",
    "UnreadListingNotificationEventCount", "Notes", "Activity", "Portal"})
REQUIRED = ("DisplayName", "PrimaryEmail")
STORED_ORDER = ("DisplayName", "OwnerId", "RecordStatus", "PrimaryEmail", "SecondaryEmails",
                "AdditionalNotificationEmails", "InvalidEmails", "GivenName", "MiddleName",
                "FamilyName", "SpouseGivenName", "SpouseMiddleName", "SpouseFamilyName",
                "PrimaryPhoneNumber", "HomePhoneNumber", "WorkPhoneNumber", "FaxPhoneNumber",
                "MobilePhoneCountryCode", "MobilePhoneNumber", "PagerPhoneNumber",
                "OtherPhoneNumber", "HomeStreetAddress", "HomeLocality", "HomeRegion",
                "HomePostalCode", "WorkStreetAddress", "WorkLocality", "WorkRegion",
                "WorkPostalCode", "Organization", "Position", "Birthday", "Anniversary",
                "Assistant", "Children", "Status", "Other", "Pets", "ReferredBy", "Salutation",
                "Tags", "Settings")

# Searchable attributes by kind; wildcards are allowed on every text field but PortalLoginName.
TEXT, STAMP, LIST, BOOL = "text", "stamp", "list", "bool"
SEARCHABLE: dict[str, str] = {
    "Id": TEXT, "DisplayName": TEXT, "PrimaryEmail": TEXT, "MobilePhoneCountryCode": TEXT,
    "PortalLoginName": TEXT, **{f: TEXT for f in TEXT_300},
    "ModificationTimestamp": STAMP, "CreatedTimestamp": STAMP,
    "Tags": LIST, "InvalidEmails": LIST, "VowActive": BOOL}
TEXT_OPS = frozenset({"Eq", "Ne"})
STAMP_OPS = frozenset({"Eq", "Ne", "Gt", "Ge", "Lt", "Le", "Bt"})
EXPANSIONS = frozenset({"Notes", "UniquePrimaryEmail", "VowActive", "VowEnabled",
                        "NewsFeedSummary", "NewsFeedNotificationSummary"})
RESTRICTED_EXPANSIONS = frozenset({"Activity", "Portal"})
PENDING_SIG = web.RequestKey("spark_pending_sig", tuple)


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_ms(dt: datetime) -> datetime:
    """Stored stamps keep what the API shows, so a returned stamp filters exactly."""
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


def md5hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def us_phone(raw: str) -> str:
    m = US_PHONE_RE.fullmatch(raw)
    return "-".join(m.groups()) if m else raw


class SparkError(Exception):
    """A refusal in the vendor's envelope, raised anywhere below a handler."""

    def __init__(self, status: int, code: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


def envelope(status: int, code: int, message: str, field: str | None = None,
             headers: dict[str, str] | None = None) -> web.Response:
    body: dict[str, Any] = {"Success": False, "Code": code, "Message": message}
    if field is not None and code == 1053:
        body["Details"] = [{field: message}]
    return json_response({"D": body}, status, headers)


def bad_filter(message: str) -> SparkError:
    return SparkError(400, 1040, message)


# Text fields the keep-less fault (tests only) may spoil: never PrimaryEmail, the key.
KEPT_FIELDS = ("GivenName", "FamilyName", "Organization", "Position", "HomeStreetAddress",
               "HomeLocality", "WorkStreetAddress")


@dataclass
class Contact:
    id: str
    fields: dict[str, Any]
    created: datetime
    modified: datetime
    notes: list[dict[str, str]] = field(default_factory=list)

    def value(self, name: str) -> Any:
        if name == "Id":
            return self.id
        if name == "ModificationTimestamp":
            return self.modified
        if name == "CreatedTimestamp":
            return self.created
        if name == "VowActive":
            return False
        return self.fields.get(name)


@dataclass
class Session:
    key: str
    token: str
    expires: float
    last_used: float
    ended: bool = False


# ---- _filter -------------------------------------------------------------------------

TOKEN_RE = re.compile(r"\s*(?:(\()|(\))|(,)|'((?:[^'\\]|\\.)*)'|([^\s(),']+))")
Pred = Callable[[Contact], bool]


def tokenize(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = TOKEN_RE.match(text, pos)
        if not m:
            raise bad_filter(f"_filter cannot be parsed near: {text[pos:pos + 20]!r}")
        lp, rp, comma, quoted, word = m.groups()
        if lp:
            out.append(("(", lp))
        elif rp:
            out.append((")", rp))
        elif comma:
            out.append((",", comma))
        elif quoted is not None:
            out.append(("str", re.sub(r"\\(.)", r"\1", quoted)))
        else:
            out.append(("word", word))
        pos = m.end()
    return out


def wildcard(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(p) for p in pattern.split("*")), re.IGNORECASE | re.DOTALL)


def parse_stamp(raw: str) -> datetime:
    try:
        dt = datetime.fromisoformat(raw)
    except ValueError:
        raise bad_filter(f"'{raw}' is not a timestamp") from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


class FilterParser:
    """``_filter`` to a predicate; ``email`` is set when the whole filter is one exact
    PrimaryEmail match, so that lookup is served from the index."""

    def __init__(self, text: str):
        self.tokens = tokenize(text)
        self.pos = 0
        self.email: str | None = None

    def parse(self) -> Pred:
        if not self.tokens:
            raise bad_filter("_filter is empty")
        pred = self._or()
        if self.pos != len(self.tokens):
            raise bad_filter(f"unexpected {self.tokens[self.pos][1]!r} in _filter")
        if not (len(self.tokens) == 3 and self.tokens[0][1] == "PrimaryEmail"
                and self.tokens[1][1] == "Eq" and "*" not in self.tokens[2][1]):
            self.email = None
        return pred

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _next(self) -> tuple[str, str]:
        tok = self._peek()
        if tok is None:
            raise bad_filter("_filter ends too soon")
        self.pos += 1
        return tok

    def _keyword(self, word: str) -> bool:
        if self._peek() == ("word", word):
            self.pos += 1
            return True
        return False

    def _or(self) -> Pred:
        parts = [self._and()]
        while self._keyword("Or"):
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else (lambda c: any(p(c) for p in parts))

    def _and(self) -> Pred:
        parts = [self._not()]
        while self._keyword("And"):
            parts.append(self._not())
        return parts[0] if len(parts) == 1 else (lambda c: all(p(c) for p in parts))

    def _not(self) -> Pred:
        if self._keyword("Not"):
            inner = self._not()
            return lambda c: not inner(c)
        if self._peek() == ("(", "("):
            self.pos += 1
            inner = self._or()
            if self._next()[0] != ")":
                raise bad_filter("unbalanced parentheses in _filter")
            return inner
        return self._condition()

    def _condition(self) -> Pred:
        kind, name = self._next()
        if kind != "word":
            raise bad_filter(f"expected a field name, got {name!r}")
        ftype = SEARCHABLE.get(name)
        if ftype is None:
            raise bad_filter(f"{name} is not a searchable field")
        okind, op = self._next()
        if okind != "word" or op not in STAMP_OPS:
            raise bad_filter(f"{op!r} is not an operator")
        values = [self._next()]
        while self._peek() == (",", ","):
            self.pos += 1
            values.append(self._next())
        if ftype == STAMP:
            return self._stamp(name, op, values)
        if op not in TEXT_OPS:
            raise bad_filter(f"{op} cannot be used on {name}")
        if ftype == BOOL:
            if any(k != "word" or v not in ("true", "false") for k, v in values):
                raise bad_filter(f"{name} takes true or false")
            wanted = {v == "true" for _, v in values}
            return self._negate(op, lambda c: c.value(name) in wanted)
        if any(k != "str" for k, _ in values):
            raise bad_filter(f"{name} takes quoted strings")
        texts = [v for _, v in values]
        if name == "PrimaryEmail" and op == "Eq" and len(texts) == 1:
            self.email = texts[0].casefold()
        match = self._text_matcher(name, texts)
        if ftype == LIST:
            return self._negate(op, lambda c: any(match(v) for v in c.value(name) or ()))
        return self._negate(op, lambda c: (v := c.value(name)) is not None and match(v))

    @staticmethod
    def _negate(op: str, pred: Pred) -> Pred:
        return pred if op == "Eq" else (lambda c: not pred(c))

    @staticmethod
    def _text_matcher(name: str, texts: list[str]) -> Callable[[str], bool]:
        exact = {t.casefold() for t in texts if "*" not in t or name == "PortalLoginName"}
        per_word = [wildcard(t) for t in texts
                    if "*" in t and name == "DisplayName" and not any(ch.isspace() for ch in t)]
        whole = [wildcard(t) for t in texts if "*" in t and name != "PortalLoginName"
                 and not (name == "DisplayName" and not any(ch.isspace() for ch in t))]

        def match(value: str) -> bool:
            if value.casefold() in exact or any(p.fullmatch(value) for p in whole):
                return True
            return bool(per_word) and any(p.fullmatch(w) for w in value.split() for p in per_word)
        return match

    def _stamp(self, name: str, op: str, values: list[tuple[str, str]]) -> Pred:
        if any(k != "word" for k, _ in values):
            raise bad_filter(f"{name} takes unquoted timestamps")
        stamps = [parse_stamp(v) for _, v in values]
        if op == "Bt":
            if len(stamps) != 2:
                raise bad_filter("Bt takes two values")
            lo, hi = stamps
            return lambda c: lo <= c.value(name) <= hi
        if op in ("Eq", "Ne"):
            wanted = set(stamps)
            return self._negate(op, lambda c: c.value(name) in wanted)
        if len(stamps) != 1:
            raise bad_filter(f"{op} takes one value")
        at = stamps[0]
        return {"Gt": lambda c: c.value(name) > at, "Ge": lambda c: c.value(name) >= at,
                "Lt": lambda c: c.value(name) < at, "Le": lambda c: c.value(name) <= at}[op]


def sort_key(name: str) -> Callable[[Contact], Any]:
    def key(c: Contact) -> Any:
        v = c.value(name)
        return (v is not None, v.casefold() if isinstance(v, str) else v)
    return key


# ---- the simulator --------------------------------------------------------------------

class SparkSim(Simulator):
    """The ``/v1/contacts`` service of an IDX key, with bearer and session auth."""

    vendor = "spark"
    default_limit = (1500, 300.0)

    def __init__(self, *, rate_limit_status: int = 503, clock: Callable[[], float] = time.time,
                 create_answer: str = "uri", access_token_ttl: float | None = None, **kwargs: Any):
        if create_answer not in CREATE_ANSWERS:
            raise ValueError(f"create_answer must be one of {', '.join(CREATE_ANSWERS)}")
        self.rate_limit_status = rate_limit_status
        self.clock = clock
        self.create_answer = create_answer
        self._access_token_ttl = access_token_ttl
        self.sessions_opened = 0
        self.grants = 0
        self._sessions: dict[str, Session] = {}
        self._active: dict[str, str] = {}
        super().__init__(**kwargs)
        digest = hashlib.sha256(f"spark-sandbox-{self.seed}".encode()).hexdigest()
        self.access_token = digest[:32]
        self.api_key = "idx_" + digest[32:48]
        self.api_secret = digest[48:64]
        self._ended_tokens: set[str] = set()
        self.refresh_token = hashlib.sha256(f"spark-refresh-{self.seed}".encode()).hexdigest()[:32]
        self.access_expires = self.clock() + self.access_token_ttl()

    def access_token_ttl(self) -> float:
        """An explicit lifetime, else the fault profile's token lifetime, else a day."""
        if self._access_token_ttl is not None:
            return self._access_token_ttl
        return self.token_ttl(ACCESS_TOKEN_TTL)

    def credentials(self) -> dict[str, str]:
        return {"SPARK_ACCESS_TOKEN": self.access_token, "SPARK_REFRESH_TOKEN": self.refresh_token,
                "SPARK_CLIENT_ID": self.api_key, "SPARK_CLIENT_SECRET": self.api_secret,
                "SPARK_API_KEY": self.api_key, "SPARK_API_SECRET": self.api_secret}

    def extra_stats(self) -> dict[str, Any]:
        return {"sessions_opened": self.sessions_opened, "oauth2_grants": self.grants}

    # ---- store -------------------------------------------------------------------

    def seed_data(self) -> None:
        self._contacts: dict[str, Contact] = {}
        self._by_email: dict[str, set[str]] = {}
        self._transferred: dict[str, Contact] = {}
        self._last_id = 0
        self._seq = 0
        self._version = 0
        self._cache: dict[tuple[str, str | None, str | None], list[Contact]] = {}
        for p in self.seed_people:
            self._seed_one(p)

    def reset_state(self) -> None:
        self.sessions_opened = 0
        self.seed_data()

    def _seed_one(self, p: Person) -> None:
        f: dict[str, Any] = {"DisplayName": p.full_name, "PrimaryEmail": p.email,
                             "SecondaryEmails": [e for _, e in p.emails[1:]],
                             "GivenName": p.first_name, "FamilyName": p.last_name,
                             "Organization": p.company, "Position": p.title,
                             "Birthday": p.birthday.isoformat() if p.birthday else None,
                             "Anniversary": p.anniversary.isoformat() if p.anniversary else None,
                             "Status": p.status, "ReferredBy": p.source, "Tags": list(p.tags)}
        if p.phones or p.primary_phone:
            f["PrimaryPhoneNumber"] = us_phone(p.primary_phone or p.phones[0][1])
        for kind, number in p.phones:
            f.setdefault({"mobile": "MobilePhoneNumber", "home": "HomePhoneNumber",
                          "work": "WorkPhoneNumber"}.get(kind, "OtherPhoneNumber"), us_phone(number))
        for a in p.addresses:
            side = "Work" if a.kind == "work" else "Home"
            f.update({f"{side}StreetAddress": a.street, f"{side}Locality": a.city,
                      f"{side}Region": a.state, f"{side}PostalCode": a.zip})
        c = self._new_contact(f, to_ms(p.created_at), to_ms(p.updated_at))
        for i, text in enumerate(p.notes):
            self._add_note(c, text, to_ms(p.created_at + timedelta(minutes=i + 1)))

    def _new_id(self, when: datetime) -> str:
        candidate = int(when.astimezone(UTC).strftime("%Y%m%d%H%M%S")) * 10**10 + (self._seq % 10000) * 10**6
        self._seq += 1
        self._last_id = max(candidate, self._last_id + 10**6)
        return f"{self._last_id:024d}"

    def _new_contact(self, values: dict[str, Any], created: datetime, modified: datetime) -> Contact:
        fields: dict[str, Any] = {name: None for name in STORED_ORDER}
        fields.update({"OwnerId": OWNER_ID, "RecordStatus": "Connected", "SecondaryEmails": [],
                       "AdditionalNotificationEmails": [], "InvalidEmails": [], "Tags": [],
                       "Settings": {"ReverseProspecting": False}})
        fields.update(values)
        c = Contact(self._new_id(created), fields, created, modified)
        self._contacts[c.id] = c
        self._index(c)
        self._changed()
        return c

    def _add_note(self, c: Contact, text: str, when: datetime) -> None:
        c.notes.append({"Id": self._new_id(when), "Note": text, "CreatedTimestamp": iso(when)})

    def _index(self, c: Contact) -> None:
        email = c.fields.get("PrimaryEmail")
        if email:
            self._by_email.setdefault(email.casefold(), set()).add(c.id)

    def _unindex(self, c: Contact) -> None:
        email = c.fields.get("PrimaryEmail")
        if email:
            ids = self._by_email.get(email.casefold())
            if ids:
                ids.discard(c.id)
                if not ids:
                    del self._by_email[email.casefold()]

    def _changed(self) -> None:
        self._version += 1
        self._cache.clear()

    def _now(self) -> datetime:
        return to_ms(datetime.fromtimestamp(self.clock(), UTC))

    def inspect_records(self, kind: str) -> list[dict[str, Any]]:
        if kind == "contacts":
            rows = [self._render(c, frozenset({"Notes"})) for c in self._contacts.values()]
        elif kind == "notes":
            rows = [{**n, "ContactId": c.id} for c in self._contacts.values() for n in c.notes]
        else:
            raise KeyError(kind)
        return orjson.loads(orjson.dumps(rows))

    # ---- responses ---------------------------------------------------------------

    def rate_limited_response(self, retry_after: float) -> web.Response:
        return envelope(self.rate_limit_status, 1550,
                        "Rate limit exceeded: at most "
                        f"{self.window.limit if self.window else 1500} requests in any "
                        f"{self.window.period if self.window else 300:g} seconds.",
                        headers={"Retry-After": str(max(1, math.ceil(retry_after)))})

    def error_response(self, status: int) -> web.Response:
        return envelope(status, status, "The service is temporarily unavailable.")

    def _render(self, c: Contact, expand: frozenset[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"ResourceUri": f"/v1/contacts/{c.id}", "Id": c.id, **c.fields,
                               "ModificationTimestamp": iso(c.modified),
                               "CreatedTimestamp": iso(c.created)}
        if not expand:
            return out
        if "Notes" in expand:
            out["Notes"] = [dict(n) for n in c.notes]
        if "UniquePrimaryEmail" in expand:
            email = c.fields.get("PrimaryEmail")
            out["UniquePrimaryEmail"] = bool(email) and len(self._by_email.get(email.casefold(), ())) == 1
        if "VowActive" in expand:
            out["VowActive"] = False
        if "VowEnabled" in expand:
            out["VowExists"] = False
        if "NewsFeedSummary" in expand:
            out.update({"LastListingEventTimestamp": None, "UnapprovedListingEventCount": 0,
                        "UnreadListingEventCount": 0})
        if "NewsFeedNotificationSummary" in expand:
            out.update({"LastListingNotificationEventTimestamp": None,
                        "UnapprovedListingNotificationEventCount": 0,
                        "UnreadListingNotificationEventCount": 0})
        return out

    # ---- auth --------------------------------------------------------------------

    def authenticate(self, request: web.Request) -> str | None:
        if not request.headers.get("X-SparkApi-User-Agent", "").strip():
            raise Unauthorized(envelope(400, 1016, "The X-SparkApi-User-Agent header is required."))
        if request.path == "/v1/session":
            return self._session_key(request) if request.method == "POST" else None
        if request.path == GRANT_PATH:
            return None
        header = request.headers.get("Authorization")
        if header is not None:
            scheme, _, token = header.strip().partition(" ")
            token = token.strip()
            if scheme.lower() in ("bearer", "oauth") and secrets.compare_digest(
                    token.encode(), self.access_token.encode()):
                if self.clock() >= self.access_expires:
                    raise Unauthorized(envelope(401, 1020, "Access token has expired."))
                return self.api_key
            if scheme.lower() in ("bearer", "oauth") and token in self._ended_tokens:
                raise Unauthorized(envelope(401, 1020, "Access token has expired."))
            raise Unauthorized(envelope(401, 1000, "Invalid access token."))
        token, sig = request.query.get("AuthToken"), request.query.get("ApiSig")
        session = self._sessions.get(token) if token else None
        if session is None or not sig:
            raise Unauthorized(envelope(401, 1000, "Invalid API key or session token."))
        prefix = self._sig_prefix(request, token)
        if request.body_exists:
            request[PENDING_SIG] = (prefix, sig)
        elif md5hex(prefix) != sig.lower():
            raise Unauthorized(envelope(401, 1000, "ApiSig does not match the request."))
        now = self.clock()
        if session.ended or now >= session.expires or now - session.last_used >= SESSION_IDLE:
            raise Unauthorized(envelope(401, 1020, "Session token has expired."))
        session.last_used = now
        return session.key

    def _sig_prefix(self, request: web.Request, token: str) -> bytes:
        params = sorted(((k, v) for k, v in request.query.items() if k not in ("ApiSig", "AuthToken")),
                        key=lambda kv: kv[0])
        path = request.raw_path.partition("?")[0]   # as sent: percent-encoded
        return (f"{self.api_secret}ApiKey{self.api_key}ServicePath{path}AuthToken{token}"
                + "".join(k + v for k, v in params)).encode()

    def _session_key(self, request: web.Request) -> str:
        key, sig = request.query.get("ApiKey"), request.query.get("ApiSig")
        if not key or not sig:
            raise Unauthorized(envelope(400, 1050, "ApiKey and ApiSig are required."))
        expected = md5hex(f"{self.api_secret}ApiKey{self.api_key}".encode())
        if key != self.api_key or sig.lower() != expected:
            raise Unauthorized(envelope(401, 1000, "Invalid API key or signature."))
        return key

    # ---- routes ------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        g = self._guard
        return [
            web.post("/v1/session", g(self._h_session)),
            web.route("*", "/v1/session", g(self._h_405)),
            web.post(GRANT_PATH, self._h_grant),
            web.route("*", GRANT_PATH, g(self._h_405)),
            web.get("/v1/contacts", g(self._h_list)),
            web.post("/v1/contacts", g(self._h_create)),
            web.route("*", "/v1/contacts", g(self._h_405)),
            web.get("/v1/contacts/unconnected", g(self._h_unconnected)),
            web.route("*", "/v1/contacts/unconnected", g(self._h_405)),
            web.get("/v1/contacts/{Id}", g(self._h_get)),
            web.put("/v1/contacts/{Id}", g(self._h_update)),
            web.delete("/v1/contacts/{Id}", g(self._h_delete)),
            web.route("*", "/v1/contacts/{Id}", g(self._h_405)),
            web.route("*", "/{tail:.*}", g(self._h_404)),
        ]

    def _guard(self, handler: Callable[[web.Request], Any]) -> Callable[[web.Request], Any]:
        async def run(request: web.Request) -> web.StreamResponse:
            try:
                pending = request.get(PENDING_SIG)
                if pending is not None:
                    prefix, sig = pending
                    if md5hex(prefix + await request.read()) != sig.lower():
                        raise SparkError(401, 1000, "ApiSig does not match the request.")
                return await handler(request)
            except SparkError as e:
                return envelope(e.status, e.code, e.message, e.field)
        return run

    async def _h_404(self, request: web.Request) -> web.Response:
        raise SparkError(404, 404, f"{request.path} was not found.")

    async def _h_405(self, request: web.Request) -> web.Response:
        raise SparkError(405, 405, f"{request.method} is not allowed on {request.path}.")

    async def _h_session(self, request: web.Request) -> web.Response:
        now = self.clock()
        old = self._active.get(self.api_key)
        if old in self._sessions:
            self._sessions[old].ended = True
        token = secrets.token_hex(16)
        ttl = self.token_ttl(SESSION_TTL)
        self._sessions[token] = Session(self.api_key, token, now + ttl, now)
        self._active[self.api_key] = token
        self.sessions_opened += 1
        expires = datetime.fromtimestamp(now + ttl, UTC).isoformat(timespec="seconds")
        return json_response({"D": {"Success": True, "Results": [
            {"AuthToken": token, "Expires": expires, "Roles": ["idx"]}]}})

    async def _h_grant(self, request: web.Request) -> web.Response:
        """The OAuth2 token endpoint, refresh grant only (the others need a person at a browser)."""
        def refuse(status: int, error: str, why: str) -> web.Response:
            return json_response({"error": error, "error_description": why}, status)
        try:
            doc = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
            return refuse(400, "invalid_request", "The body must be a JSON object of strings.")
        missing = [n for n in ("client_id", "client_secret", "grant_type") if not doc.get(n)]
        if missing:
            return refuse(400, "invalid_request", f"{', '.join(missing)} is required.")
        if doc["client_id"] != self.api_key or not secrets.compare_digest(
                doc["client_secret"].encode(), self.api_secret.encode()):
            return refuse(401, "invalid_client", "Unknown client or wrong secret.")
        if doc["grant_type"] == "authorization_code":
            return refuse(400, "invalid_grant", "The authorization code is invalid or expired.")
        if doc["grant_type"] != "refresh_token":
            return refuse(400, "unsupported_grant_type", f"{doc['grant_type']} is not supported.")
        if not doc.get("refresh_token") or not secrets.compare_digest(
                doc["refresh_token"].encode(), self.refresh_token.encode()):
            return refuse(400, "invalid_grant", "The refresh token is invalid.")
        self._ended_tokens.add(self.access_token)
        self.access_token = secrets.token_hex(16)
        ttl = self.access_token_ttl()
        self.access_expires = self.clock() + ttl
        self.grants += 1
        return json_response({"access_token": self.access_token, "refresh_token": self.refresh_token,
                              "expires_in": int(ttl) if float(ttl).is_integer() else ttl})

    # ---- reads -------------------------------------------------------------------

    async def _h_list(self, request: web.Request) -> web.Response:
        return self._list(request, "Connected")

    async def _h_unconnected(self, request: web.Request) -> web.Response:
        return self._list(request, "Unconnected")

    def _list(self, request: web.Request, status: str) -> web.Response:
        q = request.query
        limit = self._int_param(q, "_limit", DEFAULT_LIMIT, 0, MAX_LIMIT)
        page = self._int_param(q, "_page", 1, 1, None)
        pagination = q.get("_pagination", "0")
        if pagination not in ("0", "1", "count"):
            raise SparkError(400, 1053, "_pagination must be 0, 1 or count.", "_pagination")
        expand = self._expand(q)
        rows = self._query(status, self._given(q, "_filter"), self._given(q, "_orderby"))
        total = len(rows)
        paging = {"TotalRows": total, "PageSize": limit,
                  "TotalPages": math.ceil(total / limit) if limit else 0, "CurrentPage": page}
        if pagination == "count":
            return json_response({"D": {"Success": True, "Pagination": paging}})
        start = (page - 1) * limit
        body: dict[str, Any] = {"Success": True,
                                "Results": [self._render(c, expand) for c in rows[start:start + limit]]}
        if pagination == "1":
            body["Pagination"] = paging
        return json_response({"D": body})

    @staticmethod
    def _given(q: Any, name: str) -> str | None:
        value = q.get(name)
        if value is not None and not value.strip():
            raise bad_filter(f"{name} is blank")
        return value

    @staticmethod
    def _int_param(q: Any, name: str, default: int, lo: int, hi: int | None) -> int:
        raw = q.get(name)
        if raw is None:
            return default
        if not re.fullmatch(r"-?\d+", raw.strip()):
            raise SparkError(400, 1053, f"{name} must be an integer.", name)
        n = int(raw)
        if n < lo or (hi is not None and n > hi):
            bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            raise SparkError(400, 1053, f"{name} must be {bound}.", name)
        return n

    @staticmethod
    def _expand(q: Any) -> frozenset[str]:
        raw = q.get("_expand")
        if raw is None:
            return frozenset()
        names = [n.strip() for n in raw.split(",")]
        for n in names:
            if n in RESTRICTED_EXPANSIONS:
                raise SparkError(403, 1500, f"The {n} expansion is not available to this key's role.")
            if n not in EXPANSIONS:
                raise SparkError(400, 1053, f"{n!r} is not an expansion of contacts.", "_expand")
        return frozenset(names)

    def _query(self, status: str, filter_text: str | None, orderby: str | None) -> list[Contact]:
        """Rows for a query, kept until the next write so paging one query costs a slice."""
        cache_key = (status, filter_text, orderby)
        rows = self._cache.get(cache_key)
        if rows is not None:
            return rows
        keys = self._order_keys(orderby) if orderby is not None else []
        if filter_text is not None:
            parser = FilterParser(filter_text)
            pred = parser.parse()
            if parser.email is not None:
                ids = sorted(self._by_email.get(parser.email, ()))
                rows = [self._contacts[i] for i in ids]
            else:
                rows = [c for c in self._contacts.values() if pred(c)]
        else:
            rows = list(self._contacts.values())
        rows = [c for c in rows if c.fields["RecordStatus"] == status]
        for name, desc in reversed(keys):
            rows.sort(key=sort_key(name), reverse=desc)
        if len(self._cache) >= 64:
            self._cache.clear()
        self._cache[cache_key] = rows
        return rows

    @staticmethod
    def _order_keys(orderby: str) -> list[tuple[str, bool]]:
        for part in orderby.split(","):
            part = part.strip()
            name = part[1:] if part.startswith("-") else part
            if name == "Score":
                raise SparkError(403, 1500, "Ordering by Score needs the Activity expansion, "
                                 "which is not available to this key's role.")
            raise bad_filter(f"cannot order by {name!r}")
        return []

    def _contact(self, request: web.Request) -> Contact:
        c = self._contacts.get(request.match_info["Id"])
        if c is None:
            raise SparkError(404, 404, f"Contact {request.match_info['Id']} was not found.")
        return c

    async def _h_get(self, request: web.Request) -> web.Response:
        c = self._contact(request)
        row = self._render(c, self._expand(request.query))
        return json_response({"D": {"Success": True, "Results": [row]}})

    # ---- writes ------------------------------------------------------------------

    async def _body(self, request: web.Request) -> dict[str, Any]:
        if request.content_type != "application/json":
            raise SparkError(400, 1035, "Content-Type must be application/json.")
        try:
            doc = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            raise SparkError(400, 1035, "The request body is not valid JSON.") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("D"), dict):
            raise SparkError(400, 1035, 'The request body must be {"D": {...}}.')
        return doc["D"]

    def _validate(self, d: dict[str, Any], current: Contact | None) -> tuple[dict[str, Any], str | None]:
        """The attributes to store and the note to add, or the vendor's refusal."""
        creating = current is None
        for name, value in d.items():
            if name == "Notify" and creating:
                if not isinstance(value, bool):
                    raise SparkError(400, 1053, "Notify must be a boolean.", name)
            elif name == "OwnerId":
                raise SparkError(400, 1053, "OwnerId may only be sent alone, to transfer a contact.", name)
            elif name in READ_ONLY or name == "Notify":
                raise SparkError(400, 1053, f"{name} is not writeable.", name)
        for name in REQUIRED:
            value = d.get(name)
            if (creating or name in d) and (value is None or (isinstance(value, str) and not value.strip())):
                raise SparkError(400, 1050, f"{name} is required.")
        d = {k: v for k, v in d.items() if k in WRITEABLE or k == "Notify"}   # unknown: dropped
        values: dict[str, Any] = {}
        for name, value in d.items():
            if name in MAX_LEN:
                values[name] = self._text(name, value)
            elif name in LIST_FIELDS:
                values[name] = self._list_value(name, value)
        email = values.get("PrimaryEmail")
        if email is not None and not EMAIL_RE.fullmatch(email):
            raise SparkError(400, 1053, "PrimaryEmail is not a valid e-mail address.", "PrimaryEmail")
        for addr in values.get("SecondaryEmails") or ():
            if len(addr) > 75 or not EMAIL_RE.fullmatch(addr):
                raise SparkError(400, 1053, f"SecondaryEmails holds an invalid address: {addr!r}.",
                                 "SecondaryEmails")
        for tag in values.get("Tags") or ():
            if len(tag) > 75:
                raise SparkError(400, 1053, "Each of Tags can be no longer than 75 characters.", "Tags")
        extra = values.get("AdditionalNotificationEmails")
        if extra:
            secondary = values.get("SecondaryEmails", current.fields["SecondaryEmails"] if current else [])
            if not {e.casefold() for e in extra} <= {e.casefold() for e in secondary or ()}:
                raise SparkError(400, 1053, "AdditionalNotificationEmails must be a subset of "
                                 "SecondaryEmails.", "AdditionalNotificationEmails")
        if "RecordStatus" in d:
            status = d["RecordStatus"]
            if status not in ("Connected", "Unconnected"):
                raise SparkError(400, 1053, "RecordStatus must be Connected or Unconnected.", "RecordStatus")
            was = current.fields["RecordStatus"] if current is not None else None
            if was == "Connected" and status == "Unconnected":
                raise SparkError(400, 1053, "A Connected contact cannot become Unconnected.", "RecordStatus")
            values["RecordStatus"] = status
        if "Settings" in d:
            s = d["Settings"]
            if not isinstance(s, dict) or set(s) - {"ReverseProspecting"} or not all(
                    isinstance(v, bool) for v in s.values()):
                raise SparkError(400, 1053, "Settings may hold only ReverseProspecting (a boolean).",
                                 "Settings")
            values["Settings"] = {"ReverseProspecting": s.get("ReverseProspecting", False)}
        note = d.get("Note")
        if note is not None:
            if not isinstance(note, str):
                raise SparkError(400, 1053, "Note must be a string.", "Note")
            if len(note) > 10_000:
                raise SparkError(400, 1053, "Note has a maximum of 10,000 characters.", "Note")
        return values, note or None

    @staticmethod
    def _text(name: str, value: Any) -> str | None:
        if value is not None and not isinstance(value, str):
            raise SparkError(400, 1053, f"{name} must be a string.", name)
        if value is not None and len(value) > MAX_LEN[name]:
            raise SparkError(400, 1053, f"{name} has a maximum of {MAX_LEN[name]} characters.", name)
        return value

    @staticmethod
    def _list_value(name: str, value: Any) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SparkError(400, 1053, f"{name} must be a list of strings.", name)
        return list(value)

    def _check_unique(self, email: str | None, own_id: str | None) -> None:
        if email and any(i != own_id for i in self._by_email.get(email.casefold(), ())):
            raise SparkError(409, 1055, f"A contact with PrimaryEmail {email} already exists.")

    async def _h_create(self, request: web.Request) -> web.Response:
        d = await self._body(request)
        if set(d) == {"Contacts"}:
            batch = d["Contacts"]
            if not isinstance(batch, list) or not batch or not all(isinstance(x, dict) for x in batch):
                raise SparkError(400, 1035, 'Contacts must be a list of contact objects.')
        else:
            batch = [d]
        checked = [self._validate(one, None) for one in batch]
        emails = [values["PrimaryEmail"].casefold() for values, _ in checked]
        for values, _ in checked:
            self._check_unique(values["PrimaryEmail"], None)
        if len(set(emails)) < len(emails):
            raise SparkError(409, 1055, "Two of the contacts share a PrimaryEmail.")
        results = []
        for values, note in checked:
            now = self._now()
            c = self._new_contact(values, now, now)
            if note:
                self._add_note(c, note, now)
            self.count_create(values["PrimaryEmail"].casefold())
            if self.keep_less(c.fields, c.id, KEPT_FIELDS) == "lose":
                self._unindex(c)
                del self._contacts[c.id]
            self._changed()
            uri = {"ResourceUri": f"/v1/contacts/{c.id}"}
            results.append({"uri": uri, "id": {**uri, "Id": c.id}}.get(self.create_answer))
        if self.create_answer == "bare":
            return json_response({"D": {"Success": True}}, 201)
        return json_response({"D": {"Success": True, "Results": results}}, 201)

    async def _h_update(self, request: web.Request) -> web.Response:
        c = self._contact(request)
        d = await self._body(request)
        if "OwnerId" in d and len(d) == 1:
            return self._transfer(c, d["OwnerId"])
        if not d:
            raise SparkError(400, 1050, "No attributes to update.")
        values, note = self._validate(d, c)
        if "PrimaryEmail" in values:
            self._check_unique(values["PrimaryEmail"], c.id)
        self._unindex(c)
        c.fields.update(values)
        self._index(c)
        c.modified = max(self._now(), c.modified)
        if note:
            self._add_note(c, note, c.modified)
        self._changed()
        return json_response({"D": {"Success": True}})

    def _transfer(self, c: Contact, owner: Any) -> web.Response:
        if not isinstance(owner, str) or not OWNER_ID_RE.fullmatch(owner):
            raise SparkError(400, 1053, "OwnerId must be an account Id.", "OwnerId")
        c.fields["OwnerId"] = owner
        c.fields["RecordStatus"] = "Connected"
        c.modified = max(self._now(), c.modified)
        if owner != OWNER_ID:
            self._unindex(c)
            del self._contacts[c.id]
            self._transferred[c.id] = c
        self._changed()
        return json_response({"D": {"Success": True}})

    async def _h_delete(self, request: web.Request) -> web.Response:
        c = self._contact(request)
        self._unindex(c)
        del self._contacts[c.id]
        self._changed()
        return json_response({"D": {"Success": True}})
