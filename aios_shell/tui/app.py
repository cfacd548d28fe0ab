"""The monitor app: panes fed by kernel events, refreshed in batches (at most 10 times a second).

`make_monitor` is the one factory: the `top` command, `aios top` and the tests all build the app
through it. The app listens to the kernel's event bus; an event only marks work to do, and one
refresh a tenth of a second later redraws every pane from the batch, so a storm of events costs at
most ten redraws a second and an idle kernel costs nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Header

import themes
from aios_shell.tui import view
from aios_shell.tui.panes import ConsolePane, ContextPane, ProcessPane, SchedulerPane, SystemPane, ToolLogPane
from aios_shell.tui.probe import SystemProbe
from aios_shell.tui.screens.confirm import ConfirmModal
from aios_shell.tui.screens.help import HelpScreen
from aios_shell.tui.screens.permission import PermissionModal
from aios_shell.tui.screens.process import ProcessScreen
from aios_shell.tui.screens.sort import SortMenu
from aios_shell.tui.settings import MonitorSettings
from aios_shell.tui.theming import register_themes
from aios_shell.tui.view import COLUMNS, clean
from kernel.api import Event, Kernel, KernelError, PermissionDecided, PermissionRequested, Signal

TABLE_ACTIONS = ("filter", "sort_menu", "sort_step", "sort_invert", "exited", "tree")
REFRESH_EVERY = 0.1  # seconds: at most 10 refreshes a second
BUSY_SHARE = 0.25  # under load, refresh no more often than keeps drawing under this share of the loop
SLOWEST_EVERY = 1.0  # and never less often than once a second
PENDING_MAX = 20_000  # events kept between two refreshes (oldest dropped first)
KEY_NAMES = {"plus": "+", "minus": "-", "slash": "/", "colon": ":", "question_mark": "?", "escape": "Esc",
             "enter": "Enter", "less_than_sign": "<", "greater_than_sign": ">", "ctrl+c": "Ctrl-C"}


class View(Protocol):
    def update_view(self, events: list[Event] | None = None, force: bool = False) -> None: ...


class Probe(Protocol):
    def sample(self) -> Any: ...


class MonitorApp(App[int]):
    """htop for agents. Keys act on the selected process; see `?`."""

    TITLE = "aios top"
    CSS_PATH = themes.stylesheet()
    ENABLE_COMMAND_PALETTE = False
    HORIZONTAL_BREAKPOINTS = [(0, "-compact"), (110, "-narrow"), (130, "-wide")]
    BINDINGS = [
        Binding("q", "quit", "quit", id="quit"),
        Binding("ctrl+c", "quit", "quit", id="interrupt", show=False),  # as in htop (Textual only says how)
        Binding("k", "term", "term", id="term"),
        Binding("K", "kill", "kill", id="kill"),
        Binding("s", "stop_cont", "stop", id="stop_cont"),
        Binding("plus", "renice(1)", "nice+", id="nice_up"),
        Binding("minus", "renice(-1)", "nice-", id="nice_down", show=False),
        Binding("slash", "filter", "filter", id="filter"),
        Binding("o", "sort_menu", "sort", id="sort"),
        Binding("less_than_sign", "sort_step(-1)", "sort ←", id="sort_previous", show=False),
        Binding("greater_than_sign", "sort_step(1)", "sort →", id="sort_next", show=False),
        Binding("I", "sort_invert", "invert", id="sort_invert", show=False),
        Binding("e", "exited", "exited", id="exited"),
        Binding("T", "tree", "tree", id="tree", show=False),
        Binding("t", "next_theme", "theme", id="theme", show=False),
        Binding("colon", "command", "cmd", id="command"),
        Binding("question_mark", "help", "help", id="help"),
        Binding("enter", "open", "open", id="open", show=False),
        Binding("escape", "close", "close", id="close", show=False),
    ]
    DESCRIPTIONS = {
        "quit": "leave the monitor", "interrupt": "leave the monitor", "term": "send TERM to the process (asks first)",
        "kill": "send KILL to the process at once", "stop_cont": "STOP the process, or CONT it when stopped",
        "nice_up": "renice +1 (nicer, lower priority)", "nice_down": "renice -1 (higher priority; admins only)",
        "filter": "filter the process table (Enter keeps it, Esc clears)",
        "sort": "sort menu: pick a column (click a header to sort by it; again to reverse)",
        "sort_previous": "sort by the column to the left", "sort_next": "sort by the column to the right",
        "sort_invert": "reverse the sort order", "exited": "show or hide exited processes (hidden at first)",
        "tree": "tree view by parent process",
        "theme": f"next theme ({', '.join(themes.names())}); remembered",
        "command": "a shell command line: ps, kill, renice, run … (same commands as the shell)",
        "help": "this help", "open": "open the process screen (conversation, syscalls)",
        "close": "close the filter, the command line or the process screen",
    }

    def __init__(
        self,
        kernel: Kernel | None = None,
        *,
        boot: Callable[[], Awaitable[Kernel]] | None = None,
        settings: MonitorSettings | None = None,
        theme: str | None = None,
        probe: Probe | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        if kernel is None and boot is None:
            raise ValueError("the monitor needs a kernel or a way to boot one")
        self.kernel: Kernel | None = kernel
        self._boot = boot
        self._owns_kernel = kernel is None
        self.settings = settings or MonitorSettings()
        self.probe = probe or SystemProbe()
        self.clock = clock
        self.ready = asyncio.Event()
        self.refreshes = 0  # batched refreshes so far (the bench reads these)
        self.refresh_seconds: deque[float] = deque(maxlen=10_000)
        self.events_seen = 0
        self._pending: deque[Event] = deque(maxlen=PENDING_MAX)
        self._flush_scheduled = False
        self._last_flush = 0.0
        self._interval = REFRESH_EVERY  # grows when a refresh (with its repaint) is costly
        self._cost = 0.0
        self._views: list[View] = []
        self._panes: list[Any] = []
        self._unsubscribe: Callable[[], None] | None = None
        self._detach: Callable[[], None] | None = None
        self._permissions: deque[PermissionRequested] = deque()
        self._asking: PermissionModal | None = None
        register_themes(self)
        if theme is not None:
            self.settings.remember_theme(theme)
        self.theme = self.settings.theme
        self.set_keymap(self.settings.keymap)

    # -- layout -----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="◆")
        with Horizontal(id="upper"):
            yield ProcessPane()
            with Vertical(id="side"):
                yield SchedulerPane()
                yield SystemPane()
        with Horizontal(id="lower"):
            yield ContextPane()
            yield ToolLogPane()
        yield ConsolePane()
        yield Footer(compact=True)

    @property
    def processes(self) -> ProcessPane:
        return self._panes[0]  # type: ignore[return-value]

    @property
    def command_line(self) -> ConsolePane:
        return self._panes[-1]  # type: ignore[return-value]

    async def on_mount(self) -> None:
        self._panes = [self.query_one(cls) for cls in (ProcessPane, SchedulerPane, SystemPane, ContextPane,
                                                        ToolLogPane, ConsolePane)]
        for problem in self.settings.problems:
            self.notify(problem, severity="warning", timeout=8)
        if self.kernel is None and self._boot is not None:
            self.kernel = await self._boot()
        assert self.kernel is not None
        if hasattr(self.kernel, "remote_api"):  # attached: what the kernel refuses comes back later, as a note
            self.kernel.notify = lambda text: self.notify(clean(text), severity="error", timeout=5)
        describe = self.kernel.backend.describe()
        self.sub_title = f"{clean(describe.get('backend', '?'), 20)} · {clean(describe.get('model', '?'), 40)} · " \
                         f"{clean(self.kernel.user, 20)}"
        self.query_one(ToolLogPane).history(self.kernel)  # (no await in between: no event falls in the gap)
        self._unsubscribe = self.kernel.bus.on(self._on_event)
        api = view.api(self.kernel)
        self._permissions.extend(api.pending_permissions())
        self._detach = api.attach_answerer(exclusive=True)  # the monitor asks while it shows; the shell waits
        self.processes.table.focus()
        self.ready.set()
        self.refresh_now(force=True)

    async def on_unmount(self) -> None:
        if self._detach is not None:
            self._detach()
            self._detach = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._owns_kernel and self.kernel is not None:
            await self.kernel.shutdown()

    # -- events → batched refresh -------------------------------------------------------------
    def _on_event(self, event: Event) -> None:
        """Called by the bus for every kernel event: remember it and make sure a refresh is coming."""
        self._pending.append(event)
        if self._flush_scheduled:
            return
        self._flush_scheduled = True
        delay = max(0.0, self._last_flush + self._interval - time.monotonic())
        asyncio.get_running_loop().call_later(delay, self.call_later, self._refresh_due)

    def _refresh_due(self) -> None:  # (not `_flush`: Textual's App has one, which its print capture calls)
        self._flush_scheduled = False
        if not self.is_running:
            return
        self.refresh_now()

    def refresh_now(self, force: bool = False) -> None:
        """Redraw every pane from the events gathered since the last refresh."""
        if self.kernel is None:
            return
        started = time.perf_counter()
        self._last_flush = time.monotonic()
        events = list(self._pending)
        self._pending.clear()
        self.events_seen += len(events)
        for extra in (*self._panes, *self._views):
            extra.update_view(events, force=force)
        self._permission_events(events)
        self.refreshes += 1
        self.refresh_seconds.append(time.perf_counter() - started)
        self.call_after_refresh(self._painted, started)

    def _painted(self, started: float) -> None:
        """The refresh is on screen: pace the next one by what this one cost, update and repaint together."""
        self._cost = 0.7 * self._cost + 0.3 * (time.perf_counter() - started)  # smoothed: one slow frame is no trend
        self._interval = min(SLOWEST_EVERY, max(REFRESH_EVERY, self._cost / BUSY_SHARE))

    def add_view(self, view: View) -> None:
        """A screen that wants the event batches too (the process screen)."""
        self._views.append(view)

    def remove_view(self, view: View) -> None:
        if view in self._views:
            self._views.remove(view)

    # -- permission requests ------------------------------------------------------------------
    def _permission_events(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, PermissionRequested):
                if self.kernel is not None and view.api(self.kernel).may_answer(event):
                    self._permissions.append(event)
            elif isinstance(event, PermissionDecided):
                self._permissions = deque(r for r in self._permissions if r.request_id != event.request_id)
                if self._asking is not None and self._asking.request.request_id == event.request_id:
                    self._asking.action_answer(event.decision)  # decided elsewhere (timeout): close
        self._ask_next()

    def _ask_next(self) -> None:
        if self._asking is not None or not self._permissions:
            return
        request = self._permissions.popleft()
        self._asking = PermissionModal(request)

        def answered(decision: str | None) -> None:
            self._asking = None
            if self.kernel is not None and decision is not None:
                view.api(self.kernel).answer_permission(request.request_id, decision)
            self.call_later(self._ask_next)

        self.push_screen(self._asking, answered)

    # -- the selected process -------------------------------------------------------------------
    def target_pid(self) -> int | None:
        if isinstance(self.screen, ProcessScreen):
            return self.screen.pid
        return self.processes.selected_pid()

    def _act(self, what: Callable[[int], object]) -> None:
        pid = self.target_pid()
        if pid is None:
            self.notify("no process selected", severity="warning")
            return
        try:
            what(pid)
        except KernelError as exc:
            self.notify(clean(str(exc)), severity="error", timeout=5)

    def _signal(self, pid: int, sig: Signal) -> None:
        assert self.kernel is not None
        view.api(self.kernel).signal(pid, sig)

    def action_term(self) -> None:
        pid = self.target_pid()
        if pid is None:
            self.notify("no process selected", severity="warning")
            return
        proc = self.kernel.procs.get(pid) if self.kernel else None
        what = clean(proc.cmdline, 50) if proc else ""

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._act(lambda p: self._signal(p, Signal.TERM) if p == pid else None)

        self.push_screen(ConfirmModal(f"Send SIGTERM to process {pid} ({what})?"), confirmed)

    def action_kill(self) -> None:
        self._act(lambda pid: self._signal(pid, Signal.KILL))

    def action_stop_cont(self) -> None:
        def toggle(pid: int) -> None:
            assert self.kernel is not None
            proc = self.kernel.get(pid)
            self._signal(pid, Signal.CONT if proc.status == "STOPPED" else Signal.STOP)

        self._act(toggle)

    def action_renice(self, delta: int) -> None:
        def renice(pid: int) -> None:
            assert self.kernel is not None
            proc = self.kernel.get(pid)
            view.api(self.kernel).renice(pid, proc.nice + delta)

        self._act(renice)

    def action_open(self) -> None:
        if isinstance(self.screen, ProcessScreen):
            return
        pid = self.processes.selected_pid()
        if pid is not None:
            self._open_process(pid)

    def on_process_pane_opened(self, message: ProcessPane.Opened) -> None:
        if not isinstance(self.screen, ProcessScreen):
            self._open_process(message.pid)

    def _open_process(self, pid: int) -> None:
        """The process screen; attached, once what the process said and did has come over the socket."""
        remote = getattr(self.kernel, "remote_api", None)
        if remote is None:
            self.push_screen(ProcessScreen(pid))
            return

        async def fetched_then_open() -> None:
            await remote.prefetch(pid)
            if not isinstance(self.screen, ProcessScreen):
                self.push_screen(ProcessScreen(pid))

        self.run_worker(fetched_then_open(), group="open-process", exclusive=True)

    # -- the table, the command line, themes, help ---------------------------------------------
    def action_filter(self) -> None:
        if not isinstance(self.screen, ProcessScreen):
            self.processes.open_filter()

    def action_sort_menu(self) -> None:
        pane = self.processes

        def chosen(column: str | None) -> None:
            if column is not None:
                pane.sort_by(column)

        self.push_screen(SortMenu(COLUMNS, pane.sort_column, pane.sort_reverse), chosen)

    def action_sort_step(self, step: int) -> None:
        self.processes.step_sort(step)

    def action_sort_invert(self) -> None:
        self.processes.invert_sort()

    def action_exited(self) -> None:
        self.processes.toggle_exited()

    def action_tree(self) -> None:
        self.processes.toggle_tree()

    def action_command(self) -> None:
        if isinstance(self.screen, ProcessScreen):
            self.pop_screen()
        self.command_line.open()

    def action_close(self) -> None:
        if isinstance(self.screen, ProcessScreen):
            self.pop_screen()
            return
        console = self.command_line
        if not console.has_class("hidden"):
            console.close()
            self.processes.table.focus()
            return
        self.processes.close_filter(keep=False)

    def action_next_theme(self) -> None:
        names = themes.names()
        current = names.index(self.theme) if self.theme in names else -1
        self.set_theme(names[(current + 1) % len(names)])

    def set_theme(self, name: str) -> None:
        self.theme = name
        self.settings.remember_theme(name)
        self.notify(f"theme: {name}", timeout=2)
        self.refresh_now(force=True)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """While a permission question is open, the monitor's own keys do nothing: every key is the
        question's (moving between its buttons aside)."""
        if isinstance(self.screen, PermissionModal) and action not in ("focus_next", "focus_previous"):
            return False
        if isinstance(self.screen, ModalScreen) and action not in ("focus_next", "focus_previous"):
            return False  # a dialog's keys are its own: `k` in the sort menu terminates nothing
        if isinstance(self.screen, ProcessScreen) and action in TABLE_ACTIONS:
            return False  # the table's keys, not shown over one process
        return True

    def key_help(self) -> list[tuple[str, str, str]]:
        """(binding id, keys, what it does) for every key, the user's keymap applied."""
        out = []
        for binding in self.BINDINGS:
            assert isinstance(binding, Binding) and binding.id is not None
            keys = self._keymap.get(binding.id, binding.key)
            shown = ", ".join(KEY_NAMES.get(k.strip(), k.strip()) for k in keys.split(","))
            out.append((binding.id, shown, self.DESCRIPTIONS.get(binding.id, binding.description)))
        return out

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.key_help()))


def make_monitor(
    kernel: Kernel | None = None,
    *,
    boot: Callable[[], Awaitable[Kernel]] | None = None,
    home: Path | None = None,
    theme: str | None = None,
    probe: Probe | None = None,
    clock: Callable[[], float] = time.time,
) -> MonitorApp:
    """Build the monitor over a running `kernel` (or one `boot()` makes, which the app then owns).

    Settings (theme, keymap) come from `home` (default: the kernel's AIOS_HOME); `theme` overrides
    and is remembered. Raises KeyError for an unknown theme.
    """
    if theme is not None:
        themes.load(theme)
    if home is None and kernel is not None:
        home = Path(kernel.config.home)
    settings = MonitorSettings.load(home)
    return MonitorApp(kernel, boot=boot, settings=settings, theme=theme, probe=probe, clock=clock)
