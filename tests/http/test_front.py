"""The HTTP front: the real `ollama` and `openai` clients as outside agents, each an aios process."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from kernel.kernel import Kernel, boot
from kernel.llm.simulated import Reply, SimulatedBackend
from kernel.process import Signal, State
from tests.conftest import make_config, until

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.fixture
async def kernel(home: Path, sim: SimulatedBackend) -> Kernel:
    k = await boot(make_config(home), backend=sim)
    await k.http_front()
    yield k
    await k.shutdown()


def token(kernel: Kernel) -> str:
    return kernel.front.user_token("alice")


def kmsg(kernel: Kernel) -> list[str]:
    return [m.text for m in kernel.kmsg.messages()]


async def test_the_ollama_client_streams_as_a_session_process(kernel: Kernel) -> None:
    client = ollama.AsyncClient(host=f"{kernel.front.url}/t/{token(kernel)}")
    listed = await client.list()
    assert [m.model for m in listed.models] == [kernel.backend.model]
    pieces = [p async for p in await client.chat(model=kernel.backend.model, stream=True,
                                                 messages=[{"role": "user", "content": "Say hi."}])]
    assert len(pieces) > 2 and pieces[-1].done and pieces[-1].eval_count == len(pieces) - 1
    assert pieces[-1].prompt_eval_count > 0
    session = [p for p in kernel.ps() if p.program == "client"]
    assert len(session) == 1 and session[0].user == "alice" and session[0].argv == ("ollama-python",)
    assert session[0].completion_tokens == pieces[-1].eval_count  # its calls are the session's, accounted
    whole = await client.generate(model=kernel.backend.model, prompt="Say hi.")
    assert whole.done and whole.response
    assert len([p for p in kernel.ps() if p.program == "client"]) == 1  # the same session


async def test_the_openai_client_streams_and_gets_tool_calls(kernel: Kernel, sim: SimulatedBackend) -> None:
    client = openai.AsyncOpenAI(base_url=f"{kernel.front.url}/v1", api_key=token(kernel), max_retries=0)
    assert [m.id for m in (await client.models.list()).data] == [kernel.backend.model]
    stream = await client.chat.completions.create(model=kernel.backend.model, stream=True,
                                                  stream_options={"include_usage": True},
                                                  messages=[{"role": "user", "content": "Say hi."}])
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and chunks[-1].usage.completion_tokens > 0
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    sim.enqueue(Reply(tool_calls=[{"name": "calc", "arguments": {"expression": "6*7"}}]))
    tools = [{"type": "function", "function": {"name": "calc", "parameters": {"type": "object"}}}]
    answer = await client.chat.completions.create(model=kernel.backend.model, tools=tools,
                                                  messages=[{"role": "user", "content": "6*7?"}])
    call = answer.choices[0].message.tool_calls[0]
    assert answer.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "calc" and json.loads(call.function.arguments) == {"expression": "6*7"}
    assert sim.requests[-1].tools == tools
    assert [p.argv for p in kernel.ps() if p.program == "client"] == [("AsyncOpenAI",)]


@pytest.mark.hostile
async def test_bad_requests_get_the_apis_errors_and_one_line(kernel: Kernel) -> None:
    url, good = kernel.front.url, {"Authorization": f"Bearer {token(kernel)}"}
    async with httpx.AsyncClient(base_url=url) as http:
        cases = [
            (await http.post("/api/chat", content=b"{not json", headers=good), 400, "not JSON"),
            (await http.post("/api/chat", json={"messages": "hi"}, headers=good), 400, "messages"),
            (await http.post("/api/chat", json={"model": "llama9", "messages": [{"role": "user", "content": "x"}]},
                             headers=good), 404, "model 'llama9' not found"),
            (await http.post("/api/chat", content=b" " * (9 << 20), headers=good), 413, "over 8 MiB"),
            (await http.post("/v1/chat/completions", json={}, headers={"Authorization": "Bearer nope"}), 401,
             "not a token"),
            (await http.post("/t/nope/api/chat", json={}), 401, "not a token"),
            (await http.post("/v1/chat/completions", json={"messages": [{"role": "robot"}]}, headers=good), 400,
             "role"),
        ]
        for response, status, says in cases:
            assert response.status_code == status, response.text
            error = response.json()["error"]
            assert says in (error["message"] if isinstance(error, dict) else error)
        assert len([m for m in kmsg(kernel) if m.startswith("http: ")]) == len(cases) + 1  # + "serving at"
        assert all("\n" not in m for m in kmsg(kernel))
        ok = await http.post("/api/chat", json={"messages": [{"role": "user", "content": "x"}], "stream": False},
                             headers=good)
        assert ok.status_code == 200 and ok.json()["done"] is True  # the kernel is unharmed
    with pytest.raises(ollama.ResponseError) as raised:
        await ollama.AsyncClient(host=f"{url}/t/{token(kernel)}").chat(model="llama9", messages=[])
    assert raised.value.status_code in (400, 404)


async def test_stop_pauses_the_stream_cont_resumes_and_kill_ends_it_with_an_error(home: Path) -> None:
    slow = SimulatedBackend(slots=2, decode_tps=40.0, prefill_tps=10_000.0, seed=3)
    async with await boot(make_config(home), backend=slow) as kernel:
        await kernel.http_front()
        client = ollama.AsyncClient(host=f"{kernel.front.url}/t/{token(kernel)}")
        got: list[str] = []

        async def ask() -> None:
            async for part in await client.chat(model=kernel.backend.model, stream=True, options={"num_predict": 400},
                                                messages=[{"role": "user", "content": "a long story"}]):
                got.append(part.message.content)

        task = asyncio.ensure_future(ask())
        await until(lambda: len(got) >= 3, timeout=20)
        (proc,) = [p for p in kernel.ps() if p.program == "client"]
        kernel.signal(proc.pid, Signal.STOP)
        await until(lambda: proc.state is State.STOPPED and not any(c.proc is proc for c in
                                                                    kernel.dispatcher.running.values()), timeout=10)
        paused = len(got)
        kernel.signal(proc.pid, Signal.CONT)
        await until(lambda: len(got) > paused + 2, timeout=20)  # it goes on where it was
        kernel.signal(proc.pid, Signal.KILL)
        with pytest.raises(ollama.ResponseError, match=f"aios process {proc.pid} was ended"):
            await asyncio.wait_for(task, 20)
        assert not proc.alive


async def test_run_ext_runs_an_outside_agent_as_the_process(kernel: Kernel) -> None:
    proc = kernel.spawn("ext", ["--", sys.executable, str(EXAMPLES / "ollama_agent.py"), "Say hi."])
    await asyncio.wait_for(kernel.wait(proc.pid), 60)
    assert proc.exit_code == 0, "".join(proc.output)
    out = "".join(proc.output)
    assert out.startswith("> Say hi.\n") and len(out) > 12
    assert proc.completion_tokens > 0  # the program's calls were this process's
    proc = kernel.spawn("ext", ["--", sys.executable, str(EXAMPLES / "openai_agent.py"), "Say hi."])
    await asyncio.wait_for(kernel.wait(proc.pid), 60)
    assert proc.exit_code == 0 and proc.completion_tokens > 0, "".join(proc.output)
    failing = kernel.spawn("ext", ["--", sys.executable, "-c", "import sys; print('bye'); sys.exit(3)"])
    await asyncio.wait_for(kernel.wait(failing.pid), 60)
    assert failing.exit_code == 3 and "".join(failing.output) == "bye\n"
    missing = kernel.spawn("ext", ["--", "no-such-program-here"])
    await asyncio.wait_for(kernel.wait(missing.pid), 60)
    assert missing.exit_code == 127 and "command not found" in "".join(missing.output)


async def test_killing_an_ext_process_takes_its_program_down(kernel: Kernel) -> None:
    import psutil

    proc = kernel.spawn("ext", ["--", sys.executable, "-c", "import time; print('up', flush=True); time.sleep(600)"])
    await until(lambda: "".join(proc.output) == "up\n", timeout=30)
    mine = psutil.Process()
    sleepers = [p for p in mine.children(recursive=True) if "time.sleep(600)" in " ".join(p.cmdline())]
    assert sleepers
    kernel.signal(proc.pid, Signal.STOP)
    await until(lambda: all(p.status() == psutil.STATUS_STOPPED for p in sleepers if p.is_running()), timeout=10)
    kernel.signal(proc.pid, Signal.CONT)
    kernel.signal(proc.pid, Signal.KILL)

    def gone(p: psutil.Process) -> bool:
        try:
            return p.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    await until(lambda: all(gone(p) for p in sleepers), timeout=10)
    assert proc.exit_code == 137


async def test_kill_ends_an_ext_programs_stream_with_the_error_its_library_raises(home: Path) -> None:
    slow = SimulatedBackend(slots=2, decode_tps=40.0, prefill_tps=10_000.0, seed=3)
    async with await boot(make_config(home, term_grace=10), backend=slow) as kernel:
        proc = kernel.spawn("ext", ["--", sys.executable, str(EXAMPLES / "ollama_agent.py"), "a long story"])
        await until(lambda: len("".join(proc.output)) > 40, timeout=30)  # its answer, streaming
        assert any(c.proc is proc for c in kernel.dispatcher.running.values())
        kernel.signal(proc.pid, Signal.TERM)
        await asyncio.wait_for(kernel.wait(proc.pid), 30)
        out = "".join(proc.output)
        assert f"ollama_agent: the model call failed: aios process {proc.pid} was ended" in out, out
        assert proc.exit_code == 128 + 15


@pytest.mark.hostile
async def test_a_user_at_their_process_limit_gets_429(home: Path, sim: SimulatedBackend,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOS_MAX_PROCS", "1")
    async with await boot(make_config(home), backend=sim) as kernel:
        await kernel.http_front()
        kernel.spawn("workload", ["1:300"])  # the one process alice may have
        async with httpx.AsyncClient(base_url=kernel.front.url) as http:
            answer = await http.post("/v1/chat/completions", headers={"Authorization": f"Bearer {token(kernel)}"},
                                     json={"messages": [{"role": "user", "content": "hi"}]})
        assert answer.status_code == 429 and "alice" in answer.json()["error"]["message"]


async def test_an_idle_session_ends(kernel: Kernel, monkeypatch: pytest.MonkeyPatch) -> None:
    from kernel.http import callers

    monkeypatch.setattr(callers, "SESSION_IDLE_S", 0.2)
    client = ollama.AsyncClient(host=f"{kernel.front.url}/t/{token(kernel)}")
    await client.chat(model=kernel.backend.model, messages=[{"role": "user", "content": "hi"}])
    (session,) = [p for p in kernel.ps(all=True) if p.program == "client"]
    await asyncio.wait_for(kernel.wait(session.pid), 10)
    assert session.exit_code == 0
    await client.chat(model=kernel.backend.model, messages=[{"role": "user", "content": "hi"}])
    assert len([p for p in kernel.ps(all=True) if p.program == "client"]) == 2  # a new session


async def test_without_a_token_the_caller_is_its_os_user(kernel: Kernel) -> None:
    import os

    from kernel.server import login_name

    async with httpx.AsyncClient(base_url=kernel.front.url) as http:
        answer = await http.post("/api/chat", headers={"X-Aios-Program": "mine"}, json={
            "stream": False, "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 200
    (session,) = [p for p in kernel.ps() if p.program == "client"]
    assert session.user == login_name(os.getuid()) and session.argv == ("mine",)


@pytest.mark.hostile
async def test_a_sandboxed_program_without_its_token_is_nobody(kernel: Kernel) -> None:
    probe = ("import httpx, os; base = os.environ['OLLAMA_HOST'].split('/t/')[0]; "
             "print(httpx.get(base + '/api/tags').status_code, httpx.get(os.environ['OLLAMA_HOST'] + '/api/tags')"
             ".status_code)")
    proc = kernel.spawn("ext", ["--", sys.executable, "-c", probe])
    await asyncio.wait_for(kernel.wait(proc.pid), 60)
    if os.geteuid() == 0:  # its sandbox uid is no login: without its token it is refused
        assert "".join(proc.output).split() == ["401", "200"]
    else:  # in a user namespace it is the caller's own uid, so it is the caller
        assert "".join(proc.output).split() == ["200", "200"]


async def test_a_program_in_a_virtualenv_under_tmp_runs_in_the_sandbox(kernel: Kernel) -> None:
    import shutil
    import subprocess
    import tempfile

    # /tmp and /home are empty in the sandbox: the program's own install and script are shown again (a directory
    # apart from the workspace's, as a clone in /tmp is)
    apart = Path(tempfile.mkdtemp(prefix="aios-venv-"))
    try:
        os.chmod(apart, 0o755)
        venv = apart / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        script = apart / "where.py"
        script.write_text("import sys; print(sys.prefix)\n")
        proc = kernel.spawn("ext", ["--", str(venv / "bin" / "python"), str(script)])
        await asyncio.wait_for(kernel.wait(proc.pid), 60)
        assert proc.exit_code == 0 and "".join(proc.output).strip() == str(venv), "".join(proc.output)
    finally:
        shutil.rmtree(apart, ignore_errors=True)


@pytest.mark.hostile
async def test_naming_the_kernels_files_does_not_show_them(kernel: Kernel, home: Path) -> None:
    (home / "config.toml").write_text("# the kernel's\n")
    proc = kernel.spawn("ext", ["--", "cat", str(home / "config.toml"), str(home / "http-tokens.json")])
    await asyncio.wait_for(kernel.wait(proc.pid), 60)
    assert proc.exit_code != 0 and "the kernel's" not in "".join(proc.output)


@pytest.mark.hostile
async def test_an_ext_program_cannot_read_what_is_hidden_from_it_by_name(kernel: Kernel, home: Path) -> None:
    probe = "print(open('/proc/1/cmdline', 'rb').read().replace(b'\\0', b' ').decode())"
    proc = kernel.spawn("ext", ["--", sys.executable, "-c", probe])
    await asyncio.wait_for(kernel.wait(proc.pid), 60)
    assert proc.exit_code == 0 and "--args" in "".join(proc.output)
    assert str(home) not in "".join(proc.output)  # bubblewrap's options came by a memfd, not its command line


async def test_the_ollama_client_gets_tool_calls_and_sends_results_back(kernel: Kernel, sim: SimulatedBackend) -> None:
    sim.enqueue(Reply(tool_calls=[{"name": "calc", "arguments": {"expression": "6*7"}}]), "It is 42.")
    client = ollama.AsyncClient(host=f"{kernel.front.url}/t/{token(kernel)}")
    tools = [{"type": "function", "function": {"name": "calc", "description": "arithmetic",
                                                "parameters": {"type": "object", "properties": {
                                                    "expression": {"type": "string"}}}}}]
    first = await client.chat(model=kernel.backend.model, tools=tools,
                              messages=[{"role": "user", "content": "6*7?"}])
    (call,) = first.message.tool_calls
    assert call.function.name == "calc" and dict(call.function.arguments) == {"expression": "6*7"}
    second = await client.chat(model=kernel.backend.model, tools=tools, messages=[
        {"role": "user", "content": "6*7?"}, first.message, {"role": "tool", "tool_name": "calc", "content": "42"}])
    assert second.message.content == "It is 42."
    sent = sim.requests[-1].messages
    assert sent[-2]["tool_calls"] == [{"name": "calc", "arguments": {"expression": "6*7"}}]
    assert sent[-1] == {"role": "tool", "content": "42", "name": "calc"}
