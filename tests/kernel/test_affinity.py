"""Slot affinity: on a prompt-caching server, a queued call whose conversation a free slot holds goes before
calls that must be read from the start, a bounded number of times, and never when the lever is off."""

from __future__ import annotations

from kernel.llm.backend import CachesPrompts, LLMRequest
from kernel.llm.servermodel import EMBEDDED, message_keys
from kernel.llm.simulated import SimulatedBackend
from kernel.process import Process
from kernel.scheduler import make_policy
from kernel.scheduler.dispatch import AFFINITY_BYPASS, Dispatcher
from kernel.syscall import LLMCall


def conversation(agent: int, turns: int) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": "schema " * 800}, {"role": "user", "content": f"task {agent}"}]
    for turn in range(turns):
        messages += [{"role": "assistant", "content": f"answer {agent}.{turn}"},
                     {"role": "tool", "content": f"result {agent}.{turn} " + "data " * 300}]
    return messages


def call(sid: int, agent: int, turns: int) -> LLMCall:
    proc = Process(pid=agent, ppid=0, user="alice", program="workload", argv=())
    c = LLMCall(sid=sid, proc=proc, request=LLMRequest(conversation(agent, turns), max_tokens=1024))
    c.queued_at = c.submitted_at = float(sid)
    return c


def served_before(sim: SimulatedBackend, affinity: bool) -> list[int]:
    """The order the dispatcher picks three queued calls in, with agent 1's last turn in a free slot."""
    held = conversation(1, 1)
    counts = [sim.count_tokens(m["content"]) + 4 for m in held]
    slot, _ = sim.caches.take(message_keys(held, counts))
    sim.caches.give_back(slot, message_keys(held, counts))
    dispatcher = Dispatcher(host=None, backend=sim, policy=make_policy("fifo"))  # type: ignore[arg-type]
    dispatcher.affinity = affinity
    for c in (call(1, agent=2, turns=0), call(2, agent=3, turns=2), call(3, agent=1, turns=2)):
        dispatcher.policy.push(c)
    return [dispatcher._next([0, 1])[0].pid for _ in range(3)]  # type: ignore[index]


async def test_the_call_whose_conversation_a_free_slot_holds_goes_first() -> None:
    sim = SimulatedBackend(slots=2, profile=EMBEDDED)
    assert isinstance(sim, CachesPrompts)
    assert sim.cached_tokens(call(9, agent=1, turns=2).request) == 0  # nothing cached yet
    assert served_before(sim, affinity=True) == [1, 2, 3]  # agent 1's next turn, then arrival order


async def test_without_the_lever_the_policy_order_stands() -> None:
    assert served_before(SimulatedBackend(slots=2, profile=EMBEDDED), affinity=False) == [2, 3, 1]


async def test_a_call_is_passed_over_a_bounded_number_of_times() -> None:
    sim = SimulatedBackend(slots=2, profile=EMBEDDED)
    held = conversation(1, 1)
    counts = [sim.count_tokens(m["content"]) + 4 for m in held]
    slot, _ = sim.caches.take(message_keys(held, counts))
    sim.caches.give_back(slot, message_keys(held, counts))
    dispatcher = Dispatcher(host=None, backend=sim, policy=make_policy("fifo"))  # type: ignore[arg-type]
    head = call(1, agent=2, turns=0)
    dispatcher.policy.push(head)
    served = []
    for sid in range(2, 2 + AFFINITY_BYPASS + 2):  # a cached turn of agent 1 keeps coming
        dispatcher.policy.push(call(sid, agent=1, turns=2))
        served.append(dispatcher._next([0, 1])[0])  # type: ignore[index]
    assert head in served and served.index(head) == AFFINITY_BYPASS  # passed over 8 times, then served
