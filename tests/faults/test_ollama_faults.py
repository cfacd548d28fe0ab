"""Ollama failing in every way the stand-in server can, through the real `ollama` client.

In each case: the failed call is retried when the fault may pass and fails at once when it cannot,
it ends with one clear line, no process is left stuck, another agent goes on, the messages of the
processes that finished are in storage, and a new call succeeds once the server answers again.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

import tests.fakes.ollama_server as stand_in
from kernel.events import SyscallPreempted
from kernel.kernel import Kernel, boot
from kernel.llm.backend import BackendError, BackendUnavailable, ModelNotFound, ToolsUnsupported
from kernel.llm.factory import create_backend
from kernel.llm.ollama import OllamaBackend
from kernel.llm.retry import RetryPolicy, explain, is_transient
from kernel.process import Process, Signal
from kernel.settings import SettingError
from tests.conftest import make_config, until
from tests.fakes.ollama_server import FakeOllama

pytestmark = pytest.mark.faults

REPLY = "Cats are curious animals that sleep most of the day and watch the world."
MODEL = "gemma3:270m"
OOM = "model requires more system memory (5.6 GiB) than is available (3.2 GiB)"
HEALTHY = '''
async def main(ctx):
    result = await ctx.tool("calc", expression="6*7")
    await ctx.write(result.output)
    return 0
'''


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    monkeypatch.setenv("AIOS_LLM_RETRIES", "3")
    monkeypatch.setenv("AIOS_LLM_BACKOFF", "0.02")
    (home / "agents").mkdir(parents=True, exist_ok=True)
    (home / "agents" / "healthy.py").write_text(HEALTHY)  # an agent that needs no model


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def ollama_kernel(home: Path, host: str, slots: int = 2, **kw: object) -> Kernel:
    backend = OllamaBackend(model=MODEL, host=host, slots=slots, **kw)  # type: ignore[arg-type]
    return await boot(make_config(home, backend="ollama"), backend=backend)


def retries_of(kernel: Kernel) -> list[SyscallPreempted]:
    seen: list[SyscallPreempted] = []
    kernel.bus.on(lambda e: seen.append(e) if e.reason.startswith("retry: ") else None, SyscallPreempted)
    return seen


def chats(fake: FakeOllama) -> list[dict]:
    return [r["body"] for r in fake.requests if r["path"] == "/api/chat"]


async def others_go_on(kernel: Kernel) -> None:
    """An agent that needs no model finishes while the model is failing."""
    proc = kernel.spawn("healthy")
    await kernel.wait(proc.pid)
    assert proc.status == "EXITED(0)" and "".join(proc.output) == "42"


async def recovers(kernel: Kernel, port: int, old: FakeOllama | None = None) -> None:
    """With the server restarted on the same port, a new call succeeds."""
    if old is not None:
        old.stop()
    with FakeOllama(port=port, reply=REPLY):
        proc = kernel.spawn("chat", ["hello again"])
        await kernel.wait(proc.pid)
    assert proc.status == "EXITED(0)", proc.error
    assert "".join(proc.output).strip() == REPLY


def nothing_stuck(kernel: Kernel, finished: list[Process]) -> None:
    """Every process ended, no call is left anywhere, and what finished is in storage."""
    assert kernel.procs.alive() == []
    d = kernel.dispatcher
    assert not d.running and not d.queue() and not d.held and not d.backing_off
    for proc in finished:
        stored = kernel.storage.messages(proc.pid)
        assert [m["role"] for m in stored] == ["user", "assistant"]
        assert stored[-1]["content"] == "".join(proc.output).strip()


@pytest.fixture
def dead_port() -> int:
    return free_port()


@pytest.fixture
def oom_text(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The stand-in answers its `fail_status` with Ollama's out-of-memory text."""
    monkeypatch.setattr(stand_in, "_status_text", lambda status: OOM)
    yield


# -- the rules ------------------------------------------------------------------------------------------
def test_the_back_off_doubles_is_capped_and_jittered() -> None:
    assert [RetryPolicy(jitter=0).delay(n) for n in range(1, 7)] == [0.5, 1, 2, 4, 8, 8]
    jittered = [RetryPolicy().delay(2) for _ in range(50)]
    assert all(0.8 <= d <= 1.2 for d in jittered) and len(set(jittered)) > 1


def test_retry_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOS_LLM_RETRIES", "5")
    monkeypatch.setenv("AIOS_LLM_BACKOFF", "0.1")
    assert (RetryPolicy.from_env().retries, RetryPolicy.from_env().base) == (5, 0.1)
    monkeypatch.setenv("AIOS_LLM_RETRIES", "many")  # a bad value is said, never silently replaced
    with pytest.raises(SettingError, match=r"AIOS_LLM_RETRIES='many': expected a whole number"):
        RetryPolicy.from_env()
    monkeypatch.setenv("AIOS_LLM_RETRIES", "2")
    monkeypatch.setenv("AIOS_LLM_BACKOFF", "-1")
    with pytest.raises(SettingError, match=r"AIOS_LLM_BACKOFF='-1': expected a number, 0 … 3600"):
        RetryPolicy.from_env()


