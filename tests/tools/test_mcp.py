"""MCP servers as devices: real servers (`mcp-server-time`, and a misbehaving one on the SDK) started by the kernel
in the tool sandbox, their tools called through the tool service."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from kernel.api import KernelAPI
from kernel.kernel import Kernel, boot
from kernel.llm.simulated import Reply, SimulatedBackend
from kernel.process import Process
from kernel.tools.mcp import load_specs
from tests.conftest import make_config

FAKE = str(Path(__file__).parents[1] / "fakes" / "mcp_server.py")


def configure(home: Path, text: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(text)


def fake(name: str, mode: str = "", timeout: float = 10) -> str:
    argv = ", ".join(f'"{a}"' for a in [sys.executable, FAKE, *([mode] if mode else [])])
    return f"[mcp.servers.{name}]\ncommand = [{argv}]\ntimeout = {timeout}\n"


async def run(kernel: Kernel, program: str, *argv: str) -> Process:
    proc = kernel.spawn(program, list(argv))
    await asyncio.wait_for(kernel.wait(proc.pid), 60)
    return proc


def kmsg(kernel: Kernel) -> str:
    return "\n".join(m.text for m in kernel.kmsg.messages())


def test_a_wrong_server_entry_is_one_line_and_left_out(home: Path) -> None:
    configure(home, '[mcp.servers.ok]\ncommand = ["x"]\n[mcp.servers.both]\ncommand = ["x"]\nurl = "http://127.0.0.1:1/"\n'
                    '[mcp.servers.far]\nurl = "http://example.com/mcp"\n[mcp.servers.odd]\ncommand = "x"\nport = 1\n'
                    '[mcp.servers."bad name"]\ncommand = ["x"]\n[mcp.servers.slow]\ncommand = ["x"]\ntimeout = 0\n')
    specs, problems = load_specs(home)
    assert [s.name for s in specs] == ["ok"]
    assert len(problems) == 5 and all(p.endswith("; left out") and "\n" not in p for p in problems)
    assert any("127.0.0.1" in p for p in problems) and any("unknown keys: port" in p for p in problems)
    configure(home, "[mcp.servers\n")
    assert load_specs(home)[0] == [] and "no MCP server is started" in load_specs(home)[1][0]


async def test_mcp_server_time_tools_are_listed_and_called_by_react(home: Path, sim: SimulatedBackend) -> None:
    configure(home, '[mcp.servers.time]\ncommand = ["mcp-server-time"]\n')
    config = make_config(home, yes_for=("time.get_current_time(Europe/*)",))
    async with await boot(config, backend=sim) as kernel:
        (home / "agents").mkdir(exist_ok=True)
        servers = await KernelAPI(kernel).load_tools()
        assert servers == [{"name": "time", "transport": "stdio", "state": "up", "users": ["alice"], "error": None,
                            "crashes": 0}]
        schema = next(s for s in kernel.tools.schemas() if s["function"]["name"] == "time.get_current_time")
        assert schema["function"]["parameters"]["required"] == ["timezone"]
        sim.enqueue(Reply(tool_calls=[{"name": "time.get_current_time", "arguments": {"timezone": "Europe/Paris"}}]),
                    "It is evening in Paris.")
        proc = await run(kernel, "react", "use time.get_current_time: Europe/Paris")
        assert proc.status == "EXITED(0)", proc.output
        result = sim.requests[1].messages[-1]
        assert result["role"] == "tool" and '"timezone": "Europe/Paris"' in result["content"]
        assert "time.get_current_time" in [t["function"]["name"] for t in sim.requests[0].tools]
        # a rule decides like for a built-in: Asia is not allowed, and no one is there to ask
        sim.enqueue(Reply(tool_calls=[{"name": "time.get_current_time", "arguments": {"timezone": "Asia/Tokyo"}}]),
                    "Not allowed.")
        proc = await run(kernel, "react", "what time is it in Tokyo?")
        assert "permission denied: time.get_current_time(Asia/Tokyo)" in "".join(proc.output)
        audit = [(a.tool, a.decision) for a in KernelAPI(kernel).audit()]
        assert ("time.get_current_time", "allow") in audit and ("time.get_current_time", "deny") in audit


async def test_bad_arguments_and_tool_errors_are_one_line(home: Path, sim: SimulatedBackend) -> None:
    configure(home, fake("odd"))
    async with await boot(make_config(home, yes_for=("odd.*",)), backend=sim) as kernel:
        await KernelAPI(kernel).load_tools()
        proc = kernel.spawn("workload", ["1:300"])
        bad = await kernel.syscall_tool(proc, "odd.echo", {"txt": 1})
        assert not bad.ok and bad.error.startswith("bad arguments for odd.echo: ")
        assert "'text' is a required" in bad.error
        failed = await kernel.syscall_tool(proc, "odd.fail", {})
        assert not failed.ok and failed.error == "Error executing tool fail"  # the server's own line
        ok = await kernel.syscall_tool(proc, "odd.echo", {"text": "still here"})
        assert ok.ok and ok.output == "still here"


@pytest.mark.hostile
async def test_a_crashed_server_is_started_again_once_then_disabled(home: Path, sim: SimulatedBackend) -> None:
    configure(home, fake("odd"))
    async with await boot(make_config(home, yes_for=("odd.*",)), backend=sim) as kernel:
        proc = kernel.spawn("workload", ["1:300"])  # its start starts the server; it stays, to call tools as
        assert (await kernel.syscall_tool(proc, "odd.echo", {"text": "one"})).output == "one"
        crashed = await kernel.syscall_tool(proc, "odd.die", {})
        assert not crashed.ok and "the mcp server failed" in crashed.error and "\n" not in crashed.error
        assert "mcp server 'odd' crashed" in kmsg(kernel) and "started again" in kmsg(kernel)
        assert (await kernel.syscall_tool(proc, "odd.echo", {"text": "two"})).output == "two"  # restarted
        await kernel.syscall_tool(proc, "odd.die", {})
        assert "disabled until the kernel restarts" in kmsg(kernel)
        gone = await kernel.syscall_tool(proc, "odd.echo", {"text": "three"})
        assert not gone.ok and "mcp server 'odd' is disabled" in gone.error
        assert (await kernel.syscall_tool(proc, "calc", {"expression": "1+1"})).output == "2"  # the rest unharmed


@pytest.mark.hostile
async def test_a_hanging_call_times_out_and_the_server_goes_on(home: Path, sim: SimulatedBackend) -> None:
    configure(home, fake("odd", timeout=1))
    async with await boot(make_config(home, yes_for=("odd.*",)), backend=sim) as kernel:
        proc = kernel.spawn("workload", ["1:300"])
        hung = await kernel.syscall_tool(proc, "odd.sleep", {"seconds": 60})
        assert not hung.ok and "timed out after 1 s" in hung.error
        assert (await kernel.syscall_tool(proc, "odd.echo", {"text": "awake"})).output == "awake"


@pytest.mark.hostile
async def test_garbage_a_clash_and_a_server_that_exits(home: Path, sim: SimulatedBackend) -> None:
    configure(home, fake("noisy", "garbage") + fake("fs", "clash") + fake("gone", "exit"))
    async with await boot(make_config(home, yes_for=("noisy.*", "fs.*")), backend=sim) as kernel:
        servers = {s["name"]: s for s in await KernelAPI(kernel).load_tools()}
        assert servers["noisy"]["state"] == "up"  # lines that are not JSON-RPC are skipped
        assert servers["fs"]["state"] == "up" and servers["gone"]["state"] == "stopped"
        log = kmsg(kernel)
        assert "mcp server 'fs': tool 'read' skipped: fs.read is already a tool" in log
        assert "mcp server 'fs': tool 'two words' skipped: not a plain name" in log
        assert "mcp server 'gone' crashed" in log
        assert kernel.tools.get("fs.read").description.startswith("Read a text file")  # the built-in stays
        assert "fs.echo" in kernel.tools.names() and "noisy.echo" in kernel.tools.names()
        proc = kernel.spawn("workload", ["1:300"])
        assert (await kernel.syscall_tool(proc, "noisy.echo", {"text": "x"})).output == "x"


async def test_servers_stop_with_the_kernel(home: Path, sim: SimulatedBackend) -> None:
    import psutil

    configure(home, fake("odd"))
    kernel = await boot(make_config(home), backend=sim)
    await KernelAPI(kernel).load_tools()
    mine = psutil.Process()
    servers = [p for p in mine.children(recursive=True) if FAKE in " ".join(p.cmdline())]
    assert servers
    await kernel.shutdown()
    gone, alive = psutil.wait_procs(servers, timeout=10)
    assert not alive


@pytest.mark.hostile
async def test_a_server_is_confined_by_the_sandbox(home: Path, sim: SimulatedBackend, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("the kernel's")
    configure(home, fake("odd"))
    async with await boot(make_config(home, yes_for=("odd.*",)), backend=sim) as kernel:
        proc = kernel.spawn("workload", ["1:300"])
        for path in (home / "aios.db", home / "config.toml"):  # AIOS_HOME is hidden from it
            seen = await kernel.syscall_tool(proc, "odd.cat", {"path": str(path)})
            assert not seen.ok, seen.output[:80]
        wrote = await kernel.syscall_tool(proc, "odd.write", {"path": str(outside), "text": "mine"})
        assert not wrote.ok and outside.read_text() == "the kernel's"  # the host is read-only to it
        for path in ("/proc/1/cmdline", "/proc/1/environ"):  # nor the names of what is hidden from it
            seen = await kernel.syscall_tool(proc, "odd.cat", {"path": path})
            assert not (seen.ok and str(home) in seen.output)
            assert path.endswith("environ") or "--args" in seen.output
        inside = await kernel.syscall_tool(proc, "odd.write", {"path": "notes.txt", "text": "mine"})
        assert inside.ok  # its own directory is its to write
        assert (home / "mcp" / "alice" / "odd" / "notes.txt").read_text() == "mine"


async def test_mcp_server_git_answers_about_a_repository(home: Path, sim: SimulatedBackend, tmp_path: Path) -> None:
    import subprocess

    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "a.txt").write_text("hello\n")
    subprocess.run(["git", "-C", str(repo), "add", "a.txt"], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm",
                    "the first commit"], check=True)
    configure(home, f'[mcp.servers.git]\ncommand = ["mcp-server-git", "--repository", "{repo}"]\ncwd = "{repo}"\n')
    async with await boot(make_config(home, yes_for=(f"git.git_log({repo})",)), backend=sim) as kernel:
        proc = kernel.spawn("workload", ["1:300"])
        log = await kernel.syscall_tool(proc, "git.git_log", {"repo_path": str(repo)})
        assert log.ok and "the first commit" in log.output, log.error
        status = await kernel.syscall_tool(proc, "git.git_status", {"repo_path": str(repo)})
        assert not status.ok and "permission denied: git.git_status" in status.error  # no rule allows that one


async def test_a_server_over_streamable_http(home: Path, sim: SimulatedBackend) -> None:
    import subprocess

    from tests.conftest import until
    from tests.llm.test_ollama import free_port

    port = free_port()
    server = subprocess.Popen([sys.executable, FAKE, f"http:{port}"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        def listening() -> bool:
            import socket

            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        await until(listening, timeout=30)
        configure(home, f'[mcp.servers.remote]\nurl = "http://127.0.0.1:{port}/mcp"\n')
        async with await boot(make_config(home, yes_for=("remote.echo",)), backend=sim) as kernel:
            proc = kernel.spawn("workload", ["1:300"])
            said = await kernel.syscall_tool(proc, "remote.echo", {"text": "over http"})
            assert said.ok and said.output == "over http", said.error
            assert kernel.mcp.state()[0]["transport"] == "http"
    finally:
        server.terminate()
        server.wait(10)


async def test_an_mcp_call_asks_a_person_and_a_session_grant_answers_the_next(home: Path,
                                                                             sim: SimulatedBackend) -> None:
    configure(home, '[mcp.servers.time]\ncommand = ["mcp-server-time"]\n')
    async with await boot(make_config(home), backend=sim) as kernel:
        api = KernelAPI(kernel, caller="alice")
        answerer = api.attach_answerer()
        try:
            proc = kernel.spawn("workload", ["1:300"])
            call = asyncio.ensure_future(kernel.syscall_tool(proc, "time.get_current_time",
                                                             {"timezone": "Europe/Paris"}))
            from tests.conftest import until

            await until(lambda: api.pending_permissions(), timeout=30)
            (asked,) = api.pending_permissions()
            assert asked.tool == "time.get_current_time" and asked.rule == "time.get_current_time(Europe/Paris)"
            api.answer_permission(asked.request_id, "session")
            result = await call
            assert result.ok and "Europe/Paris" in result.output
            again = await kernel.syscall_tool(proc, "time.get_current_time", {"timezone": "Europe/Paris"})
            assert again.ok and api.pending_permissions() == []  # the grant answered it
        finally:
            answerer.detach()


@pytest.mark.hostile
async def test_a_server_slow_to_start_does_not_hold_up_processes(home: Path, sim: SimulatedBackend,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kernel.kernel.MCP_START_WAIT", 0.2)
    configure(home, fake("slow", "slow"))
    async with await boot(make_config(home), backend=sim) as kernel:
        proc = await run(kernel, "chat", "hi")
        assert proc.status == "EXITED(0)"
        assert kernel.mcp.state()[0]["state"] == "stopped"  # still starting: it did not wait for it
