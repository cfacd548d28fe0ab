"""`?`: every key of the monitor with its binding id (what a keymap in config.toml overrides)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from aios_shell.tui.settings import CONFIG_FILE, STATE_FILE


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "close", id="help.close")]

    def __init__(self, keys: list[tuple[str, str, str]]) -> None:
        """`keys`: (binding id, keys as shown, what it does)."""
        super().__init__(classes="modal")
        self.keys = keys

    def compose(self) -> ComposeResult:
        table = Table(box=None, padding=(0, 2), show_edge=False, header_style="bold")
        table.add_column("KEY", no_wrap=True)
        table.add_column("ID", style="dim", no_wrap=True)
        table.add_column("WHAT IT DOES")
        for binding_id, keys, description in self.keys:
            table.add_row(Text(keys, style="bold"), binding_id, description)
        note = Text.assemble(
            ("Keys act on the selected process (on its screen, on that process). ", ""),
            (f"Rebind with [monitor.keymap] in $AIOS_HOME/{CONFIG_FILE}, e.g. term = \"x\"; ", "dim"),
            (f"the theme chosen with t is remembered in $AIOS_HOME/{STATE_FILE}.", "dim"),
        )
        with VerticalScroll(id="help-box", classes="dialog"):
            yield Static(Text("aios top — keys", style="bold"))
            yield Static(table)
            yield Static(note, id="help-note")

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(None)