@pytest.mark.parametrize(("error", "transient"), [
    (BackendUnavailable("cannot reach Ollama at h:1"), True),
    (BackendUnavailable("Ollama at h:1 did not answer in time"), True),
    (BackendError("connection to Ollama at h:1 lost mid-stream"), True),
    (BackendError("Ollama at h:1 failed (500): internal server error"), True),
    (BackendError("Ollama at h:1 failed (503): service unavailable"), True),
    (BackendError(f"Ollama at h:1 failed (500): {OOM}"), True),
    (BackendError("Ollama at h:1 reported an error: unexpected EOF"), True),
    (BackendError("Ollama at h:1 failed (400): bad request"), False),
    (BackendError("Ollama at h:1 failed (401): unauthorized"), False),
    (ModelNotFound("model 'x' not found on Ollama at h:1; try: pull x"), False),
    (ToolsUnsupported("model 'x' on Ollama at h:1 does not support tool calling"), False),
    (BackendError("prompt of 9000 tokens does not fit the 8192-token window"), False),
    (ValueError("a bug"), False),
])
def test_which_failures_may_pass(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


def test_a_backend_may_say_itself_whether_a_failure_passes() -> None:
    error = BackendError("the GPU is busy")
    assert not is_transient(error)
    error.transient = True  # type: ignore[attr-defined]
    assert is_transient(error)


def test_out_of_memory_is_said_plainly() -> None:
    clear = explain(BackendError(f"Ollama at 127.0.0.1:1234 failed (500): {OOM}"), MODEL)
    assert str(clear) == f"Ollama at 127.0.0.1:1234 is out of memory for model {MODEL}"
    assert str(explain(BackendError("Ollama at h:1 reported an error: out of memory"), "m")) == (
        "Ollama at h:1 is out of memory for model m")
    assert explain(clear, "other") is clear
    other = BackendError("Ollama at h:1 failed (500): internal server error")
    assert explain(other, MODEL) is other


# -- down at start --------------------------------------------------------------------------------
async def test_boot_with_ollama_down_is_one_clear_line(home: Path, dead_port: int,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{dead_port}")
    with pytest.raises(BackendUnavailable) as caught:
        await boot(make_config(home, backend="ollama"))
    message = str(caught.value)
    assert message.startswith(f"cannot reach Ollama at 127.0.0.1:{dead_port} (start it with `ollama serve`")
    assert "\n" not in message


def test_auto_falls_back_to_the_embedded_model_and_back(dead_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{dead_port}")
    assert create_backend("auto").name == "llamacpp"  # chosen, not loaded
    with FakeOllama(port=dead_port):
        assert create_backend("auto").name == "ollama"
        assert create_backend("ollama").name == "ollama"


async def test_down_while_running_retries_then_fails_then_recovers(home: Path, dead_port: int) -> None:
    async with await ollama_kernel(home, f"127.0.0.1:{dead_port}") as kernel:
        retried = retries_of(kernel)
        proc = kernel.spawn("chat", ["hello"])
        await others_go_on(kernel)
        await kernel.wait(proc.pid)
        assert proc.status == "EXITED(1)"
        assert proc.error == f"cannot reach Ollama at 127.0.0.1:{dead_port}"
        assert len(retried) == 3 and all("cannot reach Ollama" in e.reason for e in retried)
        assert [e.reason.split("(attempt ")[1][:6] for e in retried] == ["1 of 3", "2 of 3", "3 of 3"]
        await recovers(kernel, dead_port)
        nothing_stuck(kernel, [p for p in kernel.procs if p.exit_code == 0 and p.program == "chat"])


# -- dying mid-stream -------------------------------------------------------------------------------
async def test_dying_mid_stream_keeps_the_partial_and_completes_when_the_server_is_back(home: Path) -> None:
    words = " ".join(f"w{i}" for i in range(20))
    fake = FakeOllama(reply=words, chunk_delay=0.01, reset_after_chunks=5).start()
    port = fake.port
    servers = [fake]
    async with await ollama_kernel(home, fake.host) as kernel:
        kernel.dispatcher.retry = RetryPolicy(retries=5, base=0.05, jitter=0)
        retried = retries_of(kernel)

        def on_retry(event: SyscallPreempted) -> None:  # the server dies, then comes back
            if len(retried) == 1:
                servers[-1].stop()
            elif len(retried) == 2:
                servers.append(FakeOllama(port=port, reply=words).start())

        kernel.bus.on(lambda e: on_retry(e) if e.reason.startswith("retry: ") else None, SyscallPreempted)
        try:
            proc = kernel.spawn("chat", ["count"])
            await others_go_on(kernel)
            await kernel.wait(proc.pid)
        finally:
            for server in servers:
                server.stop()
        assert proc.status == "EXITED(0)", proc.error
        assert "".join(proc.output).strip() == words  # each word once: the partial was kept
        assert f"connection to Ollama at 127.0.0.1:{port} lost mid-stream" in retried[0].reason
        assert retried[0].partial_tokens == 5
        assert "cannot reach Ollama" in retried[1].reason and len(retried) == 2
        resumed = chats(servers[-1])[-1]
        assert resumed["messages"][-1] == {"role": "assistant", "content": " ".join(words.split()[:5])}
        assert proc.completion_tokens == 20
        nothing_stuck(kernel, [proc])


async def test_the_slot_goes_to_another_call_during_the_back_off(home: Path, fake_ollama: FakeOllama) -> None:
    fake_ollama.reply = REPLY
    fake_ollama.chunk_delay = 0.005
    fake_ollama.reset_after_chunks = 3
    async with await ollama_kernel(home, fake_ollama.host, slots=1) as kernel:
        kernel.dispatcher.retry = RetryPolicy(retries=3, base=3600, jitter=0)  # it would wait an hour
        retried = retries_of(kernel)
        victim = kernel.spawn("chat", ["first"])
        await until(lambda: len(retried) == 1)
        assert victim.status == "WAITING(llm)" and not kernel.dispatcher.running  # no slot while it waits
        fake_ollama.reset_after_chunks = None
        other = kernel.spawn("chat", ["second"])  # takes the one slot
        await kernel.wait(other.pid)
        assert other.status == "EXITED(0)" and "".join(other.output).strip() == REPLY
        assert victim.status == "WAITING(llm)" and [c.pid for c in kernel.dispatcher.backing_off.values()] == [
            victim.pid]
        kernel.signal(victim.pid, Signal.KILL)
        await kernel.wait(victim.pid)
        nothing_stuck(kernel, [other])


# -- slow, missing, failing, out of memory, hung ---------------------------------------------------
async def test_slow_first_token_completes(home: Path, fake_ollama: FakeOllama) -> None:
    fake_ollama.reply = REPLY
    fake_ollama.first_token_delay = 0.4
    async with await ollama_kernel(home, fake_ollama.host) as kernel:
        retried = retries_of(kernel)
        proc = kernel.spawn("chat", ["hello"])
        await until(lambda: proc.status == "WAITING(llm)")
        await others_go_on(kernel)
        await kernel.wait(proc.pid)
        assert proc.status == "EXITED(0)" and "".join(proc.output).strip() == REPLY
        assert retried == [] and len(chats(fake_ollama)) == 1
        nothing_stuck(kernel, [proc])


async def test_missing_model_fails_at_once_naming_pull(home: Path, fake_ollama: FakeOllama) -> None:
    fake_ollama.models = ["llama3.2:1b"]
    async with await ollama_kernel(home, fake_ollama.host) as kernel:
        retried = retries_of(kernel)
        proc = kernel.spawn("chat", ["hello"])
        await kernel.wait(proc.pid)
        assert proc.status == "EXITED(1)"
        assert proc.error == f"model '{MODEL}' not found on Ollama at {fake_ollama.host}; try: pull {MODEL}"
        assert retried == [] and len(chats(fake_ollama)) == 1  # permanent: not asked again
        await others_go_on(kernel)
        await recovers(kernel, fake_ollama.port, old=fake_ollama)
        nothing_stuck(kernel, [p for p in kernel.procs if p.exit_code == 0 and p.program == "chat"])


@pytest.mark.parametrize(("status", "text", "asked"), [
    (500, "internal server error", 4), (502, "bad gateway", 4), (503, "service unavailable", 4),
    (400, "bad request", 1),
])
async def test_http_errors_are_retried_when_they_may_pass(home: Path, fake_ollama: FakeOllama, status: int,
                                                          text: str, asked: int) -> None:
    fake_ollama.fail_status = status
    async with await ollama_kernel(home, fake_ollama.host) as kernel:
        retried = retries_of(kernel)
        proc = kernel.spawn("chat", ["hello"])
        await others_go_on(kernel)
        await kernel.wait(proc.pid)
        assert proc.status == "EXITED(1)"
        assert proc.error == f"Ollama at {fake_ollama.host} failed ({status}): {text}"
        assert len(chats(fake_ollama)) == asked and len(retried) == asked - 1
        fake_ollama.fail_status = None
        await recovers(kernel, fake_ollama.port, old=fake_ollama)
        nothing_stuck(kernel, [p for p in kernel.procs if p.exit_code == 0 and p.program == "chat"])


async def test_out_of_memory_is_retried_then_one_clear_line(home: Path, fake_ollama: FakeOllama,
                                                            oom_text: None) -> None:
    fake_ollama.fail_status = 500
    async with await ollama_kernel(home, fake_ollama.host) as kernel:
        retried = retries_of(kernel)
        proc = kernel.spawn("chat", ["hello"])
        await kernel.wait(proc.pid)
        assert proc.status == "EXITED(1)"
        assert proc.error == f"Ollama at {fake_ollama.host} is out of memory for model {MODEL}"
        assert len(retried) == 3 and all("is out of memory for model" in e.reason for e in retried)
        await others_go_on(kernel)
        await recovers(kernel, fake_ollama.port, old=fake_ollama)
        nothing_stuck(kernel, [p for p in kernel.procs if p.exit_code == 0 and p.program == "chat"])


async def test_error_in_the_stream_is_retried_from_the_partial(home: Path, fake_ollama: FakeOllama) -> None:
    fake_ollama.reply = REPLY
    fake_ollama.chunk_delay = 0.005
    fake_ollama.error_after_chunks = 4
    fake_ollama.error_message = OOM
    async with await ollama_kernel(home, fake_ollama.host) as kernel:
        retried = retries_of(kernel)
        kernel.bus.on(lambda e: setattr(fake_ollama, "error_after_chunks", None), SyscallPreempted)
        proc = kernel.spawn("chat", ["hello"])
        await kernel.wait(proc.pid)
        assert proc.status == "EXITED(0)" and "".join(proc.output).strip() == REPLY
        assert len(retried) == 1 and "out of memory" in retried[0].reason and retried[0].partial_tokens == 4
        nothing_stuck(kernel, [proc])


async def test_hung_server_times_out_is_retried_then_one_line(home: Path, fake_ollama: FakeOllama) -> None:
    fake_ollama.hang = True
    async with await ollama_kernel(home, fake_ollama.host, read_timeout=0.3) as kernel:
        retried = retries_of(kernel)
        proc = kernel.spawn("chat", ["hello"])
        await others_go_on(kernel)
        await kernel.wait(proc.pid)
        assert proc.status == "EXITED(1)"
        assert proc.error == f"Ollama at {fake_ollama.host} did not answer in time"
        assert len(retried) == 3 and len(chats(fake_ollama)) == 4
        fake_ollama.hang = False
        await recovers(kernel, fake_ollama.port, old=fake_ollama)
        nothing_stuck(kernel, [p for p in kernel.procs if p.exit_code == 0 and p.program == "chat"])


# -- signals during the back-off ---------------------------------------------------------------------
@pytest.mark.parametrize("sig", [Signal.KILL, Signal.TERM])
async def test_a_signal_during_the_back_off_cancels_it_at_once(home: Path, fake_ollama: FakeOllama,
                                                               sig: Signal) -> None:
    fake_ollama.fail_status = 503
    async with await ollama_kernel(home, fake_ollama.host) as kernel:
        kernel.dispatcher.retry = RetryPolicy(retries=3, base=3600, jitter=0)  # it would wait an hour
        retried = retries_of(kernel)
        proc = kernel.spawn("chat", ["hello"])
        await until(lambda: len(retried) == 1)
        assert proc.status == "WAITING(llm)" and len(kernel.dispatcher.backing_off) == 1
        kernel.signal(proc.pid, sig)
        await kernel.wait(proc.pid)
        assert proc.status == f"EXITED({sig.signame})"
        assert not kernel.dispatcher.backing_off and not kernel.dispatcher._timers
        assert len(chats(fake_ollama)) == 1  # never asked again
        nothing_stuck(kernel, [])


async def test_stop_during_the_back_off_holds_the_retry_until_cont(home: Path, fake_ollama: FakeOllama) -> None:
    fake_ollama.fail_status = 500
    fake_ollama.reply = REPLY
    async with await ollama_kernel(home, fake_ollama.host) as kernel:
        kernel.dispatcher.retry = RetryPolicy(retries=3, base=0.05, jitter=0)
        retried = retries_of(kernel)
        proc = kernel.spawn("chat", ["hello"])
        await until(lambda: len(retried) == 1)
        kernel.signal(proc.pid, Signal.STOP)
        fake_ollama.fail_status = None
        await until(lambda: proc.pid in [c.pid for c in kernel.dispatcher.held])  # the retry came due: held
        assert proc.status == "STOPPED" and len(chats(fake_ollama)) == 1
        kernel.signal(proc.pid, Signal.CONT)
        await kernel.wait(proc.pid)
        assert proc.status == "EXITED(0)" and "".join(proc.output).strip() == REPLY
        nothing_stuck(kernel, [proc])
