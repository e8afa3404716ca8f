"""Realeflow, as its API doc describes it — including the parts a client trips on.

The trap: a refused create still answers HTTP 200, with ``{"Successful": false, "Id": 0,
"Error": "<why>"}``; a client that only checks the status code loses records silently.
The list endpoints return only the 25 newest records, so a full export cannot come from
the API at all. A create answers the record's integer id, but the relation endpoint takes
GUIDs, which only the list rows show: a client must read them back from the newest 25.

Every reading this simulator chose where the doc (``vendor-docs/realeflow-api.txt``) is
silent or ambiguous, with the doc line it rests on — each the strictest plausible one:

- Auth — "use your API key as the username while leaving the password blank. Requests
  not properly authenticated will return a 401": ``Authorization: Basic
  base64("<key>:")``. A key encoded without the colon, a non-empty password, another
  scheme or a wrong key answers 401 ``{"Message": "Authorization has been denied for this
  request."}`` (ASP.NET's wording) with ``WWW-Authenticate: Basic``.
- Limits — the doc publishes none (its error table lists only 401 and 500): 10 requests
  per second per key (sliding window); over it, 429 ``{"Message": ...}`` with
  ``Retry-After``. 5xx bodies are ``{"Message": ...}``.
- "Any response other than “Active” may prevent you from further interactions": an
  account whose status is not "Active" (constructor ``account_status``) still reads, but
  every write answers 403 ``{"Message": "Account is not active."}``.
- The samples are JSON bodies ("The above request returns JSON structured like this"):
  POST bodies must be ``application/json`` (else 415 with ASP.NET's wording). A body that
  is not a JSON object answers HTTP 200 ``Successful: false``, the one refusal shape the
  doc shows ("“Error” provides a string value if “Successful” is false").
- The sample keys are lowercase (``"fullname"``), the parameter tables PascalCase
  (``FullName``): keys are matched case-insensitively; two keys differing only in case,
  the last wins (Json.NET).
- Unknown keys: the doc lists the accepted parameters and says nothing of others. A .NET
  model binder ignores properties it does not have, so an unknown or misspelt key is
  dropped silently (constructor ``refuse_unknown=True`` refuses it instead). A mapping
  that writes a field Realeflow ignores must be caught by our own schema, not by the server.
- "Error provides a string value": every failing field is reported, joined with "; ", in
  the one ``Error`` string; ``Id`` is 0 on a refusal.
- ``null`` or ``""`` in an optional field means "not given" ("To skip over a field, pass
  in null"). Text fields must be JSON strings (no number → string coercion).
- "State — Two-letter state abbreviation (i.e. OH)": an upper-case code of a US state, DC
  or territory. "ZipCode — Five-digit U.S. zip code": exactly five digits (no ZIP+4).
  The Email row of the table has no name or description: when given, it must be a
  syntactically valid address. "PhoneType — Mobile, Work, or Home (defaults to Mobile if
  not specificed)": one of those, in any case. "Type — Accepted values: Buyer, Seller":
  any case, as the sample sends ``["buyer", "seller"]``. "(array size limit 28)": at most
  28 custom fields, strings or null.
- ``Phone`` is stored as sent (the sample's "1112224444" is not a real number); the list
  row's ``mobilePhoneDigits`` (sample "18888888888") is its digits, with a leading 1 for
  ten-digit numbers, when the phone type is Mobile.
- No dedup is documented: the same e-mail twice makes two contacts.
- The create samples answer ``"Id": 1234``: the record's integer id — the list row's
  ``contactId`` (sample 335275) or ``propertyId`` (sample 1113557). The row's ``id`` is the
  GUID (sample "d71a29d1-…"). ``created`` has no zone (sample "2019-12-04T21:30:52.52");
  the simulator writes UTC.
- "Returns your most recent 25 contacts, listed in decsending order": the 25 newest by
  creation, newest first, no paging parameters.
- Relations — the sample sends GUIDs (``"PropertyId": "D71A29D1-…"``, ``"ContactId": "
  EJ1A29D1-…"``) and the table describes neither: each side must be named by its GUID,
  in any case, surrounding spaces ignored (the sample's leading space; .NET's
  ``Guid.Parse`` trims). An integer id, or a string that is not a GUID (the sample's own
  "EJ1A29D1-…" holds a non-hex "J"), is refused with ``Successful: false``; so is a GUID
  that names no record.
- Relation flags — the sample sends ``"IsOwner": "true"``, strings: each flag must be the
  string "true" or "false" (any case); a JSON boolean or anything else is refused; an
  absent flag is false. Relating the same pair again updates the flags and answers the
  same relation ``Id`` (the doc says "Creates a contact in relation to a specific
  property", one relation per pair).
"""
from __future__ import annotations

