"""The shell tool and the subprocess sandbox under it: no shell syntax, limits, cleanup, environment."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import psutil
import pytest

from kernel.tools.builtin.fs import fs_write
from kernel.tools.builtin.shell import shell
from kernel.tools.registry import ToolContext, ToolRegistry
from kernel.tools.sandbox import Limits, Sandbox, SandboxResult, sandbox_uid
from tests.conftest import CHAIN, until
from tests.hostile.conftest import processes_with

ROOT = os.geteuid() == 0
as_root = pytest.mark.skipif(not ROOT, reason="a uid per user is used only when running as root")
MODES = ("bwrap", "rlimit")


async def run_sandboxed(argv: list[str], ws: Path, limits: Limits, env: dict[str, str] | None = None,
                        mode: str = "bwrap") -> SandboxResult:
    """Run `argv` for alice in `ws` through a sandbox of its own (AIOS_HOME beside the workspace)."""
    return await Sandbox(ws.parent / "aios-home", mode=mode).run(argv, ws, user="alice", limits=limits, env=env)


def marked(marker: str) -> list[psutil.Process]:
    return processes_with(marker)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return tmp_path / "ws"


@pytest.fixture
def ctx(ws: Path) -> ToolContext:
    return ToolContext(pid=7, user="alice", workspace=ws)


@pytest.fixture
def registry() -> ToolRegistry:
    return ToolRegistry([shell, fs_write])


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def in_session(sid: int) -> list[int]:
    found = []
    for pid in psutil.pids():
        try:
            if os.getsid(pid) == sid and alive(pid):
                found.append(pid)
        except OSError:
            pass
    return found


async def run(registry: ToolRegistry, ctx: ToolContext, command: str) -> tuple[bool, str]:
    result = await registry.call("shell", ctx, {"command": command})
    return result.ok, result.text


# -- the tool ---------------------------------------------------------------------------------------


async def test_runs_a_program_in_the_workspace(registry: ToolRegistry, ctx: ToolContext, ws: Path) -> None:
    ok, text = await run(registry, ctx, "python3 -c 'import os; print(os.getcwd())'")
    assert ok
    assert text.strip() == str(ws)
    ok, text = await run(registry, ctx, 'echo "two words" \'and more\'')
    assert text == "two words and more\n"


async def test_nonzero_exit_is_the_last_line(registry: ToolRegistry, ctx: ToolContext) -> None:
    ok, text = await run(registry, ctx, "python3 -c 'import sys; print(\"oops\"); sys.exit(3)'")
    assert not ok  # the program's exit status is the outcome: the agent, the log and the monitor see an error
    assert text.splitlines() == ["error: oops", "[exit 3]"]


@pytest.mark.parametrize("command", ["", "   ", 'echo "unterminated', "echo 'half"])
async def test_empty_or_unparsable_command_is_an_error(registry: ToolRegistry, ctx: ToolContext,
                                                       command: str) -> None:
    ok, text = await run(registry, ctx, command)
    assert not ok
    assert "empty command" in text or "cannot parse command" in text


async def test_missing_program(registry: ToolRegistry, ctx: ToolContext) -> None:
    ok, text = await run(registry, ctx, "no-such-program-aios --help")
    assert not ok
    assert text == "error: command not found: no-such-program-aios"


@pytest.mark.hostile
@pytest.mark.parametrize("command", [
    "echo hi && touch marker",
    "echo hi; touch marker",
    "echo hi | touch marker",
    "echo hi || touch marker",
    "echo $(touch marker)",
    "echo `touch marker`",
    "echo hi > marker",
    "echo hi >> marker",
    "echo hi & touch marker",
    "echo hi\ntouch marker",
])
async def test_shell_syntax_is_never_interpreted(registry: ToolRegistry, ctx: ToolContext, ws: Path,
                                                 command: str) -> None:
    ok, text = await run(registry, ctx, command)
    assert ok
    assert text.startswith("hi") or "touch" in text  # echo printed the operators as words
    assert not (ws / "marker").exists()


@pytest.mark.hostile
async def test_command_substitution_is_literal(registry: ToolRegistry, ctx: ToolContext, ws: Path) -> None:
    ok, text = await run(registry, ctx, "echo $(touch marker) $HOME")
    assert text == "$(touch marker) $HOME\n"
    assert not (ws / "marker").exists()


async def test_limits_come_from_the_services(registry: ToolRegistry, ws: Path) -> None:
    ctx = ToolContext(pid=7, user="alice", workspace=ws, services={"limits": Limits(timeout_s=0.5)})
    ok, text = await run(registry, ctx, "sleep 30")
    assert not ok
    assert text.removeprefix("error: ").splitlines()[-1] == "[killed: timeout after 0.5 s]"


async def test_output_cap_is_reported(registry: ToolRegistry, ws: Path) -> None:
    ctx = ToolContext(pid=7, user="alice", workspace=ws, services={"limits": Limits(output_bytes=1000)})
    ok, text = await run(registry, ctx, "yes")
    *body, last = text.removeprefix("error: ").splitlines()
    assert not ok and last == "[output truncated at 1000 bytes]"
    assert sum(len(line) + 1 for line in body) <= 1001


async def test_cpu_limit_is_reported(registry: ToolRegistry, ws: Path) -> None:
    ctx = ToolContext(pid=7, user="alice", workspace=ws, services={"limits": Limits(cpu_s=1, timeout_s=30)})
    ok, text = await run(registry, ctx, "python3 -c 'while True: pass'")
    assert not ok and text.removeprefix("error: ").splitlines()[-1].startswith("[killed: cpu limit")


async def test_shell_can_change_files_fs_write_made(registry: ToolRegistry, ctx: ToolContext, ws: Path) -> None:
    assert (await registry.call("fs.write", ctx, {"path": "notes/a.txt", "content": "one\n"})).ok
    ok, text = await run(registry, ctx, "python3 -c \"open('notes/a.txt', 'a').write('two\\n')\"")
    assert ok and text == "(no output)", text
    assert (ws / "notes" / "a.txt").read_text() == "one\ntwo\n"


# -- the sandbox ------------------------------------------------------------------------------------


async def test_endless_loop_stops_at_the_cpu_limit(ws: Path) -> None:
    ws.mkdir()
    r = await run_sandboxed(["python3", "-c", "while True: pass"], ws, Limits(cpu_s=1, timeout_s=30))
    assert r.killed == "cpu"
    assert r.exit_code == -signal.SIGXCPU


async def test_two_gib_allocation_fails(ws: Path) -> None:
    ws.mkdir()
    r = await run_sandboxed(["python3", "-c", "b = bytearray(2 << 30)"], ws, Limits())
    assert r.exit_code != 0
    assert "MemoryError" in r.output


@pytest.mark.parametrize("argv", [["python3", "-c", "print('x' * 100_000_000)"], ["yes"]])
async def test_huge_output_is_capped(ws: Path, argv: list[str]) -> None:
    ws.mkdir()
    limits = Limits()
    r = await run_sandboxed(argv, ws, limits)
    assert r.truncated
    assert r.killed == "output"
    assert len(r.output.encode()) == limits.output_bytes


async def test_file_size_limit(ws: Path) -> None:
    ws.mkdir()
    r = await run_sandboxed(["dd", "if=/dev/zero", "of=big", "bs=1000", "count=50"], ws, Limits(file_bytes=4000))
    assert r.exit_code != 0
    assert (ws / "big").stat().st_size <= 4000


@pytest.mark.parametrize("mode", MODES)
async def test_timeout_kills_descendants(ws: Path, mode: str) -> None:
    ws.mkdir()
    r = await run_sandboxed(["sh", "-c", "sleep 1000.4242 & sleep 1001.4242"], ws, Limits(timeout_s=1), mode=mode)
    assert r.killed == "timeout"
    await until(lambda: not marked("4242"), timeout=5)


@pytest.mark.parametrize("mode", MODES)
async def test_background_children_do_not_outlive_the_program(ws: Path, mode: str) -> None:
    ws.mkdir()
    r = await run_sandboxed(["sh", "-c", "sleep 1000.4343 & echo started"], ws, Limits(timeout_s=20), mode=mode)
    assert r.killed is None and r.exit_code == 0  # the program's own exit ends the run, not the timeout
    await until(lambda: not marked("4343"), timeout=5)


@pytest.mark.parametrize("mode", MODES)
async def test_cancel_kills_the_process_group_and_leaves_no_task(ws: Path, mode: str) -> None:
    ws.mkdir()
    before = asyncio.all_tasks()
    task = asyncio.create_task(run_sandboxed(["sh", "-c", "sleep 1000.4444 & wait"], ws, Limits(timeout_s=60),
                                             mode=mode))
    await until(lambda: bool(marked("1000.4444")), timeout=10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await until(lambda: not marked("4444"), timeout=5)
    assert asyncio.all_tasks() <= before


@pytest.mark.parametrize("yields", [0, 1, 2, 5])
async def test_cancel_while_starting_leaves_nothing(ws: Path, yields: int) -> None:
    ws.mkdir()
    marker = f"1000.45{yields}"
    task = asyncio.create_task(run_sandboxed(["sh", "-c", f"sleep {marker} & wait"], ws, Limits()))
    for _ in range(yields):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await until(lambda: not marked(marker), timeout=5)


async def test_environment_is_scrubbed(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws.mkdir()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-for-children")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-not-for-children")
    monkeypatch.setenv("OLLAMA_HOST", "10.0.0.1:11434")
    monkeypatch.setenv("SOMETHING_HARMLESS", "parent-only")
    r = await run_sandboxed(["python3", "-c", "import os, json; print(json.dumps(dict(os.environ)))"], ws,
                            Limits(), env={"GITHUB_TOKEN": "ghp-x", "COLOR": "blue"})
    env = json.loads(r.output)
    assert "not-for-children" not in r.output and "ghp-x" not in r.output and "10.0.0.1" not in r.output
    git_guard = {k for k in env if k.startswith("GIT_")}  # git's config that can run commands is switched off
    assert env.get("GIT_CONFIG_NOSYSTEM") == "1" and env.get("GIT_CONFIG_GLOBAL") == "/dev/null"
    assert "safe.bareRepository" in env.values()  # a workspace is never taken for a bare repository
    assert set(env) - {"LANG", "LC_ALL", "TZ", "LC_CTYPE", "PWD"} - git_guard == {
        "PATH", "HOME", "TERM", "COLOR", "TMPDIR", "PYTHONNOUSERSITE", "PIP_NO_INPUT"}
    # HOME is private, in the run's own /tmp: never the workspace, where a program could plant hooks
    assert env["HOME"].startswith("/tmp") and env["HOME"] != str(ws)
    assert env["TERM"] == "dumb" and env["COLOR"] == "blue" and env["PYTHONNOUSERSITE"] == "1"


async def test_missing_program_raises(ws: Path) -> None:
    ws.mkdir()
    with pytest.raises(FileNotFoundError):
        await run_sandboxed(["no-such-program-aios"], ws, Limits())


@as_root
async def test_root_runs_the_child_as_the_sandbox_uid(ws: Path) -> None:
    ws.mkdir()
    r = await run_sandboxed(["python3", "-c", "import os; print(os.getuid(), os.getgid(), os.getgroups())"], ws,
                            Limits())
    uid = sandbox_uid("alice")
    assert r.output.split(maxsplit=2) == [str(uid), str(uid), "[]\n"]
    assert ws.stat().st_uid == uid  # so the program can write its workspace


@pytest.mark.hostile
@pytest.mark.parametrize("mode", MODES)
async def test_fork_bomb_is_contained(ws: Path, mode: str) -> None:
    ws.mkdir()
    bomb = ("import os\nopen('bomb.pid', 'w').write(str(os.getpid()))\nwhile True:\n"
            "    try:\n        os.fork()\n    except OSError:\n        pass\n")
    limits = Limits(nproc=12, timeout_s=3, cpu_s=2)
    task = asyncio.create_task(run_sandboxed(["python3", "-c", bomb], ws, limits, mode=mode))
    await until(lambda: (ws / "bomb.pid").is_file() and (ws / "bomb.pid").read_text() != "", timeout=10)
    most = 0
    while not task.done():
        most = max(most, len([p for p in marked("bomb.pid") if "bwrap" not in p.info["cmdline"][0]]))
        await asyncio.sleep(0.05)
    r = task.result()
    assert r.killed in ("timeout", "cpu")
    await until(lambda: not marked("bomb.pid"), timeout=5)
    if ROOT:  # RLIMIT_NPROC binds alice's own uid; for another user it adds to what the user already runs
        assert 1 < most <= limits.nproc
    again = await run_sandboxed(["echo", "still here"], ws, Limits(), mode=mode)  # the machine survived
    assert again.output == "still here\n"


@pytest.mark.hostile
@pytest.mark.parametrize("mode", MODES)
async def test_setsid_escape_dies_with_the_run(ws: Path, mode: str) -> None:
    """A grandchild that leaves the run's session: under bwrap the pid namespace takes it; under rlimit (as
    root) the sweep of alice's uid does."""
    if mode == "rlimit" and not ROOT:
        pytest.skip("without bwrap, only a kernel running as root can sweep a uid")
    ws.mkdir()
    escape = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n"
              "    open('e.tmp', 'w').write('x')\n    os.rename('e.tmp', 'escapee')\n"
              "    os.execvp('sleep', ['sleep', '1000.4646'])\n"
              "else:\n    while not os.path.exists('escapee'):\n        time.sleep(0.01)\n")
    r = await run_sandboxed(["python3", "-c", escape], ws, Limits(timeout_s=10), mode=mode)
    assert r.exit_code == 0
    await until(lambda: not marked("1000.4646"), timeout=5)


@pytest.mark.hostile
async def test_a_setsid_chain_that_reforks_dies_with_the_run(ws: Path) -> None:
    """A program that re-forks in `setsid` chains every 10 ms: one snapshot would miss the newest copy; the
    pid namespace ends all of them when the run ends."""
    ws.mkdir()
    r = await run_sandboxed(["python3", "-c", CHAIN, "chain-4747"], ws, Limits(timeout_s=10))
    assert r.exit_code == 0
    await until(lambda: not marked("chain-4747"), timeout=5)
    size = (ws / "hop").stat().st_size
    assert size >= 20  # it did run
    await asyncio.sleep(0.3)  # nothing left to write: the file stays as it is
    assert (ws / "hop").stat().st_size == size
