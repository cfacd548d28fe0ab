"""The monitor under load and its newer panes: rows repainted only when they change, tool calls joined into one
row each, and the models the Ollama server holds (from the stand-in server), polled without blocking the screen."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from textual.widgets import Static

from aios_shell.tui import view
from aios_shell.tui.panes import SystemPane, ToolLogPane
from aios_shell.tui.panes import system as system_pane
from aios_shell.tui.panes.toollog import ToolCalls
from aios_shell.tui.screens.permission import PermissionModal
from kernel.events import (
    Decision,
    PermissionDecided,
    PermissionRequested,
    SyscallDone,
    ToolCallDecided,
    ToolCalled,
)
from kernel.kernel import Kernel, boot
from kernel.llm.ollama import OllamaBackend
from kernel.llm.simulated import SimulatedBackend
from kernel.process import Signal
from tests.conftest import make_config, until
from tests.fakes.ollama_server import FakeOllama
from tests.tui.test_keys import SIZE, app_over, visible_pids

# -- the process table ----------------------------------------------------------------------------------


async def test_a_changed_process_repaints_its_row_only(app_kernel: Kernel, frozen: float) -> None:
    """(The wall clock is pinned: a running process's TIME moves with it, and its row with it.)"""
    app = app_over(app_kernel)
    async with app.run_test(size=SIZE) as pilot:
        await app.ready.wait()
        await pilot.pause()
        table = app.processes.table
        updated, painted, rebuilds = table.rows_updated, table.lines_painted, app.processes.rebuilds
        app_kernel.renice(5, 6)
        app.refresh_now()
        await pilot.pause()
        assert str(table.get_cell("5", "NI")) == "6"
        assert table.rows_updated - updated == 1
        assert table.lines_painted - painted == 1  # DataTable.update_cell would repaint all seven rows
        assert app.processes.rebuilds == rebuilds
        app.refresh_now()  # nothing changed: nothing is touched
        await pilot.pause()
        assert table.rows_updated - updated == 1 and table.lines_painted - painted == 1


async def test_a_row_that_moves_is_reordered_in_place_and_keeps_the_cursor(app_kernel: Kernel) -> None:
    app = app_over(app_kernel)
    async with app.run_test(size=SIZE) as pilot:
        await app.ready.wait()
        app.processes.sort_by("NI")
        app.processes.select(6)
        await pilot.pause()
        rebuilds = app.processes.rebuilds
        assert visible_pids(app) == [2, 3, 4, 6, 5]  # nice 5: last (the exited 1 and 7 hidden)
        app_kernel.renice(5, 0, sender="root")
        app_kernel.renice(6, 3)
        app.refresh_now()
        await pilot.pause()
        assert visible_pids(app) == [2, 3, 4, 5, 6]
        assert app.processes.selected_pid() == 6
        assert app.processes.rebuilds == rebuilds


async def test_rows_and_the_picture_stay_true_under_a_storm(home: Path) -> None:
    """120 processes on a fast model: after the storm every row, as data and as drawn, is what the kernel says."""
    sim = SimulatedBackend(slots=4, decode_tps=400.0, prefill_tps=100_000.0, seed=5)
    kernel = await boot(make_config(home), backend=sim)
    try:
        for i in range(120):
            kernel.spawn("chat", ["tell", "a", "story", str(i)])
        app = app_over(kernel)
        async with app.run_test(size=SIZE) as pilot:
            await app.ready.wait()
            app.processes.toggle_exited()  # every row, those that finish during the storm too
            table = app.processes.table
            await until(lambda: table.row_count == 120, timeout=5)
            await until(lambda: sum(p.completion_tokens for p in kernel.procs) > 300, timeout=20)
            for proc in kernel.ps():
                kernel.signal(proc.pid, Signal.STOP)
            await pilot.pause(0.3)
            app.refresh_now()
            await pilot.pause()
            assert table.rows_updated > 0
            for r in view.rows(kernel):
                assert tuple(str(table.get_cell(str(r.pid), c)) for c in view.COLUMNS) == r.cells
            top = table.header_height
            first = int(table.scroll_y)  # the cursor follows its process, which may have moved down
            for y in range(top, min(table.size.height, top + table.row_count - first)):
                pid = visible_pids(app)[first + y - top]
                drawn = table.render_line(y).text
                row = next(r for r in view.rows(kernel) if r.pid == pid)
                assert row.cells[4] in drawn and row.cells[6] in drawn, (drawn, row.cells)
    finally:
        await kernel.shutdown()


# -- the tool-call log ------------------------------------------------------------------------------------


def rows_of(pane: ToolLogPane) -> list[dict[str, str]]:
    out = []
    for i in range(pane.row_count):
        key = pane.coordinate_to_cell_key((i, 0)).row_key
        out.append({c: str(pane.get_cell(key, c)).strip() for c in ("PID", "TOOL", "ARGS", "DECISION", "DUR",
                                                                       "OUTCOME")})
    return out


async def test_a_tool_call_is_one_row_from_request_to_outcome(kernel: Kernel, sim: SimulatedBackend) -> None:
    sim.enqueue('CALL {"tool": "fs.write", "args": {"path": "notes.txt", "content": "hi \\u001b[2Jthere"}}',
                'CALL {"tool": "calc", "args": {"expression": "6*7"}}', "ANSWER: done")
    app = app_over(kernel)
    async with app.run_test(size=SIZE) as pilot:
        await app.ready.wait()
        proc = kernel.spawn("react", ["write", "a", "note"])
        await until(lambda: isinstance(app.screen, PermissionModal), timeout=5)
        await pilot.pause()
        pane = app.query_one(ToolLogPane)
        assert [(r["TOOL"], r["DECISION"], r["OUTCOME"]) for r in rows_of(pane)] == [("fs.write", "asking", "…")]
        await until(lambda: not app.screen.early(), timeout=3)  # keys in its first moments do not answer
        await pilot.press("y")
        await asyncio.wait_for(kernel.wait(proc.pid), 10)
        await until(lambda: len(rows_of(pane)) == 2 and rows_of(pane)[1]["OUTCOME"] == "ok", timeout=3)
        write, calc = rows_of(pane)
        assert write["PID"] == calc["PID"] == str(proc.pid)
        assert write["TOOL"] == "fs.write" and write["DECISION"] == "once" and write["OUTCOME"] == "ok"
        assert write["ARGS"].startswith("path=notes.txt")  # cut to the column
        assert [c.args for c in pane.log_calls.calls.values()][0] == "path=notes.txt content=hi there"
        assert write["DUR"].endswith("s")
        assert calc["TOOL"] == "calc" and calc["DECISION"] == "allow" and calc["ARGS"] == "expression=6*7"


def test_the_join_covers_timeouts_rules_strays_and_secrets() -> None:
    calls = ToolCalls(keep=3)
    calls.feed(ToolCalled(pid=4, sid=9, tool="shell", args={"cmd": "curl -H 'Authorization: Bearer abcdefghijklmnop'"}))
    calls.feed(PermissionRequested(request_id=1, pid=4, user="alice", program="react", tool="shell",
                                   args={"cmd": "curl"}, timeout=1, deadline=0))
    calls.feed(PermissionDecided(request_id=1, pid=4, tool="shell", decision="deny", by="timeout"))
    calls.feed(ToolCallDecided(pid=4, sid=9, tool="shell", decision=Decision.DENY, by="timeout"))
    calls.feed(SyscallDone(pid=4, sid=9, call="tool:shell", ok=False, error="permission denied: shell(curl)"))
    calls.feed(SyscallDone(pid=4, sid=10, call="llm", ok=True))  # not a tool call
    calls.feed(ToolCalled(pid=5, sid=2, tool="fs.write", args={"path": "/etc/passwd"}))
    calls.feed(ToolCallDecided(pid=5, sid=2, tool="fs.write", decision=Decision.DENY, by="policy"))
    calls.feed(SyscallDone(pid=5, sid=2, call="tool:fs.write", ok=False, error="permission denied: fs.write"))
    calls.feed(PermissionDecided(request_id=7, pid=3, tool="shell", decision="once", by="user"))  # asked earlier
    shell, write, stray = calls.calls.values()
    assert (shell.decision, shell.by, shell.ok) == ("deny", "timeout", False) and "abcdefghijklmnop" not in shell.args
    assert (write.decision, write.by, write.outcome) == ("deny", "rule", "permission denied: fs.write")
    assert (stray.pid, stray.tool, stray.decision, stray.done) == (3, "shell", "once", False)
    calls.feed(ToolCalled(pid=6, sid=1, tool="calc", args={"expression": "1"}))
    assert [c.tool for c in calls.calls.values()] == ["fs.write", "shell", "calc"]  # the oldest left


async def test_the_log_follows_new_calls_unless_scrolled_up(app_kernel: Kernel) -> None:
    """The newest call is on screen once the table has measured its rows (it measures them when idle, which
    may come after the refresh a deferred scroll waits for); a person reading older calls is left there."""
    app = app_over(app_kernel)

    def calls(first: int, count: int) -> None:
        for sid in range(first, first + count):
            app_kernel.bus.publish(ToolCalled(pid=2, sid=sid, tool="calc", args={"expression": str(sid)}))
        app.refresh_now()

    async with app.run_test(size=SIZE) as pilot:
        await app.ready.wait()
        pane = app.query_one(ToolLogPane)
        calls(100, 40)
        await until(lambda: pane.row_count == 40 and pane.max_scroll_y > 0, timeout=3)
        await pilot.pause()
        assert pane.scroll_y == pane.max_scroll_y
        calls(140, 5)
        await until(lambda: pane.row_count == 45, timeout=3)
        await pilot.pause()
        assert pane.following and pane.scroll_y == pane.max_scroll_y
        pane.scroll_home(animate=False, immediate=True)
        calls(145, 5)
        await until(lambda: pane.row_count == 50, timeout=3)
        await pilot.pause()
        assert not pane.following and pane.scroll_y == 0
        pane.scroll_end(animate=False, immediate=True)
        calls(150, 5)
        await until(lambda: pane.row_count == 55, timeout=3)
        await pilot.pause()
        assert pane.following and pane.scroll_y == pane.max_scroll_y


@pytest.mark.hostile
async def test_hostile_tool_arguments_and_names_are_drawn_inert(app_kernel: Kernel) -> None:
    """Events straight on the bus (not through the kernel's own cleaning): escapes, newlines and a key."""
    app = app_over(app_kernel)
    async with app.run_test(size=SIZE) as pilot:
        await app.ready.wait()
        app_kernel.bus.publish(ToolCalled(pid=2, sid=99, tool="sh\x1b[31mell\n", args={
            "cmd\x1b]0;owned\x07": "echo hi\nrm -rf / \x1b[2J", "env": "OPENAI_API_KEY=sk-abcdefghijklmnopqrstuvwx"}))
        app.refresh_now()
        await pilot.pause()
        pane = app.query_one(ToolLogPane)
        (call,) = pane.log_calls.calls.values()
        drawn = " ".join(str(pane.get_cell(call.key, c)) for c in ("TOOL", "ARGS")) + call.tool + call.args
        assert "\x1b" not in drawn and "\x07" not in drawn and "\n" not in drawn
        assert "sk-abcdefghijklmnopqrstuvwx" not in call.args and "echo hi rm -rf /" in call.args


# -- the system pane: models loaded -----------------------------------------------------------------------


def system_text(app: object) -> str:
    return str(app.query_one("#sys-text", Static).render())  # type: ignore[attr-defined]


async def ollama_kernel(home: Path, host: str) -> Kernel:
    return await boot(make_config(home, backend="ollama"), backend=OllamaBackend(model="gemma3:270m", host=host))


async def test_the_system_pane_lists_the_models_ollama_holds(home: Path, fake_ollama: FakeOllama) -> None:
    kernel = await ollama_kernel(home, fake_ollama.host)
    try:
        proc = kernel.spawn("chat", ["hi"])  # loads the model on the server
        await asyncio.wait_for(kernel.wait(proc.pid), 10)
        app = app_over(kernel)
        async with app.run_test(size=SIZE) as pilot:
            await app.ready.wait()
            pane = app.query_one(SystemPane)
            await until(lambda: pane.models, timeout=5)
            await pilot.pause()
            assert [(m.name, m.size, m.vram) for m in pane.models] == [("gemma3:270m", 291554930, 291554930)]
            text = system_text(app)
            assert "loaded 1 (ollama ps)" in text and "gemma3:270m 278 MiB · vram 278 MiB" in text
            assert pane.poll_models() is False  # asked a moment ago: not again before POLL_EVERY
            assert [r["path"] for r in fake_ollama.requests].count("/api/ps") == pane.polls == 1
    finally:
        await kernel.shutdown()


async def test_a_hung_or_dead_model_server_never_holds_up_the_screen(home: Path, fake_ollama: FakeOllama,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(system_pane, "POLL_TIMEOUT", 0.3)
    kernel = await ollama_kernel(home, fake_ollama.host)
    fake_ollama.hang = True
    try:
        app = app_over(kernel)
        async with app.run_test(size=SIZE) as pilot:
            await app.ready.wait()
            pane = app.query_one(SystemPane)
            await until(lambda: pane.polls == 1, timeout=5)
            await pilot.press("colon")  # the screen answers keys while the question hangs
            assert not app.command_line.has_class("hidden")
            await until(lambda: pane.models_error is not None, timeout=5)
            assert "no answer in 0.3s" in system_text(app)
            fake_ollama.hang = False
            fake_ollama.stop()
            pane._polled = float("-inf")  # ask again now
            assert pane.poll_models()
            await until(lambda: "cannot reach Ollama" in (pane.models_error or ""), timeout=5)
    finally:
        await kernel.shutdown()


class EmbeddedLike(SimulatedBackend):
    """What the embedded backend's describe() says: a model file and threads."""

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "backend": "llamacpp", "path": "gemma-3-270m-it-Q8_0.gguf", "threads": 4}


async def test_other_backends_show_what_describe_knows(home: Path) -> None:
    kernel = await boot(make_config(home), backend=EmbeddedLike(slots=3))
    try:
        app = app_over(kernel)
        async with app.run_test(size=SIZE) as pilot:
            await app.ready.wait()
            await pilot.pause()
            text = system_text(app)
            assert "llamacpp · P=3" in text and "file  gemma-3-270m-it-Q8_0.gguf · threads 4" in text
            assert app.query_one(SystemPane).polls == 0  # nothing to ask
    finally:
        await kernel.shutdown()


def test_a_call_that_waited_for_a_person_lasts_as_long_as_it_waited() -> None:
    calls = ToolCalls()
    calls.feed(ToolCalled(pid=4, sid=9, tool="shell", args={"cmd": "pwd"}))
    calls.feed(PermissionRequested(request_id=1, pid=4, user="alice", program="react", tool="shell",
                                   args={"cmd": "pwd"}, timeout=30, deadline=0))
    calls.feed(PermissionDecided(request_id=1, pid=4, tool="shell", decision="once", by="user"))
    calls.feed(SyscallDone(pid=4, sid=9, call="tool:shell", ok=True, wait_s=10.0, service_s=0.004))
    (shell,) = calls.calls.values()
    assert shell.duration == pytest.approx(10.004)  # not the 0.00s the program itself took


async def test_the_tool_log_shows_calls_made_before_the_monitor_opened(kernel: Kernel, sim: SimulatedBackend) -> None:
    sim.enqueue('CALL {"tool": "calc", "args": {"expression": "6*7"}}', "ANSWER: 42")
    proc = kernel.spawn("react", ["compute"])
    await asyncio.wait_for(kernel.wait(proc.pid), 10)
    app = app_over(kernel)
    async with app.run_test(size=SIZE) as pilot:
        await app.ready.wait()
        await pilot.pause()
        rows = rows_of(app.query_one(ToolLogPane))
    assert [(r["PID"], r["TOOL"], r["ARGS"], r["DECISION"], r["OUTCOME"]) for r in rows] == [
        (str(proc.pid), "calc", "expression=6*7", "allow", "ok")]
