"""Self-tests: the fake Ollama server driven by the real ``ollama`` client."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator

import httpx
import ollama
import pytest

from tests.fakes import ollama_server
from tests.fakes.fixtures import fake_ollama  # noqa: F401 - the shared pytest fixture, tested below
from tests.fakes.ollama_server import FakeOllama, split_pieces

MODEL = "gemma3:270m"
LONG = " ".join(f"word{i}" for i in range(200))
MSGS = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "say hello please"}]


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama() as server:
        yield server
    assert server.errors == []  # nothing blew up inside the fake


def wait_for(cond: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def chat_stream(fake: FakeOllama, **kw: object) -> list[ollama.ChatResponse]:
    with ollama.Client(host=fake.url) as client:
        return list(client.chat(model=kw.pop("model", MODEL), messages=kw.pop("messages", MSGS),
                                stream=True, **kw))


def test_split_pieces_round_trip() -> None:
    for text in ["Hello from the fake model.", "  lead and trail  ", "a\nb\tc", "", "   "]:
        assert "".join(split_pieces(text)) == text
        assert "".join(split_pieces(text, 3)) == text
    assert split_pieces("a b c") == ["a", " b", " c"]


def test_shared_fixture(fake_ollama: FakeOllama) -> None:  # noqa: F811 - the fixture
    assert fake_ollama.url == f"http://{fake_ollama.host}"
    assert ollama.Client(host=fake_ollama.url).list().models[0].model == MODEL


def test_root_and_version(fake: FakeOllama) -> None:
    root = httpx.get(fake.url + "/")
    assert root.status_code == 200 and root.text == "Ollama is running"
    assert root.headers["content-type"].startswith("text/plain")
    assert httpx.head(fake.url + "/").status_code == 200
    assert httpx.get(fake.url + "/api/version").json() == {"version": "0.12.0"}
    assert httpx.get(fake.url + "/api/nope").status_code == 404
    assert fake.paths()[:2] == ["/", "/"]


def test_list_show_ps(fake: FakeOllama) -> None:
    client = ollama.Client(host=fake.url)
    listed = client.list().models
    assert [m.model for m in listed] == [MODEL]
    assert listed[0].details is not None and listed[0].details.family == "gemma3"
    shown = client.show(MODEL)
    assert shown.modelinfo is not None and shown.modelinfo["gemma3.context_length"] == 32768
    assert shown.modelinfo["general.architecture"] == "gemma3"
    assert shown.capabilities == ["completion"] and shown.modelfile and shown.template
    assert client.ps().models == []
    client.chat(model=MODEL, messages=MSGS)
    running = client.ps().models
    assert [m.model for m in running] == [MODEL] and running[0].context_length == 32768
    client.generate(model=MODEL, prompt="", keep_alive=0)  # unload, like real Ollama
    assert client.ps().models == []


def test_model_name_without_tag_means_latest() -> None:
    with ollama_server.fake_ollama(models=["llama3.2"]) as fake:
        client = ollama.Client(host=fake.url)
        assert client.chat(model="llama3.2:latest", messages=MSGS).message.content


def test_pull_streaming_and_not(fake: FakeOllama) -> None:
    client = ollama.Client(host=fake.url)
    parts = list(client.pull("tinyllama:1b", stream=True))
    statuses = [p.status for p in parts]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert "verifying sha256 digest" in statuses and "writing manifest" in statuses
    progress = [p for p in parts if p.total]
    assert progress and progress[-1].completed == progress[-1].total and progress[0].digest
    assert "tinyllama:1b" in fake.models
    assert client.pull("other:7b").status == "success" and "other:7b" in fake.models
    assert fake.requests[-1]["body"]["stream"] is False


def test_pull_missing_model(fake: FakeOllama) -> None:
    client = ollama.Client(host=fake.url)
    with pytest.raises(ollama.ResponseError) as non_stream:
        client.pull("missing-model")
    assert non_stream.value.status_code == 500
    assert non_stream.value.error == "pull model manifest: file does not exist"
    with pytest.raises(ollama.ResponseError) as in_stream:  # real Ollama: 200 + error line
        list(client.pull("missing-model", stream=True))
    assert in_stream.value.status_code == -1


def test_chat_stream_concatenates_to_reply(fake: FakeOllama) -> None:
    parts = chat_stream(fake)
    assert "".join(p.message.content or "" for p in parts) == fake.reply
    assert all(not p.done and p.model == MODEL for p in parts[:-1])
    final = parts[-1]
    assert final.done and final.done_reason == "stop" and final.message.content == ""
    assert final.eval_count == len(parts) - 1 == 5
    assert final.prompt_eval_count == (2 + 4) + (3 + 4)
    assert final.total_duration and final.load_duration and final.eval_duration
    assert fake.requests[-1]["path"] == "/api/chat" and fake.requests[-1]["body"]["messages"] == MSGS
    # the client has the last chunk before the server's thread has counted the stream done
    assert wait_for(lambda: fake.completed_streams == 1 and fake.active_streams == 0) and fake.disconnects == 0


def test_chat_non_stream_and_chunk_words(fake: FakeOllama) -> None:
    client = ollama.Client(host=fake.url)
    resp = client.chat(model=MODEL, messages=MSGS, options={"temperature": 0}, keep_alive="1m")
    assert resp.message.content == fake.reply and resp.done and resp.eval_count == 5
    assert fake.requests[-1]["body"]["options"] == {"temperature": 0}
    assert fake.requests[-1]["body"]["keep_alive"] == "1m"
    fake.chunk_words = 2
    parts = chat_stream(fake)
    assert [p.message.content for p in parts[:-1]] == ["Hello from", " the fake", " model."]
    assert parts[-1].eval_count == 3


def test_num_predict_truncates(fake: FakeOllama) -> None:
    parts = chat_stream(fake, options={"num_predict": 2})
    assert "".join(p.message.content or "" for p in parts) == "Hello from"
    assert parts[-1].done_reason == "length" and parts[-1].eval_count == 2


def test_stop_sequences(fake: FakeOllama) -> None:
    parts = chat_stream(fake, options={"stop": [" fake", "zzz"]})
    assert "".join(p.message.content or "" for p in parts) == "Hello from the"
    assert parts[-1].done_reason == "stop" and parts[-1].eval_count == 3


def test_assistant_prefix_continuation(fake: FakeOllama) -> None:
    msgs = [*MSGS, {"role": "assistant", "content": "Hello from"}]
    parts = chat_stream(fake, messages=msgs)
    assert "".join(p.message.content or "" for p in parts) == " the fake model."
    fake.reply = "Different text"
    assert "".join(p.message.content or "" for p in chat_stream(fake, messages=msgs)) == "Different text"


def test_unknown_model_is_404(fake: FakeOllama) -> None:
    client = ollama.Client(host=fake.url)
    with pytest.raises(ollama.ResponseError) as streamed:
        list(client.chat(model="nope:1b", messages=MSGS, stream=True))
    assert streamed.value.status_code == 404
    assert streamed.value.error == 'model "nope:1b" not found, try pulling it first'
    with pytest.raises(ollama.ResponseError) as plain:
        client.generate(model="nope:1b", prompt="hi")
    assert plain.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as shown:
        client.show("nope:1b")
    assert shown.value.status_code == 404


def test_fail_status(fake: FakeOllama) -> None:
    fake.fail_status = 500
    client = ollama.Client(host=fake.url)
    with pytest.raises(ollama.ResponseError) as streamed:
        list(client.chat(model=MODEL, messages=MSGS, stream=True))
    assert streamed.value.status_code == 500 and streamed.value.error == "internal server error"
    fake.fail_status = 503
    with pytest.raises(ollama.ResponseError) as plain:
        client.chat(model=MODEL, messages=MSGS)
    assert plain.value.status_code == 503
    fake.fail_status = None
    assert client.chat(model=MODEL, messages=MSGS).message.content == fake.reply


def test_error_after_chunks(fake: FakeOllama) -> None:
    fake.error_after_chunks = 2
    client = ollama.Client(host=fake.url)
    got: list[str] = []
    with pytest.raises(ollama.ResponseError) as err:
        for part in client.chat(model=MODEL, messages=MSGS, stream=True):
            got.append(part.message.content or "")
    assert got == ["Hello", " from"]
    assert err.value.status_code == -1 and "error was encountered" in err.value.error
    with pytest.raises(ollama.ResponseError) as plain:
        client.chat(model=MODEL, messages=MSGS)
    assert plain.value.status_code == 500
    assert wait_for(lambda: fake.active_streams == 0) and fake.completed_streams == 0


def test_reset_after_chunks(fake: FakeOllama) -> None:
    fake.reset_after_chunks = 3
    client = ollama.Client(host=fake.url)
    got: list[str] = []
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        for part in client.chat(model=MODEL, messages=MSGS, stream=True):
            got.append(part.message.content or "")
    assert got == ["Hello", " from", " the"]
    fake.reset_after_chunks = None
    assert client.chat(model=MODEL, messages=MSGS).message.content == fake.reply  # client recovers


def test_hang_times_out_and_stop_is_prompt(fake: FakeOllama) -> None:
    fake.hang = True
    client = ollama.Client(host=fake.url, timeout=0.3)
    with pytest.raises(httpx.TimeoutException):
        client.chat(model=MODEL, messages=MSGS)
    with pytest.raises(httpx.ReadTimeout):
        list(client.chat(model=MODEL, messages=MSGS, stream=True))
    with pytest.raises(httpx.ReadTimeout):
        client.list()
    assert fake.paths() == ["/api/chat", "/api/chat", "/api/tags"]
    started = time.monotonic()
    fake.stop()
    assert time.monotonic() - started < 2


def test_streaming_is_incremental(fake: FakeOllama) -> None:
    fake.first_token_delay, fake.chunk_delay = 0.2, 0.1
    client = ollama.Client(host=fake.url)
    started = time.monotonic()
    stamps = [time.monotonic() - started for _ in client.chat(model=MODEL, messages=MSGS, stream=True)]
    assert stamps[0] >= 0.2
    assert stamps[-1] >= 0.2 + 4 * 0.1
    assert stamps[-1] - stamps[0] >= 0.35  # chunks arrive spread out, not in one burst


def test_client_closing_stream_counts_disconnect(fake: FakeOllama) -> None:
    fake.reply, fake.chunk_delay = LONG, 0.05
    client = ollama.Client(host=fake.url)
    stream = client.chat(model=MODEL, messages=MSGS, stream=True)
    for i, _part in enumerate(stream):
        if i == 1:
            break
    assert wait_for(lambda: fake.active_streams == 1)
    stream.close()  # exits the client's `with stream(...)`: the connection is closed
    assert wait_for(lambda: fake.disconnects == 1)
    assert fake.active_streams == 0 and fake.completed_streams == 0


def test_async_client_stream_and_cancel(fake: FakeOllama) -> None:
    async def scenario() -> tuple[str, int]:
        client = ollama.AsyncClient(host=fake.url)
        text = "".join([p.message.content or "" async for p in await client.chat(
            model=MODEL, messages=MSGS, stream=True)])
        fake.reply, fake.chunk_delay = LONG, 0.05
        seen: list[str] = []

        async def consume() -> None:
            async for part in await client.chat(model=MODEL, messages=MSGS, stream=True):
                seen.append(part.message.content or "")

        task = asyncio.create_task(consume())
        while len(seen) < 2:
            await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.close()
        return text, len(seen)

    text, seen = asyncio.run(scenario())
    assert text == "Hello from the fake model." and 2 <= seen < 200
    assert wait_for(lambda: fake.disconnects == 1)
    assert fake.completed_streams == 1 and fake.active_streams == 0


def test_generate_stream_and_not(fake: FakeOllama) -> None:
    client = ollama.Client(host=fake.url)
    parts = list(client.generate(model=MODEL, prompt="why is the sky blue", stream=True))
    assert "".join(p.response or "" for p in parts) == fake.reply
    assert parts[-1].done and parts[-1].eval_count == 5 and parts[-1].prompt_eval_count == 5 + 4
    whole = client.generate(model=MODEL, prompt="hi", system="terse")
    assert whole.response == fake.reply and whole.done_reason == "stop"
    assert fake.requests[-1]["path"] == "/api/generate" and fake.requests[-1]["body"]["system"] == "terse"


def test_load_only_requests(fake: FakeOllama) -> None:
    client = ollama.Client(host=fake.url)
    resp = client.chat(model=MODEL, messages=[])
    assert resp.done and resp.done_reason == "load" and resp.message.content == ""
    assert client.generate(model=MODEL, prompt="", keep_alive=0).done_reason == "unload"


def test_queue_and_per_model_replies() -> None:
    with ollama_server.fake_ollama(models=[MODEL, "qwen3:0.6b"], replies={"qwen3:0.6b": "I am qwen."},
                     queue=["first scripted", "second scripted"]) as fake:
        client = ollama.Client(host=fake.url)
        assert client.chat(model=MODEL, messages=MSGS).message.content == "first scripted"
        streamed = "".join(p.response or "" for p in client.generate(model=MODEL, prompt="x", stream=True))
        assert streamed == "second scripted" and fake.queue == []
        assert client.chat(model=MODEL, messages=MSGS).message.content == fake.reply
        assert client.chat(model="qwen3:0.6b", messages=MSGS).message.content == "I am qwen."


def test_restart_on_same_port() -> None:
    first = FakeOllama(reply="one").start()
    port = first.port
    client = ollama.Client(host=first.url, timeout=2)
    assert client.chat(model=MODEL, messages=MSGS).message.content == "one"
    first.stop()
    first.stop()  # idempotent
    with pytest.raises(ConnectionError):  # non-stream: ollama maps httpx.ConnectError
        client.chat(model=MODEL, messages=MSGS)
    with pytest.raises(httpx.ConnectError):  # stream: the raw httpx error escapes
        list(client.chat(model=MODEL, messages=MSGS, stream=True))
    with ollama_server.fake_ollama(port=port, reply="two") as second:
        assert second.url == first.url
        assert client.chat(model=MODEL, messages=MSGS).message.content == "two"
    first.start()  # the same object can come back too, on its old port
    try:
        assert first.port == port and client.list().models
    finally:
        first.stop()


def test_stop_during_slow_stream_ends_it(fake: FakeOllama) -> None:
    fake.reply, fake.chunk_delay = LONG, 0.05
    client = ollama.Client(host=fake.url)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        for i, _part in enumerate(client.chat(model=MODEL, messages=MSGS, stream=True)):
            if i == 1:
                fake.stop()
    assert fake.active_streams == 0 and fake.errors == []
