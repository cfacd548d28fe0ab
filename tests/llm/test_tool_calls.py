"""Native tool calls: Ollama through the real client against the stand-in server, and the simulated model."""

from __future__ import annotations

import json
from dataclasses import replace

import httpx
import pytest

from kernel.llm.backend import BackendError, Chunk, LLMRequest, ToolsUnsupported
from kernel.llm.ollama import OllamaBackend
from kernel.llm.simulated import Reply, SimulatedBackend
from tests.fakes.ollama_server import FakeOllama

CALC = {"type": "function", "function": {"name": "calc", "description": "Evaluate arithmetic.",
                                         "parameters": {"type": "object", "required": ["expression"],
                                                        "properties": {"expression": {"type": "string"}}}}}
ASK = [{"role": "user", "content": "what is 6*7?"}]
CALL = {"name": "calc", "arguments": {"expression": "6*7"}}


async def collect(backend: OllamaBackend | SimulatedBackend, request: LLMRequest) -> list[Chunk]:
    return [c async for c in backend.stream(request)]


def chat_bodies(fake: FakeOllama) -> list[dict]:
    return [r["body"] for r in fake.requests if r["path"] == "/api/chat"]


# -- Ollama -------------------------------------------------------------------------------------------


async def test_ollama_tool_calls_become_chunk_tool_calls(fake_ollama: FakeOllama) -> None:
    fake_ollama.queue = [{"content": "", "tool_calls": [CALL, {"name": "fs.list", "arguments": {}}]}]
    backend = OllamaBackend(model="gemma3:270m", host=fake_ollama.host)
    try:
        chunks = await collect(backend, LLMRequest(ASK, tools=[CALC]))
    finally:
        await backend.close()
    assert chunks[-1].done and chunks[-1].finish_reason == "stop"
    assert chunks[-1].tool_calls == (CALL, {"name": "fs.list", "arguments": {}})
    assert "".join(c.text for c in chunks) == ""
    body = chat_bodies(fake_ollama)[0]
    assert body["tools"][0]["function"]["name"] == "calc"
    assert body["tools"][0]["function"]["parameters"]["required"] == ["expression"]


async def test_ollama_without_tools_sends_none_and_gets_text(fake_ollama: FakeOllama) -> None:
    fake_ollama.queue = [{"content": "Forty-two.", "tool_calls": [CALL]}]  # no tools asked: only the text
    backend = OllamaBackend(model="gemma3:270m", host=fake_ollama.host)
    try:
        chunks = await collect(backend, LLMRequest(ASK))
    finally:
        await backend.close()
    assert "".join(c.text for c in chunks) == "Forty-two." and chunks[-1].tool_calls == ()
    assert not chat_bodies(fake_ollama)[0].get("tools")


async def test_ollama_gets_tool_results_in_its_own_message_format(fake_ollama: FakeOllama) -> None:
    """The kernel's neutral messages reach Ollama as it wants them: `function`-wrapped calls, `tool_name`."""
    backend = OllamaBackend(model="gemma3:270m", host=fake_ollama.host)
    history = ASK + [{"role": "assistant", "content": "", "tool_calls": [CALL]},
                     {"role": "tool", "name": "calc", "content": "42"}]
    try:
        await collect(backend, LLMRequest(history, tools=[CALC]))
    finally:
        await backend.close()
    sent = chat_bodies(fake_ollama)[0]["messages"]
    assert sent[1]["tool_calls"] == [{"function": {"name": "calc", "arguments": {"expression": "6*7"}}}]
    assert sent[2] == {"role": "tool", "content": "42", "tool_name": "calc"}


async def test_model_without_tools_is_one_clear_error(fake_ollama: FakeOllama) -> None:
    fake_ollama.no_tools = ["gemma3:270m"]
    backend = OllamaBackend(model="gemma3:270m", host=fake_ollama.host)
    try:
        with pytest.raises(ToolsUnsupported) as caught:
            await collect(backend, LLMRequest(ASK, tools=[CALC]))
        plain = await collect(backend, LLMRequest(ASK))  # the same model without tools still answers
    finally:
        await backend.close()
    assert isinstance(caught.value, BackendError)
    assert str(caught.value) == (f"model 'gemma3:270m' on Ollama at {fake_ollama.host} does not support tool calling")
    assert "".join(c.text for c in plain) == fake_ollama.reply


