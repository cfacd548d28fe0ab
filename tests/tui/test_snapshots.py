"""Pictures of the monitor on the scenario kernel, pinned in time, at 80×24 and 120×35 (and the wide layout at
160×45).

Update them with `make snapshots` (pytest --snapshot-update) after a deliberate change, and look at
the report before committing them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from aios_shell.tui.screens.permission import PermissionModal
from kernel.events import Event, PermissionDecided, PermissionRequested, SyscallDone, ToolCalled
from tests.conftest import until
from tests.tui.conftest import FIXED, monitor, settle

pytestmark = pytest.mark.snapshot
SIZES = pytest.mark.parametrize("size", [(80, 24), (120, 35)], ids=["80x24", "120x35"])
WIDE = pytest.mark.parametrize("size", [(80, 24), (120, 35), (160, 45)], ids=["80x24", "120x35", "160x45"])


def tool_calls() -> list[Event]:
    """Four tool calls as the kernel reports them: allowed by a rule, denied by the user (an escape sequence in
    its arguments), allowed once, and one still running."""
    ask = {"user": "alice", "program": "chat", "timeout": 30.0, "deadline": FIXED + 30}
    push = {"cmd": "git push --force origin main\x1b[2J", "cwd": "repo"}
    return [
        ToolCalled(pid=2, sid=20, tool="fs.read", args={"path": "notes/plan.md"}, ts=FIXED - 9),
        SyscallDone(pid=2, sid=20, call="tool:fs.read", ok=True, service_s=0.004, ts=FIXED - 9),
        ToolCalled(pid=3, sid=21, tool="shell", args=push, ts=FIXED - 8),
        PermissionRequested(request_id=8, pid=3, tool="shell", args=push, ts=FIXED - 8, **ask),
        PermissionDecided(request_id=8, pid=3, tool="shell", decision="deny", by="user", ts=FIXED - 6),
        SyscallDone(pid=3, sid=21, call="tool:shell", ok=False, ts=FIXED - 6,
                    error="permission denied: shell(git push --force origin main) (denied by the user)"),
        ToolCalled(pid=5, sid=22, tool="calc", args={"expression": "6*7"}, ts=FIXED - 5),
        PermissionRequested(request_id=9, pid=5, tool="calc", args={"expression": "6*7"}, ts=FIXED - 5, **ask),
        PermissionDecided(request_id=9, pid=5, tool="calc", decision="once", by="user", ts=FIXED - 4),
        SyscallDone(pid=5, sid=22, call="tool:calc", ok=True, service_s=0.001, ts=FIXED - 4),
        ToolCalled(pid=2, sid=23, tool="shell", args={"cmd": "pytest -q"}, ts=FIXED - 2),
    ]


async def settle_with_tools(pilot: Any) -> None:
    await settle(pilot)
    for event in tool_calls():
        pilot.app.kernel.bus.publish(event)
    pilot.app.refresh_now()
    await pilot.pause()


@WIDE
def test_main_screen(snap_compare: Any, home: Path, frozen: float, size: tuple[int, int]) -> None:
    """Every pane in the dark theme: processes (the live ones: 2 RUNNING with their tokens and TIME counted as they
    generate, 2 READY, STOPPED; '2 exited hidden (e)' in the subtitle; CMD, TOKENS and TIME at every width — at
    80×24 the table takes the whole width without PRI, USER and NI, the scheduler's summary in its title),
    scheduler (policy, P0 → 2, P1 → 3, queue 4 then 5 with reasons),
    system (cpu 12% and 40%, 3.0 of 8.0 GiB, rss 180 MiB, tokens/s sparkline), context gauges (35%, 93%, 73%)
    and the tool calls, one row each, newest at the bottom (the narrow picture shows the last ones): fs.read by pid 2
    (a stand-in event), shell by pid 3 denied on timeout, fs.read allowed by a rule in 0.00s, shell by pid 3 denied
    by the user (no escape sequence in its arguments), calc by pid 5 allowed once, shell by pid 2 still running."""
    assert snap_compare(monitor(home), terminal_size=size, run_before=settle_with_tools)


@SIZES
@pytest.mark.parametrize("theme", ["light", "high-contrast"])
def test_themes(snap_compare: Any, home: Path, frozen: float, size: tuple[int, int], theme: str) -> None:
    """The main screen in the light and high-contrast themes: same content, the theme's colours."""
    assert snap_compare(monitor(home, theme=theme), terminal_size=size, run_before=settle_with_tools)


@SIZES
def test_process_screen(snap_compare: Any, home: Path, frozen: float, size: tuple[int, int]) -> None:
    """Enter on pid 3: its header (RUNNING, ctx 93%), the user's prompt, the five tokens streamed so far,
    and its one syscall holding slot P1 with those tokens."""
    assert snap_compare(monitor(home), terminal_size=size, run_before=settle, press=["down", "enter"])


async def ask_permission(pilot: Any) -> None:
    await settle(pilot)
    app = pilot.app
    asyncio.get_running_loop().create_task(app.kernel.permissions.request(
        2, "alice", "chat", "shell", {"cmd": "git push --force origin main\x1b[2J", "cwd": "workspace/repo"},
        timeout=30))
    await until(lambda: isinstance(app.screen, PermissionModal), timeout=5)
    await pilot.pause()


@SIZES
def test_permission_modal(snap_compare: Any, home: Path, frozen: float, size: tuple[int, int]) -> None:
    """The modal over the main screen: user alice, process 2 (chat), tool shell, its two arguments (the escape
    sequence gone), 'denied in 30s', and the four answers with Deny focused; behind it, the tool-call log has the
    request as a row of pid 2's shell call, 'asking'."""
    assert snap_compare(monitor(home), terminal_size=size, run_before=ask_permission)


@SIZES
def test_help_screen(snap_compare: Any, home: Path, frozen: float, size: tuple[int, int]) -> None:
    """`?`: every key with its binding id and what it does, and where the keymap and theme live."""
    assert snap_compare(monitor(home), terminal_size=size, run_before=settle, press=["question_mark"])


@SIZES
def test_term_confirmation(snap_compare: Any, home: Path, frozen: float, size: tuple[int, int]) -> None:
    """`k` on pid 2 asks 'Send SIGTERM to process 2 (chat summarise the kernel log)?' with No focused."""
    assert snap_compare(monitor(home), terminal_size=size, run_before=settle, press=["k"])


def test_filter_and_tree(snap_compare: Any, home: Path, frozen: float) -> None:
    """`/alice` then Enter, and `T`: only alice's four live processes, the subtitle says 'tree', the filter and
    '2 exited hidden (e)'."""
    keys = ["slash", "a", "l", "i", "c", "e", "enter", "T"]
    assert snap_compare(monitor(home), terminal_size=(160, 45), run_before=settle, press=keys)


async def run_ps(pilot: Any) -> None:
    await settle(pilot)
    await pilot.press("colon", "p", "s", "enter")
    await until(lambda: "PID" in "\n".join(pilot.app.query_one("#console-log").lines), timeout=5)
    await pilot.pause()


def test_command_line(snap_compare: Any, home: Path, frozen: float) -> None:
    """`:` then `ps`: the command pane under the others shows the shell's own ps table."""
    assert snap_compare(monitor(home), terminal_size=(160, 45), run_before=run_ps)
