"""One process (Enter on a row): its conversation with the model, streaming live, and its syscalls."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Log, Static

from aios_shell.tui import view
from kernel.errors import NoSuchProcess
from kernel.events import (
    Event,
    MessageLogged,
    ProcessExited,
    SyscallDispatched,
    SyscallDone,
    SyscallPreempted,
    SyscallQueued,
    TokenGenerated,
)

SYSCALL_EVENTS = (SyscallQueued, SyscallDispatched, SyscallPreempted, SyscallDone)


class ProcessScreen(Screen[None]):
    """The keys of the main screen (k, K, s, +, -) act on this process here."""

    BINDINGS = [Binding("escape,backspace", "app.pop_screen", "back", id="process.back")]

    def __init__(self, pid: int) -> None:
        super().__init__()
        self.pid = pid
        self._streaming: int | None = None  # sid whose tokens are being appended
        self._opened_at = time.time()
        self._last_message_ts = 0.0
        self._syscalls: dict[int, list[str]] = {}

    def compose(self) -> ComposeResult:
        yield Static(id="process-head")
        with Horizontal(id="process-body"):
            conversation = Log(max_lines=5000, id="conversation", auto_scroll=True)
            conversation.border_title = "conversation"
            yield conversation
            calls = DataTable(cursor_type="none", id="syscalls")
            calls.border_title = "syscalls"
            yield calls
        yield Footer()

    @property
    def log_widget(self) -> Log:
        return self.query_one("#conversation", Log)

    def on_mount(self) -> None:
        kernel = self.app.kernel
        table = self.query_one("#syscalls", DataTable)
        for name in ("SID", "CALL", "STATE", "TOK", "WAIT", "RUN"):
            table.add_column(name, key=name)
        for row in kernel.storage.messages(self.pid):
            self._message(str(row["role"]), str(row["content"]))
            self._last_message_ts = max(self._last_message_ts, float(row.get("ts") or 0))
        for call in list(kernel.dispatcher.running.values()) + list(kernel.dispatcher.queue()):
            if call.pid == self.pid and call.raw:
                self._header("assistant (streaming)")
                self.log_widget.write(view.clean_block(call.raw))
                self._streaming = call.sid
        for stored in kernel.storage.events(self.pid, types=tuple(e.__name__ for e in SYSCALL_EVENTS)):
            self._syscall(stored["type"], stored["data"])
        proc = kernel.procs.get(self.pid)
        if proc is None or not proc.alive:
            self._settle_calls()
        self._draw_syscalls()
        self._head()
        self.app.add_view(self)

    def on_unmount(self) -> None:
        self.app.remove_view(self)

    def _header(self, role: str) -> None:
        log = self.log_widget
        if log.lines and log.lines[-1] != "":
            log.write("\n")
        log.write(f"── {role} " + "─" * 20 + "\n")

    def _message(self, role: str, content: str) -> None:
        self._header(role)
        self.log_widget.write(view.clean_block(content).rstrip("\n") + "\n")

    def _syscall(self, kind: str, data: dict) -> None:
        sid = int(data.get("sid", 0))
        row = self._syscalls.setdefault(sid, [str(sid), str(data.get("call", "llm")), "queued", "", "", ""])
        if kind == "SyscallDispatched":
            row[2] = f"slot P{data.get('slot', 0)}"
        elif kind == "SyscallPreempted":
            row[2], row[3] = f"preempted ({view.clean(data.get('reason', ''), 20)})", str(data.get("partial_tokens"))
        elif kind == "SyscallDone":
            row[1] = str(data.get("call", row[1]))
            row[2] = "done" if data.get("ok") else f"error: {view.clean(data.get('error') or '', 40)}"
            row[3] = f"{data.get('prompt_tokens', 0)}/{data.get('completion_tokens', 0)}"
            row[4], row[5] = f"{float(data.get('wait_s', 0)):.2f}s", f"{float(data.get('service_s', 0)):.2f}s"

    def _settle_calls(self) -> None:
        """The process is gone: a call that never finished was cancelled with it."""
        for row in self._syscalls.values():
            if row[2] != "done" and not row[2].startswith("error"):
                row[2] = "cancelled"

    def _draw_syscalls(self) -> None:
        table = self.query_one("#syscalls", DataTable)
        table.clear()
        for sid in sorted(self._syscalls, reverse=True)[:200]:
            table.add_row(*self._syscalls[sid], key=str(sid))

    def _head(self) -> None:
        try:
            proc = self.app.kernel.lookup(self.pid)
        except NoSuchProcess:
            self.query_one("#process-head", Static).update(f"pid {self.pid}: no such process")
            return
        r = view.row(proc, view.window(self.app.kernel), view.live_tokens(self.app.kernel).get(self.pid, 0))
        head = Text.assemble(
            ("pid ", "dim"), (str(proc.pid), "bold"), ("  user ", "dim"), r.cells[1],
            ("  state ", "dim"), (r.cells[4], "bold"), ("  nice ", "dim"), r.cells[3],
            ("  tokens ", "dim"), r.cells[6], ("  ctx ", "dim"), f"{r.cells[5]}%",
            ("  switches ", "dim"), str(proc.ctx_switches), ("  time ", "dim"), r.cells[7],
            "\n", (r.cells[8], "bold"),
        )
        if proc.error:
            head.append(f"\nerror: {view.clean(proc.error)}", style="red")
        self.query_one("#process-head", Static).update(head)

    def update_view(self, events: list[Event] | None = None, force: bool = False) -> None:
        calls_changed = False
        for event in events or ():
            if getattr(event, "pid", None) != self.pid:
                continue
            if isinstance(event, TokenGenerated):
                if event.ts <= self._opened_at and self._streaming == event.sid:
                    continue  # already drawn from the call's partial output
                if self._streaming != event.sid:
                    self._header("assistant")
                    self._streaming = event.sid
                self.log_widget.write(view.clean_block(event.text))
            elif isinstance(event, MessageLogged):
                if event.ts <= self._last_message_ts:
                    continue
                if event.role == "assistant" and self._streaming is not None:
                    self.log_widget.write("\n")
                    self._streaming = None
                else:
                    self._message(event.role, event.content)
            elif isinstance(event, SYSCALL_EVENTS):
                self._syscall(event.kind, event.to_dict())
                calls_changed = True
            elif isinstance(event, ProcessExited):
                self._header(f"exited: {event.status}")
                self._settle_calls()
                calls_changed = True
        if calls_changed:
            self._draw_syscalls()
        self._head()
