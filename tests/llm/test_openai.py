"""The openai backend through the real `openai` client, against the stand-in server over real sockets."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kernel.kernel import boot
from kernel.llm.backend import BackendError, BackendUnavailable, LLMRequest, ModelNotFound
from kernel.llm.factory import create_backend, create_pool
from kernel.llm.openai_compat import OpenAIBackend, api_root, to_openai
from kernel.llm.retry import is_transient
from tests.conftest import make_config, until
from tests.fakes.openai_server import FakeOpenAI
from tests.llm.test_ollama import free_port

ASK = LLMRequest(messages=[{"role": "user", "content": "Say hello."}], max_tokens=64)


async def answer(backend: OpenAIBackend, request: LLMRequest = ASK) -> tuple[str, object]:
    text, last = "", None
    async for chunk in backend.stream(request):
        text += chunk.text
        last = chunk
    return text, last


async def test_streams_the_answer_with_the_engines_usage_counts(fake_openai: FakeOpenAI) -> None:
    backend = OpenAIBackend(base_url=fake_openai.url)
    await backend.start()
    assert backend.model == "gemma-test"  # none named: the first the server lists
    text, last = await answer(backend)
    assert text == "Hello from the stand-in engine."
    assert last.done and last.prompt_tokens == 2 and last.completion_tokens == 5 and last.finish_reason == "stop"
    body = fake_openai.requests[0]
    assert body["stream"] is True and body["max_tokens"] == 64 and body["stream_options"] == {"include_usage": True}
    await backend.close()


async def test_without_a_usage_chunk_it_counts_for_itself(fake_openai: FakeOpenAI) -> None:
    fake_openai.no_usage = True
    backend = OpenAIBackend(base_url=fake_openai.url, model="gemma-test")
    _, last = await answer(backend, LLMRequest(messages=ASK.messages, max_tokens=3))
    assert last.completion_tokens == 3 and last.prompt_tokens > 0 and last.finish_reason == "length"
    await backend.close()


def test_the_url_may_be_given_with_or_without_v1_or_scheme() -> None:
    assert api_root("127.0.0.1:8080") == "http://127.0.0.1:8080/v1"
    assert api_root("http://h:1/v1/") == "http://h:1/v1"
    with pytest.raises(BackendError, match="--base-url"):
        api_root("")
    with pytest.raises(BackendError, match="--base-url"):
        create_backend("openai")


def test_tool_calls_and_results_are_sent_with_matching_ids() -> None:
    sent = to_openai([
        {"role": "system", "content": "s"},
        {"role": "assistant", "content": "", "tool_calls": [{"name": "calc", "arguments": {"expr": "1+1"}},
                                                            {"name": "ls", "arguments": {}}]},
        {"role": "tool", "name": "calc", "content": "2"},
        {"role": "tool", "name": "ls", "content": "a b"},
    ])
    calls = sent[1]["tool_calls"]
    assert [c["function"]["arguments"] for c in calls] == ['{"expr": "1+1"}', "{}"]
    assert [c["type"] for c in calls] == ["function", "function"]
    assert [m["tool_call_id"] for m in sent[2:]] == [calls[0]["id"], calls[1]["id"]]
    assert calls[0]["id"] != calls[1]["id"]


async def test_tool_calls_streamed_in_fragments_are_put_together(fake_openai: FakeOpenAI) -> None:
    fake_openai.tool_calls = [{"name": "calc", "arguments": {"expr": "6*7"}}, {"name": "ls", "arguments": "[1"}]
    backend = OpenAIBackend(base_url=fake_openai.url, model="gemma-test")
    tools = [{"type": "function", "function": {"name": "calc", "parameters": {"type": "object"}}}]
    _, last = await answer(backend, LLMRequest(messages=ASK.messages, tools=tools))
    assert last.finish_reason == "tool_calls"
    assert last.tool_calls == ({"name": "calc", "arguments": {"expr": "6*7"}},
                               {"name": "ls", "arguments": {"_raw": "[1"}})  # not JSON: the tool's schema says no
    assert fake_openai.requests[0]["tools"] == tools
    await backend.close()


@pytest.mark.faults
async def test_each_failure_is_one_line_naming_the_server(fake_openai: FakeOpenAI) -> None:
    backend = OpenAIBackend(base_url=fake_openai.url, model="no-such-model")
    with pytest.raises(ModelNotFound, match="'no-such-model' not found at the OpenAI-compatible server"):
        await answer(backend)
    backend.model = "gemma-test"
    fake_openai.status, fake_openai.error = 503, "loading\nmodel"
    with pytest.raises(BackendError) as failed:
        await answer(backend)
    assert str(failed.value).endswith("failed (503): loading model") and is_transient(failed.value)
    fake_openai.status = 400
    with pytest.raises(BackendError) as failed:
        await answer(backend)
    assert "(400)" in str(failed.value) and not is_transient(failed.value)
    fake_openai.status = 0
    fake_openai.cut_after = 2
    with pytest.raises(BackendError, match="lost mid-stream") as failed:
        await answer(backend)
    assert is_transient(failed.value) and "\n" not in str(failed.value)
    fake_openai.cut_after, fake_openai.garbage = None, True
    with pytest.raises(BackendError) as failed:
        await answer(backend)
    assert "\n" not in str(failed.value) and "OpenAI-compatible server" in str(failed.value)
    await backend.close()
    nothing = OpenAIBackend(base_url=f"127.0.0.1:{free_port()}")
    with pytest.raises(BackendUnavailable, match="cannot reach the OpenAI-compatible server"):
        await nothing.start()
    await nothing.close()


async def test_closing_the_stream_closes_the_connection(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply = " ".join(["word"] * 400)
    fake_openai.delay = 0.01
    backend = OpenAIBackend(base_url=fake_openai.url, model="gemma-test")
    stream = backend.stream(LLMRequest(messages=ASK.messages, max_tokens=400))
    async for chunk in stream:
        if chunk.text:
            break
    await stream.aclose()
    await until(lambda: fake_openai.gone == 1, timeout=10)  # the engine saw the client go: it stops generating
    await backend.close()


def test_pool_entries_take_urls_and_slot_counts() -> None:
    pool = create_pool("openai:http://127.0.0.1:8080@3,openai:http://u:p@127.0.0.1:8081/v1,127.0.0.1:11434@2")
    ends = pool.endpoints
    assert [e.backend.name for e in ends] == ["openai", "openai", "ollama"]
    assert [e.backend.slots for e in ends] == [3, 1, 2]
    assert ends[1].backend.url == "http://u:p@127.0.0.1:8081/v1"
    with pytest.raises(BackendError, match="slots must be a number"):
        create_pool("openai:http://127.0.0.1:8080@x")


async def test_an_agent_runs_on_the_openai_backend(home: Path, fake_openai: FakeOpenAI) -> None:
    async with await boot(make_config(home, backend="openai", base_url=fake_openai.url)) as kernel:
        proc = kernel.spawn("chat", ["Say hello."])
        await kernel.wait(proc.pid)
        assert proc.status == "EXITED(0)"
        assert "".join(proc.output).strip() == fake_openai.reply
        assert kernel.backend.describe()["backend"] == "openai"


async def test_a_stopped_engine_mid_call_is_retried_and_fails_in_one_line(home: Path, fake_openai: FakeOpenAI) -> None:
    fake_openai.cut_after = 1
    async with await boot(make_config(home, backend="openai", base_url=fake_openai.url)) as kernel:
        proc = kernel.spawn("chat", ["Say hello."])
        await asyncio.wait_for(kernel.wait(proc.pid), 30)
        assert proc.status.startswith("EXITED") and proc.exit_code != 0
        assert "lost mid-stream" in (proc.error or "") and len(fake_openai.requests) > 1  # it was tried again
