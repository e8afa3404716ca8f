"""Writers into a target that can look records up get them already marked in flight, a
batch at a time; a stopped run puts the marked-but-unsent ones back to pending, and the
resume writes every contact exactly once."""
import sqlite3

from migrator.sandbox.data import CLEAN
from tests.integration.harness import Pair


def _statuses(pair) -> dict[str, int]:
    with sqlite3.connect(pair.tmp / "ckpt.sqlite") as db:
        return dict(db.execute("SELECT status, count(*) FROM records GROUP BY status"))


async def test_a_stopped_run_leaves_nothing_in_flight_and_the_resume_writes_each_once(tmp_path):
    n = 240
    async with Pair(tmp_path, "csv", "rei", n=n, dirt=CLEAN, concurrency=16) as pair:
        first = await pair.run(stop_after=40)
        after_stop = _statuses(pair)
        second = await pair.run()
        held = pair.target_records()
    assert first.interrupted and "inflight" not in after_stop, after_stop
    assert after_stop.get("pending", 0) > 0, "records were read but not written when it stopped"
    assert second.streams[0].counts["reconciled"] == 0, "nothing was left uncertain"
    assert _statuses(pair) == {"done": n}
    emails = [c["email"] for c in held]
    assert len(held) == n and len(set(emails)) == n
