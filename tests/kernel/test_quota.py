"""Admission limits and token quotas: a clear refusal, a process that waits its turn, nothing unbounded."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kernel import Kernel
from kernel.errors import ResourceLimit
from kernel.quota import Quotas
from tests.conftest import until


def test_the_window_slides() -> None:
    now = [0.0]
    q = Quotas(tokens_per_minute=100, clock=lambda: now[0])
    q.charge("alice", 60)
    now[0] = 30.0
    q.charge("alice", 50)
    assert q.over("alice") and not q.over("bob")
    assert q.retry_in("alice") == pytest.approx(30.0)  # once the first 60 leave the window
    now[0] = 60.5
    assert q.used("alice") == 50 and not q.over("alice")
    assert q.describe("alice") == "50/100" and q.describe("bob") == "0/100"
    q.per_user["bob"] = 0
    assert q.describe("bob") == "-"


async def test_spawn_past_the_per_user_limit_is_refused_and_others_are_unharmed(kernel: Kernel) -> None:
    kernel.quotas.max_procs = 2
    first = [kernel.spawn("chat", ["long"]) for _ in range(2)]
    with pytest.raises(ResourceLimit, match="alice already runs 2 processes"):
        kernel.spawn("chat", ["long"])
    assert all(p.alive for p in first)
    other = kernel.spawn("chat", ["short"], user="bob")  # the limit is per user
    for p in (other, *first):
        await kernel.wait(p.pid)
    assert [p.exit_code for p in (other, *first)] == [0, 0, 0]


async def test_a_full_queue_fails_the_syscall_with_one_line(kernel: Kernel) -> None:
    kernel.quotas.max_queued = 1
    procs = [kernel.spawn("chat", ["long"]) for _ in range(4)]  # 2 slots, 1 queued, the 4th is refused
    await asyncio.gather(*(kernel.wait(p.pid) for p in procs))
    refused = [p for p in procs if p.exit_code == 1]
    assert len(refused) == 1 and "the model queue is full" in (refused[0].error or "")
    assert sum(p.exit_code == 0 for p in procs) == 3


async def test_over_quota_waits_as_waiting_quota_then_goes_on(kernel: Kernel, home: Path) -> None:
    now = [0.0]
    kernel.quotas = Quotas(tokens_per_minute=10, clock=lambda: now[0])
    first = kernel.spawn("chat", ["short"])
    await kernel.wait(first.pid)
    assert kernel.quotas.over("alice")
    second = kernel.spawn("chat", ["short"])
    await until(lambda: second.status == "WAITING(quota)")
    assert not kernel.dispatcher.queue()  # it waits outside the ready queue
    bob = kernel.spawn("chat", ["short"], user="bob")  # another user is not held up
    await kernel.wait(bob.pid)
    now[0] = 61.0
    await kernel.wait(second.pid)
    assert second.exit_code == 0


async def test_kill_while_waiting_for_quota(kernel: Kernel) -> None:
    from kernel.process import Signal

    kernel.quotas = Quotas(tokens_per_minute=1, clock=lambda: 0.0)
    kernel.quotas.charge("alice", 5)
    proc = kernel.spawn("chat", ["short"])
    await until(lambda: proc.status == "WAITING(quota)")
    kernel.signal(proc.pid, Signal.KILL)
    await kernel.wait(proc.pid)
    assert proc.status == "EXITED(SIGKILL)"
