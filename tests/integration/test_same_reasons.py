"""`validate` refuses dirty records with the same reasons the vendor's server gives."""
import pytest

from migrator.connectors.base import Context
from migrator.connectors.brokerkit import Brokerkit
from migrator.connectors.realeflow import Realeflow
from migrator.errors import RecordError
from migrator.sandbox.server import Sandbox, make

BROKERKIT_DIRTY = [
    {"first_name": "A", "phone": "+1555000"},                  # bad phone
    {"first_name": "B", "email": "not-an-email"},              # bad e-mail
    {"first_name": "C", "email": "c@example.com", "rating": 3},
    {"first_name": "D", "email": "d@example.com", "rating": 11},
    {"first_name": "E", "email": "e@example.com", "status": "hot"},
    {"first_name": "F", "email": "f@example.com", "birthday": "31/02/1980"},
]
REALEFLOW_DIRTY = [
    {"Email": "a@example.com"},                                # missing FullName
    {"FullName": "B", "State": "Ohio"},
    {"FullName": "C", "ZipCode": "4411"},
    {"FullName": "D", "Email": "nope"},
]


async def _server_reasons(connector, stream: str, records: list[dict]) -> list[str]:
    out = []
    await connector.open()
    try:
        for r in records:
            try:
                await connector.write(stream, dict(r), source_id="x")
            except RecordError as e:
                out.append(e.reason)
            else:
                out.append("")
    finally:
        await connector.close()
    return out


# Brokerkit names the field in its message; Realeflow's message is the sentence alone.
@pytest.mark.parametrize(("vendor", "cls", "stream", "dirty", "shown"), [
    ("brokerkit", Brokerkit, "leads", BROKERKIT_DIRTY, lambda v: f"{v.field}: {v.message}"),
    ("realeflow", Realeflow, "contacts", REALEFLOW_DIRTY, lambda v: v.message),
])
async def test_local_and_server_reasons_agree(vendor, cls, stream, dirty, shown):
    sim = make(vendor, limit=None)
    async with Sandbox({vendor: sim}):
        key = sim.credentials()[f"{vendor.upper()}_API_KEY"]
        c = cls({"system": vendor, "api_key": key, "base_url": sim.base_url}, Context(role="target"))
        server = await _server_reasons(c, stream, dirty)
    schema = cls.schemas()[stream]
    for record, said in zip(dirty, server):
        local = schema.validate(record)
        assert local and said, (record, local, said)
        for v in local:
            assert shown(v) in said, (record, v, said)
