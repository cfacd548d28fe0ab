"""Pilot tests: every key of the monitor does what `?` says, on the scenario kernel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Log

from aios_shell.tui import MonitorApp, make_monitor
from aios_shell.tui.probe import FixedProbe
from aios_shell.tui.screens.confirm import ConfirmModal
from aios_shell.tui.screens.help import HelpScreen
from aios_shell.tui.screens.process import ProcessScreen
from aios_shell.tui.screens.sort import SortMenu
from kernel.kernel import Kernel
from kernel.process import Signal
from tests.conftest import until

SIZE = (160, 45)


def app_over(kernel: Kernel, **kw: object) -> MonitorApp:
    return make_monitor(kernel, probe=FixedProbe(), **kw)  # type: ignore[arg-type]


def visible_pids(app: MonitorApp) -> list[int]:
    table = app.processes.table
    return [int(table.coordinate_to_cell_key((i, 0)).row_key.value) for i in range(table.row_count)]


def state_cell(app: MonitorApp, pid: int) -> str:
    return str(app.processes.table.get_cell(str(pid), "STATE"))


async def select(pilot, app: MonitorApp, pid: int) -> None:  # noqa: ANN001
    await app.ready.wait()
    app.processes.select(pid)
    await pilot.pause()
    assert app.target_pid() == pid


async def test_k_asks_first_and_yes_terminates_the_selected_process(app_kernel: Kernel) -> None:
    app = app_over(app_kernel)
    async with app.run_test(size=SIZE) as pilot:
        await select(pilot, app, 5)
        await pilot.press("k")
        assert isinstance(app.screen, ConfirmModal)
        assert "process 5" in app.screen.question
        await pilot.press("y")
        await until(lambda: not app_kernel.get(5).alive)
        assert app_kernel.get(5).status == "EXITED(SIGTERM)"
        await until(lambda: 5 not in visible_pids(app), timeout=2)  # exited: hidden until `e`
        await pilot.press("e")
        await until(lambda: state_cell(app, 5) == "EXITED(SIGTERM)", timeout=2)


async def test_signalling_another_users_process_is_refused_and_shown(app_kernel: Kernel) -> None:
    app = app_over(app_kernel)
    async with app.run_test(size=SIZE) as pilot:
        await select(pilot, app, 4)  # bob's
        await pilot.press("K")
        await pilot.pause()
        assert app_kernel.get(4).alive
        assert any("Operation not permitted" in str(n.message) for n in app._notifications)


async def test_k_answered_no_leaves_the_process_alone(app_kernel: Kernel) -> None:
    app = app_over(app_kernel)
    async with app.run_test(size=SIZE) as pilot:
        await select(pilot, app, 5)
        await pilot.press("k")
        await pilot.press("n")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, ConfirmModal)
        assert app_kernel.get(5).status == "READY"


async def test_K_kills_at_once_and_the_row_shows_it(app_kernel: Kernel) -> None:
    app = app_over(app_kernel)
    async with app.run_test(size=SIZE) as pilot:
        await select(pilot, app, 2)
        await pilot.press("K")
        assert app_kernel.get(2).status == "EXITED(SIGKILL)"
        await pilot.press("e")
        await until(lambda: state_cell(app, 2) == "EXITED(SIGKILL)", timeout=2)


async def test_s_stops_then_continues(app_kernel: Kernel) -> None:
    app = app_over(app_kernel)
    async with app.run_test(size=SIZE) as pilot:
        await select(pilot, app, 5)
        await pilot.press("s")
        assert app_kernel.get(5).status == "STOPPED"
        await until(lambda: state_cell(app, 5) == "STOPPED", timeout=2)
        await pilot.press("s")
        assert app_kernel.get(5).status == "READY"
        await until(lambda: state_cell(app, 5) == "READY", timeout=2)


async def test_plus_renices_and_minus_needs_an_admin(app_kernel: Kernel) -> None:
    app = app_over(app_kernel)
    async with app.run_test(size=SIZE) as pilot:
        await select(pilot, app, 5)
        await pilot.press("plus")
        assert app_kernel.get(5).nice == 6
        await until(lambda: str(app.processes.table.get_cell("5", "NI")) == "6", timeout=2)
        await pilot.press("minus")  # alice is no admin: lowering nice is refused, shown, not raised
        await pilot.pause()
        assert app_kernel.get(5).nice == 6
        assert any("only an admin" in str(n.message) for n in app._notifications)


async def test_minus_as_admin_raises_priority(home: Path) -> None:
    from kernel.kernel import boot
    from tests.conftest import make_config
    from tests.tui.conftest import FrozenBackend

    kernel = await boot(make_config(home, user="root"), backend=FrozenBackend())
    try:
        proc = kernel.spawn("chat", ["hello"])
        app = app_over(kernel)
        async with app.run_test(size=SIZE) as pilot:
            await select(pilot, app, proc.pid)
            await pilot.press("minus")
            assert kernel.get(proc.pid).nice == -1
    finally:
        await kernel.shutdown()


async def test_slash_filters_and_escape_clears(app_kernel: Kernel) -> None:
    app = app_over(app_kernel)
    async with app.run_test(size=SIZE) as pilot:
        await app.ready.wait()
        await pilot.press("e")
        assert visible_pids(app) == [2, 3, 4, 5, 6, 1, 7]  # live ones first
        await pilot.press("slash")
        assert isinstance(app.focused, Input)
        await pilot.press("b", "o", "b")
        assert visible_pids(app) == [4]
        await pilot.press("enter")  # keeps the filter, back to the table
        assert visible_pids(app) == [4] and app.processes.filter_text == "bob"
        assert isinstance(app.focused, DataTable)
        await pilot.press("slash", "escape")
        assert visible_pids(app) == [2, 3, 4, 5, 6, 1, 7]


async def test_t_cycles_themes_and_the_choice_is_remembered(app_kernel: Kernel, home: Path) -> None:
    app = app_over(app_kernel)
    async with app.run_test(size=SIZE) as pilot:
        assert app.theme == "dark"
        await pilot.press("t")
        assert app.theme == "high-contrast"
        await pilot.press("t")
        assert app.theme == "light"
        await pilot.press("t")
        assert app.theme == "dark"
        await pilot.press("t")
    assert json.loads((home / "monitor.json").read_text()) == {"theme": "high-contrast"}
    again = app_over(app_kernel)
    assert again.theme == "high-contrast"


async def test_theme_option_wins_and_is_remembered(app_kernel: Kernel, home: Path) -> None:
    app = app_over(app_kernel, theme="light")
    async with app.run_test(size=SIZE):
        assert app.theme == "light"
    assert app_over(app_kernel).theme == "light"


async def test_colon_runs_shell_commands_through_the_registry(app_kernel: Kernel) -> None:
    app = app_over(app_kernel)
    async with app.run_test(size=SIZE) as pilot:
        await app.ready.wait()
        await pilot.press("colon")
        box = app.query_one("#console-input", Input)
        assert app.focused is box
        for line in ("kill -STOP 5", "ps", "nosuch"):
            box.value = line
            await pilot.press("enter")
            await pilot.pause(0.2)
        log = app.query_one("#console-log", Log)
        await until(lambda: "command not found" in "\n".join(log.lines), timeout=3)
        text = "\n".join(log.lines)
        assert "$ ps" in text and "PID" in text and "STOPPED" in text
        assert app_kernel.get(5).status == "STOPPED"
        assert "[exit 127]" in text
        await pilot.press("escape")
        assert app.command_line.has_class("hidden")


async def test_question_mark_shows_every_binding_id(app_kernel: Kernel) -> None:
    app = app_over(app_kernel)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        ids = {binding_id for binding_id, _, _ in app.screen.keys}
        assert {"quit", "term", "kill", "stop_cont", "nice_up", "nice_down", "filter", "theme", "command",
                "help", "open"} <= ids
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


@pytest.mark.parametrize("key", ["q", "ctrl+c"])
async def test_q_quits(app_kernel: Kernel, key: str) -> None:
    app = app_over(app_kernel)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(key)  # Ctrl-C too, as in htop (Textual's default only says to press ctrl+q)
        await pilot.pause()
        assert not app.is_running
    assert app_kernel.get(2).alive  # the monitor leaves the kernel it was given running


async def test_enter_opens_the_process_screen_and_keys_act_on_it(app_kernel: Kernel) -> None:
    app = app_over(app_kernel)
    async with app.run_test(size=SIZE) as pilot:
        await select(pilot, app, 3)
        await pilot.press("enter")
        assert isinstance(app.screen, ProcessScreen) and app.screen.pid == 3
        text = "\n".join(app.screen.query_one("#conversation", Log).lines)
        assert "write a haiku about queues" in text and "assistant (streaming)" in text
        await pilot.press("s")
        assert app_kernel.get(3).status == "STOPPED"
        await pilot.press("escape")
        assert not isinstance(app.screen, ProcessScreen)


async def test_o_sorts_and_T_shows_the_tree(app_kernel: Kernel) -> None:
    app = app_over(app_kernel)
    async with app.run_test(size=SIZE) as pilot:
        await app.ready.wait()
        app.processes.sort_by("NI")
        await pilot.pause()
        assert visible_pids(app)[-1] == 5  # nice 5 sorts last
        app.processes.sort_by("NI")
        await pilot.pause()
        assert visible_pids(app)[0] == 5  # again: reversed
        await pilot.press("greater_than_sign")
        assert app.processes.sort_column == "STATE"
        await pilot.press("less_than_sign", "less_than_sign")
        assert app.processes.sort_column == "PRI"
        reverse = app.processes.sort_reverse
        await pilot.press("I")
        assert app.processes.sort_reverse is not reverse
        await pilot.press("T")
        assert app.processes.tree_view and "tree" in str(app.processes.border_subtitle)


async def test_T_draws_the_children_an_agent_started_under_it(app_kernel: Kernel) -> None:
    parent = app_kernel.spawn("parallel", ["workload", "100000", "100000"])
    await until(lambda: len([p for p in app_kernel.procs if p.ppid == parent.pid]) == 2)
    kids = [p.pid for p in app_kernel.procs if p.ppid == parent.pid]
    app = app_over(app_kernel)
    async with app.run_test(size=SIZE) as pilot:
        await app.ready.wait()
        await pilot.press("T")
        await pilot.pause()
        pids = visible_pids(app)
        assert pids[pids.index(parent.pid) + 1:pids.index(parent.pid) + 3] == kids
        table = app.processes.table
        assert [str(table.get_cell(str(pid), "CMD")) for pid in kids] == ["└─ workload 100000"] * 2
        assert str(table.get_cell(str(parent.pid), "STATE")) == "WAITING(child)"
    app_kernel.signal(parent.pid, Signal.KILL)


async def test_o_opens_a_sort_menu_whose_keys_are_its_own(app_kernel: Kernel) -> None:
    app = app_over(app_kernel)
    async with app.run_test(size=SIZE) as pilot:
        await app.ready.wait()
        await pilot.press("o")
        assert isinstance(app.screen, SortMenu)
        await pilot.press("k", "s", "q")  # the menu's: neither TERM nor STOP for the selected process
        assert not isinstance(app.screen, ConfirmModal) and all(p.status != "STOPPED" or p.pid == 6
                                                                 for p in app_kernel.procs)
        await pilot.press("o")
        for _ in range(6):  # PID → TOKENS
            await pilot.press("down")
        await pilot.press("enter")
        assert not isinstance(app.screen, SortMenu)
        assert app.processes.sort_column == "TOKENS" and app.processes.sort_reverse  # biggest first
        await pilot.press("o", "escape")
        assert app.processes.sort_column == "TOKENS"


async def test_exited_processes_are_hidden_until_e(app_kernel: Kernel) -> None:
    app = app_over(app_kernel)
    async with app.run_test(size=SIZE) as pilot:
        await app.ready.wait()
        assert visible_pids(app) == [2, 3, 4, 5, 6]
        assert "2 exited hidden (e)" in str(app.processes.border_subtitle)
        await pilot.press("e")
        assert visible_pids(app) == [2, 3, 4, 5, 6, 1, 7]
        app.processes.sort_by("TOKENS")
        await pilot.pause()
        assert set(visible_pids(app)[:5]) == {2, 3, 4, 5, 6}  # whatever the order, the live ones lead
        await pilot.press("e")
        assert visible_pids(app)[:5] and 1 not in visible_pids(app)


@pytest.mark.parametrize("size", [(80, 24), (120, 35), (160, 45)])
async def test_the_table_keeps_cmd_tokens_and_time_at_any_width(app_kernel: Kernel, size: tuple[int, int]) -> None:
    app = app_over(app_kernel)
    async with app.run_test(size=size) as pilot:
        await app.ready.wait()
        await pilot.pause()
        table = app.processes.table
        shown = [str(c.label) for c in table.ordered_columns]
        assert {"PID", "STATE", "TOKENS", "TIME", "CMD"} <= set(shown)
        assert sum(c.get_render_width(table) for c in table.ordered_columns[:-1]) + 18 \
            <= app.processes.size.width - 2  # CMD keeps its room
        assert str(table.get_cell("3", "CMD")).startswith("chat write a haiku")
        if size[0] < 110:
            assert "slots 2/2" in str(app.processes.border_title)  # the scheduler pane gave way to the table


async def test_keymap_from_config_rebinds_by_id(app_kernel: Kernel, home: Path) -> None:
    (home / "config.toml").write_text('[monitor.keymap]\nterm = "x"\n')
    app = app_over(app_kernel)
    async with app.run_test(size=SIZE) as pilot:
        await select(pilot, app, 4)
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("n")
        await pilot.press("question_mark")
        assert ("term", "x", app.DESCRIPTIONS["term"]) in app.screen.keys


async def test_K_on_the_process_screen_kills_it_and_its_call_shows_cancelled(app_kernel: Kernel) -> None:
    app = app_over(app_kernel)
    async with app.run_test(size=SIZE) as pilot:
        await select(pilot, app, 2)
        await pilot.press("enter")
        calls = app.screen.query_one("#syscalls", DataTable)
        assert str(calls.get_cell_at((0, 2))) == "slot P0"
        await pilot.press("K")
        await until(lambda: str(calls.get_cell_at((0, 2))) == "cancelled", timeout=3)
        assert "exited: EXITED(SIGKILL)" in "\n".join(app.screen.query_one("#conversation", Log).lines)


async def test_another_users_task_is_hidden_in_the_table_and_their_process_screen(app_kernel: Kernel) -> None:
    """The scenario's pid 4 is bob's; the monitor is alice's (no admin): as `ps` shows it, and as
    `cat /proc/4/context` refuses it."""
    app = app_over(app_kernel)
    async with app.run_test(size=SIZE) as pilot:
        await select(pilot, app, 4)
        assert str(app.processes.table.get_cell("4", "CMD")) == "chat [hidden]"
        assert str(app.processes.table.get_cell("3", "CMD")).startswith("chat write a haiku")  # alice's own
        await pilot.press("enter")
        await pilot.pause()
        lines = app.screen.query_one("#conversation", Log).lines
        assert any("may not read bob's process" in line for line in lines)
        assert not any("storage migration" in line for line in lines)
        assert app.screen.query_one("#syscalls").row_count == 0
        head = str(app.screen.query_one("#process-head").render())
        assert "chat [hidden]" in head and "storage" not in head


async def test_the_scheduler_pane_shows_a_slot_kept_for_an_agent_in_its_tool(home: Path) -> None:
    import io

    from rich.console import Console

    from kernel.kernel import boot
    from kernel.llm.servermodel import EMBEDDED
    from kernel.llm.simulated import SimulatedBackend
    from kernel.scheduler.slots import Kept
    from tests.conftest import make_config

    kernel = await boot(make_config(home), backend=SimulatedBackend(slots=2, profile=EMBEDDED))
    try:
        assert kernel.dispatcher.keeper is not None
        kernel.dispatcher.keeper.read_tps = 1.0  # as if reading were slow: its short conversation is kept ~20 s
        kernel.dispatcher.keeper.swap = False  # (as on a server that cannot save it: else kept for a copy's time)
        proc = kernel.spawn("workload", ["8:30"], user=kernel.user)  # one call, then a long tool
        await until(lambda: kernel.dispatcher.keeper is not None and kernel.dispatcher.keeper.kept)
        keeper = kernel.dispatcher.keeper
        assert keeper is not None and list(keeper.kept.values())[0].pid == proc.pid
        assert isinstance(next(iter(keeper.kept.values())), Kept)
        app = app_over(kernel)
        async with app.run_test(size=SIZE) as pilot:
            await app.ready.wait()
            await pilot.pause()
            pane = app.query_one("#scheduler")

            def shown() -> str:
                console = Console(width=100, record=True, file=io.StringIO())
                console.print(pane.content)  # type: ignore[attr-defined]
                return console.export_text()

            await until(lambda: "kept · in a tool" in shown(), timeout=2)
            assert f"P0 {proc.pid} kept · in a tool" in " ".join(shown().split()) or \
                f"P1 {proc.pid} kept · in a tool" in " ".join(shown().split())
    finally:
        await kernel.shutdown()
