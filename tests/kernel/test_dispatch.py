"""The first dispatcher: at most P model calls at once, admitted in arrival order."""

from __future__ import annotations

from pathlib import Path

from kernel.events import SyscallDispatched, SyscallQueued
from kernel.kernel import boot
from kernel.llm.simulated import SimulatedBackend
from tests.conftest import make_config, until


async def test_at_most_p_calls_run_at_once(home: Path) -> None:
    sim = SimulatedBackend(slots=3, decode_tps=500, prefill_tps=50_000)
    async with await boot(make_config(home, policy="fifo"), backend=sim) as kernel:
        peak = 0

        def watch(_event: object) -> None:
            nonlocal peak
            peak = max(peak, len(kernel.dispatcher.running))

        kernel.bus.on(watch)
        procs = [kernel.spawn("chat", [f"question {i}"]) for i in range(12)]
        await until(lambda: all(not p.alive for p in procs), timeout=30)
        assert peak == 3
        assert all(p.status == "EXITED(0)" for p in procs)


async def test_calls_are_admitted_in_fifo_order(home: Path) -> None:
    sim = SimulatedBackend(slots=1, decode_tps=1000, prefill_tps=50_000)
    async with await boot(make_config(home, policy="fifo"), backend=sim) as kernel:
        queued: list[int] = []
        dispatched: list[int] = []
        kernel.bus.on(lambda e: queued.append(e.pid), SyscallQueued)
        kernel.bus.on(lambda e: dispatched.append(e.pid), SyscallDispatched)
        procs = [kernel.spawn("chat", [f"q{i}"]) for i in range(8)]
        await until(lambda: all(not p.alive for p in procs), timeout=30)
        assert dispatched == queued == [p.pid for p in procs]


async def test_the_queue_is_visible_and_waits_are_recorded(home: Path) -> None:
    sim = SimulatedBackend(slots=1, decode_tps=200, prefill_tps=50_000)
    async with await boot(make_config(home, policy="fifo"), backend=sim) as kernel:
        first = kernel.spawn("chat", ["long"])
        rest = [kernel.spawn("chat", ["short"]) for _ in range(3)]
        await until(lambda: len(kernel.dispatcher.queue()) == 3)
        assert [c.pid for c in kernel.dispatcher.queue()] == [p.pid for p in rest]
        assert all(p.status == "READY" for p in rest)
        assert "arrived #" in kernel.dispatcher.policy.reason(kernel.dispatcher.queue()[0])
        await until(lambda: not any(p.alive for p in [first, *rest]), timeout=30)
        assert rest[-1].queue_wait > first.queue_wait
        assert first.llm_time > 0
