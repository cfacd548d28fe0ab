"""The monitor's plumbing: batched refresh from events, live streaming, sanitizing, settings, `top`."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from textual.widgets import Log

from aios_shell.render import make_console
from aios_shell.shell import Shell
from aios_shell.tui.app import REFRESH_EVERY
from aios_shell.tui.screens.process import ProcessScreen
from aios_shell.tui.settings import MonitorSettings
from kernel.api import KernelAPI
from kernel.events import ProcessOutput
from kernel.kernel import Kernel
from kernel.process import Signal
from tests.conftest import until
from tests.tui.test_keys import SIZE, app_over, select


async def test_a_storm_of_events_is_drawn_at_most_ten_times_a_second(app_kernel: Kernel) -> None:
    app = app_over(app_kernel)
    async with app.run_test(size=SIZE) as pilot:
        await app.ready.wait()
        await pilot.pause(0.2)
        before, seen = app.refreshes, app.events_seen
        started = asyncio.get_running_loop().time()
        for i in range(2000):
            app_kernel.bus.publish(ProcessOutput(pid=2, text=f"line {i}\n"))
            if i % 100 == 0:
                await asyncio.sleep(0.02)
        await until(lambda: app.events_seen - seen == 2000, timeout=5)  # every event reached the panes
        elapsed = asyncio.get_running_loop().time() - started
        assert 1 <= app.refreshes - before <= elapsed / REFRESH_EVERY + 2


async def test_an_idle_kernel_costs_no_refresh(app_kernel: Kernel) -> None:
    app = app_over(app_kernel)
    async with app.run_test(size=SIZE) as pilot:
        await app.ready.wait()
        await pilot.pause(0.3)
        before = app.refreshes
        await asyncio.sleep(0.6)
        assert app.refreshes == before


async def test_rows_follow_the_kernel_live(kernel: Kernel) -> None:
    """On the real simulated model: a process appears, runs and exits without a key being pressed."""
    app = app_over(kernel)
    async with app.run_test(size=SIZE) as pilot:
        await app.ready.wait()
        proc = kernel.spawn("chat", ["short", "question"])
        await until(lambda: app.processes.table.row_count == 1, timeout=3)
        await until(lambda: not proc.alive)
        await until(lambda: app.processes.table.row_count == 0, timeout=3)  # exited: hidden
        await pilot.press("e")
        await until(lambda: str(app.processes.table.get_cell(str(proc.pid), "STATE")) == "EXITED(0)", timeout=3)
        await pilot.pause()


async def test_the_process_screen_streams_the_conversation(kernel: Kernel) -> None:
    app = app_over(kernel)
    async with app.run_test(size=SIZE) as pilot:
        await app.ready.wait()
        kernel.backend.decode_tps = 4.0  # 200 tokens: fifty seconds of streaming, however busy the machine
        proc = kernel.spawn("chat", ["tell", "a", "long", "story"])
        await until(lambda: app.processes.table.row_count == 1, timeout=3)
        await select(pilot, app, proc.pid)
        await pilot.press("enter")
        assert isinstance(app.screen, ProcessScreen)
        log = app.screen.query_one("#conversation", Log)
        for _ in range(3):  # tokens keep arriving while it is open
            before = len("".join(log.lines))
            await until(lambda before=before: len("".join(log.lines)) > before, timeout=3)
            assert proc.alive
        kernel.backend.decode_tps = 1000.0  # the rest at once
        await until(lambda: not proc.alive, timeout=15)
        # the screen catches up at its next refresh (the monitor slows its refresh when the machine is busy)
        await until(lambda: "exited: EXITED(0)" in "\n".join(log.lines), timeout=5)
        text = "\n".join(log.lines)
        assert "tell a long story" in text
        answer = KernelAPI(kernel).transcript(proc.pid)[-1].content
        assert answer.split()[-1] in text
        calls = app.screen.query_one("#syscalls")
        assert calls.row_count == 1 and str(calls.get_cell_at((0, 2))) == "done"


async def test_control_sequences_never_reach_the_screen(app_kernel: Kernel) -> None:
    app = app_over(app_kernel)
    async with app.run_test(size=SIZE) as pilot:
        await app.ready.wait()
        await pilot.press("e")  # pid 7 was killed
        cmd = str(app.processes.table.get_cell("7", "CMD"))
        assert "\x1b" not in cmd and cmd.endswith("files red")
        await select(pilot, app, 7)
        await pilot.press("enter")
        await pilot.pause()
        assert all("\x1b" not in line for line in app.screen.query_one("#conversation", Log).lines)


def test_settings_survive_broken_files(home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text("[monitor\ntheme = ")
    (home / "monitor.json").write_text("{not json")
    settings = MonitorSettings.load(home)
    assert settings.theme == "dark" and len(settings.problems) == 2


def test_settings_theme_from_config_then_remembered(home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text('[monitor]\ntheme = "light"\n[monitor.keymap]\nquit = "ctrl+q"\n')
    settings = MonitorSettings.load(home)
    assert settings.theme == "light" and settings.keymap == {"quit": "ctrl+q"}
    settings.remember_theme("high-contrast")
    assert MonitorSettings.load(home).theme == "high-contrast"
    (home / "config.toml").write_text('[monitor]\ntheme = "purple"\n')
    assert any("purple" in p for p in MonitorSettings.load(home).problems)


def shell_for(kernel: Kernel) -> tuple[Shell, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return Shell(kernel, out=make_console(out), err=make_console(err)), out, err


async def test_top_without_a_terminal_is_one_line_and_status_1(kernel: Kernel) -> None:
    shell, out, err = shell_for(kernel)
    assert await shell.execute(["top"]) == 1
    assert err.getvalue() == "top: not a terminal: the monitor needs one (try: ps)\n"
    assert out.getvalue() == ""


async def test_top_checks_its_theme_and_does_not_nest(kernel: Kernel) -> None:
    shell, _, err = shell_for(kernel)
    assert await shell.execute(["top", "--theme", "purple"]) == 2
    assert "purple: no such theme" in err.getvalue()
    shell.monitor = object()  # type: ignore[attr-defined] - as the monitor's own `:` shell
    assert await shell.execute(["top"]) == 1
    assert "already in the monitor" in err.getvalue()


async def test_top_runs_the_app_and_holds_shell_output_until_it_ends(kernel: Kernel, monkeypatch) -> None:  # noqa: ANN001
    import commands.top as top

    shell, out, _ = shell_for(kernel)
    ran = []

    async def fake_run_async(self) -> None:  # noqa: ANN001 - stands in for the terminal
        ran.append(self.theme)
        shell.print("[1]+  Done  chat hi")  # a job report while the monitor owns the screen
        assert out.getvalue() == ""

    monkeypatch.setattr(top, "is_terminal", lambda sh: True)
    monkeypatch.setattr("aios_shell.tui.app.MonitorApp.run_async", fake_run_async)
    assert await shell.execute(["top", "--theme", "light"]) == 0
    assert ran == ["light"]
    assert "[1]+  Done  chat hi" in out.getvalue()


async def test_the_process_screen_wraps_long_lines(kernel: Kernel) -> None:
    words = [f"word{i:03d}" for i in range(120)]
    kernel.backend.enqueue(" ".join(words))
    proc = kernel.spawn("chat", ["one", "long", "line"])
    await kernel.wait(proc.pid)
    app = app_over(kernel)
    async with app.run_test(size=(80, 24)) as pilot:
        await app.ready.wait()
        app.push_screen(ProcessScreen(proc.pid))
        await pilot.pause()
        log = app.screen.query_one("#conversation", Log)
        width = log.scrollable_content_region.width
        answer = [line for line in log.lines if "word" in line]
        assert len(answer) > 3 and all(len(line) <= width for line in log.lines)
        assert " ".join(answer).split() == words  # wrapped at words: nothing lost, nothing cut
        await pilot.resize_terminal(160, 45)
        await pilot.pause()
        wider = [line for line in log.lines if "word" in line]
        assert len(wider) < len(answer) and " ".join(wider).split() == words


async def test_the_process_screen_shows_what_a_stopped_call_generated(kernel: Kernel) -> None:
    kernel.backend.decode_tps = 100.0
    kernel.backend.enqueue(" ".join(f"tok{i}" for i in range(300)))
    proc = kernel.spawn("chat", ["tell", "a", "long", "story"])
    await until(lambda: len(proc.output) >= 10)
    kernel.signal(proc.pid, Signal.STOP)
    await until(lambda: proc.status == "STOPPED")
    generated = proc.inflight[0].raw.split()
    app = app_over(kernel)
    async with app.run_test(size=SIZE) as pilot:
        await app.ready.wait()
        app.push_screen(ProcessScreen(proc.pid))
        await pilot.pause()
        text = " ".join(app.screen.query_one("#conversation", Log).lines).split()
        assert "(streaming)" in text and generated and all(word in text for word in generated)
    kernel.signal(proc.pid, Signal.KILL)