import base64
import binascii
import math
import random
import re
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

import orjson
import us
from aiohttp import web
from email_validator import EmailNotValidError, validate_email

from .base import Simulator, Unauthorized, json_response

LIST_SIZE = 25
MAX_CUSTOM_FIELDS = 28
STATE_CODES = frozenset(s.abbr for s in us.states.STATES_AND_TERRITORIES)
PHONE_TYPES = {"mobile": "Mobile", "work": "Work", "home": "Home"}
CONTACT_TYPES = {"buyer": "Buyer", "seller": "Seller"}
RELATION_FLAGS = ("IsOwner", "IsPrimaryContact", "IsRealtor", "IsOccupier", "IsInterested",
                  "IsTitleEscrowAgent", "IsAttorney", "IsInsuranceAgent", "IsInspector",
                  "IsLenderMtgBroker", "IsLossMitigator", "IsBpoAgent", "IsAppraiser",
                  "IsContractor", "IsTenant", "IsPropertyManager", "IsHoaContact",
                  "IsLienContact")
ZIP_RE = re.compile(r"\d{5}")

CONTACT_FIELDS = {"fullname": "FullName", "email": "Email", "companyname": "CompanyName",
                  "phone": "Phone", "phonetype": "PhoneType", "source": "Source",
                  "address": "Address", "city": "City", "state": "State", "zipcode": "ZipCode",
                  "type": "Type", "tags": "Tags", "customfields": "CustomFields"}
PROPERTY_FIELDS = {"address": "Address", "city": "City", "state": "State", "zipcode": "ZipCode",
                   "source": "Source", "tags": "Tags", "customfields": "CustomFields"}
RELATION_FIELDS = {"propertyid": "PropertyId", "contactid": "ContactId",
                   **{f.lower(): f for f in RELATION_FLAGS}}


def net_time(dt: datetime) -> str:
    """The doc's zone-less .NET timestamp: trailing zeros of the fraction trimmed."""
    out = dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{dt.microsecond:06d}".rstrip("0")
    return f"{out}.{frac}" if frac else out


def mobile_digits(phone: str | None) -> str | None:
    digits = "".join(ch for ch in phone or "" if ch.isdigit())
    if not digits:
        return None
    return "1" + digits if len(digits) == 10 else digits


def result(successful: bool, id_: int = 0, error: str | None = None) -> web.Response:
    return json_response({"Successful": successful, "Id": id_ if successful else 0, "Error": error})


