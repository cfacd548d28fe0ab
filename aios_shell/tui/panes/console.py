"""The `:` command line: any shell command, run through the same registry as the REPL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Input, Log
from textual.worker import Worker, WorkerState

from kernel.api import Event, strip_controls

if TYPE_CHECKING:
    from aios_shell.shell import Shell


class LogFile:
    """A file-like object that writes into a Log widget (what the shell's consoles print to)."""

    def __init__(self, log: Log) -> None:
        self.log = log

    def write(self, text: str) -> int:
        self.log.write(strip_controls(text))
        return len(text)

    def flush(self) -> None:
        return None

    def isatty(self) -> bool:
        return False


class ConsolePane(Vertical):
    """Hidden until `:`; Enter runs the line, Esc hides it (its output stays for next time)."""

    def __init__(self, *, id: str | None = "console") -> None:
        super().__init__(id=id, classes="hidden")
        self.border_title = "command"
        self._shell: Shell | Any = None

    def compose(self) -> ComposeResult:
        yield Log(max_lines=1000, id="console-log")
        yield Input(placeholder="a shell command: ps, kill -STOP 3, run chat hello &, help …", id="console-input")

    @property
    def log_widget(self) -> Log:
        return self.query_one("#console-log", Log)

    def shell(self) -> Any:
        """The shell the command line runs in: the monitor's own, or the attached kernel's (`tui.remote`)."""
        attached = getattr(self.app.kernel, "remote_api", None) is not None
        if self._shell is None and attached:
            from aios_shell.tui.remote import RemoteShell

            self._shell = RemoteShell(self.app.kernel, LogFile(self.log_widget), max(60, self.size.width - 4))
        if self._shell is None:
            from aios_shell.shell import Shell

            width = max(60, self.size.width - 4)
            out = Console(file=LogFile(self.log_widget), width=width, no_color=True, highlight=False,
                          force_terminal=False, soft_wrap=False)
            err = Console(file=LogFile(self.log_widget), width=width, no_color=True, highlight=False,
                          force_terminal=False, soft_wrap=True)
            self._shell = Shell(self.app.kernel, out=out, err=err, interactive=False)
            self._shell.monitor = self.app
        return self._shell

    def open(self) -> None:
        self.remove_class("hidden")
        self.query_one("#console-input", Input).focus()

    def close(self) -> None:
        self.add_class("hidden")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        line = event.value.strip()
        event.input.value = ""
        if not line:
            return
        self.log_widget.write(f"$ {strip_controls(line)}\n")
        self.run_line(line)

    def run_line(self, line: str) -> None:
        """Run in a worker so a foreground `run` streams while the monitor stays live."""
        self.run_worker(self._run(line), group="command", exit_on_error=False)

    async def _run(self, line: str) -> int:
        status = await self.shell().run_line(line)
        if status:
            self.log_widget.write(f"[exit {status}]\n")
        self.app.refresh_now()
        return status

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR and event.worker.group == "command":
            error = event.worker.error
            self.log_widget.write(f"internal error: {type(error).__name__}: {strip_controls(str(error))}\n")

    def update_view(self, events: list[Event] | None = None, force: bool = False) -> None:
        return None
