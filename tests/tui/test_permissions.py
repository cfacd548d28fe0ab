"""The permission broker and the monitor's modal: every answer, the countdown, and no answer."""

from __future__ import annotations

import asyncio
import io
import re

import pytest
from rich.console import Console
from textual.widgets import Static

from aios_shell import asker
from aios_shell.tui.screens.permission import PermissionModal
from kernel.events import PermissionDecided, PermissionRequested
from kernel.kernel import Kernel
from tests.conftest import until
from tests.tui.test_keys import SIZE, app_over


def ask(kernel: Kernel, timeout: float = 30.0, **args: str) -> asyncio.Task[str]:
    return asyncio.create_task(kernel.permissions.request(
        pid=2, user="alice", program="chat", tool="shell", args=args or {"cmd": "git status"}, timeout=timeout))


async def test_broker_times_out_to_deny_and_says_so(kernel: Kernel, events: list) -> None:
    assert await kernel.permissions.request(1, "alice", "chat", "shell", {"cmd": "ls"}, timeout=0.05) == "deny"
    decided = [e for e in events if isinstance(e, PermissionDecided)]
    assert [(d.decision, d.by) for d in decided] == [("deny", "timeout")]
    assert kernel.permissions.pending() == []


async def test_broker_answer_and_late_answers(kernel: Kernel, events: list) -> None:
    task = ask(kernel)
    await until(lambda: kernel.permissions.pending())
    request = kernel.permissions.pending()[0]
    assert request.args == {"cmd": "git status"}
    assert kernel.permissions.answer(request.request_id, "always") is True
    assert await task == "always"
    assert kernel.permissions.answer(request.request_id, "deny") is False  # already decided
    with pytest.raises(ValueError):
        kernel.permissions.answer(request.request_id, "maybe")
    assert [e.by for e in events if isinstance(e, PermissionDecided)] == ["user"]


async def test_broker_strips_control_sequences_from_what_is_shown(kernel: Kernel, events: list) -> None:
    task = ask(kernel, cmd="rm -rf /\x1b]0;pwned\x07\x1b[2J")
    await until(lambda: kernel.permissions.pending())
    shown = [e for e in events if isinstance(e, PermissionRequested)][0]
    assert shown.args == {"cmd": "rm -rf /"}
    kernel.permissions.answer(shown.request_id, "deny")
    assert await task == "deny"


