"""`validate` refuses dirty records with the same reasons the vendor's server gives."""
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


async def test_brokerkit_local_and_server_reasons_agree():
    sim = make("brokerkit", limit=None)
    async with Sandbox({"brokerkit": sim}):
        key = sim.credentials()["BROKERKIT_API_KEY"]
        c = Brokerkit({"system": "brokerkit", "api_key": key, "base_url": sim.base_url}, Context(role="target"))
        server = await _server_reasons(c, "leads", BROKERKIT_DIRTY)
    schema = Brokerkit.schemas()["leads"]
    for record, said in zip(BROKERKIT_DIRTY, server):
        local = schema.validate(record)
        assert local and said, (record, local, said)
        for v in local:
            assert f"{v.field}: {v.message}" in said, (record, v, said)


async def test_realeflow_local_and_server_reasons_agree():
    sim = make("realeflow", limit=None)
    async with Sandbox({"realeflow": sim}):
        key = sim.credentials()["REALEFLOW_API_KEY"]
        c = Realeflow({"system": "realeflow", "api_key": key, "base_url": sim.base_url}, Context(role="target"))
        server = await _server_reasons(c, "contacts", REALEFLOW_DIRTY)
    schema = Realeflow.schemas()["contacts"]
    for record, said in zip(REALEFLOW_DIRTY, server):
        local = schema.validate(record)
        assert local and said, (record, local, said)
        for v in local:
            assert v.message in said, (record, v, said)
