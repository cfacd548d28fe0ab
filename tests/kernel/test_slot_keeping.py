"""Slots on a server whose client names them: a call goes to the slot that holds its conversation, and an answered
call's slot is kept for its agent while it runs its tool, for as long as reading the conversation again would take;
an agent that exits, stops or does not come back in time lets it go. Where the server saves and restores slots'
states, the kernel swaps a conversation out of a slot another call needs and back in when its agent returns, and
a user's new agent starts from the saved state holding its program's system prompt — never another user's. On the
simulated server's virtual clock."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from kernel import clock
from kernel.api import KernelAPI, SchedInfo
from kernel.events import SyscallDone
from kernel.kernel import Kernel, boot
from kernel.llm.backend import BackendError, ChoosesSlots, LLMRequest, SavedState
from kernel.llm.servermodel import EMBEDDED, message_keys
from kernel.llm.simulated import SimulatedBackend
from kernel.process import Process, Signal
from kernel.scheduler.slots import SlotKeeper, state_name
from tests.conftest import make_config

seen: dict[str, object] = {}  # what `sched` and /proc/PID/context's source said when A's first call was answered
SYSTEM = 1000  # tokens of system prompt: about 2 s to read again at the embedded model's 480 tokens/s


def run(home: Path, first: list[str], second: list[str], keep: bool = True, stop_first: bool = False,
        swap: bool = False) -> tuple[SimulatedBackend, list[str], Kernel, list[Process]]:
    """Agent A runs `first` alone on a one-slot server; agent B (`second`) arrives when A's first call is answered.
    Returns the server, which agent each request came from in order, and the kernel. Without `swap`, the server's
    slot states are not saved and restored (as on a server that cannot: Ollama's)."""
    sim = SimulatedBackend(slots=1, profile=EMBEDDED, tick=8)
    holder: dict[str, Kernel] = {}
    procs: list[Process] = []
    seen.clear()

    async def main() -> None:
        kernel = holder["k"] = await boot(make_config(home), backend=sim)
        kernel.dispatcher.keep_slots = keep
        assert kernel.dispatcher.keeper is not None and kernel.dispatcher.keeper.swap  # (on where it can)
        kernel.dispatcher.keeper.swap = swap
        arrived = asyncio.Event()
        try:
            a = kernel.spawn("workload", ["--system", str(SYSTEM), "--task", "1", "--cap", "256", *first],
                             user="alice")
            procs.append(a)

            def arrive(e: SyscallDone) -> None:
                if len(procs) == 2 and e.pid == procs[1].pid:
                    seen["holds_later"] = KernelAPI(kernel, "alice").model_holds(a.pid)
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


def test_a_conversation_is_swapped_out_of_the_slot_another_call_takes_and_back_in_for_its_next_turn(
        home: Path) -> None:
    sim, who, kernel, procs = run(home, ["40:0.5:100", "40"], ["--family", "1", "40"], swap=True)
    keeper = kernel.dispatcher.keeper
    assert keeper is not None and sim.caches is not None
    assert who == ["A", "B", "A"]  # A's slot was kept only as long as a save and a restore take: B took it
    assert keeper.returned == 0 and keeper.expired == 1
    assert keeper.saves == 2 and keeper.restores == 1  # A's state when B came, B's when A came back; A's restored
    assert sim.caches.read_tokens < 2 * (SYSTEM + 20) + 150  # A's next turn read only its tool's result
    assert str(seen["holds_later"]).endswith("tokens of its conversation saved on the server, out of any slot")
    assert keeper.swap_tps > 10 * keeper.read_tps  # measured: a copy is far quicker than a reading
    unswapped, who, _, _ = run(home / "2", ["40:0.5:100", "40"], ["--family", "1", "40"], keep=False)
    assert who == ["A", "B", "A"]
    assert unswapped.caches is not None and unswapped.caches.read_tokens > 3 * SYSTEM  # A read it all again


def agents_in_turn(home: Path, agents: list[tuple[str, int]], budget: int | None = None,
                   refuse: Callable[[int, str], Awaitable[SavedState]] | None = None
                   ) -> tuple[SimulatedBackend, Kernel, list[int]]:
    """Agents (user, program) one after another on a one-slot server that saves and restores slots' states:
    the server, the kernel, and how many prompt tokens each agent's call read."""
    sim = SimulatedBackend(slots=1, profile=EMBEDDED, tick=8)
    if refuse is not None:
        sim.save_slot = refuse  # type: ignore[method-assign]
    holder: dict[str, Kernel] = {}
    reads: list[int] = []

    async def main() -> None:
        kernel = holder["k"] = await boot(make_config(home), backend=sim)
        assert kernel.dispatcher.keeper is not None and sim.caches is not None
        if budget is not None:
            kernel.dispatcher.keeper.swap_budget = budget
        try:
            for task, (user, family) in enumerate(agents):
                before = sim.caches.read_tokens
                p = kernel.spawn("workload", ["--system", str(SYSTEM), "--family", str(family), "--task", str(task),
                                              "--cap", "256", "40"], user=user)
                await kernel.wait(p.pid)
                assert p.exit_code == 0, p.error
                reads.append(sim.caches.read_tokens - before)
        finally:
            await kernel.shutdown()

    clock.run_virtual(main())
    return sim, holder["k"], reads


def test_a_new_agent_starts_from_its_users_saved_state_of_its_program_never_another_users(home: Path) -> None:
    # alice's first agent of program 0, then an agent of program 1 takes the slot; then program 0 again
    sim, kernel, reads = agents_in_turn(home, [("alice", 0), ("alice", 1), ("alice", 0)])
    assert reads[0] > SYSTEM and reads[1] > SYSTEM
    assert reads[2] < 50  # only its task: the system prompt came back from the first agent's saved state
    assert kernel.dispatcher.keeper is not None and kernel.dispatcher.keeper.restores == 1
    sim, kernel, reads = agents_in_turn(home / "2", [("alice", 0), ("alice", 1), ("bob", 0)])
    assert reads[2] > SYSTEM  # bob's agent read it: alice's state is not restored for another user
    assert kernel.dispatcher.keeper is not None and kernel.dispatcher.keeper.restores == 0


def test_saved_states_stay_within_their_budget_least_recently_used_first_out(home: Path) -> None:
    one = (SYSTEM + 60) * EMBEDDED.state_bytes  # about one agent's conversation
    sim, kernel, reads = agents_in_turn(home, [("alice", 0), ("alice", 1), ("alice", 2), ("alice", 0)],
                                        budget=int(1.5 * one))
    keeper = kernel.dispatcher.keeper
    assert keeper is not None and sim.caches is not None
    assert keeper.saves == 3 and len(keeper.saved) == 1 and keeper.saved_bytes <= int(1.5 * one)
    assert list(sim.caches.saved) == [state_name(list(keeper.saved)[0])]  # the server let the others go
    assert reads[3] > SYSTEM  # program 0's state had been pushed out: the fourth agent read its prompt
    info = KernelAPI(kernel, "alice").sched().swap  # what `sched` shows
    assert info is not None and (info.states, info.bytes, info.budget) == (1, keeper.saved_bytes, int(1.5 * one))
    assert SchedInfo.from_dict(KernelAPI(kernel, "alice").sched().to_dict()).swap == info


def test_a_failed_save_costs_only_what_it_would_have_saved(home: Path) -> None:
    async def refuse(slot: int, name: str) -> SavedState:
        raise BackendError("the server has no --slot-save-path")

    sim, kernel, reads = agents_in_turn(home, [("alice", 0), ("alice", 1), ("alice", 0)], refuse=refuse)
    keeper = kernel.dispatcher.keeper
    assert keeper is not None and keeper.saves == 0 and keeper.restores == 0 and not keeper.saved
    assert reads[2] > SYSTEM  # every agent answered; the third read its prompt, as without swapping