@pytest.fixture(autouse=True)
def _no_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests press right after the dialog shows; the grace period has its own test."""
    monkeypatch.setattr(asker, "GRACE", 0.0)


@pytest.mark.parametrize(("key", "decision"), [("y", "once"), ("s", "session"), ("a", "always"), ("n", "deny"),
                                               ("enter", "deny")])
async def test_modal_answers(app_kernel: Kernel, key: str, decision: str) -> None:
    app = app_over(app_kernel)
    async with app.run_test(size=SIZE) as pilot:
        await app.ready.wait()
        task = ask(app_kernel)
        await until(lambda: isinstance(app.screen, PermissionModal), timeout=3)
        await pilot.pause()
        shown = app.export_screenshot().replace("&#160;", " ")
        assert "git status" in shown and "Permission requested" in shown and "alice" in shown
        assert app.screen.request.tool == "shell" and app.screen.request.pid == 2
        await pilot.press(key)
        assert await asyncio.wait_for(task, 3) == decision
        await pilot.pause()
        assert not isinstance(app.screen, PermissionModal)


async def test_modal_buttons_answer_too(app_kernel: Kernel) -> None:
    app = app_over(app_kernel)
    async with app.run_test(size=SIZE) as pilot:
        await app.ready.wait()
        task = ask(app_kernel)
        await until(lambda: isinstance(app.screen, PermissionModal), timeout=3)
        await pilot.pause()
        await pilot.click("#answer-session")
        assert await asyncio.wait_for(task, 3) == "session"


async def test_modal_counts_down_and_denies(app_kernel: Kernel) -> None:
    app = app_over(app_kernel)
    async with app.run_test(size=SIZE) as pilot:
        await app.ready.wait()
        task = ask(app_kernel, timeout=3.0)
        await until(lambda: isinstance(app.screen, PermissionModal), timeout=3)
        await pilot.pause()
        assert re.search(r"denied in [123]s", str(app.screen.query_one("#permission-countdown", Static).render()))
        assert await asyncio.wait_for(task, 5) == "deny"
        await until(lambda: not isinstance(app.screen, PermissionModal), timeout=3)
        await pilot.pause()


async def test_requests_wait_their_turn_and_one_already_open_is_shown(app_kernel: Kernel) -> None:
    first = ask(app_kernel, cmd="one")  # asked before the monitor opened
    await until(lambda: app_kernel.permissions.pending())
    app = app_over(app_kernel)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: isinstance(app.screen, PermissionModal), timeout=3)
        await pilot.pause()
        second = ask(app_kernel, cmd="two")
        await pilot.pause(0.3)
        assert app.screen.request.args == {"cmd": "one"}
        await pilot.press("y")
        assert await asyncio.wait_for(first, 3) == "once"
        await until(lambda: isinstance(app.screen, PermissionModal) and app.screen.request.args == {"cmd": "two"},
                    timeout=3)
        await pilot.press("n")
        assert await asyncio.wait_for(second, 3) == "deny"


async def test_the_monitors_keys_neither_answer_nor_act_while_the_dialog_is_open(app_kernel: Kernel) -> None:
    """`o` (sort), Esc (close), `k` (term), `q` (quit), `d`: none answers, none acts on the screen below."""
    app = app_over(app_kernel)
    async with app.run_test(size=SIZE) as pilot:
        await app.ready.wait()
        sort_before, theme_before = app.processes.sort_column, app.theme
        task = ask(app_kernel)
        await until(lambda: isinstance(app.screen, PermissionModal), timeout=3)
        await pilot.pause()
        for key in ("o", "escape", "k", "q", "d", "t", "colon", "slash"):
            await pilot.press(key)
        await pilot.pause()
        assert isinstance(app.screen, PermissionModal) and not task.done() and app.is_running
        assert (app.processes.sort_column, app.theme) == (sort_before, theme_before)
        await pilot.press("y")
        assert await asyncio.wait_for(task, 3) == "once"


async def test_keys_pressed_as_the_dialog_appears_do_not_answer_it(app_kernel: Kernel,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asker, "GRACE", 60.0)  # however slow the machine, the keys come within it
    app = app_over(app_kernel)
    async with app.run_test(size=SIZE) as pilot:
        await app.ready.wait()
        task = ask(app_kernel)
        await until(lambda: isinstance(app.screen, PermissionModal), timeout=3)
        await pilot.press("s", "enter")  # meant for the screen below
        await pilot.pause()
        assert not task.done()
        monkeypatch.setattr(asker, "GRACE", 0.0)  # its first moments are over
        assert not app.screen.early()
        await pilot.press("n")
        assert await asyncio.wait_for(task, 3) == "deny"


async def test_the_dialog_shows_the_workspace_the_rule_and_every_line(app_kernel: Kernel) -> None:
    app = app_over(app_kernel)
    long = "\n".join(f"line {i}" for i in range(30))
    async with app.run_test(size=SIZE) as pilot:
        await app.ready.wait()
        task = asyncio.create_task(app_kernel.permissions.decide(
            pid=2, user="alice", program="chat", tool="fs.write", args={"path": "a.txt", "content": long},
            timeout=30, workspace="/home/alice/proj", rule="fs.write(workspace/a.txt)"))
        await until(lambda: isinstance(app.screen, PermissionModal), timeout=3)
        await pilot.pause()
        console = Console(width=100, record=True, file=io.StringIO())
        console.print(app.screen.query_one("#permission-facts", Static).content)
        facts = console.export_text()
        assert "/home/alice/proj" in facts and "fs.write(workspace/a.txt)" in facts and "line 29" in facts
        await pilot.press("n")
        assert (await asyncio.wait_for(task, 3))[0] == "deny"
