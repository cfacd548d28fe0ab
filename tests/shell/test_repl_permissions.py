"""The REPL asks inline when an agent's tool call needs a person: y once, s session, a always, n deny."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prompt_toolkit.application import create_app_session
from prompt_toolkit.input import PipeInput, create_pipe_input
from prompt_toolkit.output import DummyOutput

from aios_shell import asker
from aios_shell.repl import Repl
from kernel import Kernel
from kernel.api import KernelAPI
from kernel.llm.simulated import SimulatedBackend
from tests.conftest import until
from tests.shell.test_repl import start_repl
from tests.tools.test_syscall import install_agent


def audit(t: Any) -> list[dict[str, Any]]:
    """The audit log as the shell's user reads it (`audit --json`), through the API."""
    return [r.to_dict() for r in KernelAPI(t.kernel).audit()]


def pending(t: Any) -> list[Any]:
    """The permission requests waiting for the shell's user, through the API."""
    return KernelAPI(t.kernel).pending_permissions()


@pytest.fixture(autouse=True)
def _no_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """Answers typed by the tests come right after the question; the grace period has its own test."""
    monkeypatch.setattr(asker, "GRACE", 0.0)


@dataclass
class Typing:
    kernel: Kernel
    inp: PipeInput
    out: io.StringIO
    task: asyncio.Task[int]
    repl: Repl

    def shown(self) -> str:
        return self.out.getvalue()

    async def exit(self) -> int:
        self.inp.send_text("exit 0\ny\n")  # `y`: when an agent still runs, exit asks before hanging it up
        return await asyncio.wait_for(self.task, 10)


@asynccontextmanager
async def repl_at(home: Path) -> AsyncIterator[Typing]:
    """The REPL on pipe input over a kernel with the `tooly` agent; the kernel is shut down after."""
    install_agent(home)
    kernel, shell, out, err, history = await start_repl(home, SimulatedBackend())
    try:
        with create_pipe_input() as inp, create_app_session(input=inp, output=DummyOutput()):
            repl = Repl(kernel, input=inp, output=DummyOutput(), history=history, shell=shell)
            yield Typing(kernel, inp, out, asyncio.create_task(repl.run()), repl)
    finally:
        await kernel.shutdown()


def calls(*commands: str) -> str:
    return json.dumps(json.dumps([{"tool": "shell", "args": {"command": c}} for c in commands]))


async def test_session_answer_then_no_second_question_then_a_denial(home: Path) -> None:
    async with repl_at(home) as t:
        t.inp.send_text(f"run tooly {calls('echo one')}\n")
        await until(lambda: "tooly[1] (alice) wants to call shell in " in t.shown())
        ws = str(t.kernel.workspace(1))
        assert f"wants to call shell in {ws}\n  command: echo one\n" in t.shown()
        assert '"always" or "session" would save: shell(echo one)' in t.shown()
        t.inp.send_text("s\n")
        await until(lambda: "ok one" in t.shown())
        t.inp.send_text(f"run tooly {calls('echo one')}\n")  # the same call: allowed for the session
        await until(lambda: t.shown().count("ok one") == 2)
        t.inp.send_text(f"run tooly {calls('touch marker')}\n")
        await until(lambda: t.shown().count("wants to call") == 2)
        t.inp.send_text("n\n")
        await until(lambda: "ERR permission denied" in t.shown())
        assert await t.exit() == 0
        decisions = [(r["pid"], r["decision"], r["by"]) for r in audit(t)]
        assert not (t.kernel.workspace(3) / "marker").exists()
    text = t.shown()
    assert text.count("wants to call shell") == 2  # the second `echo one` did not ask
    assert "→ allowed for this session" in text and "→ denied" in text
    assert decisions == [(1, "allow", "user:session"), (2, "allow", "grant:session"), (3, "deny", "user")]


