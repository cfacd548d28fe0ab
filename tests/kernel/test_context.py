"""The context manager: counting, compaction near the window, switches, and /proc/PID/context."""

from __future__ import annotations

import asyncio
from pathlib import Path

from kernel.context import PER_MESSAGE, ContextManager
from kernel.events import ContextCompacted, ContextSwitched, EventBus, SyscallPreempted
from kernel.kernel import Kernel, boot
from kernel.llm.backend import LLMRequest
from kernel.llm.simulated import Reply, SimulatedBackend
from kernel.process import Process, Signal
from tests.conftest import make_config, until
from tests.shell.helpers import session

SYSTEM = {"role": "system", "content": "You are a patient assistant who remembers what was said."}

# a user agent that talks for N turns, growing its conversation the way agents do
TALKER = '''
async def main(ctx):
    turns = int(ctx.argv[0]) if ctx.argv else 20
    messages = [{"role": "system", "content": "You are a patient assistant who remembers what was said."}]
    for i in range(turns):
        messages.append({"role": "user", "content": f"turn {i}: tell me more about cats and the kernel"})
        answer = await ctx.llm(messages, max_tokens=64)
        messages.append({"role": "assistant", "content": answer.text})
        await ctx.write(answer.text + "\\n")
    return 0
'''


def put_agent(home: Path, name: str, source: str) -> None:
    (home / "agents").mkdir(parents=True, exist_ok=True)
    (home / "agents" / f"{name}.py").write_text(source)


def proc(pid: int = 1) -> Process:
    return Process(pid=pid, ppid=0, user="alice", program="talker", argv=())


def manager(window: int = 200) -> tuple[ContextManager, list[ContextCompacted]]:
    bus = EventBus()
    seen: list[ContextCompacted] = []
    bus.on(seen.append, ContextCompacted)
    return ContextManager(SimulatedBackend(context_window=window), bus), seen


def conversation(turns: int, words: int = 10) -> list[dict[str, str]]:
    messages = [SYSTEM]
    for i in range(turns):
        messages.append({"role": "user", "content": f"question {i} " + "word " * words})
        messages.append({"role": "assistant", "content": f"answer {i} " + "reply " * words})
    messages.append({"role": "user", "content": "and the last question?"})
    return messages


def fits(sim: SimulatedBackend, request: LLMRequest) -> bool:
    return sim.prompt_tokens(request) + request.max_tokens <= sim.context_window


def test_counts_with_the_backends_tokenizer_and_a_per_message_overhead() -> None:
    ctx, _ = manager()
    messages = conversation(3)
    assert ctx.count(messages) == SimulatedBackend().prompt_tokens(LLMRequest(messages))
    assert ctx.message_tokens({"role": "user", "content": "three small words"}) == 3 + PER_MESSAGE
    call = {"role": "assistant", "content": "", "tool_calls": [{"name": "calc", "arguments": {"expression": "1 + 2"}}]}
    assert ctx.message_tokens(call) > PER_MESSAGE  # the call is part of the context too
    tools = [{"type": "function", "function": {"name": "calc", "description": "add some numbers up"}}]
    assert ctx.count(messages, tools) > ctx.count(messages)
    assert ctx.window() == 200
    assert ctx.window(LLMRequest(messages, options={"num_ctx": 1024})) == 1024


def test_a_context_well_inside_the_window_goes_as_it_is() -> None:
    ctx, seen = manager(window=4096)
    request = LLMRequest(conversation(5), max_tokens=64)
    assert ctx.fit(proc(), request) is request
    assert seen == []


def test_near_the_window_older_turns_are_dropped_and_marked() -> None:
    ctx, seen = manager(window=200)
    p = proc()
    messages = conversation(12)
    before = ctx.count(messages)
    assert before > 200
    fitted = ctx.fit(p, LLMRequest(messages, max_tokens=64))
    assert fitted.messages[0] is SYSTEM  # the system prompt survives, first
    assert fitted.messages[-1] is messages[-1]  # and the last turn
    assert ctx.count(fitted.messages) <= 0.6 * 200  # under LOW, reply room included
    assert ctx.count(fitted.messages) + fitted.max_tokens <= 200
    markers = [m for m in fitted.messages if m["content"].startswith("[compacted:")]
    assert len(markers) == 1 and markers[0]["role"] == "user"
    dropped = [m for m in messages if not any(m is k for k in fitted.messages)]
    turns = len(dropped)  # each message here is a turn of its own
    tokens = sum(ctx.message_tokens(m) for m in dropped)
    assert markers[0]["content"] == f"[compacted: {turns} earlier turns ({tokens} tokens) dropped]"
    assert fitted.messages.index(markers[0]) == 1  # it stands where the turns were
    assert [(e.pid, e.before_tokens, e.dropped_turns, e.how) for e in seen] == [(1, before, turns, "dropped")]
    assert seen[0].after_tokens == ctx.count(fitted.messages)
    assert p.compactions == 1 and p.ctx_window == 200


