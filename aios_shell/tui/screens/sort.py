"""`o`: htop's sort menu — the columns, the current one marked; Enter sorts by the one chosen (the current one
again reverses the order), Esc leaves it as it was."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option


class SortMenu(ModalScreen[str | None]):
    """Dismisses with the chosen column, or None."""

    BINDINGS = [Binding("escape,q,o", "dismiss_menu", "close", id="sort.close")]

    def __init__(self, columns: tuple[str, ...], current: str, reverse: bool) -> None:
        super().__init__(classes="modal")
        self.columns, self.current, self.reverse = columns, current, reverse

    def compose(self) -> ComposeResult:
        arrow = "▼" if self.reverse else "▲"
        options = [Option(f"{name} {arrow}" if name == self.current else name, id=name) for name in self.columns]
        with Vertical(id="sort-box", classes="dialog"):
            yield Static("Sort by (Enter; the current column again reverses; < > step, I inverts)")
            yield OptionList(*options, id="sort-options")

    def on_mount(self) -> None:
        found = self.query(OptionList)
        if not found:  # closed again before it was shown (keys typed fast: `o` twice)
            return
        menu = found.first()
        menu.highlighted = self.columns.index(self.current) if self.current in self.columns else 0
        menu.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def action_dismiss_menu(self) -> None:
        self.dismiss(None)
