"""`react`: the tool-using agent, end to end through the kernel on the simulated model (and the Ollama stand-in)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from agents.react import parse_reply
from kernel.kernel import Kernel, boot
from kernel.llm.backend import LLMRequest
from kernel.llm.ollama import OllamaBackend
from kernel.llm.simulated import Reply, SimulatedBackend
from kernel.process import Process
from kernel.syscall import Pipe
from kernel.tools.registry import ToolContext, tool
from tests.conftest import make_config
from tests.fakes.ollama_server import FakeOllama

CALC_CALL = 'CALL {"tool": "calc", "args": {"expression": "6*7"}}'


@pytest.fixture(autouse=True)
def _react_installed(home: Path) -> None:
    """Spawnable as `react` through the user agents dir too (the `aios.agents` entry point wins when there)."""
    (home / "agents").mkdir(parents=True, exist_ok=True)
    (home / "agents" / "react.py").write_text("from agents.react import main  # noqa: F401\n")


async def run(kernel: Kernel, *argv: str, stdin: str | None = None) -> Process:
    proc = kernel.spawn("react", list(argv), stdin=None if stdin is None else Pipe(stdin, closed=True))
    await asyncio.wait_for(kernel.wait(proc.pid), 30)
    return proc


def out(proc: Process) -> str:
    return "".join(proc.output)


def names(request: LLMRequest) -> list[str]:
    return [t["function"]["name"] for t in request.tools]


# -- the loop ---------------------------------------------------------------------------------------


async def test_text_protocol_runs_the_call_and_answers(kernel: Kernel, sim: SimulatedBackend) -> None:
    sim.enqueue(CALC_CALL, "ANSWER: 6*7 is 42.")
    proc = await run(kernel, "what is 6*7? use calc")
    assert proc.status == "EXITED(0)", out(proc)
    assert out(proc) == '→ calc {"expression": "6*7"}\n← ok: 42\n6*7 is 42.\n'
    first, second = sim.requests
    assert "calc" in names(first)  # the schemas are offered natively first
    assert "CALL {" in first.messages[0]["content"] and "- calc(expression: string)" in first.messages[0]["content"]
    assert first.messages[-1] == {"role": "user", "content": "what is 6*7? use calc"}
    assert second.messages[-2] == {"role": "assistant", "content": CALC_CALL}
    assert second.messages[-1] == {"role": "user", "content": "RESULT calc: 42"}
    assert proc.tool_calls == 1


async def test_native_tool_calls(kernel: Kernel, sim: SimulatedBackend) -> None:
    sim.enqueue(Reply(tool_calls=[{"name": "calc", "arguments": {"expression": "2+2"}}]), "It is 4.")
    proc = await run(kernel, "what is 2+2?")
    assert proc.status == "EXITED(0)"
    assert out(proc) == '→ calc {"expression": "2+2"}\n← ok: 4\nIt is 4.\n'
    follow_up = sim.requests[1].messages
    assert follow_up[-2] == {"role": "assistant", "content": "",
                             "tool_calls": [{"name": "calc", "arguments": {"expression": "2+2"}}]}
    assert follow_up[-1] == {"role": "tool", "name": "calc", "content": "4"}


@pytest.mark.parametrize("native", [True, False], ids=["native", "text"])
async def test_calls_of_one_step_run_in_parallel(kernel: Kernel, sim: SimulatedBackend, native: bool) -> None:
    """Each call waits until the other has started: only overlapping calls both see `together`."""
    started = 0
    both = asyncio.Event()

    @tool("probe", timeout=10)
    async def probe(ctx: ToolContext, label: str) -> str:
        """Wait for the other probe."""
        nonlocal started
        started += 1
        if started == 2:
            both.set()
        try:
            await asyncio.wait_for(both.wait(), 5)
        except TimeoutError:
            return f"{label} alone"
        return f"{label} together"

    kernel.tools.register(probe)
    kernel.access.grant("alice", "probe", scope="session")
    calls = [{"name": "probe", "arguments": {"label": x}} for x in ("a", "b")]
    first = Reply(tool_calls=calls) if native else "\n".join(
        "CALL " + json.dumps({"tool": c["name"], "args": c["arguments"]}) for c in calls)
    sim.enqueue(first, "ANSWER: both ran")
    proc = await run(kernel, "--tools", "probe", "probe twice")
    assert proc.status == "EXITED(0)"
    assert "← ok: a together\n← ok: b together\n" in out(proc)
    assert out(proc).endswith("both ran\n") and started == 2


async def test_bad_json_is_told_to_the_model_and_the_agent_goes_on(kernel: Kernel, sim: SimulatedBackend) -> None:
    sim.enqueue('CALL {"tool": "calc", "args": {expression: 6*7}}', CALC_CALL, "ANSWER: 42")
    proc = await run(kernel, "what is 6*7?")
    assert proc.status == "EXITED(0)"
    lines = out(proc).splitlines()
    assert lines[0].startswith("→ ? (invalid JSON")
    assert lines[1].startswith("← error: your call was not understood (invalid JSON")
    assert lines[2:] == ['→ calc {"expression": "6*7"}', "← ok: 42", "42"]
    told = sim.requests[1].messages[-1]["content"]
    assert told.startswith("RESULT ?: error: your call was not understood") and 'CALL {"tool"' in told
    assert proc.tool_calls == 1  # the bad call never reached the kernel


async def test_step_limit(kernel: Kernel, sim: SimulatedBackend) -> None:
    sim.script(lambda request: CALC_CALL)  # never answers
    proc = await run(kernel, "--max-steps", "3", "loop forever")
    assert proc.status == "EXITED(1)"
    assert out(proc).endswith("react: no answer after 3 steps\n")
    assert len(sim.requests) == 3
    assert out(proc).count("→ calc") == 2  # the calls of the last step are not run: nobody would read them


async def test_a_denied_call_reaches_the_model_as_a_tool_error(kernel: Kernel, sim: SimulatedBackend) -> None:
    ran: list[str] = []

    @tool("launch", target="what")
    def launch(ctx: ToolContext, what: str) -> str:
        """Launch something (no rule allows it, and no one is there to ask)."""
        ran.append(what)
        return "launched"

    kernel.tools.register(launch)
    sim.enqueue(Reply(tool_calls=[{"name": "launch", "arguments": {"what": "rocket"}},
                                  {"name": "calc", "arguments": {"expression": "1+1"}}]),
                "I was not allowed to launch it; 1+1 is 2.")
    proc = await run(kernel, "launch the rocket and add 1+1")
    assert proc.status == "EXITED(0)"
    assert ran == []
    assert "← error: permission denied: launch(rocket)" in out(proc) and "← ok: 2\n" in out(proc)
    denied, added = sim.requests[1].messages[-2:]
    assert denied["role"] == "tool" and denied["name"] == "launch"
    assert denied["content"].startswith("error: permission denied: launch(rocket)")
    assert added == {"role": "tool", "name": "calc", "content": "2"}
    assert out(proc).endswith("I was not allowed to launch it; 1+1 is 2.\n")


async def test_tools_option_limits_what_the_model_sees_and_may_call(kernel: Kernel, sim: SimulatedBackend) -> None:
    sim.enqueue('CALL {"tool": "fs.list", "args": {}}', "ANSWER: no")
    proc = await run(kernel, "--tools=calc", "list files")
    assert proc.status == "EXITED(0)"
    assert names(sim.requests[0]) == ["calc"]
    assert all("fs.list" not in m["content"] for m in sim.requests[0].messages)  # nor in the worked examples
    assert sim.requests[0].messages[2]["content"].startswith('CALL {"tool": "calc"')
    assert "← error: no such tool: fs.list (tools: calc)" in out(proc)
    assert proc.tool_calls == 0


@pytest.mark.parametrize("argv, message", [
    ((), "usage: run react"),
    (("--tools", "nope,calc", "hi"), "react: no such tool: nope"),
    (("--max-steps", "zero", "hi"), "--max-steps needs a whole number"),
    (("--bogus", "hi"), "react: unknown option --bogus"),
])
async def test_usage_errors(kernel: Kernel, sim: SimulatedBackend, argv: tuple[str, ...], message: str) -> None:
    proc = await run(kernel, *argv)
    assert proc.status == "EXITED(2)" and message in out(proc)
    assert sim.requests == []


async def test_piped_input_joins_the_task(kernel: Kernel, sim: SimulatedBackend) -> None:
    sim.enqueue("Three lines.")
    proc = await run(kernel, "count the lines", stdin="a\nb\nc\n")
    assert proc.status == "EXITED(0)" and out(proc) == "Three lines.\n"
    assert sim.requests[0].messages[-1]["content"] == "count the lines\n\na\nb\nc"


async def test_an_empty_reply_gets_a_nudge(kernel: Kernel, sim: SimulatedBackend) -> None:
    sim.enqueue("", "ANSWER: fine")
    proc = await run(kernel, "say something")
    assert proc.status == "EXITED(0)" and out(proc) == "fine\n"
    assert "ANSWER" in sim.requests[1].messages[-1]["content"]


@pytest.mark.hostile
async def test_hostile_replies_and_results_do_not_break_the_agent(kernel: Kernel, sim: SimulatedBackend) -> None:
    @tool("noisy")
    def noisy(ctx: ToolContext) -> str:
        """Print terminal escapes and far too much."""
        return "\x1b[2J\x1b]0;pwned\x07clear" + "x" * 100_000

    kernel.tools.register(noisy)
    kernel.access.grant("alice", "noisy", scope="session")
    sim.enqueue("CALL calc " + "[" * 100_000, 'CALL {"tool": "noisy", "args": {}}', "ANSWER: \x1b[2Jsurvived")
    proc = await run(kernel, "misbehave")
    assert proc.status == "EXITED(0)", proc.error
    assert out(proc).startswith("→ calc (invalid JSON") and out(proc).endswith("survived\n")
    assert "\x1b" not in out(proc) and "\x07" not in out(proc)
    assert max(len(line) for line in out(proc).splitlines()) < 200
    result = sim.requests[2].messages[-1]["content"]
    assert len(result) < 2_100 and result.endswith("more chars)")


# -- Ollama: native calls, and the fallback for a model without tools -------------------------------


async def ollama_kernel(home: Path, fake: FakeOllama) -> Kernel:
    backend = OllamaBackend(model="gemma3:270m", host=fake.host, slots=2)
    return await boot(make_config(home, backend="ollama"), backend=backend)


async def test_ollama_native_calls_end_to_end(home: Path, fake_ollama: FakeOllama) -> None:
    fake_ollama.queue = [{"content": "", "tool_calls": [{"name": "calc", "arguments": {"expression": "6*7"}}]},
                         "It is 42."]
    async with await ollama_kernel(home, fake_ollama) as kernel:
        proc = await run(kernel, "what is 6*7?")
    assert proc.status == "EXITED(0)", proc.error
    assert out(proc) == '→ calc {"expression": "6*7"}\n← ok: 42\nIt is 42.\n'
    second = [r["body"] for r in fake_ollama.requests if r["path"] == "/api/chat"][1]
    assert second["messages"][-1] == {"role": "tool", "content": "42", "tool_name": "calc"}
    assert second["messages"][-2]["tool_calls"][0]["function"]["name"] == "calc"


async def test_ollama_model_without_tools_falls_back_to_the_text_protocol(home: Path,
                                                                          fake_ollama: FakeOllama) -> None:
    fake_ollama.no_tools = ["gemma3:270m"]
    fake_ollama.queue = [CALC_CALL, "ANSWER: 42"]
    async with await ollama_kernel(home, fake_ollama) as kernel:
        proc = await run(kernel, "what is 6*7?")
    assert proc.status == "EXITED(0)", proc.error
    assert out(proc) == '→ calc {"expression": "6*7"}\n← ok: 42\n42\n'
    bodies = [r["body"] for r in fake_ollama.requests if r["path"] == "/api/chat"]
    assert [bool(b.get("tools")) for b in bodies] == [True, False, False]  # refused once, then never offered
    assert bodies[2]["messages"][-1] == {"role": "user", "content": "RESULT calc: 42"}


# -- parsing the text protocol ----------------------------------------------------------------------


@pytest.mark.parametrize("reply, calls, answer", [
    ("ANSWER: 42", [], "42"),
    ("Answer: 42\nthat is all", [], "42\nthat is all"),
    ("just some text", [], "just some text"),
    ('Thinking.\nCALL {"tool": "calc", "args": {"expression": "1+1"}}\nRESULT calc: 3\nANSWER: 3',
     [("calc", {"expression": "1+1"})], None),
    ('CALL calc {"expression": "2*3"}\nCALL fs.list {}', [("calc", {"expression": "2*3"}), ("fs.list", {})], None),
    ('```json\n[{"tool": "calc", "args": {"expression": "1"}}, {"name": "fs.read", "arguments": {"path": "a"}}]\n```',
     [("calc", {"expression": "1"}), ("fs.read", {"path": "a"})], None),
    ('{"tool": "calc", "args": {"expression": "5"}}', [("calc", {"expression": "5"})], None),
    ('{"name": "calc", "arguments": "{\\"expression\\": \\"5\\"}"}', [("calc", {"expression": "5"})], None),
    ('```python\nprint("hi")\n```\nANSWER: code above', [], "code above"),
    ('Call me later.', [], "Call me later."),
])
def test_parse_reply(reply: str, calls: list[tuple[str, dict]], answer: str | None) -> None:
    parsed = parse_reply(reply)
    assert [(c.name, c.args) for c in parsed.calls] == calls
    assert all(c.problem is None for c in parsed.calls)
    assert parsed.answer == answer


@pytest.mark.parametrize("reply", [
    'CALL {"tool": "calc", "args": {expression: 1}}',
    'CALL {"args": {}}',
    'CALL calc [1, 2]',
    "CALL",
    '```json\n{"tool": "calc", "args": \n```',
])
def test_parse_reply_marks_calls_it_cannot_understand(reply: str) -> None:
    parsed = parse_reply(reply)
    assert len(parsed.calls) == 1 and parsed.calls[0].problem and parsed.answer is None


@pytest.mark.hostile
def test_parse_reply_survives_json_nested_past_the_parsers_depth() -> None:
    deep = "[" * 100_000
    assert parse_reply(deep) == parse_reply(deep)  # no RecursionError: it is not a call, so it is the answer
    assert parse_reply(deep).calls == [] and parse_reply(deep).answer == deep
    fenced = parse_reply('```json\n"tool"' + deep + "\n```")
    assert fenced.calls[0].problem and fenced.answer is None
