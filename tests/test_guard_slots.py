"""The adjustable slot gate: FIFO, repairs first, no slot lost to cancellation."""

from __future__ import annotations

import asyncio

import pytest

from app.backends.base import JSONRequest
from app.backends.guard import FIRST, REPAIR, PriorityGate
from tests.conftest import FakeSleep
from tests.doubles import ScriptedBackend, guarded, until


def _request(name: str, *, repair: bool = False) -> JSONRequest:
    inputs: dict[str, object] = {"name": name}
    if repair:
        inputs["repair"] = True
    return JSONRequest(task="npc_profile", messages=[], schema={}, inputs=inputs)


async def test_waiting_calls_start_in_request_order_repairs_first(fake_sleep: FakeSleep) -> None:
    """At concurrency 1, NPC 1's repair does not wait behind every other first call."""
    backend = ScriptedBackend()
    backend.hold = asyncio.Event()
    guard = guarded(backend, fake_sleep, concurrency=1)
    calls = [asyncio.create_task(guard.complete_json(_request("first")))]
    await until(lambda: backend.in_flight == 1)
    for request in (
        _request("A"),
        _request("B"),
        _request("fix 1", repair=True),
        _request("C"),
        _request("fix 2", repair=True),
    ):
        queued = guard.waiting + 1
        calls.append(asyncio.create_task(guard.complete_json(request)))
        # Queue them one at a time, so the order is the test's, not the scheduler's.
        await until(lambda: guard.waiting == queued)  # noqa: B023 - awaited right here
    backend.hold.set()
    await asyncio.gather(*calls)
    started = [request.inputs["name"] for request in backend.history]
    assert started == ["first", "fix 1", "fix 2", "A", "B", "C"]


async def test_a_cancelled_waiter_gives_up_its_place(fake_sleep: FakeSleep) -> None:
    backend = ScriptedBackend()
    backend.hold = asyncio.Event()
    guard = guarded(backend, fake_sleep, concurrency=1)
    holder = asyncio.create_task(guard.complete_json(_request("holder")))
    await until(lambda: backend.in_flight == 1)
    waiter = asyncio.create_task(guard.complete_json(_request("cancelled")))
    await until(lambda: guard.waiting == 1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert guard.waiting == 0
    backend.hold.set()
    await holder
    async with asyncio.timeout(5):  # a leaked slot would block this for ever
        assert (await guard.complete_json(_request("next"))).ok
    assert [r.inputs["name"] for r in backend.history] == ["holder", "next"]
    assert guard.in_flight == 0


async def test_a_call_cancelled_in_flight_frees_its_slot(fake_sleep: FakeSleep) -> None:
    backend = ScriptedBackend()
    backend.hold = asyncio.Event()
    guard = guarded(backend, fake_sleep, concurrency=1)
    call = asyncio.create_task(guard.complete_json(_request("cancelled")))
    await until(lambda: backend.in_flight == 1)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    backend.hold = None
    async with asyncio.timeout(5):
        assert (await guard.complete_json(_request("next"))).ok
    assert guard.in_flight == 0


async def test_a_slot_handed_to_a_cancelled_waiter_is_passed_on() -> None:
    """Cancelled after the slot was handed over but before it ran: the slot goes on."""
    gate = PriorityGate(lambda: 1)
    await gate.acquire(FIRST)
    cancelled = asyncio.create_task(gate.acquire(FIRST))
    await until(lambda: gate.waiting == 1)
    gate.release()  # hands the slot to the waiter...
    cancelled.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert gate.holders == 0
    await gate.acquire(FIRST)  # admitted at once
    assert gate.holders == 1


async def test_a_higher_limit_admits_waiters() -> None:
    limit = [1]
    gate = PriorityGate(lambda: limit[0])
    await gate.acquire(FIRST)
    waiters = [asyncio.create_task(gate.acquire(p)) for p in (FIRST, REPAIR, FIRST)]
    await until(lambda: gate.waiting == 3)
    limit[0] = 3
    gate.wake()
    await until(lambda: gate.waiting == 1)
    assert gate.holders == 3
    gate.release()
    await asyncio.gather(*waiters)
    assert gate.holders == 3 and gate.waiting == 0


async def test_a_lower_limit_admits_no_one_until_enough_leave() -> None:
    limit = [3]
    gate = PriorityGate(lambda: limit[0])
    for _ in range(3):
        await gate.acquire(FIRST)
    limit[0] = 1
    waiter = asyncio.create_task(gate.acquire(FIRST))
    await until(lambda: gate.waiting == 1)
    gate.release()
    gate.release()
    assert gate.holders == 1 and gate.waiting == 1  # still at the new limit
    gate.release()
    await waiter
    assert gate.holders == 1


async def test_a_released_slot_waits_one_turn_so_the_caller_can_ask_for_its_repair() -> None:
    """The NPC whose call just ended asks for its repair in the same step: it gets
    the slot before the first calls that were already waiting."""
    gate = PriorityGate(lambda: 1)
    await gate.acquire(FIRST)
    waiter = asyncio.create_task(gate.acquire(FIRST))
    await until(lambda: gate.waiting == 1)
    gate.release()
    await gate.acquire(REPAIR)  # at once: no await between the release and this
    assert gate.holders == 1 and gate.waiting == 1 and not waiter.done()
    gate.release()
    await waiter
    assert gate.holders == 1 and gate.waiting == 0
