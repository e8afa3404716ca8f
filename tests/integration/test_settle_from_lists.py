"""Where the target's own list cannot settle a write a crash left in flight, the job's
``on_uncertain`` decides and the report lists it; and a Realvolve contact found after a
crash gets only what its create had left undone.

The crash matrix (test_crash_matrix.py) proves the lists settle every write in flight
when nobody else writes; here another user of the Realeflow account creates 30
contacts between the kill and the resume, so the newest 25 no longer reach back.
"""
import sqlite3

import orjson

from migrator.sandbox.base import Faults
from tests.integration.harness import Pair, ThreadPair

N = 150


def test_realeflow_in_flight_writes_are_listed_when_others_filled_the_newest_25(tmp_path):
    source = {"faults": Faults(latency=0.03), "page_size": 50}
    with ThreadPair(tmp_path, "realvolve", "realeflow", n=N, concurrency=8, source_sim=source) as pair:
        assert pair.run_process("written:60").returncode == -9
        conn = sqlite3.connect(tmp_path / "ckpt.sqlite")
        in_flight = {s for (s,) in conn.execute("SELECT source_id FROM records WHERE stream='contacts' AND status='inflight'")}
        assert in_flight

        def another_user() -> None:
            sim = pair.target_sim
            for i in range(30):
                sim._add_contact({"fullName": f"Walk In {i}", "email": f"walkin{i}@example.com",
                                  "companyName": None, "phone": None, "phoneType": None, "source": None,
                                  "address": None, "city": None, "state": None, "zipCode": None,
                                  "tags": [], "customFields": None}, [], None)
        pair.call(another_user)
        final = pair.run_process()
        assert final.returncode in (0, 1) and "Traceback" not in final.stderr, final.stderr
        statuses = dict(conn.execute("SELECT status, count(*) FROM records WHERE stream='contacts' GROUP BY status"))
        assert set(statuses) <= {"done", "failed", "skipped"} and sum(statuses.values()) == N
        report = orjson.loads((tmp_path / "reports" / "realvolve-to-realeflow-run-report.json").read_bytes())
        listed = {u["source_id"] for u in report["uncertain"] if u["stream"] == "contacts"}
        # Every record the list could not settle is listed, none other; nothing is lost.
        assert listed == in_flight, (listed, in_flight)
        held = pair.call(pair.target_records)
        held_ids = {str(r["id"]) for r in held} | {str(r["contactId"]) for r in held}
        done = {t for (t,) in conn.execute("SELECT target_id FROM records WHERE stream='contacts' AND status='done'")}
        assert done <= held_ids
        assert len(done) + 30 <= len(held) <= len(done) + 30 + len(listed)


async def test_a_realvolve_contact_found_after_a_crash_gets_only_what_it_lacks(tmp_path):
    async with Pair(tmp_path, "csv", "realvolve", n=1) as pair:
        record = {"first_name": "Ann", "last_name": "Lee", "work_email": "ann@example.com",
                  "company": "Lee Homes", "notes": ["first", "second", "first"]}
        before, after = pair.job().connector("target"), pair.job().connector("target")
        await before.open()
        try:   # the crash came after the create and its first note
            created = await before.write("contacts", {**record, "company": None, "notes": ["first"]},
                                         source_id="1")
        finally:
            await before.close()
        await after.open()
        try:
            await after.prepare([])
            settler = await after.settler("contacts", 0.0, None)
            result = await settler.settle(record, 0.0)
            assert result.found and result.target_id == created.target_id
        finally:
            await after.close()
        [held] = pair.target_records()
        assert held["company"] == "Lee Homes"   # the fill, sent again
        assert sorted(n["content"] for n in held["notes"]) == ["first", "first", "second"]
