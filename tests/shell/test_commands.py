"""The commands: the /proc namespace, ps options, nice, whoami, history, models, pull — and every `--json`
output checked against the shape its `help` documents."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest

from aios_shell.render import make_console
from aios_shell.shell import Shell
from commands import history as history_cmd
from commands import jobs as jobs_cmd
from commands import ls as ls_cmd
from commands import models as models_cmd
from commands import ps as ps_cmd
from commands.registry import lookup
from kernel.kernel import boot
from kernel.llm.ollama import OllamaBackend
from kernel.llm.simulated import SimulatedBackend
from tests.conftest import make_config
from tests.fakes.ollama_server import FakeOllama
from tests.shell.helpers import Session, check_shape, session


def quick() -> SimulatedBackend:
    sim = SimulatedBackend(decode_tps=0, prefill_tps=0)
    sim.enqueue("The answer.")
    return sim


async def test_proc_namespace(home: Path) -> None:
    async with session(home, quick()) as s:
        await s.run("run chat hello")
        s.take()
        assert await s.run("ls; ls /proc/1") == 0
        assert s.take()[0].split() == ["agents", "audit", "mem", "models", "proc", "tools", "users",
                                       *ps_cmd_files(), "files"]
        await s.run("cat /proc/1/status")
        status = dict(line.split(": ", 1) for line in s.take()[0].splitlines())
        assert status["pid"] == "1" and status["status"] == "EXITED(0)" and status["argv"] == '["hello"]'
        proc = s.kernel.get(1)
        assert status["created_at"] == time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(proc.created_at))
        assert status["ended_at"] == time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(proc.ended_at))
        await s.run("cat /proc/1/log /proc/1/context")
        assert s.take()[0] == ("The answer.\nused: 7 / 8192 tokens (0%)\ncompactions: 0\nswitches: 0\n"
                               "switch cost: 0.0 ms total\n\n[user]\nhello\n\n[assistant]\nThe answer.\n\n")
        await s.run("ls /agents /users /models")
        out = s.take()[0]
        assert "/agents:\nchat\nclient\next\nparallel\nreact\n" in out and "/users:\nalice\nroot\n" in out
        assert "/models:\nsim-1\n" in out
        await s.run("cat /users/alice /agents/chat")
        out = s.take()[0]
        assert "admin: no\nprocesses: 1 (0 running)" in out and "source: agents.chat:main" in out


def ps_cmd_files() -> list[str]:
    return ["status", "context", "log", "tools"]


@pytest.mark.parametrize(("line", "message"), [
    ("cat /proc/99/status", "cat: /proc/99/status: No such file or directory"),
    ("cat /proc/1", "cat: /proc/1: Is a directory"),
    ("cat /proc", "cat: /proc: Is a directory"),
    ("cat /proc/x/log", "cat: /proc/x/log: No such file or directory"),
    ("ls /proc/1/log", "ls: cannot access /proc/1/log: Not a directory"),
    ("ls /nowhere/at/all", "ls: cannot access /nowhere/at/all: No such file or directory"),
    ("cat /agents/nosuch", "cat: /agents/nosuch: No such file or directory"),
])
async def test_namespace_errors_are_one_line(home: Path, line: str, message: str) -> None:
    async with session(home, quick()) as s:
        await s.run("run chat hi")
        s.take()
        assert await s.run(line) == 1
        assert s.take()[1].splitlines() == [message]


async def test_ps_options(home: Path) -> None:
    async with session(home, SimulatedBackend(decode_tps=0, prefill_tps=0), admins=frozenset({"alice"})) as s:
        await s.run("run chat short; nice -n 7 run chat short; run -n -3 chat short")
        s.take()
        for line in ("ps -a --sort=-nice", "ps -a --sort -nice", "ps -a --sort -ni", "ps -a --sort=-NI,pid"):
            assert await s.run(line) == 0, line
            assert [row.split()[4] for row in s.take()[0].splitlines()[1:]] == ["7", "0", "-3"], line
        await s.run("ps -a --sort ni")
        assert [row.split()[4] for row in s.take()[0].splitlines()[1:]] == ["-3", "0", "7"]
        await s.run("ps -a -l")
        header = s.take()[0].splitlines()[0].split()
        assert header == ["PID", "PPID", "USER", "PRI", "NI", "STATE", "%CTX", "TOKENS", "TIME", "WAIT",
                          "CALLS", "SWITCHES", "QUOTA", "CMD"]
        await s.run("ps -a -u bob; ps -a -u alice --json")
        out = s.take()[0]
        assert out.startswith("PID") and len(json.loads(out.split("\n", 1)[1])) == 3
        assert await s.run("ps --sort bogus") == 2
        assert "unknown sort key" in s.take()[1]


async def test_nice_runs_an_agent_nicer(home: Path) -> None:
    async with session(home, quick()) as s:
        assert await s.run("nice run chat a") == 0
        assert s.kernel.lookup(1).nice == 10
        assert await s.run("nice -n -5 run chat a") == 1  # only an admin may raise priority
        assert await s.run("nice -n x run chat a; nice echo hi; nice") == 2
        errors = s.take()[1].splitlines()
    assert errors[0].startswith("run: cannot set nice -5") and len(errors) == 4
    assert errors[2] == "nice: echo: only agents have a niceness (nice -n N run AGENT ARGS…) (see: help nice)"


async def test_whoami_history_clear(home: Path) -> None:
    async with session(home) as s:
        (home / "history-alice").write_text("\n# 2025\n+ps -a\n\n# 2025\n+run chat hi\n")
        assert await s.run("whoami; history; history 1 --json; clear") == 0
        out = s.take()[0]
    assert out.startswith("alice\n    1  ps -a\n    2  run chat hi\n")
    assert json.loads(out.split("\n", 3)[3]) == [{"n": 2, "command": "run chat hi"}]


async def test_models_and_pull_without_ollama(home: Path) -> None:
    async with session(home) as s:
        assert await s.run("models") == 0
        assert s.take()[0].splitlines() == ["NAME   BACKEND    IN USE", "sim-1  simulated  *"]
        assert await s.run("pull gemma3:270m") == 1
        assert s.take()[1].strip() == ("pull: the simulated backend has no models to pull "
                                       "(pull needs --backend ollama)")


async def test_models_and_pull_on_ollama(home: Path, fake_ollama: FakeOllama) -> None:
    backend = OllamaBackend(model="gemma3:270m", host=fake_ollama.host)
    kernel = await boot(make_config(home, backend="ollama"), backend=backend)
    out, err = io.StringIO(), io.StringIO()
    s = Session(kernel, Shell(kernel, out=make_console(out), err=make_console(err)), out, err)
    try:
        assert await s.run("pull tinyllama") == 0
        lines = s.take()[0].splitlines()
        assert lines[0] == "pulling manifest" and lines[-1] == "success"
        assert fake_ollama.has_model("tinyllama")
        await s.run("models --json")
        rows = json.loads(s.take()[0])
        assert {r["name"] for r in rows} >= {"gemma3:270m", "tinyllama"}
        assert [r["name"] for r in rows if r["current"]] == ["gemma3:270m"]
        assert await s.run("pull missing-model") == 1
        assert s.take()[1].startswith("pull: model 'missing-model' is not in the Ollama library")
    finally:
        await kernel.shutdown()


LISTINGS = {
    "ps -a --json": ps_cmd.SHAPE,
    "ps -a --forest --json": ps_cmd.SHAPE,
    "jobs --json": jobs_cmd.SHAPE,
    "ls /proc /proc/1 /agents --json": ls_cmd.SHAPE,
    "models --json": models_cmd.SHAPE,
    "history --json": history_cmd.SHAPE,
}


@pytest.mark.parametrize("line", list(LISTINGS))
async def test_every_listing_matches_its_documented_json_shape(home: Path, line: str) -> None:
    shape = LISTINGS[line]
    async with session(home, SimulatedBackend(decode_tps=50, prefill_tps=0)) as s:
        (home / "history-alice").write_text("\n# t\n+ps\n")
        await s.run("run chat short; run chat long &")
        s.take()
        assert await s.run(line) == 0
        value = json.loads(s.take()[0])
        assert value, "an empty list proves nothing"
        check_shape(value, shape)
        name = line.split()[0]
        documented = lookup(name).help()
        assert "--json output:" in documented
        for key in shape[0]:
            assert f'"{key}"' in documented, f"help {name} does not document {key}"


async def test_help_works_for_every_command(home: Path) -> None:
    from commands.registry import names

    async with session(home) as s:
        for name in names():
            assert await s.run(f"help {name}") == 0, name
            out, err = s.take()
            assert out.startswith("usage: ") and err == "", (name, err)
        assert await s.run("help") == 0
        listed = s.take()[0].splitlines()
        kill = next(line for line in listed if line.startswith("kill "))
        assert "signal" in kill and "…" not in kill  # the description, whole
        commands = [line.split()[0] for line in listed if line[:1].isalpha() and not line.startswith(("Agents",
                                                                                                      "Language"))]
        assert commands == sorted(commands) and "source" in commands and "." not in commands


async def test_ps_keeps_cmd_on_a_narrow_terminal(home: Path) -> None:
    from rich.console import Console

    async with session(home, quick()) as s:
        await s.run("run chat hello there")
        screen = io.StringIO()
        s.shell.out = Console(file=screen, force_terminal=True, width=80, color_system=None)
        for line in ("ps -a -l", "ps -a"):
            await s.run(line)
            shown = screen.getvalue().splitlines()
            screen.seek(0)
            screen.truncate()
            assert all(len(row) <= 80 for row in shown), line
            assert shown[0].split()[-1] == "CMD" and shown[1].endswith("chat hello there"), (line, shown)
            assert {"TOKENS", "TIME", "STATE"} <= set(shown[0].split())
        s.shell.out = Console(file=screen, force_terminal=True, width=200, color_system=None)
        await s.run("ps -a -l")
        assert "SWITCHES" in screen.getvalue().splitlines()[0]  # room enough: every column