class Fields:
    """Case-insensitive view of a request body that collects every failure."""

    def __init__(self, body: dict[str, Any], names: dict[str, str], refuse_unknown: bool = False):
        self.errors: list[str] = []
        self.values: dict[str, Any] = {}
        for key, value in body.items():
            low = key.lower()
            if low in names:
                self.values[low] = value
            elif refuse_unknown:
                self.errors.append(f"Unknown field '{key}'.")
        self.names = names

    def raw(self, key: str) -> Any:
        value = self.values.get(key)
        return None if value == "" else value

    def text(self, key: str, required: bool = False) -> str | None:
        value = self.raw(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                self.errors.append(f"{self.names[key]} is required.")
            return None
        if not isinstance(value, str):
            self.errors.append(f"{self.names[key]} must be a string.")
            return None
        return value

    def state(self) -> str | None:
        value = self.text("state")
        if value is not None and value not in STATE_CODES:
            self.errors.append("State must be a two-letter U.S. state abbreviation (e.g. OH).")
            return None
        return value

    def zipcode(self) -> str | None:
        value = self.text("zipcode")
        if value is not None and not ZIP_RE.fullmatch(value):
            self.errors.append("ZipCode must be a five-digit U.S. zip code.")
            return None
        return value

    def string_list(self, key: str, allow_null: bool = False, limit: int | None = None) -> list | None:
        value = self.values.get(key)
        if value is None:
            return None
        name = self.names[key]
        if not isinstance(value, list):
            self.errors.append(f"{name} must be an array.")
            return None
        if limit is not None and len(value) > limit:
            self.errors.append(f"{name} may hold at most {limit} values (got {len(value)}).")
            return None
        if not all(isinstance(v, str) or (allow_null and v is None) for v in value):
            self.errors.append(f"{name} must hold only strings{' or null' if allow_null else ''}.")
            return None
        return value

    def choice(self, key: str, allowed: dict[str, str]) -> str | None:
        value = self.text(key)
        if value is None:
            return None
        canon = allowed.get(value.lower())
        if canon is None:
            self.errors.append(f"{self.names[key]} must be one of {', '.join(allowed.values())}.")
        return canon

    def flag(self, key: str) -> bool:
        value = self.values.get(key)
        if value is None:
            return False
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        self.errors.append(f"{self.names[key]} must be true or false.")
        return False

    @property
    def error(self) -> str | None:
        return "; ".join(self.errors) if self.errors else None


class RealeflowSim(Simulator):
    """Contacts, properties and the relations between them, behind HTTP Basic auth."""

    vendor = "realeflow"
    default_limit = (10, 1.0)

    def __init__(self, *, account_status: str = "Active", refuse_unknown: bool = False, **kwargs: Any):
        self.account_status = account_status
        self.refuse_unknown = refuse_unknown
        super().__init__(**kwargs)

    # ---- store -----------------------------------------------------------------

    def seed_data(self) -> None:
        self._ids = random.Random(self.seed * 7 + 1)
        self._contacts: dict[int, dict[str, Any]] = {}
        self._contact_types: dict[int, list[str]] = {}
        self._contact_guid: dict[str, int] = {}
        self._contact_order: list[int] = []
        self._properties: dict[int, dict[str, Any]] = {}
        self._property_guid: dict[str, int] = {}
        self._property_order: list[int] = []
        self._relations: dict[tuple[int, int], dict[str, Any]] = {}
        self._next_contact, self._next_property, self._next_relation = 335001, 1113001, 5001
        by_uid: dict[int, int] = {}
        for p in self.seed_people:
            home = p.addresses[0] if p.addresses else None
            by_uid[p.uid] = self._add_contact({
                "fullName": p.full_name, "email": p.email, "companyName": p.company or None,
                "phone": p.phone, "phoneType": "Mobile" if p.phone else None,
                "source": p.source, "address": home.street if home else None,
                "city": (home.city or None) if home else None, "state": home.state if home else None,
                "zipCode": home.zip if home else None, "customFields": None, "tags": list(p.tags),
            }, [], p.created_at)
        for prop in self.seed_properties:
            pid = self._add_property({
                "address": prop.street, "city": prop.city, "state": prop.state, "zipCode": prop.zip,
                "source": None, "customFields": None, "tags": list(prop.tags)},
                self.seed_people[prop.owner_uid - 1].created_at if prop.owner_uid else None)
            if prop.owner_uid in by_uid:
                flags = {f: f in ("IsOwner", "IsPrimaryContact") for f in RELATION_FLAGS}
                self._relate(pid, by_uid[prop.owner_uid], flags)

    def _guid(self) -> str:
        return str(uuid.UUID(int=self._ids.getrandbits(128), version=4))

    def _add_contact(self, fields: dict[str, Any], types: list[str], created: datetime | None) -> int:
        cid, self._next_contact = self._next_contact, self._next_contact + 1
        guid = self._guid()
        phone_type = fields.pop("phoneType")
        row = {"id": guid, "contactId": cid, "fullName": fields["fullName"], "email": fields["email"],
               "companyName": fields["companyName"], "phone": fields["phone"], "phoneType": phone_type,
               "mobilePhoneDigits": mobile_digits(fields["phone"]) if phone_type == "Mobile" else None,
               "fax": None, "source": fields["source"], "address": fields["address"],
               "city": fields["city"], "state": fields["state"], "zipCode": fields["zipCode"],
               "created": net_time(created or datetime.now(timezone.utc)),
               "customFields": fields["customFields"], "tags": fields["tags"]}
        self._contacts[cid] = row
        self._contact_types[cid] = types
        self._contact_guid[guid] = cid
        self._contact_order.append(cid)
        return cid

    def _add_property(self, fields: dict[str, Any], created: datetime | None) -> int:
        pid, self._next_property = self._next_property, self._next_property + 1
        guid = self._guid()
        row = {"id": guid, "propertyId": pid, "address": fields["address"], "city": fields["city"],
               "state": fields["state"], "zipCode": fields["zipCode"], "source": fields["source"],
               "created": net_time(created or datetime.now(timezone.utc)),
               "customFields": fields["customFields"], "tags": fields["tags"]}
        self._properties[pid] = row
        self._property_guid[guid] = pid
        self._property_order.append(pid)
        return pid

    def _relate(self, pid: int, cid: int, flags: dict[str, bool]) -> int:
        rel = self._relations.get((pid, cid))
        if rel is None:
            rel = {"Id": self._next_relation, "PropertyId": self._properties[pid]["id"],
                   "ContactId": self._contacts[cid]["id"]}
            self._next_relation += 1
            self._relations[(pid, cid)] = rel
        rel.update(flags)
        return rel["Id"]

    # ---- framework hooks ---------------------------------------------------------

    def credentials(self) -> dict[str, str]:
        return {"REALEFLOW_API_KEY": f"rf-sandbox-{self.seed:04d}-9f3c61d2a8"}

    def authenticate(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        key = self.credentials()["REALEFLOW_API_KEY"]
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        user, colon, password = decoded.partition(":")
        if scheme.lower() != "basic" or not colon or password or user != key:
            raise Unauthorized(json_response(
                {"Message": "Authorization has been denied for this request."}, 401,
                {"WWW-Authenticate": 'Basic realm="api.realeflow.com"'}))
        return key

    def rate_limited_response(self, retry_after: float) -> web.Response:
        return json_response({"Message": "API rate limit exceeded. Try again later."}, 429,
                             {"Retry-After": str(max(1, math.ceil(retry_after)))})

    def error_response(self, status: int) -> web.Response:
        return json_response({"Message": "An error has occurred."}, status)

    def inspect_records(self, kind: str) -> list[dict[str, Any]]:
        if kind == "contacts":
            return [{**self._contacts[c], "type": self._contact_types[c]} for c in self._contact_order]
        if kind == "properties":
            return [dict(self._properties[p]) for p in self._property_order]
        if kind == "relations":
            return [dict(r) for r in self._relations.values()]
        raise KeyError(kind)

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/api/account/status", self._h_status),
                web.post("/api/contact/create", self._writes(self._h_contact_create)),
                web.get("/api/contact/list", self._h_contact_list),
                web.post("/api/contact/propertyrelation", self._writes(self._h_relation)),
                web.post("/api/property/create", self._writes(self._h_property_create)),
                web.get("/api/property/list", self._h_property_list)]

    # ---- handlers ----------------------------------------------------------------

    def _writes(self, handler: Callable[[dict[str, Any]], web.Response]):
        """Account gate, media type and JSON parsing shared by the three writes."""
        async def wrapped(request: web.Request) -> web.Response:
            if self.account_status != "Active":
                return json_response({"Message": "Account is not active."}, 403)
            if request.content_type != "application/json":
                return json_response({"Message": f"The request entity's media type "
                                      f"'{request.content_type}' is not supported for this resource."}, 415)
            raw = await request.read()
            try:
                body = orjson.loads(raw) if raw.strip() else None
            except orjson.JSONDecodeError:
                return result(False, error="The request body is not valid JSON.")
            if not isinstance(body, dict):
                return result(False, error="The request body must be a JSON object.")
            return handler(body)
        return wrapped

    async def _h_status(self, request: web.Request) -> web.Response:
        return json_response({"AccountStatus": self.account_status})

    def _h_contact_create(self, body: dict[str, Any]) -> web.Response:
        f = Fields(body, CONTACT_FIELDS, self.refuse_unknown)
        full_name = f.text("fullname", required=True)
        email = f.text("email")
        if email is not None:
            try:
                validate_email(email, check_deliverability=False)
            except EmailNotValidError:
                f.errors.append("Email is not a valid e-mail address.")
        phone = f.text("phone")
        phone_type = f.choice("phonetype", PHONE_TYPES) or "Mobile"
        types = f.string_list("type") or []
        canon_types: list[str] = []
        for t in types:
            c = CONTACT_TYPES.get(t.lower())
            if c is None:
                f.errors.append(f"Type '{t}' is not one of Buyer, Seller.")
            elif c not in canon_types:
                canon_types.append(c)
        fields = {"fullName": full_name, "email": email, "companyName": f.text("companyname"),
                  "phone": phone, "phoneType": phone_type if phone else None,
                  "source": f.text("source"), "address": f.text("address"), "city": f.text("city"),
                  "state": f.state(), "zipCode": f.zipcode(), "tags": f.string_list("tags") or [],
                  "customFields": f.string_list("customfields", True, MAX_CUSTOM_FIELDS)}
        if f.error:
            return result(False, error=f.error)
        cid = self._add_contact(fields, canon_types, None)
        self.count_create(email.lower() if email else phone)
        return result(True, cid)

    def _h_property_create(self, body: dict[str, Any]) -> web.Response:
        f = Fields(body, PROPERTY_FIELDS, self.refuse_unknown)
        fields = {"address": f.text("address", required=True), "city": f.text("city"),
                  "state": f.state(), "zipCode": f.zipcode(), "source": f.text("source"),
                  "tags": f.string_list("tags") or [],
                  "customFields": f.string_list("customfields", True, MAX_CUSTOM_FIELDS)}
        if f.error:
            return result(False, error=f.error)
        return result(True, self._add_property(fields, None))

    def _resolve(self, f: Fields, key: str, by_guid: dict[str, int], what: str) -> int | None:
        """A relation side: its GUID only (the doc's sample), never the integer id."""
        value = f.values.get(key)
        name = f.names[key]
        if value is None or value == "":
            f.errors.append(f"{name} is required.")
            return None
        try:
            guid = str(uuid.UUID(value.strip())) if isinstance(value, str) else None
        except ValueError:
            guid = None
        if guid is None:
            f.errors.append(f"{name} is not a valid GUID.")
            return None
        found = by_guid.get(guid)
        if found is None:
            f.errors.append(f"{what} '{value.strip()}' was not found.")
        return found

    def _h_relation(self, body: dict[str, Any]) -> web.Response:
        f = Fields(body, RELATION_FIELDS, self.refuse_unknown)
        pid = self._resolve(f, "propertyid", self._property_guid, "Property")
        cid = self._resolve(f, "contactid", self._contact_guid, "Contact")
        flags = {name: f.flag(name.lower()) for name in RELATION_FLAGS}
        if f.error or pid is None or cid is None:
            return result(False, error=f.error)
        return result(True, self._relate(pid, cid, flags))

    async def _h_contact_list(self, request: web.Request) -> web.Response:
        newest = self._contact_order[-LIST_SIZE:][::-1]
        return json_response([self._contacts[c] for c in newest])

    async def _h_property_list(self, request: web.Request) -> web.Response:
        newest = self._property_order[-LIST_SIZE:][::-1]
        return json_response([self._properties[p] for p in newest])
