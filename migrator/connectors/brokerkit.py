"""Brokerkit: recruiting leads (or retention agents) through ``POST /v2/leads``.

The server upserts: a lead whose e-mail (any address the lead was ever sent) or agent_id
matches an existing one updates that lead instead of creating another. A create answers
201 with the lead; an update 204 with no body — no id. That is what makes writes safe to
repeat, and why this connector needs no lookup — and also why two source records can land
on one Brokerkit lead, which every ``matched`` result reports.

Since a 204 names no lead, the connector keeps in the checkpoint (``target_keys``) the
lead id of every lead this job created, under each key it sent (``email=…``,
``agent_id=…``) and under the source record (``source=…``), committed before the write
returns. A 204 then resolves as the server matched: the e-mail's lead, else the
agent_id's. A 204 for this very record (sent again on resume because a kill took its
``done``) is its own create. A lead this job cannot name by id is named by the key that
matched it: ``email:<address>`` (the lead holds that address from then on, so it names
one lead for good), else ``agent_id:<id>``; later records with that key get the same
name. That is a lead held before the job, or one whose create's answer was lost (the
resend's 204 names nothing, and it is reported as a match: the connector cannot tell it
from a lead held before the job) or cut short (a create, by its 201). One reading stays
ambiguous: a 204 for a record whose e-mail this job never sent but whose agent_id it did
is given the agent_id's lead, though the server would have chosen a lead already holding
that e-mail, had there been one.

No read endpoint is documented, so Brokerkit cannot be a source: its CSV export is read
by the CSV connector with a shipped mapping. For the same reason ``on_merge: combine``
cannot read a lead back: it keeps in the checkpoint what it sent for each e-mail /
agent_id, and a later lead with that key is sent combined with it (phones into the free
phone fields, the notes appended, the rest as lines of the note), so the server's
overwrite receives the union. A lead that existed before the job is overwritten by the
server as sent — the report says so for each.

``test: true`` makes the server check a lead and save nothing; it must be the JSON
boolean (the doc's own sample sends strings elsewhere, and the string "true" saves the
lead for real), so booleans are always sent as JSON booleans.
"""
from __future__ import annotations

from typing import Any, AsyncIterator, Mapping

import orjson

from ..checkpoint import MemorySent
from ..errors import AuthError, JobError, RecordError, Retryable
from ..http import Response, StaticHeaderAuth, error_text
from ..limits import RateLimit
from ..protocols import Page, StreamInfo, WriteResult
from ..schema import AnyOf, Field, StreamSchema
from .base import Connector, Context, ReadBack, Setting, WritePlanner
from .combine import Slots, combine, slots_for_group
from .dedup import KeyLocks, KeyStore, MemoryKeys, keys_of, shown_key

LEADS_PATH = "/v2/leads"
UPSERT_KEYS = ("email", "agent_id")   # what the server matches a lead on, in order
NO_READS = ("brokerkit has no read API: export the leads as CSV from Brokerkit's UI and read them "
            "with system: csv and mappings/brokerkit-csv-to-<target>.yaml")


def _build_schema() -> StreamSchema:
    # Brokerkit's own words for a refused field (its 422 body), so `validate` says the same.
    NOT_IN_LIST = (("enum", "is not included in the list"),)

    def phone(name: str, label: str) -> Field:
        return Field(name, format="phone_e164", description=f"{label}; a valid phone number",
                     messages=(("format:phone_e164", "is an invalid number"),))

    def email(name: str, label: str) -> Field:
        return Field(name, format="email", description=label, messages=(("format:email", "is invalid"),))

    fields = [
        Field("first_name", description="Full Name (first)"),
        Field("last_name", description="Full Name (last)"),
        Field("birthday", type="date", format="date:%d/%m/%Y", description="DD/MM/YYYY",
              messages=(("format:date", "is invalid"),)),
        phone("phone", "Cell Phone"),
        phone("other_phone", "Other Phone"),
        phone("office_phone", "Office Phone"),
        email("email", "Email (Main); with agent_id, the key Brokerkit upserts on"),
        Field("agent_id", description="Agent ID; with email, the key Brokerkit upserts on"),
        Field("bucket", enum=("default", "backlog", "archived"), description="Normal/Archived",
              messages=NOT_IN_LIST),
        Field("status", enum=("new_lead", "contact_attempt", "contact_made", "appt_set",
                              "needs_evaluated", "onboarding", "active"), messages=NOT_IN_LIST),
        Field("note", description="Referrer Notes"),
        Field("source"),
        Field("currently_at", description="Company Name"),
        Field("alt_address", description="Home address"),
        Field("alt_city", description="Home City"),
        Field("alt_state", description="Home State"),
        Field("alt_zip", description="Home zip"),
        Field("office_address"),
        Field("office_city"),
        Field("office_state"),
        Field("office_zip"),
        Field("kpa_taken", type="bool", description="Personality Assessment Taken"),
        Field("active_listings_count", type="int", description="Active Listing"),
        Field("production_ytd", type="float", description="Total $ Production LTM"),
        Field("rating", type="int", minimum=4, maximum=10, description="an integer from 4 to 10",
              messages=(("minimum", "must be greater than or equal to 4"),
                        ("maximum", "must be less than or equal to 10"))),
        Field("production_label", enum=("mega", "super", "mid", "low", "new", "in_school",
                                        "not_licensed"), messages=NOT_IN_LIST),
        email("owner_email", "Owner"),
        email("referrer_email", "Referrer"),
    ]
    return StreamSchema("leads", fields, rules=(AnyOf(("first_name", "last_name", "email", "phone")),))