def test_kept_context_stands_in_so_compaction_waits_for_the_window_again() -> None:
    ctx, seen = manager(window=200)
    p = proc()
    messages = conversation(0)  # the system prompt and the task
    task = messages[-1]
    assert ctx.fit(p, LLMRequest(messages, max_tokens=64)).messages == messages
    messages += conversation(12)[1:]
    ctx.fit(p, LLMRequest(messages, max_tokens=64))
    messages += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "one more"}]
    grown = ctx.fit(p, LLMRequest(messages, max_tokens=64))
    assert len(seen) == 1  # the kept context + two small turns still fit
    assert grown.messages[-2:] == messages[-2:] and any("[compacted:" in m["content"] for m in grown.messages)
    while len(seen) == 1:
        messages += [{"role": "assistant", "content": "answer " + "reply " * 10},
                     {"role": "user", "content": "question " + "word " * 10}]
        grown = ctx.fit(p, LLMRequest(messages, max_tokens=64))
    assert grown.messages[:2] == [SYSTEM, task]  # the task stays, however long it goes on
    markers = [m["content"] for m in grown.messages if m["content"].startswith("[compacted:")]
    assert len(markers) == 1  # one marker, counting every turn dropped so far
    total = seen[0].dropped_turns + seen[1].dropped_turns
    assert markers[0].startswith(f"[compacted: {total} earlier turns")
    other = LLMRequest([SYSTEM, {"role": "user", "content": "a new conversation"}], max_tokens=64)
    assert ctx.fit(p, other) is other  # not the last one grown: nothing of it is carried over


def test_an_assistant_call_and_its_tool_results_are_kept_or_dropped_together() -> None:
    ctx, _ = manager(window=200)
    messages: list[dict] = [SYSTEM, {"role": "user", "content": "add up the numbers"}]
    for i in range(15):
        messages.append({"role": "assistant", "content": "",
                         "tool_calls": [{"name": "calc", "arguments": {"expression": f"{i} + {i}"}}]})
        messages.append({"role": "tool", "name": "calc", "content": f"the sum is {2 * i} " + "ok " * 5})
    fitted = ctx.fit(proc(), LLMRequest(messages, max_tokens=64)).messages
    assert fitted[-1] is messages[-1] and fitted[-2] is messages[-2]
    for i, m in enumerate(fitted):
        if m["role"] == "tool":
            assert fitted[i - 1]["role"] in ("assistant", "tool") and "[compacted:" not in fitted[i - 1]["content"]


def test_a_turn_bigger_than_the_window_is_cut_from_its_middle() -> None:
    ctx, seen = manager(window=200)
    huge = " ".join(f"w{i}" for i in range(1000))
    fitted = ctx.fit(proc(), LLMRequest([SYSTEM, {"role": "user", "content": huge}], max_tokens=64))
    assert fitted.messages[0] is SYSTEM
    text = fitted.messages[1]["content"]
    assert text.startswith("w0 w1 ") and text.endswith(" w998 w999") and "tokens cut …]" in text
    assert ctx.count(fitted.messages) + fitted.max_tokens <= 200
    assert seen[0].how == "cut"


async def test_a_long_conversation_keeps_working_past_the_window(home: Path) -> None:
    put_agent(home, "talker", TALKER)
    sim = SimulatedBackend(context_window=200, decode_tps=0, prefill_tps=0)
    async with session(home, sim) as s:
        compacted: list[ContextCompacted] = []
        s.kernel.bus.on(compacted.append, ContextCompacted)
        assert await s.run("run talker 30") == 0
        p = s.kernel.lookup(1)
        assert p.status == "EXITED(0)" and len("".join(p.output).splitlines()) == 30
        assert len(sim.requests) == 30 and all(fits(sim, r) for r in sim.requests)
        assert all(r.messages[0]["content"] == SYSTEM["content"] for r in sim.requests)
        assert all(r.messages[-1]["content"].startswith(f"turn {i}:") for i, r in enumerate(sim.requests))
        assert compacted and p.compactions == len(compacted) < 30  # not at every call: it waits for the window
        assert 0 < p.ctx_tokens <= 200
        s.take()
        await s.run("cat /proc/1/context")
        out = s.take()[0]
        assert out.startswith(f"used: {p.ctx_tokens} / 200 tokens ({100 * p.ctx_tokens / 200:.0f}%)\n"
                              f"compactions: {len(compacted)} (last: ")
        assert "[user]\nturn 0: tell me more" in out  # the transcript keeps everything said


