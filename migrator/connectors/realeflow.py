"""Realeflow: contacts, properties and the relations between them.

Three things shape this module:

- a refused create still answers HTTP 200, with ``{"Successful": false, "Error": "..."}``,
  so every write reads the envelope — a client that trusts the status code loses records;
- custom fields are positional (``CustomFields[2]`` is the label "Custom 3"), so a mapping
  names them ``custom_3`` or by label (``custom.Motivation``, from the ``custom_fields``
  setting) and the array, with its null gaps, is built here;
- ``contact/list`` and ``property/list`` return only the 25 newest records, so as a source
  this connector says so loudly and points to the CSV export for a full migration;
- a create answers the record's integer ``Id``, but a relation names both sides by GUID
  (the doc's sample), and only the list rows show a record's GUID (``id``, beside
  ``contactId``/``propertyId``). So each created contact or property is read back from
  its list (``_GuidReader``): one list read serves every create answered before it, and
  creates in flight are bounded so the newest 25 still hold each when it is read. The
  target id kept in the checkpoint is the GUID — the one id Realeflow's API takes back;
  should a GUID not be found (other users' creates pushed it out of the 25, or the list
  read failed), the integer id is kept, nothing is created twice, and a relation to that
  record fails saying why.

Realeflow has no natural-key lookup and no dedup, so creates are sent as non-idempotent
writes. A create whose answer is lost is settled from the same lists: every read made
while it holds its slot is searched for its name, e-mail and phone (its address, for a
property) — found, it is done with that record; absent, sent again; only two matching
records, or a list that could not be read, leave it to the engine's ``on_uncertain``.
After a crash, the creates left in flight are settled the same way from one read made
before the run writes anything (``settler``); the writers of a stream are bounded to the
read-back slots, so the newest 25 still show every create a crash can cut off.
"""
from __future__ import annotations

import base64
import uuid
from collections import Counter
from typing import Any, AsyncIterator, Mapping

import anyio

from ..errors import (AccountError, ConnectError, JobError, MappingError, MigratorError, QuotaExhausted, RecordError,
                      Retryable, UncertainWrite)
from ..http import HttpClient, Response, StaticHeaderAuth, error_text
from ..limits import RateLimit
from ..protocols import Page, Record, StreamInfo, WriteResult
from ..schema import Field, StreamSchema
from . import settle
from .base import Connector, Context, ReadBack, Setting, WritePlanner

MAX_CUSTOM_FIELDS = 28
CUSTOM_PREFIX = "custom."
RELATION_FLAGS = ("IsOwner", "IsPrimaryContact", "IsRealtor", "IsOccupier", "IsInterested",
                  "IsTitleEscrowAgent", "IsAttorney", "IsInsuranceAgent", "IsInspector",
                  "IsLenderMtgBroker", "IsLossMitigator", "IsBpoAgent", "IsAppraiser",
                  "IsContractor", "IsTenant", "IsPropertyManager", "IsHoaContact",
                  "IsLienContact")

# Schema field (the doc's parameter table) -> body key (the doc's JSON samples).
CONTACT_KEYS = {"FullName": "fullname", "Email": "email", "CompanyName": "companyname",
                "Phone": "phone", "PhoneType": "phonetype", "Source": "source",
                "Address": "address", "City": "city", "State": "state", "ZipCode": "zipcode",
                "Type": "type", "Tags": "tags"}
PROPERTY_KEYS = {"Address": "address", "City": "city", "State": "state", "ZipCode": "zipcode",
                 "Source": "source", "Tags": "tags"}

CREATE_PATHS = {"contacts": "/api/contact/create", "properties": "/api/property/create",
                "relations": "/api/contact/propertyrelation"}
LIST_PATHS = {"contacts": ("/api/contact/list", "contactId"),
              "properties": ("/api/property/list", "propertyId")}
