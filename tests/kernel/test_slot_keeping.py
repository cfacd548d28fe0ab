"""Slots on a server whose client names them: a call goes to the slot that holds its conversation, and an answered
call's slot is kept for its agent while it runs its tool, for as long as reading the conversation again would take;
an agent that exits, stops or does not come back in time lets it go. On the simulated server's virtual clock."""

from __future__ import annotations

import asyncio
from pathlib import Path

from kernel import clock
from kernel.api import KernelAPI, SchedInfo
from kernel.events import SyscallDone
from kernel.kernel import Kernel, boot
from kernel.llm.backend import ChoosesSlots, LLMRequest
from kernel.llm.servermodel import EMBEDDED, message_keys
from kernel.llm.simulated import SimulatedBackend
from kernel.process import Process, Signal
from kernel.scheduler.slots import SlotKeeper
from tests.conftest import make_config

seen: dict[str, object] = {}  # what `sched` and /proc/PID/context's source said when A's first call was answered
SYSTEM = 1000  # tokens of system prompt: about 2 s to read again at the embedded model's 480 tokens/s


def run(home: Path, first: list[str], second: list[str], keep: bool = True, stop_first: bool = False
        ) -> tuple[SimulatedBackend, list[str], Kernel, list[Process]]:
    """Agent A runs `first` alone on a one-slot server; agent B (`second`) arrives when A's first call is answered.
    Returns the server, which agent each request came from in order, and the kernel."""
    sim = SimulatedBackend(slots=1, profile=EMBEDDED, tick=8)
    holder: dict[str, Kernel] = {}
    procs: list[Process] = []
    seen.clear()

    async def main() -> None:
        kernel = holder["k"] = await boot(make_config(home), backend=sim)
        kernel.dispatcher.keep_slots = keep
        arrived = asyncio.Event()
        try:
            a = kernel.spawn("workload", ["--system", str(SYSTEM), "--task", "1", "--cap", "256", *first],
                             user="alice")
            procs.append(a)

            def arrive(e: SyscallDone) -> None:
                if e.pid == a.pid and len(procs) == 1:
                    try:
                        seen["sched"] = KernelAPI(kernel, "alice").sched()
                        seen["holds"] = KernelAPI(kernel, "alice").model_holds(a.pid)
                    except Exception as exc:  # (a callback's error would only be logged: keep it for the test)
                        seen["error"] = exc
                    if stop_first:
                        kernel.signal(a.pid, Signal.STOP)
                    procs.append(kernel.spawn("workload", ["--system", str(SYSTEM), "--task", "2", "--cap", "256",
                                                           *second], user="bob"))
                    arrived.set()

            kernel.bus.on(arrive, SyscallDone)
            await arrived.wait()
            if stop_first:  # A stays stopped until B is done
                await kernel.wait(procs[1].pid)
                kernel.signal(a.pid, Signal.CONT)
            for p in procs:
                await kernel.wait(p.pid)
                assert p.exit_code == 0, p.error
        finally:
            await kernel.shutdown()

    clock.run_virtual(main())
    who = ["A" if "Task 1:" in str(r.messages[1]["content"]) else "B" for r in sim.requests]
    return sim, who, holder["k"], procs


def test_the_agent_back_from_its_tool_finds_its_slot_kept_and_reads_only_the_result(home: Path) -> None:
    sim, who, kernel, procs = run(home, ["40:0.5:100", "40"], ["40"])
    assert who == ["A", "A", "B"]  # B arrived first, but A's slot was kept for it
    keeper = kernel.dispatcher.keeper
    assert keeper is not None and keeper.returned == 1
    assert 0.75 * EMBEDDED.prefill_tps < keeper.read_tps <= EMBEDDED.prefill_tps  # measured: the server's rate
    assert "error" not in seen, seen.get("error")
    info = seen["sched"]
    assert isinstance(info, SchedInfo) and info.slots[0].idle and info.slots[0].kept_for == procs[0].pid
    assert SchedInfo.from_dict(info.to_dict()).slots[0].kept_for == procs[0].pid  # (as `sched --json` and attach)
    assert str(seen["holds"]).startswith("slot 0, kept for it while it runs a tool")
    assert kernel.dispatcher.holds(procs[0].pid) is None  # it has exited
    assert sim.caches is not None and sim.caches.reused_tokens >= SYSTEM  # A's second turn reused its first


def test_without_keeping_the_next_call_in_line_takes_the_slot(tmp_path: Path) -> None:
    sim, who, kernel, procs = run(tmp_path, ["40:0.5:100", "40"], ["40"], keep=False)
    assert who == ["A", "B", "A"]
    assert str(seen["holds"]).endswith("tokens of its conversation in slot 0's prompt cache")
    assert kernel.dispatcher.keeper is not None and kernel.dispatcher.keeper.kept_n == 0


def test_a_slot_is_not_kept_longer_than_reading_the_conversation_again_would_take(home: Path) -> None:
    sim, who, kernel, procs = run(home, ["40:30:100", "40"], ["40"])  # a 30 s tool: longer than the ~2 s read
    assert who == ["A", "B", "A"]
    keeper = kernel.dispatcher.keeper
    assert keeper is not None and keeper.expired == 1 and keeper.returned == 0


def test_an_agent_that_exits_or_stops_lets_its_slot_go_at_once(home: Path) -> None:
    sim, who, kernel, procs = run(home, ["40"], ["40"])  # A's only call: it exits after its answer
    keeper = kernel.dispatcher.keeper
    assert who == ["A", "B"] and keeper is not None
    assert keeper.kept_n == 2 and keeper.expired == 0 and keeper.returned == 0 and not keeper.kept  # (A, then B)
    assert procs[1].queue_wait < 1.0  # B did not wait out the time A's slot would have been kept (~2 s)
    sim, who, kernel, procs = run(home / "2", ["40:0.5:100", "40"], ["40"], stop_first=True)
    assert who == ["A", "B", "A"]  # A stopped in its tool: B took the slot


def test_a_call_goes_to_the_slot_holding_its_prefix_and_the_reading_rate_is_measured() -> None:
    sim = SimulatedBackend(slots=3, profile=EMBEDDED)
    assert isinstance(sim, ChoosesSlots)
    convo = [{"role": "system", "content": "schema " * 600}, {"role": "user", "content": "task"}]
    held = [*convo, {"role": "assistant", "content": "done"}]
    for slot, messages in ((0, [{"role": "user", "content": "other"}]), (1, held), (2, [])):
        counts = [sim.count_tokens(m["content"]) + 4 for m in messages]
        taken, _ = sim.caches.take(message_keys(messages, counts), want=slot)  # type: ignore[union-attr]
        assert taken.index == slot
        sim.caches.give_back(taken, message_keys(messages, counts))  # type: ignore[union-attr]
    keeper = SlotKeeper(sim)
    keeper.used_at = {0: 1, 1: 3, 2: 2}  # slot 1 used last: least recently used would pick 0
    request = LLMRequest([*held, {"role": "tool", "content": "result"}])
    assert keeper.choose(request, [0, 1, 2]) == 1 and keeper.cached(request, [0, 2]) == 0
    assert keeper.choose(LLMRequest([{"role": "user", "content": "new"}]), [0, 1, 2]) == 0
