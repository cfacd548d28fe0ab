"""A deterministic simulated kernel for the monitor's tests: fixed processes, states, time and machine."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from aios_shell.tui import MonitorApp, make_monitor
from aios_shell.tui.probe import FixedProbe
from kernel.api import KernelAPI
from kernel.events import Event, PermissionDecided, SyscallDone, TokenGenerated
from kernel.kernel import Kernel, boot
from kernel.llm.backend import Chunk, LLMRequest
from kernel.llm.simulated import SimulatedBackend
from kernel.process import Signal
from tests.conftest import make_config, until

FIXED = 1_760_000_000.0  # the pinned wall clock of every picture (2025-10-09 08:53:20 UTC)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "snapshot: a picture of the monitor (make snapshots updates them)")


class FrozenBackend(SimulatedBackend):
    """The simulated model, but a reply to a prompt without the word `done` stops after `hold` tokens
    and then waits for ever, so the kernel stays in one known state while it is drawn."""

    def __init__(self, hold: int = 5) -> None:
        super().__init__(slots=2, prefill_tps=0, decode_tps=0, seed=3)
        self.hold = hold

    async def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        last = str(request.messages[-1].get("content", "")) if request.messages else ""
        produced = 0
        async for chunk in super().stream(request):
            yield chunk
            produced += 1
            if "done" not in last.split() and produced >= self.hold:
                await asyncio.Event().wait()


@dataclass(frozen=True)
class ToolCallFinished(Event):
    """Stands in for the tools issue's events: the log draws any event with a `tool` field."""

    pid: int
    tool: str
    args: dict[str, Any] = field(default_factory=dict)
    outcome: str = "ok"


async def scenario(home: Path, pin_clock: bool = False) -> Kernel:
    """Seven processes in known states: one done, two on the model slots, two queued, one stopped, one killed.

    `pin_clock`: permission deadlines count from FIXED (for pictures, where the app's clock is FIXED too).
    """
    kernel = await boot(make_config(home), backend=FrozenBackend())
    if pin_clock:
        kernel.permissions.clock = lambda: FIXED
    done = kernel.spawn("chat", ["greet", "the", "user", "done"])
    await until(lambda: not done.alive)
    kernel.spawn("chat", ["summarise", "the", "kernel", "log"])
    await until(lambda: KernelAPI(kernel).sched().busy == 1)
    kernel.spawn("chat", ["write", "a", "haiku", "about", "queues"])
    await until(lambda: (sched := KernelAPI(kernel).sched()).busy == 2 and all(s.tokens >= 5 for s in sched.running))
    kernel.spawn("chat", ["plan", "the", "storage", "migration"], user="bob")
    kernel.spawn("chat", ["a", "long", "essay", "on", "schedulers"], nice=5)
    stopped = kernel.spawn("chat", ["translate", "the", "readme"])
    killed = kernel.spawn("chat", ["list", "open", "files", "\x1b[31mred\x1b[0m"])
    await until(lambda: KernelAPI(kernel).sched().queued == 4)
    kernel.signal(stopped.pid, Signal.STOP)
    kernel.signal(killed.pid, Signal.KILL)
    await until(lambda: not killed.alive and stopped.status == "STOPPED")
    # pin what depends on the machine's speed
    for proc, ctx, switches in ((done, 31, 0), (kernel.get(2), 2900, 2), (kernel.get(3), 7600, 1),
                                (kernel.get(5), 6000, 0)):
        proc.ctx_tokens, proc.ctx_switches = ctx, switches
        for call in proc.inflight:  # a call on a slot counts its prompt and what it generated so far
            if call.dispatched_at is not None:
                call.prompt_estimate = ctx - call.chunks
    for proc in kernel.procs:
        proc.llm_time = 0.42 if proc is done else 0.0
    return kernel


def history() -> list[Event]:
    """What the tool log, the rates and the sparkline show: events with pinned timestamps."""
    out: list[Event] = [
        SyscallDone(pid=1, sid=1, call="llm", ok=True, prompt_tokens=8, completion_tokens=24, wait_s=0.0,
                    service_s=0.42, ts=FIXED - 42),
        ToolCallFinished(pid=2, tool="fs.read", args={"path": "logs/kernel.log"}, ts=FIXED - 20),
        PermissionDecided(request_id=7, pid=3, tool="shell", decision="deny", by="timeout", ts=FIXED - 12),
        SyscallDone(pid=7, sid=9, call="llm", ok=False, error="cancelled \x1b[2Jby SIGKILL", ts=FIXED - 3),
    ]
    for second in range(1, 40):
        out += [TokenGenerated(pid=2, sid=2, text=" x", ts=FIXED - second)] * ((second * 7) % 23)
    return out


@pytest.fixture(autouse=True)
def _sandbox_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """The monitor names the sandbox mode; its pictures must not depend on what this machine allows."""
    monkeypatch.setenv("AIOS_SANDBOX", "rlimit")


def monitor(home: Path, **kw: Any) -> MonitorApp:
    """The app over the scenario kernel (the app boots it in its own loop and shuts it down)."""
    return make_monitor(boot=lambda: scenario(home, pin_clock=True), home=home, probe=FixedProbe(),
                        clock=lambda: FIXED, **kw)


async def settle(pilot: Any) -> None:
    """Wait for the kernel, feed the pinned history, draw."""
    app: MonitorApp = pilot.app
    await app.ready.wait()
    for event in history():
        app.kernel.bus.publish(event)
    app.refresh_now()
    await pilot.pause()


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> float:
    """Pin the wall clock and the time zone (the scheduler's reasons and the log's times use them)."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setattr(time, "time", lambda: FIXED)
    yield FIXED
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
async def app_kernel(home: Path) -> AsyncIterator[Kernel]:
    """The scenario kernel on the test's own loop (for Pilot tests)."""
    kernel = await scenario(home)
    try:
        yield kernel
    finally:
        await kernel.shutdown()