LIST_SIZE = 25      # the newest records contact/list and property/list return
READBACK_SLOTS = 20  # creates in flight per stream: the 25 must still hold each when read
# back; the 5 spare cover other users' creates and answers lost in transit.
# Where a record's match key is, per stream: the mapped record, the create's body, a list row.
# Contacts: name, e-mail, phone; properties: address, city, state, zip.
RECORD_NAMES = {"contacts": (("FullName",), ("Email",), ("Phone",)),
                "properties": (("Address",), ("City",), ("State",), ("ZipCode",))}
BODY_NAMES = {"contacts": (("fullname",), ("email",), ("phone",)),
              "properties": (("address",), ("city",), ("state",), ("zipcode",))}
ROW_NAMES = {"contacts": (("fullName",), ("email",), ("phone", "mobilePhoneDigits")),
             "properties": (("address",), ("city",), ("state",), ("zipCode",))}
NOTICE = ("Realeflow's API returns only the 25 newest {stream}; for a full migration export a "
          "CSV from Realeflow's UI and use system: csv with mappings/realeflow-csv-to-<target>.yaml")


def _custom_fields() -> list[Field]:
    return [Field(f"custom_{n}", description=f"Realeflow label Custom {n} (CustomFields[{n - 1}])")
            for n in range(1, MAX_CUSTOM_FIELDS + 1)]


def _address_fields() -> list[Field]:
    return [Field("City"),
            Field("State", format="state2", description="two-letter state abbreviation",
                  messages=(("*", "State must be a two-letter U.S. state abbreviation (e.g. OH)."),)),
            Field("ZipCode", format="zip5", description="five-digit U.S. zip code",
                  messages=(("*", "ZipCode must be a five-digit U.S. zip code."),)),
            Field("Source", description="Lead Source inside the Contacts CRM"),
            Field("Tags", type="list", description="used for filtering")]


def _build_schemas() -> dict[str, StreamSchema]:
    contacts = StreamSchema("contacts", [
        # Realeflow's own words for a refusal (its Error text), so `validate` says the same.
        Field("FullName", required=True, messages=(("required", "FullName is required."),)),
        Field("Email", format="email", messages=(("format:email", "Email is not a valid e-mail address."),)),
        Field("CompanyName"),
        Field("Phone"),
        Field("PhoneType", enum=("Mobile", "Work", "Home"), description="Realeflow defaults to Mobile"),
        Field("Address"),
        *_address_fields(),
        Field("Type", type="list", enum=("Buyer", "Seller"), description="contact types"),
        *_custom_fields(),
    ], open_prefixes=(CUSTOM_PREFIX,))
    properties = StreamSchema("properties", [
        Field("Address", required=True), *_address_fields(), *_custom_fields()])
    relations = StreamSchema("relations", [
        Field("PropertyId", required=True, description="the property's Realeflow GUID"),
        Field("ContactId", required=True, description="the contact's Realeflow GUID"),
        *(Field(flag, type="bool") for flag in RELATION_FLAGS)])
    return {"contacts": contacts, "properties": properties, "relations": relations}


SCHEMAS = _build_schemas()


