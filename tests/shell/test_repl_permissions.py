"""The REPL asks inline when an agent's tool call needs a person: y once, s session, a always, n deny."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from prompt_toolkit.application import create_app_session
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from aios_shell import asker
from aios_shell.repl import Repl
from kernel.llm.simulated import SimulatedBackend
from tests.conftest import until
from tests.shell.test_repl import start_repl
from tests.tools.test_syscall import install_agent


@pytest.fixture(autouse=True)
def _no_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """Answers typed by the tests come right after the question; the grace period has its own test."""
    monkeypatch.setattr(asker, "GRACE", 0.0)


def calls(*commands: str) -> str:
    return json.dumps(json.dumps([{"tool": "shell", "args": {"command": c}} for c in commands]))


async def test_session_answer_then_no_second_question_then_a_denial(home: Path) -> None:
    install_agent(home)
    kernel, shell, out, err, history = await start_repl(home, SimulatedBackend())
    with create_pipe_input() as inp, create_app_session(input=inp, output=DummyOutput()):
        repl = Repl(kernel, input=inp, output=DummyOutput(), history=history, shell=shell)
        task = asyncio.create_task(repl.run())
        inp.send_text(f"run tooly {calls('echo one')}\n")
        await until(lambda: "tooly[1] (alice) wants to call shell: command=echo one" in out.getvalue())
        inp.send_text("s")
        await until(lambda: "ok one" in out.getvalue())
        inp.send_text(f"run tooly {calls('echo one')}\n")  # the same call: allowed for the session
        await until(lambda: out.getvalue().count("ok one") == 2)
        inp.send_text(f"run tooly {calls('touch marker')}\n")
        await until(lambda: out.getvalue().count("wants to call") == 2)
        inp.send_text("n")
        await until(lambda: "ERR permission denied" in out.getvalue())
        inp.send_text("exit 0\n")
        assert await asyncio.wait_for(task, 10) == 0
    decisions = [(r["pid"], r["decision"], r["by"]) for r in kernel.access.audit_rows()]
    await kernel.shutdown()
    text = out.getvalue()
    assert text.count("wants to call shell") == 2  # the second `echo one` did not ask
    assert "→ allowed for this session" in text and "→ denied" in text
    assert not (kernel.workspace(3) / "marker").exists()
    assert decisions == [(1, "allow", "user:session"), (2, "allow", "grant:session"), (3, "deny", "user")]


async def test_a_background_agent_asking_interrupts_the_prompt_and_keeps_what_was_typed(home: Path) -> None:
    install_agent(home)
    kernel, shell, out, err, history = await start_repl(home, SimulatedBackend())
    with create_pipe_input() as inp, create_app_session(input=inp, output=DummyOutput()):
        repl = Repl(kernel, input=inp, output=DummyOutput(), history=history, shell=shell)
        task = asyncio.create_task(repl.run())
        inp.send_text("run tooly " + calls("echo two") + " 0.5 &\n")
        await until(lambda: "[1]" in out.getvalue())
        await asyncio.sleep(0.1)
        inp.send_text("echo typed")  # half a line at the prompt when the question comes
        await until(lambda: "wants to call" in out.getvalue())
        inp.send_text("y")
        await until(lambda: "Done" in out.getvalue())
        inp.send_text(" and kept\nexit 0\n")
        assert await asyncio.wait_for(task, 10) == 0
    rows = kernel.access.audit_rows()
    await kernel.shutdown()
    text = out.getvalue()
    assert "→ allowed once" in text
    assert "typed and kept" in text
    assert rows[0]["by"] == "user:once"


async def test_two_agents_asking_at_once_get_two_questions_in_turn(home: Path) -> None:
    install_agent(home)
    kernel, shell, out, err, history = await start_repl(home, SimulatedBackend())
    with create_pipe_input() as inp, create_app_session(input=inp, output=DummyOutput()):
        repl = Repl(kernel, input=inp, output=DummyOutput(), history=history, shell=shell)
        task = asyncio.create_task(repl.run())
        inp.send_text(f"run tooly {calls('echo a')} & run tooly {calls('echo b')} & wait\n")
        await until(lambda: len(kernel.permissions.pending()) == 2 and "wants to call" in out.getvalue())
        first = out.getvalue().count("wants to call")
        inp.send_text("y")
        await until(lambda: out.getvalue().count("wants to call") == first + 1)
        inp.send_text("n")
        await until(lambda: not kernel.permissions.pending() and "→ denied" in out.getvalue())
        inp.send_text("exit 0\n")
        assert await asyncio.wait_for(task, 10) == 0
    rows = kernel.access.audit_rows()
    await kernel.shutdown()
    assert first == 1  # one question at a time
    assert sorted(r["decision"] for r in rows) == ["allow", "deny"]


async def test_while_the_monitor_shows_the_inline_prompt_stands_aside(home: Path) -> None:
    install_agent(home)
    kernel, shell, out, err, history = await start_repl(home, SimulatedBackend())
    with create_pipe_input() as inp, create_app_session(input=inp, output=DummyOutput()):
        repl = Repl(kernel, input=inp, output=DummyOutput(), history=history, shell=shell)
        task = asyncio.create_task(repl.run())
        kernel.permissions.screen = object()  # what the monitor sets while it is up
        inp.send_text(f"run tooly {calls('echo m')} &\n")
        await until(lambda: kernel.permissions.pending())
        await asyncio.sleep(0.3)
        assert "wants to call" not in out.getvalue()  # the monitor's dialog asks, not the shell
        kernel.permissions.screen = None  # the monitor quit without an answer: the shell asks now
        await until(lambda: "wants to call" in out.getvalue())
        inp.send_text("y")
        await until(lambda: "→ allowed once" in out.getvalue())
        inp.send_text("exit 0\n")
        assert await asyncio.wait_for(task, 10) == 0
    await kernel.shutdown()


async def test_keys_typed_as_the_question_appears_do_not_answer_it(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asker, "GRACE", 0.5)
    install_agent(home)
    kernel, shell, out, err, history = await start_repl(home, SimulatedBackend())
    with create_pipe_input() as inp, create_app_session(input=inp, output=DummyOutput()):
        repl = Repl(kernel, input=inp, output=DummyOutput(), history=history, shell=shell)
        task = asyncio.create_task(repl.run())
        inp.send_text(f"run tooly {calls('echo g')} &\n")
        await until(lambda: "wants to call" in out.getvalue())
        inp.send_text("ps")  # meant for the shell: the `s` must not allow anything
        await asyncio.sleep(0.2)
        assert kernel.permissions.pending() and "→" not in out.getvalue()
        await asyncio.sleep(0.4)
        inp.send_text("n")
        await until(lambda: "→ denied" in out.getvalue())
        inp.send_text("exit 0\n")
        assert await asyncio.wait_for(task, 10) == 0
    rows = kernel.access.audit_rows()
    await kernel.shutdown()
    assert [(r["decision"], r["by"]) for r in rows] == [("deny", "user")]
