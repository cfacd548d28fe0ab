"""The permission broker and the monitor's modal: every answer, the countdown, and no answer."""

from __future__ import annotations

import asyncio
import re

import pytest
from textual.widgets import Static

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


@pytest.mark.parametrize(("key", "decision"), [("o", "once"), ("s", "session"), ("a", "always"), ("d", "deny"),
                                               ("escape", "deny")])
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
        await pilot.press("o")
        assert await asyncio.wait_for(first, 3) == "once"
        await until(lambda: isinstance(app.screen, PermissionModal) and app.screen.request.args == {"cmd": "two"},
                    timeout=3)
        await pilot.press("d")
        assert await asyncio.wait_for(second, 3) == "deny"