class Realeflow(Connector):
    """Writes contacts, properties and relations; reads only the 25 newest of each."""

    updates_by_id = False   # no update by id in its API (delta runs leave migrated records as they are)
    system = "realeflow"
    title = "Realeflow"
    reads = "api"
    settings_spec = {
        "api_key": Setting("API key (Profile => Company Info); sent as the Basic user with a blank password",
                           required=True, secret=True, env="REALEFLOW_API_KEY"),
        "custom_fields": Setting("labels of Custom 1, Custom 2, … in order (null for an unused one), "
                                 "so a mapping may write custom.<label>"),
    }
    default_base_url = "https://api.realeflow.com"
    default_limit = RateLimit(5, 1.0)  # none published: conservative
    probe_request = ("GET", "/api/account/status", None, None)
    source_streams = ("contacts", "properties")
    notes = ("the API lists only the 25 newest contacts/properties: read a CSV export for a full "
             "migration; refusals come as HTTP 200 with Successful=false")

    def __init__(self, settings: Mapping[str, Any], ctx: Context):
        super().__init__(settings, ctx)
        self.labels = self._labels()
        self._custom_positions = {f"custom_{n}": n for n in range(1, MAX_CUSTOM_FIELDS + 1)}
        self._custom_positions.update({CUSTOM_PREFIX + label: n for label, n in self.labels.items()})
        key = str(self.setting("api_key"))
        basic = base64.b64encode(f"{key}:".encode()).decode()
        self.make_http(auth=StaticHeaderAuth({"Authorization": f"Basic {basic}"}, "REALEFLOW_API_KEY"),
                       classify=self._classify, headers={"Accept": "application/json"})
        slots = self.readback_slots()
        self._readers = {stream: _GuidReader(stream, path, id_key, slots)
                         for stream, (path, id_key) in LIST_PATHS.items()}

    def writers(self, stream: str, concurrency: int) -> int:
        """No more writers than read-back slots: a create sent but not yet marked done
        belongs to one writer, so a crash leaves at most this many in doubt — all still
        among the newest 25 for ``settler`` to find."""
        return min(concurrency, self.readback_slots()) if stream in LIST_PATHS else concurrency

    async def settler(self, stream: str, since: float, known: Any) -> "_CrashSettler | None":
        """The creates a crash left in flight, settled from one read of the newest 25."""
        if stream not in LIST_PATHS:
            return None
        assert self.http is not None
        http = self.http

        async def read() -> Any:
            return (await http.request("GET", LIST_PATHS[stream][0], kind="list")).json()
        try:
            rows = await settle.read_again(read)
        except QuotaExhausted:
            raise
        except (Retryable, RecordError) as e:
            return _CrashSettler(stream, None, since, known, f"the {stream} list could not be read ({e})")
        return _CrashSettler(stream, rows if isinstance(rows, list) else [], since, known)

    def readback_slots(self) -> int:
        """How many creates of one stream may await their GUID at once (see ``_GuidReader``)."""
        return max(1, min(self.ctx.concurrency, READBACK_SLOTS))

    def _labels(self) -> dict[str, int]:
        raw = self.settings.get("custom_fields")
        if raw in (None, ""):
            return {}
        where = f"{self.ctx.where}: " if self.ctx.where else ""
        if not isinstance(raw, list) or not all(x is None or isinstance(x, str) for x in raw):
            raise JobError(f"{where}realeflow custom_fields must be a list of labels in position order")
        if len(raw) > MAX_CUSTOM_FIELDS:
            raise JobError(f"{where}realeflow custom_fields lists {len(raw)} labels; "
                           f"Realeflow has at most {MAX_CUSTOM_FIELDS}")
        labels: dict[str, int] = {}
        for n, label in enumerate(raw, 1):
            if not label:
                continue
            if label in labels:
                raise JobError(f"{where}realeflow custom_fields names {label!r} twice "
                               f"(Custom {labels[label]} and Custom {n})")
            labels[label] = n
        return labels

    @classmethod
    def schemas(cls) -> dict[str, StreamSchema]:
        return dict(SCHEMAS)

    @staticmethod
    def _classify(resp: Response) -> Exception | None:
        # The doc lists only 401 for credentials; a 403 means the account itself is barred.
        if resp.status == 403:
            why = error_text(resp)
            return AccountError(f"Realeflow refused the request (HTTP 403{': ' + why if why else ''}); "
                                "check that the account status is Active")
        return None

    # ---- source -----------------------------------------------------------------
    def _source_stream(self, stream: str) -> tuple[str, str]:
        try:
            return LIST_PATHS[stream]
        except KeyError:
            where = f"{self.ctx.where}: " if self.ctx.where else ""
            raise JobError(f"{where}realeflow can read {', '.join(LIST_PATHS)}, not {stream!r}") from None

    async def info(self, stream: str) -> StreamInfo:
        self._source_stream(stream)
        return StreamInfo(stream, notice=NOTICE.format(stream=stream))

    async def pages(self, stream: str, cursor: Any) -> AsyncIterator[Page]:
        """One page: the list endpoints have no paging, only the newest 25 rows."""
        path, id_key = self._source_stream(stream)
        assert self.http is not None
        resp = await self.http.request("GET", path, kind="page")
        rows = resp.json()
        if rows is None:
            rows = []
        if not isinstance(rows, list):
            raise ConnectError(f"realeflow: GET {path} answered {type(rows).__name__}, not a list of {stream}")
        records = []
        for n, row in enumerate(rows, 1):
            rid = row.get(id_key) if isinstance(row, dict) else None
            if rid is None:
                records.append(Record(f"row-{n}", None, error=f"{stream} row {n} has no {id_key}"))
            else:
                records.append(Record(str(rid), row))
        yield Page(records, cursor=None, total=len(records))

    # ---- the plan -----------------------------------------------------------------
    def plan_reads(self, stream: str, total: int | None) -> dict[str, int]:
        """One call per stream: the list endpoints have no paging."""
        return {"page": 1}

    def plan_pages(self, stream: str, total: int | None) -> int:
        return 1

    def plan_setup(self, role: str, streams: list[str]) -> dict[str, int]:
        """A writer checks the account status once before writing, and reads the newest
        25 of each stream it creates (what was there before: see ``_GuidReader``)."""
        if role != "target":
            return {}
        lists = sum(1 for s in streams if s in LIST_PATHS)
        return {"meta": 1, "list": lists} if lists else {"meta": 1}

    async def write_planner(self, stream: str, sm: Any) -> WritePlanner:
        return _CreatePlanner(self, stream)

    # ---- target -----------------------------------------------------------------
    async def prepare(self, streams: list[Any]) -> None:
        """Unknown custom labels fail before any request; a barred account before any write."""
        for sm in streams:
            self._check_custom_fields(sm)
        assert self.http is not None
        resp = await self.http.request("GET", "/api/account/status", kind="meta")
        body = resp.json()
        status = body.get("AccountStatus") if isinstance(body, dict) else None
        if status != "Active":
            raise AccountError(f"Realeflow account status is {status!r}: writes are refused until it is Active")
        for stream in dict.fromkeys(getattr(sm, "target_stream", None) for sm in streams):
            if stream in LIST_PATHS:
                await self._readers[stream].baseline(self.http)

    def _check_custom_fields(self, sm: Any) -> None:
        taken: dict[int, str] = {}
        fields = getattr(sm, "fields", {})
        for name, spec in fields.items():
            line = getattr(spec, "line", None)
            at = f"mapping line {line}: " if line else "mapping: "
            if name.startswith(CUSTOM_PREFIX) and name not in self._custom_positions:
                known = ", ".join(self.labels) or "none are set"
                raise MappingError(f"{at}realeflow {sm.target_stream} field {name!r} has no label "
                                   f"{name[len(CUSTOM_PREFIX):]!r} in the target's custom_fields "
                                   f"setting (labels: {known})")
            pos = self._custom_positions.get(name)
            if pos is None:
                continue
            if pos in taken:
                raise MappingError(f"{at}realeflow {sm.target_stream} writes Custom {pos} twice: "
                                   f"{taken[pos]!r} and {name!r}")
            taken[pos] = name

    async def write(self, stream: str, record: dict[str, Any], *, source_id: str,
                    target_id: str | None = None) -> WriteResult:
        assert self.http is not None
        if stream == "relations":
            body = self._relation_body(record)
            resp = await self.http.request("POST", CREATE_PATHS[stream], json=body, kind="relation", write=True)
            return WriteResult(target_id=self._created_id(stream, resp), action="created",
                               requests={"relation": 1})
        if stream not in LIST_PATHS:
            raise JobError(f"realeflow cannot write {stream!r}; it takes {', '.join(SCHEMAS)}")
        body = self._fields_body(stream, record, CONTACT_KEYS if stream == "contacts" else PROPERTY_KEYS)
        reader = self._readers[stream]
        key = match_key(stream, body, BODY_NAMES)
        creates = lists = 0
        async with reader.slots:
            reader.sending[key] += 1
            try:
                for attempt in range(3):
                    mark = reader.begin()
                    creates += 1
                    try:
                        resp = await self.http.request("POST", CREATE_PATHS[stream], json=body, kind="create",
                                                       write=True)
                        rid = self._created_id(stream, resp)
                    except UncertainWrite as e:
                        settled, reads = await reader.settle_lost(self.http, key, mark)
                        lists += reads
                        self.settled["landed" if settled.found else "not_landed" if settled.decided
                                     else "undecided"] += 1
                        if settled.found:
                            return WriteResult(target_id=str(settled.target_id), action="created",
                                               requests={"create": creates, "list": lists})
                        if not settled.decided or attempt == 2:
                            raise UncertainWrite(f"{e}; {settled.why or 'sent three times'}") from None
                        continue   # the list shows it never landed: send it again
                    finally:
                        reader.end(mark)
                    if rid.isdigit():
                        reader.ours.add(int(rid))
                    guid, reads = await reader.guid(self.http, int(rid)) if rid.isdigit() else (None, 0)
                    return WriteResult(target_id=guid or rid, action="created",
                                       requests={"create": creates, "list": lists + reads})
            finally:
                reader.sending[key] -= 1
        raise AssertionError("unreachable")

    # ---- verify: only the newest 25 can be read back ---------------------------------------
    # Types are not in a list row; PhoneType is kept in Realeflow's case; tags and custom
    # fields come back as lists.
    verify_rules = {"contacts": {"Email": "casefold", "PhoneType": "casefold", "Type": "skip", "Tags": "list"},
                    "properties": {"Tags": "list"}}

    async def plan_read_back(self, stream: str, records: int) -> ReadBack:
        """One list read: the newest 25 are all the API shows (``partial``: a record of the
        job not among them is unchecked, never missing)."""
        if stream not in LIST_PATHS:
            return ReadBack("none", {}, f"Realeflow has no way to read {stream} back")
        return ReadBack("list", {"page": 1},
                        f"Realeflow lists only its {LIST_SIZE} newest {stream}: verify checks those of this "
                        f"job's {records:,} among them and counts the rest unchecked", partial=True)

    async def read_back(self, stream: str, ids: list[str], how: ReadBack,
                        fields: frozenset[str]) -> AsyncIterator[tuple[str, dict[str, Any] | None]]:
        """The newest 25 rows, each once: under its GUID, or under its integer id when the
        job holds the record by that (its GUID was not read back after its create)."""
        assert self.http is not None
        path, id_key = LIST_PATHS[stream]
        rows = (await self.http.request("GET", path, kind="page")).json()
        keys = CONTACT_KEYS if stream == "contacts" else PROPERTY_KEYS
        asked = set(ids)
        for row in rows if isinstance(rows, list) else ():
            if not isinstance(row, dict):
                continue
            folded = {k.casefold(): v for k, v in row.items()}
            held = {name: folded.get(key.casefold()) for name, key in keys.items()}
            custom = folded.get("customfields")
            custom = custom if isinstance(custom, list) else []
            for name, pos in self._custom_positions.items():
                held[name] = custom[pos - 1] if pos <= len(custom) else None
            guid, rid = str(row.get("id") or ""), str(row.get(id_key) or "")
            tid = rid if rid and guid not in asked and rid in asked else guid or rid
            if tid:
                yield tid, held

    def _fields_body(self, stream: str, record: Mapping[str, Any], keys: dict[str, str]) -> dict[str, Any]:
        body: dict[str, Any] = {}
        custom: dict[int, Any] = {}
        for name, value in record.items():
            if value is None or value == "" or value == []:
                continue
            key = keys.get(name)
            if key is not None:
                body[key] = value
                continue
            pos = self._custom_positions.get(name)
            if pos is None:
                raise RecordError(f"{name} is not a field of Realeflow {stream}", field=name, rule="unknown")
            if pos in custom and custom[pos] != value:
                raise RecordError(f"Custom {pos} is given twice with different values", field=name,
                                  rule="conflict")
            custom[pos] = value
        if custom:
            body["customfields"] = [custom.get(n) for n in range(1, max(custom) + 1)]
        return body

    @staticmethod
    def _relation_body(record: Mapping[str, Any]) -> dict[str, Any]:
        """Both sides by GUID, and every flag as the strings "true" and "false" — the doc's
        sample. An integer id (a record whose GUID could not be read back) fails here,
        saying why, rather than as Realeflow's bare "not a valid GUID"."""
        body: dict[str, Any] = {}
        for name, what in (("PropertyId", "property"), ("ContactId", "contact")):
            value = _text(record.get(name))
            if not _is_guid(value):
                hint = (f" (Realeflow {what} {value} was created, but its GUID was not among the "
                        f"{LIST_SIZE} newest {what.replace('y', 'ie')}s when read back; relate it by hand)"
                        if isinstance(value, str) and value.strip().isdigit() else "")
                raise RecordError(f"{name} must be the {what}'s Realeflow GUID, not {value!r}{hint}",
                                  field=name, rule="guid")
            body[name] = value
        for flag in RELATION_FLAGS:
            value = record.get(flag)
            if isinstance(value, str) and value.strip():
                body[flag] = value.strip().lower()
            else:
                body[flag] = "true" if value is True else "false"
        return body

    def _created_id(self, stream: str, resp: Response) -> str:
        body = resp.json()
        if not isinstance(body, dict) or "Successful" not in body:
            raise UncertainWrite(f"realeflow answered {stream} create without its Successful/Id envelope")
        if body.get("Successful") is not True:
            reason = str(body.get("Error") or "Realeflow refused the record without saying why")
            raise RecordError(reason, field=_error_field(stream, reason), status=resp.status)
        rid = body.get("Id")
        if rid in (None, "", 0):
            raise UncertainWrite(f"realeflow said the {stream} create succeeded but gave no Id")
        return str(rid)