async def test_a_background_agent_asking_interrupts_the_prompt_and_keeps_what_was_typed(home: Path) -> None:
    async with repl_at(home) as t:
        t.inp.send_text("run tooly " + calls("echo two") + " 0.5 &\n")
        await until(lambda: "[1]" in t.shown())
        await asyncio.sleep(0.1)
        t.inp.send_text("echo typed")  # half a line at the prompt when the question comes
        await until(lambda: "wants to call" in t.shown())
        t.inp.send_text("y\n")
        await until(lambda: "Done" in t.shown())
        t.inp.send_text(" and kept\n")
        assert await t.exit() == 0
        rows = audit(t)
    assert "→ allowed once" in t.shown()
    assert "typed and kept" in t.shown()
    assert rows[0]["by"] == "user:once"


async def test_two_agents_asking_at_once_get_two_questions_in_turn(home: Path) -> None:
    async with repl_at(home) as t:
        t.inp.send_text(f"run tooly {calls('echo a')} & run tooly {calls('echo b')} & wait\n")
        await until(lambda: len(pending(t)) == 2 and "wants to call" in t.shown())
        first = t.shown().count("wants to call")
        t.inp.send_text("y\n")
        await until(lambda: t.shown().count("wants to call") == first + 1)
        t.inp.send_text("n\n")
        await until(lambda: not pending(t) and "→ denied" in t.shown())
        assert await t.exit() == 0
        rows = audit(t)
    assert first == 1  # one question at a time
    assert sorted(r["decision"] for r in rows) == ["allow", "deny"]


async def test_while_the_monitor_shows_the_inline_prompt_stands_aside(home: Path) -> None:
    async with repl_at(home) as t:
        monitor = KernelAPI(t.kernel).attach_answerer(exclusive=True)  # what the monitor does while it is up
        t.inp.send_text(f"run tooly {calls('echo m')} &\n")
        await until(lambda: pending(t) and t.repl.asker.standing_aside)
        assert "wants to call" not in t.shown()  # the monitor's dialog asks, not the shell
        monitor.detach()  # the monitor quit without an answer: the shell asks now
        await until(lambda: "wants to call" in t.shown())
        t.inp.send_text("y\n")
        await until(lambda: "→ allowed once" in t.shown())
        assert await t.exit() == 0


async def test_keys_typed_as_the_question_appears_do_not_answer_it(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asker, "GRACE", 60.0)  # however slow the machine, the keys come within it
    async with repl_at(home) as t:
        t.inp.send_text(f"run tooly {calls('echo g')} &\n")
        await until(lambda: "wants to call" in t.shown())
        t.inp.send_text("ps\n")  # meant for the shell: the `s` must not allow anything
        await until(lambda: t.repl.asker.dropped == 3)
        assert pending(t) and "→" not in t.shown()
        monkeypatch.setattr(asker, "GRACE", 0.0)  # its first moments are over
        t.inp.send_text("n\n")
        await until(lambda: "→ denied" in t.shown())
        assert await t.exit() == 0
        rows = audit(t)
    assert [(r["decision"], r["by"]) for r in rows] == [("deny", "user")]


async def test_a_command_typed_at_the_question_is_no_answer(home: Path) -> None:
    """`ls` and Enter, typed at a question that popped up while the person was about to type: not `s`."""
    async with repl_at(home) as t:
        t.inp.send_text(f"run tooly {calls('echo q')} &\n")
        await until(lambda: "wants to call" in t.shown())
        t.inp.send_text("ls\n")
        await until(lambda: "not an answer: ls" in t.repl.asker.note or "→" in t.shown())
        assert pending(t) and "→" not in t.shown()
        t.inp.send_text("\n")  # an empty line: nothing
        t.inp.send_text("session\n")
        await until(lambda: "→ allowed for this session" in t.shown())
        assert await t.exit() == 0


async def test_the_question_counts_down_and_says_enter(home: Path) -> None:
    async with repl_at(home) as t:
        t.kernel.toolsvc.permission_timeout = 30
        t.inp.send_text(f"run tooly {calls('echo c')} &\n")
        await until(lambda: "wants to call" in t.shown())
        await until(lambda: t.repl.asker.message is not None)
        question = t.repl.asker.message
        first = question()
        assert "n deny, then Enter" in first and ("(denied in 30s)" in first or "(denied in 29s)" in first), first
        await until(lambda: question() != first, timeout=5)  # the seconds go down as it waits
        t.inp.send_text("\x03")  # Ctrl-C denies at once
        await until(lambda: "→ denied" in t.shown())
        assert await t.exit() == 0
