"""The permission broker: answerers attach and get a handle; an exclusive one has the turn; changes are
signalled, never polled."""

from __future__ import annotations

import asyncio

from kernel.events import EventBus
from kernel.permissions import PermissionBroker


async def test_an_exclusive_answerer_has_the_turn_while_it_is_attached() -> None:
    broker = PermissionBroker(EventBus())
    shell = broker.attach()
    assert shell.has_turn and broker.answerers == 1
    monitor = broker.attach(exclusive=True)
    assert monitor.has_turn and not shell.has_turn and broker.answerers == 2
    second = broker.attach(exclusive=True)  # a monitor opened from the first one's console
    assert second.has_turn and not monitor.has_turn
    second()
    assert monitor.has_turn
    monitor.detach()
    monitor.detach()  # twice is once
    assert shell.has_turn and broker.answerers == 1
    shell()
    assert not shell.has_turn and broker.answerers == 0


async def test_changed_returns_when_an_answerer_goes_or_a_request_is_decided() -> None:
    broker = PermissionBroker(EventBus())
    monitor = broker.attach(exclusive=True)
    waiter = asyncio.create_task(broker.changed())
    await asyncio.sleep(0)
    assert not waiter.done()  # nothing changed yet
    monitor.detach()
    await asyncio.wait_for(waiter, 1)
    request = asyncio.create_task(broker.request(1, "alice", "react", "shell", {"command": "ls"}, timeout=10))
    await asyncio.sleep(0)
    waiter = asyncio.create_task(broker.changed())
    await asyncio.sleep(0)
    assert not waiter.done()
    (pending,) = broker.pending()
    assert broker.answer(pending.request_id, "once")
    assert await asyncio.wait_for(request, 1) == "once"
    await asyncio.wait_for(waiter, 1)
