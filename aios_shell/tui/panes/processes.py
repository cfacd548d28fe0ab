"""The process table: htop's columns, sort by any column, `/` filter, tree view by parent.

Under load (500 processes, hundreds of events a second) most rows do not change between two refreshes.
`CachedRowTable` is a DataTable whose rows can be replaced in place so that only those rows are drawn
again: DataTable's own `update_cell` bumps the one counter every render cache is keyed on, so a single
changed cell re-renders every visible row (and `clear()` + `add_row` re-measures all 500).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.strip import Strip
from textual.widgets import DataTable, Input
from textual.widgets.data_table import CellType, RowDoesNotExist, RowKey

from aios_shell.tui import view
from aios_shell.tui.view import COLUMNS, NUMERIC, WIDTHS, Row
from kernel.api import Event

REBUILD_OVER = 64  # rows coming or going in one refresh beyond which the table is simply rebuilt
_CACHES = ("_data", "_row_locations", "_row_render_cache", "_cell_render_cache", "_row_renderable_cache",
           "_line_cache")


class CachedRowTable(DataTable):
    """A DataTable that replaces rows in place and repaints only the lines of the rows that changed.

    `update_rows` writes the new cells, drops what the table cached for those rows only, and refreshes
    their lines; the render caches of every other row stay valid. Counters for tests and the bench:
    `rows_updated` (rows replaced in place) and `lines_painted` (body lines drawn).
    """

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.rows_updated = 0
        self.lines_painted = 0
        # relies on DataTable's caches; a Textual without them gets update_cell (correct, only slower)
        self._in_place = all(hasattr(self, name) for name in _CACHES)

    def update_rows(self, changes: Mapping[str, Sequence[CellType]]) -> None:
        """Replace the cells of the rows keyed in `changes` (all columns, in column order); only the cells
        that differ are rendered again, and only the lines of rows that differ are repainted."""
        columns = [column.key for column in self.ordered_columns]
        stale_cells: set[tuple[RowKey, Any]] = set()
        stale_rows: set[RowKey] = set()
        for key, cells in changes.items():
            row_key = RowKey(key)
            data = self._data.get(row_key)
            if data is None:
                raise RowDoesNotExist(f"no row {key!r}")
            for column, cell in zip(columns, cells, strict=False):
                if not same(data.get(column), cell):
                    stale_cells.add((row_key, column))
                    stale_rows.add(row_key)
                    if self._in_place:
                        data[column] = cell
                    else:
                        self.update_cell(row_key, column, cell)
        self.rows_updated += len(stale_rows)
        if not stale_rows or not self._in_place:
            return
        indexes = {self._row_locations.get(key) for key in stale_rows}
        top = self.header_height if self.show_header else 0
        lines = {top + index for index in indexes}  # every row is one line high
        for cache, keys in ((self._cell_render_cache, [k for k in self._cell_render_cache.keys()
                                                       if (k[0], k[1]) in stale_cells]),
                            (self._row_render_cache, [k for k in self._row_render_cache.keys() if k[0] in stale_rows]),
                            (self._row_renderable_cache, [k for k in self._row_renderable_cache.keys()
                                                          if k[1] in indexes]),
                            (self._line_cache, [k for k in self._line_cache.keys() if k[0] in lines])):
            for cache_key in keys:
                cache.discard(cache_key)
        for index in indexes:
            self.refresh_row(index)

    def render_line(self, y: int) -> Strip:
        if y >= (self.header_height if self.show_header else 0):
            self.lines_painted += 1
        return super().render_line(y)


def same(a: object, b: object) -> bool:
    """Whether two cells draw the same (rich's Text equality ignores the style of the whole text)."""
    if isinstance(a, Text) and isinstance(b, Text):
        return (a.plain == b.plain and a.style == b.style and a.justify == b.justify and a.spans == b.spans
                and a.overflow == b.overflow and a.no_wrap == b.no_wrap)
    return a == b


class ProcessTable(CachedRowTable):
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
        self.hide_exited = True  # live processes only, as htop; `e` shows the exited ones too
        self.hidden = 0  # exited processes left out of the table
        self.columns: tuple[str, ...] = COLUMNS  # those that fit the pane's width (view.columns_for)
        self.rebuilds = 0  # times the table was cleared and filled again
        self._order: list[int] = []  # pids in the table's order
        self._shown: dict[int, tuple[Row, int]] = {}  # pid → (row, depth) as in the table
        self._rows: dict[int, tuple[tuple[Any, ...], Row]] = {}  # pid → (what the row was made from, row)
        self._window: tuple[int, str] | None = None  # the rows cache is for this window and viewer
        self._styles_for: str = ""
        self._subtitle = ""

    def compose(self) -> ComposeResult:
        table = ProcessTable(cursor_type="row", zebra_stripes=False, id="proc-table")
        self._add_columns(table)
        yield table
        yield Input(placeholder="filter: pid, user, state or command — Enter keeps it, Esc clears",
                    id="proc-filter", classes="hidden")

    def _add_columns(self, table: DataTable) -> None:
        for name in self.columns:
            table.add_column(Text(name, justify="right" if name in NUMERIC else "left"), key=name,
                             width=WIDTHS[name])

    @property
    def table(self) -> ProcessTable:
        return self.query_one(ProcessTable)

    def _scheduler_title(self, kernel: Any) -> None:
        """Where the scheduler's pane gives way to the table (a narrow screen), its summary is in the title."""
        compact = self.screen.has_class("-compact") and kernel is not None
        title = f"processes · {view.summary(kernel)}" if compact else "processes"
        if title != self.border_title:
            self.border_title = title

    def on_resize(self) -> None:
        """Keep CMD at any width: drop the lesser columns first (a scrollbar's room left aside)."""
        self._scheduler_title(getattr(self.app, "kernel", None))
        columns = view.columns_for(self.size.width - 2 - 2)
        if columns == self.columns:
            return
        self.columns = columns
        table = self.table
        table.clear(columns=True)
        self._add_columns(table)
        self._rebuild(self._shown)

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

    def step_sort(self, step: int) -> None:
        """Sort by the column `step` places to the right (left when negative)."""
        i = COLUMNS.index(self.sort_column)
        self.sort_column = COLUMNS[(i + step) % len(COLUMNS)]
        self.update_view(force=True)

    def invert_sort(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self.update_view(force=True)

    def toggle_exited(self) -> None:
        self.hide_exited = not self.hide_exited
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
        if self.hidden:
            parts.append(f"{self.hidden} exited hidden (e)")
        subtitle = " · ".join(parts)
        if subtitle != self._subtitle:  # setting it repaints the whole pane, even to the same text
            self.border_subtitle = self._subtitle = subtitle

    # -- rows ---------------------------------------------------------------------------------
    def rows(self, kernel: Any) -> list[Row]:
        """A Row per process, made again only for processes whose numbers changed since the last refresh."""
        window = view.window(kernel)
        if (window, kernel.user) != self._window:  # (`su` in the console changes whose view it is)
            self._rows.clear()
            self._window = (window, kernel.user)
        cmdline = view.api(kernel).cmdlines()
        out: list[Row] = []
        seen: dict[int, tuple[tuple[Any, ...], Row]] = {}
        for proc in kernel.procs:
            used = proc.usage()
            made_from = (proc.state, proc.waiting_on, proc.exit_code, proc.term_signal, proc.lost, proc.nice,
                         used.ctx_tokens, used.prompt_tokens, used.completion_tokens, round(used.llm_time, 2))
            cached = self._rows.get(proc.pid)
            if cached is None or cached[0] != made_from:
                cached = (made_from, view.row(proc, window, used, cmd=cmdline(proc)))
            seen[proc.pid] = cached
            out.append(cached[1])
        self._rows = seen  # forgotten processes leave the cache
        return out

    def _matches(self, r: Row) -> bool:
        if self.hide_exited and not r.alive:
            return False
        if not self.filter_text:
            return True
        needle = self.filter_text.lower()
        return any(needle in cell.lower() for cell in (r.cells[0], r.cells[1], r.cells[4], r.cells[8]))

    def _ordered(self, rows: list[Row]) -> list[tuple[Row, int]]:
        col = COLUMNS.index(self.sort_column)
        if col == 0 and not self.sort_reverse:
            ordered = rows  # the kernel lists its processes by pid already
        else:
            ordered = sorted(rows, key=lambda r: (r.keys[col], r.pid), reverse=self.sort_reverse)
        ordered = [r for r in ordered if r.alive] + [r for r in ordered if not r.alive]  # live ones first
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
            if name not in self.columns:
                continue
            if name == "CMD" and depth:
                cell = "  " * (depth - 1) + "└─ " + cell
            text = Text(cell, style=state_style if name == "STATE" else ("dim" if not r.alive else ""),
                        justify="right" if name in NUMERIC else "left", no_wrap=True)
            out.append(text)
        return out

    # -- refresh ----------------------------------------------------------------------------
    def update_view(self, events: list[Event] | None = None, force: bool = False) -> None:
        """Redraw from the process table: rows that changed are replaced in place, new ones added, gone
        ones removed, and the rows reordered only when the order changed."""
        kernel = getattr(self.app, "kernel", None)
        if kernel is None:
            return
        theme_name = self.app.theme
        force = force or theme_name != self._styles_for
        self._styles_for = theme_name
        rows = self.rows(kernel)
        matching = [r for r in rows if self._matches(r)]
        self.hidden = sum(1 for r in rows if not r.alive) if self.hide_exited else 0
        self._title()
        self._scheduler_title(kernel)
        wanted = {r.pid: (r, depth) for r, depth in self._ordered(matching)}
        shown = self._shown
        gone = [pid for pid in shown if pid not in wanted]
        new = [pid for pid in wanted if pid not in shown]
        if force or len(gone) + len(new) > REBUILD_OVER:
            self._rebuild(wanted)
            return
        table = self.table
        selected = self.selected_pid()
        for pid in gone:
            table.remove_row(str(pid))
            del shown[pid]
        self._order = [pid for pid in self._order if pid in wanted]
        for pid in new:
            table.add_row(*self._styled(*wanted[pid]), key=str(pid))
            self._order.append(pid)
        # an unchanged process keeps its Row object (see `rows`): `is` finds the rows to redraw
        changed = {str(pid): self._styled(*now) for pid, now in wanted.items()
                   if pid in shown and (shown[pid][0] is not now[0] or shown[pid][1] != now[1])}
        table.update_rows(changed)
        self._shown = wanted
        order = list(wanted)
        if order != self._order:
            position = {str(pid): i for i, pid in enumerate(order)}
            table.sort("PID", key=lambda pid_cell: position[str(pid_cell)])
            self._order = order
        if selected is not None and selected in wanted and self.selected_pid() != selected:
            self.select(selected)

    def _rebuild(self, wanted: dict[int, tuple[Row, int]]) -> None:
        selected = self.selected_pid()
        table = self.table
        table.clear()
        for pid, (row, depth) in wanted.items():
            table.add_row(*self._styled(row, depth), key=str(pid))
        self._order = list(wanted)
        self._shown = wanted
        self.rebuilds += 1
        if selected is not None and selected in wanted:
            self.select(selected)
