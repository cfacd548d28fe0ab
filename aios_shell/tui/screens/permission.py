"""The permission modal: a tool call waits for allow once / for session / always / deny.

It shows who asks (user, pid, program), the tool and its arguments (sanitized), and counts down to
the request's deadline; at zero it answers deny, as the broker would.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from aios_shell.tui.view import clean
from kernel.events import PermissionRequested

ANSWERS = (("once", "Allow once", "o"), ("session", "For session", "s"), ("always", "Always", "a"),
           ("deny", "Deny", "d"))


class PermissionModal(ModalScreen[str]):
    """Dismisses with `once`, `session`, `always` or `deny`."""

    BINDINGS = [
        Binding("o", "answer('once')", "allow once", id="permission.once"),
        Binding("s", "answer('session')", "for session", id="permission.session"),
        Binding("a", "answer('always')", "always", id="permission.always"),
        Binding("d,escape", "answer('deny')", "deny", id="permission.deny"),
    ]

    def __init__(self, request: PermissionRequested) -> None:
        super().__init__(classes="modal")
        self.request = request
        self._answered = False

    def remaining(self) -> float:
        return max(0.0, self.request.deadline - self.app.clock())

    def compose(self) -> ComposeResult:
        r = self.request
        facts = Table.grid(padding=(0, 2))
        facts.add_column(style="dim", no_wrap=True)
        facts.add_column(overflow="fold")
        facts.add_row("user", clean(r.user, 40))
        facts.add_row("process", f"{r.pid} ({clean(r.program, 40)})")
        facts.add_row("tool", Text(clean(r.tool, 60), style="bold"))
        for key, value in r.args.items():
            facts.add_row(f"  {clean(key, 20)}", clean(value, 300))
        with Vertical(id="permission-box", classes="dialog"):
            yield Static(Text("Permission requested", style="bold"), id="permission-title")
            yield Static(facts, id="permission-facts")
            yield Static(id="permission-countdown")
            with Horizontal(classes="buttons"):
                for decision, label, key in ANSWERS:
                    variant = "error" if decision == "deny" else "primary" if decision == "once" else "default"
                    yield Button(f"{label} ({key})", id=f"answer-{decision}", variant=variant)

    def on_mount(self) -> None:
        self.tick()
        self.set_interval(1.0, self.tick)
        self.query_one("#answer-deny", Button).focus()

    def tick(self) -> None:
        left = self.remaining()
        self.query_one("#permission-countdown", Static).update(
            Text.assemble(("denied in ", "dim"), (f"{left:.0f}s", "bold"), (" without an answer", "dim")))
        if left <= 0:
            self.action_answer("deny")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_answer(str(event.button.id).removeprefix("answer-"))

    def action_answer(self, decision: str) -> None:
        """Answer once; later answers (a second key, the countdown) are ignored."""
        if self._answered or not self.is_current:
            return
        self._answered = True
        self.dismiss(decision)
