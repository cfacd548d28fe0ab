"""The Ollama backend through the real `ollama` client, against the stand-in server over real sockets."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from kernel.events import ProcessExited, SignalDelivered, TokenGenerated
from kernel.kernel import Kernel, boot
from kernel.llm.backend import BackendUnavailable, LLMRequest, ModelNotFound
from kernel.llm.factory import create_backend
from kernel.llm.ollama import OllamaBackend, probe
from kernel.process import Signal
from tests.conftest import make_config, until
from tests.fakes.ollama_server import FakeOllama

REPLY = "Cats are curious animals that sleep most of the day."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def ollama_kernel(home: Path, fake: FakeOllama | None, slots: int = 2, **kw: object) -> Kernel:
    host = fake.host if fake else f"127.0.0.1:{free_port()}"
    backend = OllamaBackend(model="gemma3:270m", host=host, slots=slots, **kw)  # type: ignore[arg-type]
    return await boot(make_config(home, backend="ollama"), backend=backend)


async def test_streams_the_answer_and_counts_tokens(home: Path, fake_ollama: FakeOllama) -> None:
    fake_ollama.reply = REPLY
    async with await ollama_kernel(home, fake_ollama) as kernel:
        tokens: list[TokenGenerated] = []
        kernel.bus.on(tokens.append, TokenGenerated)
        proc = kernel.spawn("chat", ["Write one sentence about cats."])
        await kernel.wait(proc.pid)
        assert proc.status == "EXITED(0)"
        assert "".join(proc.output).strip() == REPLY
        assert len(tokens) == len(REPLY.split())  # one event per streamed chunk: it streamed
        assert proc.prompt_tokens > 0 and proc.completion_tokens == len(REPLY.split())
        body = [r for r in fake_ollama.requests if r["path"] == "/api/chat"][0]["body"]
        assert body["stream"] is True and body["keep_alive"] == "5m"
        assert body["options"]["num_predict"] == 256


async def test_kill_closes_the_stream(home: Path, fake_ollama: FakeOllama) -> None:
    fake_ollama.reply = " ".join(["word"] * 200)
    fake_ollama.chunk_delay = 0.02
    async with await ollama_kernel(home, fake_ollama) as kernel:
        proc = kernel.spawn("chat", ["talk for a long time"])
        await until(lambda: len(proc.output) >= 3)
        kernel.signal(proc.pid, Signal.KILL)
        await until(lambda: fake_ollama.disconnects == 1)  # Ollama saw the client go
        assert fake_ollama.active_streams == 0 and fake_ollama.completed_streams == 0
        assert proc.status == "EXITED(SIGKILL)"


async def test_server_down_is_one_clear_line(home: Path) -> None:
    async with await ollama_kernel(home, None) as kernel:
        proc = kernel.spawn("chat", ["hello"])
        await kernel.wait(proc.pid)
        host = kernel.backend.host  # type: ignore[attr-defined]
        assert proc.status == "EXITED(1)"
        assert proc.error == f"cannot reach Ollama at {host}"


async def test_missing_model_hints_pull(home: Path, fake_ollama: FakeOllama) -> None:
    fake_ollama.models = ["llama3.2:1b"]
    async with await ollama_kernel(home, fake_ollama) as kernel:
        proc = kernel.spawn("chat", ["hello"])
        await kernel.wait(proc.pid)
        assert proc.status == "EXITED(1)"
        assert "model 'gemma3:270m' not found" in proc.error
        assert proc.error.endswith("try: pull gemma3:270m")


async def test_server_error_500(home: Path, fake_ollama: FakeOllama) -> None:
    fake_ollama.fail_status = 500
    async with await ollama_kernel(home, fake_ollama) as kernel:
        proc = kernel.spawn("chat", ["hello"])
        await kernel.wait(proc.pid)
        assert proc.status == "EXITED(1)"
        assert proc.error == f"Ollama at {fake_ollama.host} failed (500): internal server error"


async def test_error_in_the_stream(home: Path, fake_ollama: FakeOllama, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOS_LLM_RETRIES", "0")  # the wording of the error itself (tests/faults/ retry it)
    fake_ollama.error_after_chunks = 2
    fake_ollama.error_message = "out of memory"
    async with await ollama_kernel(home, fake_ollama) as kernel:
        proc = kernel.spawn("chat", ["hello"])
        await kernel.wait(proc.pid)
        assert proc.status == "EXITED(1)"
        assert "out of memory" in proc.error
        assert len(proc.output) == 2  # what streamed before the error is kept


async def test_reset_mid_stream_fails_that_process_and_the_others_go_on(
        home: Path, fake_ollama: FakeOllama, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOS_LLM_RETRIES", "0")
    fake_ollama.reply = REPLY
    fake_ollama.chunk_delay = 0.01
    fake_ollama.first_token_delay = 0.2
    fake_ollama.reset_after_chunks = 3
    async with await ollama_kernel(home, fake_ollama, slots=1) as kernel:
        def heal(event: object) -> None:  # the fault hits only the first stream
            fake_ollama.reset_after_chunks = None

        kernel.bus.on(heal, ProcessExited)
        victim = kernel.spawn("chat", ["first"])
        other = kernel.spawn("chat", ["second"])
        await kernel.wait(victim.pid)
        await kernel.wait(other.pid)
        assert victim.status == "EXITED(1)"
        assert victim.error == f"connection to Ollama at {fake_ollama.host} lost mid-stream"
        assert "".join(victim.output).strip() == " ".join(REPLY.split()[:3])
        assert other.status == "EXITED(0)"
        assert "".join(other.output).strip() == REPLY


async def test_slow_first_token_waits_on_the_model(home: Path, fake_ollama: FakeOllama) -> None:
    fake_ollama.first_token_delay = 0.5
    async with await ollama_kernel(home, fake_ollama) as kernel:
        proc = kernel.spawn("chat", ["hello"])
        await until(lambda: proc.status == "WAITING(llm)")
        await kernel.wait(proc.pid)
        assert proc.status == "EXITED(0)"


async def test_hung_server_times_out(home: Path, fake_ollama: FakeOllama) -> None:
    fake_ollama.hang = True
    async with await ollama_kernel(home, fake_ollama, read_timeout=0.5) as kernel:
        proc = kernel.spawn("chat", ["hello"])
        await kernel.wait(proc.pid)
        assert proc.status == "EXITED(1)"
        assert proc.error == f"Ollama at {fake_ollama.host} did not answer in time"


async def test_recovers_when_the_server_comes_back(home: Path) -> None:
    port = free_port()
    backend = OllamaBackend(model="gemma3:270m", host=f"127.0.0.1:{port}")
    async with await boot(make_config(home), backend=backend) as kernel:
        first = kernel.spawn("chat", ["hello"])
        await kernel.wait(first.pid)
        assert first.error and first.error.startswith("cannot reach Ollama")
        with FakeOllama(port=port, reply=REPLY):
            second = kernel.spawn("chat", ["hello again"])
            await kernel.wait(second.pid)
        assert second.status == "EXITED(0)" and "".join(second.output).strip() == REPLY


async def test_stop_preempts_and_cont_continues_the_answer(home: Path, fake_ollama: FakeOllama) -> None:
    fake_ollama.reply = " ".join(f"w{i}" for i in range(40))
    fake_ollama.chunk_delay = 0.01
    async with await ollama_kernel(home, fake_ollama) as kernel:
        signals: list[SignalDelivered] = []
        kernel.bus.on(signals.append, SignalDelivered)
        proc = kernel.spawn("chat", ["count"])
        await until(lambda: len(proc.output) >= 5)
        kernel.signal(proc.pid, Signal.STOP)
        await until(lambda: fake_ollama.active_streams == 0)  # the slot was given back
        kernel.signal(proc.pid, Signal.CONT)
        await kernel.wait(proc.pid)
        assert "".join(proc.output).strip() == fake_ollama.reply
        resumed = [r["body"] for r in fake_ollama.requests if r["path"] == "/api/chat"][-1]
        assert resumed["messages"][-1]["role"] == "assistant"  # continued from prompt + partial


async def test_backend_takes_the_first_served_model_when_none_is_named(fake_ollama: FakeOllama) -> None:
    fake_ollama.models = ["qwen3:0.6b", "gemma3:270m"]
    backend = OllamaBackend(host=fake_ollama.host)
    await backend.start()
    assert backend.model == "qwen3:0.6b"
    await backend.close()


async def test_direct_stream_errors_are_typed(fake_ollama: FakeOllama) -> None:
    backend = OllamaBackend(model="nope:1b", host=fake_ollama.host)
    with pytest.raises(ModelNotFound):
        async for _ in backend.stream(LLMRequest([{"role": "user", "content": "hi"}])):
            pass
    down = OllamaBackend(model="x", host=f"127.0.0.1:{free_port()}")
    with pytest.raises(BackendUnavailable):
        async for _ in down.stream(LLMRequest([{"role": "user", "content": "hi"}])):
            pass
    await backend.close()
    await down.close()


def test_auto_picks_ollama_when_it_answers(fake_ollama: FakeOllama, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", fake_ollama.host)
    assert probe(fake_ollama.host)
    assert create_backend("auto").name == "ollama"
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{free_port()}")
    assert create_backend("auto").name == "llamacpp"


def _real_ollama() -> str | None:
    host = os.environ.get("OLLAMA_HOST")
    return host if host and probe(host) else None


@pytest.mark.ollama_real
@pytest.mark.skipif(_real_ollama() is None, reason="no Ollama server answers at OLLAMA_HOST")
async def test_real_ollama_streams(home: Path) -> None:
    backend = OllamaBackend(host=_real_ollama())
    async with await boot(make_config(home), backend=backend) as kernel:
        proc = kernel.spawn("chat", ["Write one sentence about cats."])
        await kernel.wait(proc.pid)
        assert proc.status == "EXITED(0)", proc.error
        assert proc.completion_tokens > 0 and "".join(proc.output).strip()
