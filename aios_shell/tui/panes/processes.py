"""The process table: htop's columns, sort by any column, `/` filter, tree view by parent."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Input

from aios_shell.tui import view
from aios_shell.tui.view import COLUMNS, NUMERIC, WIDTHS, Row
from kernel.events import Event


class ProcessTable(DataTable):
    """The table itself; Enter opens the process screen."""


class ProcessPane(Vertical):
    """Rows for every process of this boot; the selected one is what the keys act on."""

    @dataclass
    class Opened(Message):
        """Enter on a row: open the process screen for `pid`."""

        pid: int

    def __init__(self, *, id: str | None = "processes") -> None:
        super().__init__(id=id)
        self.border_title = "processes"
        self.sort_column = "PID"
        self.sort_reverse = False
        self.tree_view = False
        self.filter_text = ""
        self.hide_exited = False
        self._order: list[int] = []
        self._cells: dict[int, tuple[str, ...]] = {}
        self._styles_for: str = ""

    def compose(self) -> ComposeResult:
        table = ProcessTable(cursor_type="row", zebra_stripes=False, id="proc-table")
        for name in COLUMNS:
            table.add_column(Text(name, justify="right" if name in NUMERIC else "left"), key=name,
                             width=WIDTHS[name])
        yield table
        yield Input(placeholder="filter: pid, user, state or command — Enter keeps it, Esc clears",
                    id="proc-filter", classes="hidden")

    @property
    def table(self) -> ProcessTable:
        return self.query_one(ProcessTable)

    # -- what the keys act on -------------------------------------------------------------
    def selected_pid(self) -> int | None:
        table = self.table
        if not table.row_count:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        except Exception:
            return None
        return int(key.value) if key.value is not None else None

    def select(self, pid: int) -> None:
        try:
            self.table.move_cursor(row=self.table.get_row_index(str(pid)))
        except Exception:
            pass

    # -- sorting, filtering, tree ------------------------------------------------------------
    def sort_by(self, column: str) -> None:
        """Sort by `column`; the same column again reverses the order."""
        if column == self.sort_column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column, self.sort_reverse = column, column in ("%CTX", "TOKENS", "TIME")
        self.update_view(force=True)

    def next_sort(self) -> None:
        i = COLUMNS.index(self.sort_column)
        self.sort_column = COLUMNS[(i + 1) % len(COLUMNS)]
        self.update_view(force=True)

    def toggle_tree(self) -> None:
        self.tree_view = not self.tree_view
        self.update_view(force=True)

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        self._title()
        self.update_view(force=True)

    def open_filter(self) -> None:
        box = self.query_one("#proc-filter", Input)
        box.value = self.filter_text
        box.remove_class("hidden")
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "proc-filter":
            self.set_filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "proc-filter":
            event.stop()
            self.close_filter(keep=True)

    def close_filter(self, keep: bool) -> None:
        box = self.query_one("#proc-filter", Input)
        if not keep:
            box.value = ""
            self.set_filter("")
        box.add_class("hidden")
        self.table.focus()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.sort_by(str(event.column_key.value))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(self.Opened(int(event.row_key.value)))

    def _title(self) -> None:
        arrow = "▼" if self.sort_reverse else "▲"
        parts = [f"sort {self.sort_column}{arrow}"]
        if self.tree_view:
            parts.append("tree")
        if self.filter_text:
            parts.append(f"filter “{view.clean(self.filter_text, 30)}”")
        self.border_subtitle = " · ".join(parts)

    # -- refresh ----------------------------------------------------------------------------
    def _matches(self, r: Row) -> bool:
        if self.hide_exited and not r.alive:
            return False
        if not self.filter_text:
            return True
        needle = self.filter_text.lower()
        return any(needle in cell.lower() for cell in (r.cells[0], r.cells[1], r.cells[4], r.cells[8]))

    def _ordered(self, rows: list[Row]) -> list[tuple[Row, int]]:
        col = COLUMNS.index(self.sort_column)
        ordered = sorted(rows, key=lambda r: (r.keys[col], r.pid), reverse=self.sort_reverse)
        if not self.tree_view:
            return [(r, 0) for r in ordered]
        pids = {r.pid for r in ordered}
        children: dict[int, list[Row]] = {}
        for r in ordered:
            children.setdefault(r.ppid if r.ppid in pids else 0, []).append(r)
        out: list[tuple[Row, int]] = []

        def walk(parent: int, depth: int) -> None:
            for child in children.get(parent, []):
                if child.pid == parent:
                    continue
                out.append((child, depth))
                walk(child.pid, depth + 1)

        walk(0, 0)
        return out

    def _styled(self, r: Row, depth: int) -> list[Text]:
        theme = self.app.current_theme
        state_style = {
            "RUNNING": f"bold {theme.success}", "READY": str(theme.warning), "WAITING": str(theme.primary),
            "STOPPED": f"bold {theme.error}", "NEW": str(theme.secondary), "EXITED": "dim",
        }.get(r.state, "")
        out = []
        for name, cell in zip(COLUMNS, r.cells, strict=True):
            if name == "CMD" and depth:
                cell = "  " * (depth - 1) + "└─ " + cell
            text = Text(cell, style=state_style if name == "STATE" else ("dim" if not r.alive else ""),
                        justify="right" if name in NUMERIC else "left", no_wrap=True)
            out.append(text)
        return out

    def update_view(self, events: list[Event] | None = None, force: bool = False) -> None:
        """Redraw from the process table; only changed cells are touched unless the order changed."""
        kernel = getattr(self.app, "kernel", None)
        if kernel is None:
            return
        self._title()
        theme_name = self.app.theme
        force = force or theme_name != self._styles_for
        self._styles_for = theme_name
        ordered = self._ordered([r for r in view.rows(kernel) if self._matches(r)])
        order = [r.pid for r, _ in ordered]
        table = self.table
        if force or order != self._order:
            selected = self.selected_pid()
            table.clear()
            for r, depth in ordered:
                table.add_row(*self._styled(r, depth), key=str(r.pid))
            self._order = order
            self._cells = {r.pid: r.cells for r, _ in ordered}
            if selected is not None and selected in self._cells:
                self.select(selected)
            return
        for r, depth in ordered:
            if self._cells.get(r.pid) == r.cells:
                continue
            old = self._cells.get(r.pid, ())
            styled = self._styled(r, depth)
            restyle = not old or old[4] != r.cells[4]
            for i, name in enumerate(COLUMNS):
                if restyle or old[i] != r.cells[i]:
                    table.update_cell(str(r.pid), name, styled[i])
            self._cells[r.pid] = r.cells