def test_stand_in_speaks_ollamas_wire_format(fake_ollama: FakeOllama) -> None:
    """Streamed: the calls in their own not-done message before the final line; whole: on the message."""
    fake_ollama.queue = [{"content": "", "tool_calls": [CALL]}] * 2
    request = {"model": "gemma3:270m", "messages": ASK, "tools": [CALC]}
    with httpx.Client(base_url=fake_ollama.url) as client:
        lines = [json.loads(line) for line in client.post("/api/chat", json=request).text.splitlines()]
        whole = client.post("/api/chat", json={**request, "stream": False}).json()
        refused = client.post("/api/chat", json={**request, "model": "gemma3"})
    wire = [{"function": {"index": 0, "name": "calc", "arguments": {"expression": "6*7"}}}]
    assert lines[-2]["message"] == {"role": "assistant", "content": "", "tool_calls": wire}
    assert lines[-2]["done"] is False and lines[-1]["done"] is True
    assert "tool_calls" not in lines[-1]["message"]
    assert whole["message"]["tool_calls"] == wire and whole["done"] is True
    assert refused.status_code == 404  # "gemma3" is not there: existence is checked first
    fake_ollama.models.append("gemma3")
    fake_ollama.no_tools = ["gemma3"]
    with httpx.Client(base_url=fake_ollama.url) as client:
        refused = client.post("/api/chat", json={**request, "model": "gemma3"})
    assert refused.status_code == 400
    assert refused.json() == {"error": "registry.ollama.ai/library/gemma3:latest does not support tools"}


# -- simulated ----------------------------------------------------------------------------------------


async def test_simulated_reply_with_tool_calls_on_the_final_chunk() -> None:
    sim = SimulatedBackend(decode_tps=0, prefill_tps=0)
    sim.enqueue(Reply("Let me compute.", [CALL]), "plain")
    chunks = await collect(sim, LLMRequest(ASK, tools=[CALC]))
    assert "".join(c.text for c in chunks) == "Let me compute."
    assert [c.tool_calls for c in chunks[:-1]] == [()] * (len(chunks) - 1)
    assert chunks[-1].tool_calls == (CALL,)
    chunks = await collect(sim, LLMRequest(ASK))
    assert "".join(c.text for c in chunks) == "plain" and chunks[-1].tool_calls == ()


async def test_simulated_calls_without_text_produce_no_tokens() -> None:
    sim = SimulatedBackend(decode_tps=0, prefill_tps=0)
    sim.enqueue(Reply(tool_calls=[CALL]))
    chunks = await collect(sim, LLMRequest(ASK))
    assert len(chunks) == 1 and chunks[0].done and chunks[0].completion_tokens == 0
    assert chunks[0].tool_calls == (CALL,)


async def test_script_function_answers_after_the_queue() -> None:
    sim = SimulatedBackend(decode_tps=0, prefill_tps=0)
    seen: list[LLMRequest] = []

    def fn(request: LLMRequest) -> str | Reply | BaseException:
        seen.append(request)
        last = request.messages[-1]["content"]
        if last == "fail":
            return BackendError("scripted failure")
        return Reply(tool_calls=[CALL]) if "?" in last else f"echo: {last}"

    sim.enqueue("queued first")
    sim.script(fn)
    first = await collect(sim, LLMRequest([{"role": "user", "content": "hi"}]))
    assert "".join(c.text for c in first) == "queued first" and seen == []
    echoed = await collect(sim, LLMRequest([{"role": "user", "content": "hi"}]))
    assert "".join(c.text for c in echoed) == "echo: hi"
    called = await collect(sim, LLMRequest(ASK))
    assert called[-1].tool_calls == (CALL,)
    with pytest.raises(BackendError, match="scripted failure"):
        await collect(sim, LLMRequest([{"role": "user", "content": "fail"}]))
    assert len(seen) == 3
    sim.script(None)
    back = await collect(sim, LLMRequest([{"role": "user", "content": "hi"}]))
    assert "".join(c.text for c in back) == sim.reply_for(LLMRequest([{"role": "user", "content": "hi"}]))


async def test_a_preempted_scripted_reply_resumes_where_it_stopped() -> None:
    """The dispatcher resumes a preempted call with `partial`: it must continue the same scripted reply."""
    sim = SimulatedBackend(decode_tps=0, prefill_tps=0)
    sim.enqueue(Reply("one two three four", [CALL]), "the next reply")
    request = LLMRequest(ASK)
    stream = sim.stream(request)
    head = [(await anext(stream)).text for _ in range(2)]
    await stream.aclose()  # preempted after two tokens
    rest = await collect(sim, replace(request, partial="".join(head)))
    assert "".join(head) + "".join(c.text for c in rest) == "one two three four"
    assert rest[-1].tool_calls == (CALL,)
    nxt = await collect(sim, LLMRequest(ASK))
    assert "".join(c.text for c in nxt) == "the next reply"