async def test_react_keeps_working_past_the_window(home: Path) -> None:
    sim = SimulatedBackend(context_window=400, decode_tps=0, prefill_tps=0)
    steps = 25

    def script(request: LLMRequest) -> Reply:  # a tool call a step, then the answer
        if len(sim.requests) >= steps:
            return Reply("ANSWER: counted")
        return Reply(tool_calls=[{"name": "calc", "arguments": {"expression": f"{len(sim.requests)} * 2"}}])

    sim.script(script)
    async with await boot(make_config(home), backend=sim) as kernel:
        p = kernel.spawn("react", ["--tools", "calc", "--max-steps", "40", "count", "to", "twenty-five"])
        await kernel.wait(p.pid)
        assert p.status == "EXITED(0)" and "".join(p.output).endswith("counted\n")
        assert len(sim.requests) == steps and p.compactions > 0
        assert all(fits(sim, r) for r in sim.requests)
        for r in sim.requests:  # the system prompt and the task always reach the model
            assert r.messages[0]["role"] == "system"
            assert any(m["content"] == "count to twenty-five" for m in r.messages)


async def run_talker(home: Path, turns: int, interfere: str = "") -> tuple[str, Kernel, Process]:
    """Run the talker to the end on a small window; `interfere` STOPs/CONTs it, or preempts it with rr."""
    put_agent(home, "talker", TALKER)
    sim = SimulatedBackend(context_window=200, slots=1, decode_tps=1000, prefill_tps=100_000, seed=3)
    kernel = await boot(make_config(home, policy="rr" if interfere == "preempt" else "fifo", slice=3),
                        backend=sim)
    p = kernel.spawn("talker", [str(turns)])
    if interfere == "preempt":
        others = [kernel.spawn("chat", ["long"]) for _ in range(2)]
        await kernel.wait(p.pid)
        for other in others:
            await kernel.wait(other.pid)
    elif interfere == "stop":
        for _ in range(4):
            await until(lambda: p.status == "RUNNING" and kernel.dispatcher.running, timeout=20)
            kernel.signal(p.pid, Signal.STOP)
            await asyncio.sleep(0.02)
            kernel.signal(p.pid, Signal.CONT)
        await kernel.wait(p.pid)
    else:
        await kernel.wait(p.pid)
    return "".join(p.output), kernel, p


async def test_stop_cont_and_preemption_leave_the_context_intact(tmp_path: Path) -> None:
    expected, kernel, p = await run_talker(tmp_path / "plain", 12)
    await kernel.shutdown()
    assert p.status == "EXITED(0)" and p.compactions > 0 and p.ctx_switches == 0
    for how in ("stop", "preempt"):
        switched: list[ContextSwitched] = []
        text, kernel, p = await run_talker(tmp_path / how, 12, how)
        try:
            assert p.status == "EXITED(0)"
            assert text == expected, how  # the same answers, word for word
            assert p.ctx_switches > 0 and p.compactions > 0
            events = kernel.storage.events(pid=p.pid, types=("ContextSwitched", "SyscallPreempted"))
            switched = [ContextSwitched(**{k: v for k, v in e["data"].items() if k != "type"})
                        for e in events if e["type"] == "ContextSwitched"]
            preempted = [e for e in events if e["type"] == "SyscallPreempted"]
            assert len(switched) == len(preempted) == p.ctx_switches
            assert all(e.tokens > 0 and e.resume_s >= e.cost_s >= 0 for e in switched)
            assert abs(p.switch_cost_s - sum(e.cost_s for e in switched)) < 1e-3
            snap = kernel.context.latest_snapshot(p.pid)
            assert snap is None  # forgotten when the process exited
        finally:
            await kernel.shutdown()


async def test_a_snapshot_restores_the_request_the_call_resumes_with(home: Path) -> None:
    sim = SimulatedBackend(slots=1, decode_tps=300, prefill_tps=10_000)
    async with await boot(make_config(home), backend=sim) as kernel:
        preempted: list[SyscallPreempted] = []
        kernel.bus.on(preempted.append, SyscallPreempted)
        p = kernel.spawn("chat", ["long"])
        await until(lambda: p.status == "RUNNING" and len(p.output) > 3)
        kernel.signal(p.pid, Signal.STOP)
        await until(lambda: bool(preempted))
        snap = kernel.context.latest_snapshot(p.pid)
        assert snap is not None and snap.pid == p.pid and snap.reason == "stopped"
        assert snap.partial and "".join(p.output).startswith(snap.partial.strip())
        assert snap.tokens == kernel.context.count(snap.messages) + len(snap.partial.split())
        kernel.signal(p.pid, Signal.CONT)
        await kernel.wait(p.pid)
        assert ContextManager.restore(snap) == sim.requests[1]  # what the dispatcher sent to go on
        assert p.ctx_switches == 1 and p.switch_cost_s >= 0
        assert p.ctx_tokens == sim.prompt_tokens(sim.requests[0]) + p.completion_tokens  # counted once