SCHEMAS = {"leads": _build_schema()}


class Brokerkit(Connector):
    """Writes leads; the server dedupes on email / agent_id, so there is no lookup."""

    updates_by_id = False   # no update by id in its API (delta runs leave migrated records as they are)
    system = "brokerkit"
    title = "Brokerkit"
    credentials_help = ("Brokerkit: Account Settings, then 'Copy to Clipboard' beside the API key of your team")
    dry_run_setting = "test_mode"
    reads = "export"
    settings_spec = {
        "api_key": Setting("team API key (Account Settings, \"Copy to Clipboard\")",
                           required=True, secret=True, env="BROKERKIT_API_KEY"),
        "product": Setting('"retention" creates agents in retention instead of recruiting leads'),
        "test_mode": Setting("send test: true with every lead: Brokerkit checks it and saves nothing",
                             default=False),
    }
    default_base_url = "https://api.getbrokerkit.com"
    default_limit = RateLimit(5, 1.0)  # none published: conservative
    # Its one endpoint, as the doc's dry run: checked, saved nowhere, nobody notified.
    probe_request = ("POST", LEADS_PATH, None, {"test": True, "first_name": "crm-migrator access check"})
    source_streams = ()
    notes = ("no read API: read a Brokerkit CSV export with system: csv; the server upserts leads "
             "on email or agent_id, so a repeated write updates instead of duplicating")
    # on_merge: combine — a second phone into the free phone fields, the rest into the note.
    merge_slots = Slots(second=slots_for_group(("phone", "other_phone", "office_phone")), note="note")

    def __init__(self, settings: Mapping[str, Any], ctx: Context):
        super().__init__(settings, ctx)
        where = f"{ctx.where}: " if ctx.where else ""
        self.product = self.setting("product") or None
        if self.product not in (None, "retention"):
            raise JobError(f"{where}brokerkit product must be \"retention\" or left out, not {self.product!r}")
        self.test_mode = _flag(self.setting("test_mode"), f"{where}brokerkit test_mode")
        key = str(self.setting("api_key"))
        self._locks = KeyLocks()
        self._sent: dict[str, Any] = {}   # stream -> what was sent per key (checkpoint or memory)
        self._ids: dict[str, KeyStore] = {}  # stream -> lead id per key sent (checkpoint or memory)
        self.make_http(auth=StaticHeaderAuth({"Authorization": f"Token token={key}"}, "BROKERKIT_API_KEY"),
                       classify=_classify, headers={"Content-Type": "application/json"})

    @classmethod
    def schemas(cls) -> dict[str, StreamSchema]:
        return dict(SCHEMAS)

    # ---- source -----------------------------------------------------------------
    async def info(self, stream: str) -> StreamInfo:
        raise JobError(NO_READS)

    def pages(self, stream: str, cursor: Any) -> AsyncIterator[Page]:
        raise JobError(NO_READS)

    # ---- the plan -----------------------------------------------------------------
    async def write_planner(self, stream: str, sm: Any) -> WritePlanner:
        return _UpsertPlanner()

    # ---- verify -----------------------------------------------------------------
    async def plan_read_back(self, stream: str, records: int) -> ReadBack:
        """No read endpoint: nothing can be read back, and verify says so rather than pass."""
        return ReadBack("none", {}, "Brokerkit has no read API: verify reads nothing back there and "
                                    "proves nothing (exit 1); check the leads in Brokerkit's UI or its "
                                    "CSV export")

    # ---- target -----------------------------------------------------------------
    async def prepare(self, streams: list[Any]) -> None:
        """The server upserts before anyone can ask: a lead that matches an earlier one
        always updates it, so ``on_merge`` skip or fail cannot be honoured."""
        if self.on_merge not in ("combine", "update"):
            raise JobError(f"brokerkit upserts leads on email, then agent_id, on its own side: a lead that "
                           f"matches an earlier one always updates it, so on_merge must be combine or update "
                           f"(not {self.on_merge}); every such merge is listed in the report")

    def _sent_records(self, stream: str) -> Any:
        if stream not in self._sent:
            self._sent[stream] = (self.checkpoint.sent_records(stream) if self.checkpoint is not None
                                  else MemorySent())
        return self._sent[stream]

    def _id_store(self, stream: str) -> KeyStore:
        if stream not in self._ids:
            self._ids[stream] = (self.checkpoint.key_index(stream) if self.checkpoint is not None
                                 else MemoryKeys())
        return self._ids[stream]

    async def write(self, stream: str, record: dict[str, Any], *, source_id: str,
                    target_id: str | None = None) -> WriteResult:
        """Create or update one lead.

        The target id is Brokerkit's lead id: from the answer of a create (201), else, for
        an update (204, no body), the id this job's create of that key answered (see the
        module's docstring), else the key the server matched on. In ``test_mode`` nothing
        is saved: the result's action is ``tested`` and its target id empty.
        """
        if stream not in SCHEMAS:
            raise JobError(f"brokerkit cannot write {stream!r}; it takes leads")
        keys = [k for _, k in keys_of(record, UPSERT_KEYS)]
        if self.test_mode or not keys:
            return self._result(await self._send(record), record, source_id)
        async with self._locks.hold(keys):   # two leads sharing a key: the second sees the first's id
            earlier = None
            placements: list[dict[str, Any]] = []
            if self.on_merge == "combine":
                earlier = await self._sent_records(stream).get(keys)
                if earlier is not None:
                    out = combine(earlier, record, self.merge_slots, source_id=source_id)
                    record, placements = out.record, [p.as_dict() for p in out.placements]
            result = await self._settle(stream, await self._send(record), record, source_id)
            if self.on_merge == "combine":
                if earlier is None and result.action == "matched":
                    placements = [{"field": "*", "value": None, "to": None, "how": "overwritten",
                                   "why": "the lead was in Brokerkit before this job (or its create's answer "
                                          "was lost) and Brokerkit cannot be read: its server overwrote the "
                                          "fields sent"}]
                result.placements = placements
                self._sent_records(stream).put([k for _, k in keys_of(record, UPSERT_KEYS)], record)
            return result

    async def _settle(self, stream: str, resp: Response, record: Mapping[str, Any],
                      source_id: str) -> WriteResult:
        """The result of a keyed write, its lead id found as the server matched (e-mail,
        then agent_id) when the answer carries none; what was learnt is kept."""
        keyed = keys_of(record, UPSERT_KEYS)
        keys = [k for _, k in keyed]
        own = f"source={source_id}"
        ids = self._id_store(stream)
        requests = {"create": 1}
        try:
            lead = resp.json()   # None for a 204; a 200 with the lead is not in the doc, but read
        except Retryable:        # cut short: the lead's id is lost with the answer
            lead = None
        lead_id = lead.get("id") if isinstance(lead, dict) else None
        if resp.status == 201:
            target_id = str(lead_id) if lead_id is not None else _surrogate(record, source_id)
            ids.add([(k, target_id) for k in (*keys, own)])
            await ids.flush()   # durable before the engine's done: a resend after a crash finds it
            return WriteResult(target_id=target_id, action="created", requests=requests)
        if lead_id is not None:
            result = WriteResult(target_id=str(lead_id), action="matched", matched_key=_matched_key(record),
                                 requests=requests)
        else:
            known = await ids.get([*keys, own])
            if own in known and known[own] in {known.get(k) for k in keys}:
                # this record's own create, sent again after a crash lost its done
                return WriteResult(target_id=known[own], action="created", requests=requests)
            name, key = next(((n, k) for n, k in keyed if k in known), keyed[0])
            result = WriteResult(target_id=known.get(key) or _surrogate(record, source_id), action="matched",
                                 matched_key=shown_key(name, record), requests=requests)
        ids.add([(k, result.target_id) for k in keys])
        return result

    async def _send(self, record: dict[str, Any]) -> Response:
        body: dict[str, Any] = {}
        if self.test_mode:
            body["test"] = True
        if self.product:
            body["product"] = self.product
        body.update((k, v) for k, v in record.items() if v is not None and v != "")
        # The server upserts on email / agent_id, so resending a lead that carries one
        # updates the same lead: a lost answer can simply be retried (write=False). A lead
        # with neither key would be created twice, so its outcome must stay uncertain.
        keyed = self.test_mode or bool(record.get("email") or record.get("agent_id"))
        assert self.http is not None
        return await self.http.request("POST", LEADS_PATH, json=body, kind="create", write=not keyed)

    def _result(self, resp: Response, record: Mapping[str, Any], source_id: str) -> WriteResult:
        """The result an answer carrying the lead (or test mode) gives."""
        requests = {"create": 1}
        lead = resp.json() if resp.status != 204 else None
        lead_id = lead.get("id") if isinstance(lead, dict) else None
        if self.test_mode and resp.status != 201:
            return WriteResult(target_id="", action="tested", requests=requests)
        target_id = str(lead_id) if lead_id is not None else _surrogate(record, source_id)
        if resp.status == 201:
            return WriteResult(target_id=target_id, action="created", requests=requests)
        return WriteResult(target_id=target_id, action="matched", matched_key=_matched_key(record),
                           requests=requests)


