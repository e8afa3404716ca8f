"""Records sharing a natural key are matched and written one after the other; a record
waiting for a key can be cancelled without leaving a lock behind."""
import anyio
import pytest

from migrator.connectors.dedup import KeyLocks


async def test_records_with_a_key_in_common_take_turns_and_others_do_not_wait():
    locks = KeyLocks()
    order: list[str] = []

    async def write(name: str, keys: list[str], pause: float) -> None:
        async with locks.hold(keys):
            order.append(f"{name}+")
            await anyio.sleep(pause)
            order.append(f"{name}-")

    async with anyio.create_task_group() as tg:
        tg.start_soon(write, "a", ["email=x", "phone=1"], 0.05)
        await anyio.sleep(0.01)
        tg.start_soon(write, "b", ["phone=1"], 0.0)       # shares a key with a: waits
        tg.start_soon(write, "c", ["email=y"], 0.0)       # shares nothing: goes at once
    assert order.index("c-") < order.index("a-") < order.index("b+")
    assert len(locks) == 0


async def test_a_cancelled_waiter_leaves_no_lock_behind():
    locks = KeyLocks()

    async def holder() -> None:
        async with locks.hold(["email=x"]):
            await anyio.sleep(0.15)

    async with anyio.create_task_group() as tg:
        tg.start_soon(holder)
        await anyio.sleep(0.01)
        with anyio.move_on_after(0.05):
            async with locks.hold(["phone=1", "email=x"]):
                pytest.fail("entered while the key was held")
        assert len(locks) == 1, "only the holder's key is left"
    assert len(locks) == 0
    async with locks.hold(["email=x", "phone=1"]):
        pass
    assert len(locks) == 0
