"""One process (Enter on a row): its conversation with the model, streaming live, and its syscalls."""

from __future__ import annotations

import re
import time
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Log, Static

from aios_shell.tui import view
from kernel.api import (
    Event,
    KernelError,
    MessageLogged,
    NoSuchProcess,
    ProcessExited,
    SyscallDispatched,
    SyscallDone,
    SyscallPreempted,
    SyscallQueued,
    TokenGenerated,
)

SYSCALL_EVENTS = (SyscallQueued, SyscallDispatched, SyscallPreempted, SyscallDone)
KEEP_CHARS = 1_000_000  # text kept to wrap again when the pane is resized


class WrappedLog(Log):
    """Textual's Log, with long lines wrapped at the pane's width (at a word where there is one), and wrapped
    again when the pane is resized; tokens streamed into a line keep being wrapped as they come."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._text: list[str] = []  # everything written, to wrap anew at another width
        self._kept = 0
        self._column = 0  # where the last line ends
        self._width = 0  # the width the lines were wrapped at

    def _wrap_width(self) -> int:
        return max(20, self.scrollable_content_region.width - 1)

    def write(self, data: str, scroll_end: bool | None = None) -> Log:
        self._text.append(data)
        self._kept += len(data)
        while self._kept > KEEP_CHARS and len(self._text) > 1:
            self._kept -= len(self._text.pop(0))
        self._width = self._width or self._wrap_width()
        return super().write(self._wrap(data, self._width), scroll_end)

    def _wrap(self, data: str, width: int) -> str:
        out: list[str] = []
        for piece in re.split(r"(\n|\s+)", data):
            if not piece:
                continue
            if piece == "\n":
                out.append(piece)
                self._column = 0
                continue
            if self._column and self._column + len(piece) > width:
                out.append("\n")
                self._column = 0
                if piece.isspace():
                    continue  # a break replaces the blank it falls on
            while len(piece) > width:  # a word longer than the line: cut it
                out.append(piece[:width] + "\n")
                piece = piece[width:]
            out.append(piece)
            self._column += len(piece)
        return "".join(out)

    def on_resize(self) -> None:
        width = self._wrap_width()
        if not self._text or width == self._width:
            return
        text, self._width, self._column = "".join(self._text), width, 0
        super().clear()
        super().write(self._wrap(text, width))

    def clear(self) -> Log:
        self._text, self._kept, self._column = [], 0, 0
        return super().clear()


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
        self._hidden = False  # another user's process: its conversation and calls are not the viewer's to read

    def compose(self) -> ComposeResult:
        yield Static(id="process-head")
        with Horizontal(id="process-body"):
            conversation = WrappedLog(max_lines=5000, id="conversation", auto_scroll=True)
            conversation.border_title = "conversation"
            yield conversation
            calls = DataTable(cursor_type="none", id="syscalls")
            calls.border_title = "syscalls"
            yield calls
        yield Footer(compact=True)

    @property
    def log_widget(self) -> Log:
        return self.query_one("#conversation", Log)

    def on_mount(self) -> None:
        kernel = self.app.kernel
        table = self.query_one("#syscalls", DataTable)
        for name in ("SID", "CALL", "STATE", "TOK", "WAIT", "RUN"):
            table.add_column(name, key=name)
        api = view.api(kernel)
        try:
            messages, stored = api.transcript(self.pid), api.events(self.pid, types=SYSCALL_EVENTS)
        except KernelError as exc:  # another user's process: what it said and did is theirs (and admins')
            messages, stored = [], []
            self._hidden = True
            self.log_widget.write(view.clean_block(f"({exc})") + "\n")
        for m in messages:
            self._message(m.role, m.content)
            self._last_message_ts = max(self._last_message_ts, m.ts)
        proc = kernel.procs.get(self.pid)
        for call in list(proc.inflight) if proc is not None and not self._hidden else []:  # running, queued, …
            if call.raw:
                self._header("assistant (streaming)")
                self.log_widget.write(view.clean_block(call.raw))
                self._streaming = call.sid
        for event in stored:
            self._syscall(event.kind, event.to_dict())
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
        log.write(f"── {role} " + "─" * 12 + "\n")

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

    def _live_calls(self, proc: Any) -> None:
        """The TOK of calls in flight, counted as the header counts them (Process.usage)."""
        table = self.query_one("#syscalls", DataTable)
        for call in list(proc.inflight):
            row = self._syscalls.get(call.sid)
            if row is None or row[3] == (tokens := f"{call.prompt_so_far}/{call.chunks}"):
                continue
            row[3] = tokens
            if str(call.sid) in table.rows:
                table.update_cell(str(call.sid), "TOK", tokens)

    def _head(self) -> None:
        try:
            proc = self.app.kernel.lookup(self.pid)
        except NoSuchProcess:
            self.query_one("#process-head", Static).update(f"pid {self.pid}: no such process")
            return
        r = view.row(proc, view.window(self.app.kernel), cmd=view.api(self.app.kernel).cmdlines()(proc))
        self._live_calls(proc)
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
            if self._hidden and not isinstance(event, ProcessExited):
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