class _UpsertPlanner(WritePlanner):
    """One POST per lead, whatever happens on the server: it upserts on e-mail (then
    agent_id), so a lead sharing a key with an earlier one updates that lead."""

    def __init__(self) -> None:
        super().__init__()
        self._keys: set[str] = set()
        self.repeats = 0

    def add(self, record: dict[str, Any]) -> None:
        """As the server matches: a lead whose e-mail or agent_id an earlier one carried
        updates it, and the lead then holds every key it was sent."""
        self.counts["create"] += 1
        keys = {k for _, k in keys_of(record, UPSERT_KEYS)}
        if keys & self._keys:
            self.repeats += 1
        self._keys |= keys
        self.dedup = ("Brokerkit upserts on e-mail, then agent_id, so no lookup is needed; "
                      f"{self.repeats} leads share a key with an earlier one and will update it "
                      "(reported as merges; under on_merge: combine each is sent combined with what "
                      "this job sent for that key, but a lead Brokerkit held before the job cannot be "
                      "read, so the server overwrites it with what is sent)")


def _flag(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise JobError(f"{what} must be true or false, not {value!r}")


def _matched_key(record: Mapping[str, Any]) -> str | None:
    """The key the server matched on: it tries the e-mail first, then agent_id."""
    name = next((n for n in UPSERT_KEYS if record.get(n)), None)
    return shown_key(name, record) if name else None


def _surrogate(record: Mapping[str, Any], source_id: str) -> str:
    if record.get("email"):
        return f"email:{str(record['email']).strip().lower()}"
    if record.get("agent_id"):
        return f"agent_id:{record['agent_id']}"
    return f"source:{source_id}"


def _classify(resp: Response) -> Exception | None:
    if resp.status == 422:
        return _field_errors(resp)
    if resp.status == 403:
        return AuthError("Brokerkit refused the request (HTTP 403): the team behind BROKERKIT_API_KEY "
                         "lacks the permission (e.g. to create leads)")
    return None


def _field_errors(resp: Response) -> RecordError:
    """``{"email": ["is invalid"], "phone": ["is an invalid number"]}`` -> one reason."""
    try:
        body = resp.parsed()
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("errors"), dict):
        body = body["errors"]
    if not isinstance(body, dict) or not body:
        return RecordError(error_text(resp) or "HTTP 422", status=422)
    parts: list[str] = []
    first: str | None = None
    for name, messages in body.items():
        if isinstance(messages, (list, tuple)):
            text = ", ".join(str(m) for m in messages)
        else:
            text = str(messages)
        if name == "base":
            parts.append(text)
            continue
        parts.append(f"{name}: {text}")
        first = first or name
    return RecordError("; ".join(parts), field=first, status=422)
