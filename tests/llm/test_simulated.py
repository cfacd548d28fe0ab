"""The simulated backend: deterministic, scriptable, streaming and cancellable."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernel.kernel import boot
from kernel.llm.backend import BackendError, LLMRequest
from kernel.llm.simulated import LONG_TOKENS, SHORT_TOKENS, SimulatedBackend
from kernel.process import Signal
from tests.conftest import make_config, until


def ask(text: str, **kw: object) -> LLMRequest:
    return LLMRequest([{"role": "user", "content": text}], **kw)  # type: ignore[arg-type]


async def collect(backend: SimulatedBackend, request: LLMRequest) -> tuple[str, list]:
    chunks = [c async for c in backend.stream(request)]
    return "".join(c.text for c in chunks), chunks


async def test_same_request_same_reply_and_seed_changes_it() -> None:
    a, b, c = (SimulatedBackend(decode_tps=0, prefill_tps=0, seed=s) for s in (1, 1, 2))
    text_a, chunks = await collect(a, ask("hello"))
    text_b, _ = await collect(b, ask("hello"))
    text_c, _ = await collect(c, ask("hello"))
    assert text_a == text_b != text_c
    assert chunks[-1].done and chunks[-1].completion_tokens == len(text_a.split())


async def test_long_and_short_hints() -> None:
    sim = SimulatedBackend(decode_tps=0, prefill_tps=0)
    long, _ = await collect(sim, ask("long", max_tokens=1000))
    short, _ = await collect(sim, ask("short"))
    assert len(long.split()) == LONG_TOKENS and len(short.split()) == SHORT_TOKENS


async def test_max_tokens_cuts_with_reason_length() -> None:
    sim = SimulatedBackend(decode_tps=0, prefill_tps=0)
    text, chunks = await collect(sim, ask("long", max_tokens=5))
    assert len(text.split()) == 5 and chunks[-1].finish_reason == "length"


async def test_enqueue_scripts_exact_replies_and_errors() -> None:
    sim = SimulatedBackend(decode_tps=0, prefill_tps=0)
    sim.enqueue("Exactly this.", BackendError("scripted failure"))
    text, _ = await collect(sim, ask("anything"))
    assert text == "Exactly this."
    with pytest.raises(BackendError, match="scripted failure"):
        await collect(sim, ask("anything"))
    text, _ = await collect(sim, ask("anything"))
    assert text == sim.reply_for(ask("anything"))  # back to generated replies


async def test_partial_continues_where_it_stopped() -> None:
    sim = SimulatedBackend(decode_tps=0, prefill_tps=0)
    full, _ = await collect(sim, ask("hello"))
    words = full.split(" ")
    partial = " ".join(words[:4])
    rest, _ = await collect(sim, LLMRequest(ask("hello").messages, partial=partial))
    assert partial + rest == full


async def test_service_time_follows_the_rates() -> None:
    import time

    sim = SimulatedBackend(decode_tps=100, prefill_tps=1e9)
    t0 = time.perf_counter()
    await collect(sim, ask("short"))
    assert time.perf_counter() - t0 >= SHORT_TOKENS / 100 * 0.9


async def test_scripted_reply_through_a_process(home: Path) -> None:
    sim = SimulatedBackend(decode_tps=1000)
    sim.enqueue("Cats are very intelligent animals.")
    async with await boot(make_config(home), backend=sim) as kernel:
        proc = kernel.spawn("chat", ["Write one sentence about cats."])
        await kernel.wait(proc.pid)
        assert "".join(proc.output) == "Cats are very intelligent animals.\n"
        assert proc.completion_tokens == 5


async def test_cancel_mid_stream_through_a_process(home: Path) -> None:
    sim = SimulatedBackend(decode_tps=100)
    async with await boot(make_config(home), backend=sim) as kernel:
        proc = kernel.spawn("chat", ["long"])
        await until(lambda: len(proc.output) >= 2)
        kernel.signal(proc.pid, Signal.TERM)
        await kernel.wait(proc.pid)
        assert proc.status == "EXITED(SIGTERM)"
        assert 2 <= len(proc.output) < LONG_TOKENS
        assert not kernel.dispatcher.running


async def test_offered_tools_the_model_obeys_use_tool() -> None:
    from kernel.llm.backend import LLMRequest
    from kernel.llm.simulated import SimulatedBackend

    sim = SimulatedBackend(decode_tps=0, prefill_tps=0)
    tools = [{"type": "function", "function": {"name": "fs.write", "parameters": {
        "properties": {"path": {}, "content": {}, "append": {}}, "required": ["path", "content"]}}}]
    ask = LLMRequest(messages=[{"role": "user", "content": "use fs.write: notes.txt hello there"}], tools=tools)
    chunks = [c async for c in sim.stream(ask)]
    assert chunks[-1].tool_calls == ({"name": "fs.write", "arguments": {"path": "notes.txt",
                                                                      "content": "hello there"}},)
    answered = LLMRequest(messages=[*ask.messages, {"role": "tool", "content": "wrote 11 bytes"}], tools=tools)
    text = "".join([c.text async for c in sim.stream(answered)])
    assert text == "fs.write said: wrote 11 bytes"
    plain = LLMRequest(messages=ask.messages)  # no tools offered: an ordinary answer
    assert not [c async for c in sim.stream(plain)][-1].tool_calls
