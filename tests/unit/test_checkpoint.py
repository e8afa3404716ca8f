import os
import stat

import pytest

from migrator.checkpoint import Checkpoint
from migrator.errors import CheckpointMismatch, ConfigError


async def test_created_private_and_statuses_flow(tmp_path):
    path = tmp_path / "c.sqlite"
    ck = await Checkpoint.open(path, job_id="j", mapping_digest="m")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    ck.add_pending("contacts", ["1", "2", "3"])
    ck.inflight("contacts", "1")
    await ck.commit()
    ck.done("contacts", "1", "T1")
    ck.failed("contacts", "2", "bad email", field="email", rule="format:email")
    ck.skipped("contacts", "3", "rule")
    ck.advance("contacts", {"row": 3})
    await ck.close("finished")
    for side in ("-wal", "-shm"):
        p = str(path) + side
        if os.path.exists(p):
            assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    ck = await Checkpoint.open(path, job_id="j", mapping_digest="m")
    st = await ck.statuses("contacts", ["1", "2", "3", "4"])
    assert {k: v.status for k, v in st.items()} == {"1": "done", "2": "failed", "3": "skipped"}
    assert st["1"].target_id == "T1"
    assert await ck.cursor("contacts") == ({"row": 3}, False, 1)
    assert await ck.target_ids("contacts", ["1", "2"]) == {"1": "T1"}
    await ck.close()


async def test_other_job_and_changed_mapping_are_refused(tmp_path):
    path = tmp_path / "c.sqlite"
    ck = await Checkpoint.open(path, job_id="j", mapping_digest="m")
    await ck.close()
    with pytest.raises(CheckpointMismatch, match="different job"):
        await Checkpoint.open(path, job_id="other", mapping_digest="m")
    with pytest.raises(CheckpointMismatch, match="mapping changed"):
        await Checkpoint.open(path, job_id="j", mapping_digest="m2")
    ck = await Checkpoint.open(path, job_id="j", mapping_digest="m2", accept_mapping_change=True)
    await ck.close()


async def test_unwritable_directory_is_a_config_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot write there"):
        await Checkpoint.open(blocker / "c.sqlite", job_id="j", mapping_digest="m")


async def test_not_a_database(tmp_path):
    path = tmp_path / "c.sqlite"
    path.write_text("hello, this is not sqlite" * 100)
    with pytest.raises(ConfigError):
        await Checkpoint.open(path, job_id="j", mapping_digest="m")


async def test_group_commit_shares_transactions(tmp_path):
    import anyio
    ck = await Checkpoint.open(tmp_path / "c.sqlite", job_id="j", mapping_digest="m")
    ck.add_pending("s", [str(i) for i in range(200)])
    calls = []
    orig = ck._apply
    ck._apply = lambda ops: (calls.append(len(ops)), orig(ops))[1]

    async def writer(i):
        ck.inflight("s", str(i))
        await ck.commit()

    async with anyio.create_task_group() as tg:
        for i in range(200):
            tg.start_soon(writer, i)
    assert sum(calls) == 400 and len(calls) < 50
    await ck.close()


async def test_key_index_answers_new_keys_without_asking_sqlite(tmp_path):
    """After reset, every key in the table went through add: a key the filter has never
    seen is answered without a worker-thread query; every added key is still found once
    it is durable and out of the overlay."""
    ckpt = await Checkpoint.open(tmp_path / "c.sqlite", job_id="j", mapping_digest="d")
    index = ckpt.key_index("contacts")
    asked: list[list[str]] = []
    real = ckpt.known_keys

    async def spy(stream, keys):
        asked.append(list(keys))
        return await real(stream, keys)

    ckpt.known_keys = spy  # type: ignore[method-assign]
    await index.reset()
    index.add([(f"email=p{i}@x.com", str(i)) for i in range(2000)], durable=True)
    await index.flush()
    assert await index.get(["email=nobody@x.com", "phone=+14155550100"]) == {}
    assert asked == []
    assert await index.get(["email=p7@x.com", "email=p1999@x.com"]) == {"email=p7@x.com": "7",
                                                                        "email=p1999@x.com": "1999"}
    index.add([("email=new@x.com", "n1")])
    await ckpt.commit()
    assert await index.get(["email=new@x.com"]) == {"email=new@x.com": "n1"}
    await ckpt.close()
