"""The permission modal: a tool call waits for allow once / for session / always / deny.

It shows who asks (user, pid, program), the tool, where it would run, every argument in full (the facts
scroll), and the rule `session`/`always` would save, and counts down to the request's deadline; at zero it
answers deny, as the broker would. The keys are the shell's: y once, s session, a always, n deny; Enter
presses the focused button (Deny, at first). The dialog comes by itself, so it never takes keys meant for
the screen below: in its first moments (the shell's GRACE) no key answers, Esc does not answer, and while
it is open the monitor's own keys do nothing (see MonitorApp.check_action).
"""

from __future__ import annotations

import time

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from aios_shell import asker
from aios_shell.tui.view import clean
from kernel.api import PermissionRequested, strip_controls

ANSWERS = (("once", "Allow once", "y"), ("session", "For session", "s"), ("always", "Always", "a"),
           ("deny", "Deny", "n"))


class PermissionModal(ModalScreen[str]):
    """Dismisses with `once`, `session`, `always` or `deny`."""

    BINDINGS = [
        Binding("y", "answer('once')", "allow once", id="permission.once"),
        Binding("s", "answer('session')", "for session", id="permission.session"),
        Binding("a", "answer('always')", "always", id="permission.always"),
        Binding("n", "answer('deny')", "deny", id="permission.deny"),
        Binding("escape", "hold", show=False),  # closing something below must not answer this
        Binding("ctrl+c", "answer('deny')", show=False),  # as in the shell's question
    ]

    def __init__(self, request: PermissionRequested) -> None:
        super().__init__(classes="modal")
        self.request = request
        self._answered = False
        self._shown = time.monotonic()

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
        if r.workspace:
            facts.add_row("in", clean(r.workspace, 300))
        for key, value in r.args.items():  # in full, lines kept: the facts scroll
            facts.add_row(f"  {clean(key, 20)}", Text(strip_controls(str(value))))
        if r.rule:
            facts.add_row("saves", Text(clean(r.rule, 300), style="italic"))
        with Vertical(id="permission-box", classes="dialog"):
            yield Static(Text("Permission requested", style="bold"), id="permission-title")
            with VerticalScroll(id="permission-scroll"):
                yield Static(facts, id="permission-facts")
            yield Static(id="permission-countdown")
            with Horizontal(classes="buttons"):
                for decision, label, key in ANSWERS:
                    variant = "error" if decision == "deny" else "default"  # no answer drawn as the default
                    yield Button(f"{label} ({key})", id=f"answer-{decision}", variant=variant)

    def on_mount(self) -> None:
        self._shown = time.monotonic()
        self.tick()
        self.set_interval(1.0, self.tick)
        self.query_one("#answer-deny", Button).focus()

    def tick(self) -> None:
        left = self.remaining()
        self.query_one("#permission-countdown", Static).update(
            Text.assemble(("denied in ", "dim"), (f"{left:.0f}s", "bold"), (" without an answer · ", "dim"),
                          ("y", "bold"), (" once  ", "dim"), ("s", "bold"), (" session  ", "dim"),
                          ("a", "bold"), (" always  ", "dim"), ("n", "bold"), (" deny  ", "dim"),
                          ("Enter", "bold"), (" the focused button", "dim")))
        if left <= 0:
            self._answer("deny")

    def early(self) -> bool:
        """Whether the dialog has only just appeared: keys pressed now were meant for the screen below."""
        return time.monotonic() - self._shown < asker.GRACE

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if not self.early():
            self._answer(str(event.button.id).removeprefix("answer-"))

    def action_hold(self) -> None:
        """A key that does nothing while the question is open."""

    def action_answer(self, decision: str) -> None:
        if not self.early():
            self._answer(decision)

    def _answer(self, decision: str) -> None:
        """Answer once; later answers (a second key, the countdown) are ignored."""
        if self._answered or not self.is_current:
            return
        self._answered = True
        self.dismiss(decision)