class _CreatePlanner(WritePlanner):
    """One create (or relation) call per record; a record whose body cannot be built
    (a custom field given twice with different values) fails before any request."""

    def __init__(self, conn: Realeflow, stream: str):
        dedup = "Realeflow has no lookup and does not dedup: every record is created"
        if stream in LIST_PATHS:
            dedup += (f"; at most {conn.readback_slots()} creates in flight, so the newest {LIST_SIZE} "
                      f"show every create a crash or a lost answer leaves in doubt, and each is settled "
                      f"from that list (by name, e-mail and phone; a property by its address)")
        self.batch = conn.readback_slots()
        if stream in LIST_PATHS:
            path = LIST_PATHS[stream][0].removeprefix("/api/")
            dedup += (f"; a create answers an integer Id but relations take GUIDs, so each GUID is read "
                      f"back from {path} (the {LIST_SIZE} newest): a read serves every create answered "
                      f"before it went out, up to the {self.batch} let in flight — planned as one read "
                      f"per {self.batch} creates (what a run over a real network spends); at most one "
                      f"per create")
        super().__init__(dedup=dedup)
        self.conn, self.stream = conn, stream

    def add(self, record: dict[str, Any]) -> None:
        if self.stream == "relations":
            self.counts["relation"] += 1
            return
        keys = CONTACT_KEYS if self.stream == "contacts" else PROPERTY_KEYS
        try:
            self.conn._fields_body(self.stream, record, keys)
        except RecordError:
            return
        self.counts["create"] += 1

    def requests(self) -> dict[str, int]:
        """The list reads: while one is out, the other writers' creates are answered and
        wait for the next, so with network latency a read serves nearly every slot
        (measured: 200 creates, 8 slots, 20 ms → 26 reads; 100 creates at 20/s → 13)."""
        out = dict(self.counts)
        if self.stream in LIST_PATHS and out.get("create"):
            out["list"] = -(-out["create"] // self.batch)
        return out


class _GuidReader:
    """Reads the GUIDs of records this run just created back from their 25-newest list.

    A writer holds one of ``slots`` from before its create until its GUID is known, and
    one list read at a time is made (``lock``): a writer that waited for the lock finds its
    GUID already read when its create was answered before the read went out, so one read
    serves many creates. The newest 25 hold every record still waiting: a record created
    after ours and before the read that finds ours either still holds a slot or was
    itself found by an earlier read — which would have found ours too.

    The same reads settle a create whose answer was lost: it keeps its slot, so by that
    argument the first read after it landed shows it. Every read notes the rows above the
    previous read's newest (created since); a lost create is found among the rows noted
    since it was sent (``begin``), by its match key, less the records this run's creates
    were answered with. A read that no longer shows the previous read's newest row leaves
    a gap (more than 25 created between: other users): a create sent before it cannot be
    said absent.
    """

    def __init__(self, stream: str, path: str, id_key: str, slots: int):
        self.stream, self.path, self.id_key = stream, path, id_key
        self.slots = anyio.Semaphore(slots)
        self.lock = anyio.Lock()
        self.waiting: set[int] = set()
        self.found: dict[int, str] = {}
        self.reads = 0                         # list reads started
        self.top: int | None = None            # the newest row of the last read (-1: the list was empty)
        self.gaps: list[int] = []              # reads that may have missed rows created before them
        self.seen: dict[int, tuple[int, tuple, Any]] = {}   # new row -> (read, match key, GUID)
        self.marks: Counter[int] = Counter()   # reads started when each create in flight was sent
        self.ours: set[int] = set()            # ids this run's creates were answered with
        self.sending: Counter[tuple] = Counter()   # match keys of the creates in flight

    async def baseline(self, http: HttpClient) -> None:
        """What the list shows before this run creates anything."""
        async with self.lock:
            await self._read(http)

    def begin(self) -> int:
        """A create is about to be sent: the reads since now are the ones to search."""
        self.marks[self.reads] += 1
        return self.reads

    def end(self, mark: int) -> None:
        self.marks[mark] -= 1
        if self.marks[mark] <= 0:
            del self.marks[mark]

    async def settle_lost(self, http: HttpClient, key: tuple, mark: int) -> tuple[settle.Settled, int]:
        """Whether a create sent at ``mark`` whose answer was lost landed, and the reads spent."""
        async with self.lock:
            ok = await self._read(http)
        if not ok:
            return settle.undecided(f"the {self.stream} list could not be read to settle it"), 1
        if any(g > mark for g in self.gaps):
            return settle.undecided(f"more than {LIST_SIZE} {self.stream} were created meanwhile, "
                                    "so the newest-25 list may no longer show it"), 1
        if self.sending[key] > 1:
            return settle.undecided(f"another {self.stream[:-1]} with the same "
                                    f"{'name, e-mail and phone' if self.stream == 'contacts' else 'address'} "
                                    "was being created at the same time"), 1
        result = settle.one_match(str(rid) for rid, (at, k, _) in self.seen.items()
                                  if at >= mark and k == key and rid not in self.ours)
        if not result.found:
            return result, 1
        rid = int(str(result.target_id))
        self.ours.add(rid)
        guid = self.seen[rid][2]
        return settle.Settled(True, guid if _is_guid(guid) else str(rid)), 1

    async def guid(self, http: HttpClient, rid: int) -> tuple[str | None, int]:
        """The GUID of record ``rid`` (None if the list no longer shows it, or cannot be
        read: the caller keeps the integer id), and how many list reads this call made."""
        self.waiting.add(rid)
        reads = 0
        try:
            if rid not in self.found:
                async with self.lock:
                    if rid not in self.found:
                        reads = 1
                        await self._read(http)
            return self.found.pop(rid, None), reads
        finally:
            self.waiting.discard(rid)
            self.found.pop(rid, None)

    async def _read(self, http: HttpClient) -> bool:
        """One read of the newest 25 (under ``lock``); False if it could not be read."""
        self.reads += 1
        at = self.reads
        async def read() -> Any:
            return (await http.request("GET", self.path, kind="list")).json()
        try:
            rows = await settle.read_again(read)
        except MigratorError:
            return False  # the create stands: the caller keeps its integer id rather than send it again
        rows = [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []
        previous = self.top
        ids = [r.get(self.id_key) for r in rows]
        if previous is None or (previous != -1 and previous not in ids):
            self.gaps.append(at)   # no earlier read, or one whose newest row fell out of the 25
        new = True
        for row, rid in zip(rows, ids):
            guid = row.get("id")
            if rid in self.waiting and _is_guid(guid):
                self.found[rid] = guid
            if rid == previous:
                new = False
            if new and previous is not None and isinstance(rid, int) and rid not in self.seen:
                self.seen[rid] = (at, match_key(self.stream, row, ROW_NAMES), guid)
        self.top = ids[0] if ids and isinstance(ids[0], int) else (-1 if not ids else previous)
        oldest = min(self.marks, default=self.reads)
        if self.seen and min(a for a, _, _ in self.seen.values()) < oldest:
            self.seen = {rid: v for rid, v in self.seen.items() if v[0] >= oldest}
        return True


class _CrashSettler:
    """Settles the creates a crash left in flight from one read of the newest 25, made
    before the resumed run writes anything. Found (by match key, among rows no record
    of the job is done with) → done with its GUID; not found → absent when the list
    reaches back past their send — it holds fewer than 25, or a record the job marked
    done before they were sent — and undecided otherwise (others created 25 meanwhile)."""

    def __init__(self, stream: str, rows: list[Any] | None, since: float, known: Any, why: str = ""):
        self.stream, self.since, self.known, self.why = stream, since, known, why
        self.rows = None if rows is None else [r for r in rows if isinstance(r, dict)]
        self.id_key = LIST_PATHS[stream][1]
        self.claimed: set[str] = set()
        self.covers: bool | None = None
        self.lock = anyio.Lock()

    @staticmethod
    def _ids(row: dict[str, Any], id_key: str) -> list[str]:
        return [str(v) for v in (row.get("id"), row.get(id_key)) if v not in (None, "")]

    async def settle(self, record: Mapping[str, Any], sent: float) -> settle.Settled:
        if self.rows is None:
            return settle.undecided(self.why)
        async with self.lock:
            if self.covers is None:
                ids = [i for row in self.rows for i in self._ids(row, self.id_key)]
                done = await self.known(ids) if ids else {}
                self.claimed.update(done)
                self.covers = len(self.rows) < LIST_SIZE or any(t < self.since for t in done.values())
            key = match_key(self.stream, record, RECORD_NAMES)
            matches = [row for row in self.rows if match_key(self.stream, row, ROW_NAMES) == key
                       and not set(self._ids(row, self.id_key)) & self.claimed]
            result = settle.one_match(self._ids(row, self.id_key)[0] for row in matches)
            if result.found:
                row = matches[0]
                self.claimed.update(self._ids(row, self.id_key))
                guid = row.get("id")
                return settle.Settled(True, guid if _is_guid(guid) else str(row.get(self.id_key)))
            if result.decided and not self.covers:
                return settle.undecided(f"not among the newest {LIST_SIZE} {self.stream}, which no longer "
                                        "reach back to when it was sent (others were created since)")
            return result


def match_key(stream: str, data: Mapping[str, Any], names: dict[str, tuple[tuple[str, ...], ...]]) -> tuple:
    """Who a contact or property is, as the list shows it: name, e-mail and phone; an
    address, city, state and zip — normalised, so that what was sent and what the list
    holds compare equal."""
    def first(keys: tuple[str, ...]) -> Any:
        return next((data.get(k) for k in keys if data.get(k) not in (None, "")), None)
    parts = [first(keys) for keys in names[stream]]
    if stream == "contacts":
        return (settle.words(parts[0]), settle.email(parts[1]), settle.phone(parts[2]))
    zipcode = "".join(c for c in str(parts[3] or "") if c.isdigit())[:5]
    return (settle.words(parts[0]), settle.words(parts[1]), settle.words(parts[2]), zipcode)


def _is_guid(value: Any) -> bool:
    """A GUID as Realeflow parses one (surrounding spaces allowed, as in the doc's sample)."""
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value.strip())
    except ValueError:
        return False
    return True


def _text(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _error_field(stream: str, reason: str) -> str | None:
    """The field an ``Error`` text starts with ("State must be…", "Contact '9' was not found")."""
    words = reason.split(None, 1)
    if not words:
        return None
    first = words[0].strip(".,:;'\"").lower()
    names = {n.lower(): n for n in SCHEMAS[stream].fields}
    if stream == "relations":
        names.update({"contact": "ContactId", "property": "PropertyId"})
    return names.get(first)
