"""The monitor attached over the socket (`aios top` where another process hosts the kernel), with Pilot: the rows
follow the kernel, K kills in the kernel, the command line runs there, and a refusal is a notification."""

from __future__ import annotations

from textual.widgets import Log

from aios_shell.tui import make_monitor
from aios_shell.tui.probe import FixedProbe
from aios_shell.tui.remote import AttachedKernel
from kernel.api.wire import Connection
from kernel.kernel import Kernel
from kernel.server import KernelServer
from tests.conftest import until
from tests.tui.test_keys import SIZE, select, state_cell


async def attached(kernel: Kernel, user: str = "alice") -> AttachedKernel:
    conn = await Connection.open(kernel.config.home, user)
    return await AttachedKernel(conn, kernel.config.home).start()


async def test_the_attached_monitor_follows_the_kernel_and_kills_in_it(kernel: Kernel, server: KernelServer) -> None:
    long = kernel.spawn("workload", ["5:300"], user="alice")
    remote = await attached(kernel)
    app = make_monitor(remote, probe=FixedProbe())  # type: ignore[arg-type]
    try:
        async with app.run_test(size=SIZE) as pilot:
            await app.ready.wait()
            await until(lambda: state_cell(app, long.pid) in ("RUNNING", "WAITING(llm)", "READY"), timeout=5)
            later = kernel.spawn("workload", ["5:300"], user="alice")  # appears without a key pressed
            await until(lambda: app.processes.table.row_count == 2, timeout=5)
            await select(pilot, app, later.pid)
            await pilot.press("K")
            await until(lambda: not later.alive, timeout=5)
            assert later.term_signal == 9 and long.alive
            await until(lambda: app.processes.table.row_count == 1, timeout=5)

            await pilot.press("colon")
            await pilot.press(*"ps")
            await pilot.press("enter")
            log = app.command_line.query_one("#console-log", Log)
            await until(lambda: "workload 5:300" in "\n".join(log.lines), timeout=5)
    finally:
        await remote.shutdown()


async def test_another_users_process_cannot_be_killed_from_an_attached_monitor(kernel: Kernel,
                                                                              server: KernelServer) -> None:
    theirs = kernel.spawn("workload", ["5:300"], user="bob")
    remote = await attached(kernel, "alice")
    app = make_monitor(remote, probe=FixedProbe())  # type: ignore[arg-type]
    seen: list[str] = []
    try:
        async with app.run_test(size=SIZE) as pilot:
            app.notify = lambda message, **kw: seen.append(str(message))  # type: ignore[method-assign]
            await app.ready.wait()
            await until(lambda: app.processes.table.row_count == 1, timeout=5)
            await select(pilot, app, theirs.pid)
            await pilot.press("K")
            await until(lambda: any("not permitted" in s or "may not" in s for s in seen), timeout=5)
            assert theirs.alive
    finally:
        await remote.shutdown()


async def test_the_attached_process_screen_shows_the_conversation(kernel: Kernel, server: KernelServer) -> None:
    from aios_shell.tui.screens.process import ProcessScreen
    from kernel.process import Signal

    proc = kernel.spawn("chat", ["tell", "a", "long", "story", "about", "otters"], user="alice")
    await until(lambda: len(proc.output) >= 1)
    kernel.signal(proc.pid, Signal.STOP, sender="alice")  # (it stays in the table, however fast the model is)
    remote = await attached(kernel)
    app = make_monitor(remote, probe=FixedProbe())  # type: ignore[arg-type]
    try:
        async with app.run_test(size=SIZE) as pilot:
            await app.ready.wait()
            await until(lambda: app.processes.table.row_count == 1, timeout=5)
            await select(pilot, app, proc.pid)
            await pilot.press("enter")
            await until(lambda: isinstance(app.screen, ProcessScreen), timeout=5)
            log = app.screen.log_widget
            await until(lambda: "otters" in "\n".join(log.lines), timeout=5)
    finally:
        await remote.shutdown()
