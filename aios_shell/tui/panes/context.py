"""Context gauges: how full each live process's context is (used / window tokens), its compactions,
its context switches and what resuming after them cost."""

from __future__ import annotations

from rich.text import Text

from aios_shell.tui import view
from aios_shell.tui.panes.processes import CachedRowTable
from kernel.api import Event

BAR = 10


def gauge(used: int, window: int, colours: tuple[str, str, str], width: int = BAR) -> Text:
    """A bar like `██████░░░░` coloured by how full it is (ok, nearly full, full)."""
    frac = min(1.0, used / window) if window else 0.0
    filled = round(frac * width)
    colour = colours[0] if frac < 0.7 else colours[1] if frac < 0.9 else colours[2]
    return Text.assemble(("█" * filled, colour), ("░" * (width - filled), "dim"), f" {100 * frac:3.0f}%")


COLUMNS = ("PID", "USED/WINDOW", "GAUGE", "CMP", "SW", "COST")


class ContextPane(CachedRowTable):
    def __init__(self, *, id: str | None = "context") -> None:
        super().__init__(cursor_type="none", zebra_stripes=False, id=id)
        self.border_title = "context"
        self._shown: dict[int, tuple[int, int, int, int, int]] = {}
        self._style_key: tuple[int, str] = (0, "")

    def on_mount(self) -> None:
        for name, width in zip(COLUMNS, (5, 11, BAR + 5, 3, 3, 6), strict=True):
            self.add_column(Text(name, justify="left" if name == "GAUGE" else "right"), key=name, width=width)

    def update_view(self, events: list[Event] | None = None, force: bool = False) -> None:
        """Rebuild when processes come or go; otherwise only the rows that changed are redrawn."""
        kernel = getattr(self.app, "kernel", None)
        if kernel is None:
            return
        window = view.window(kernel)
        data = {p.pid: (p.usage().ctx_tokens, p.ctx_window or window, p.compactions, p.ctx_switches,
                        round(1000 * p.switch_cost_s)) for p in kernel.procs if p.alive}
        theme = self.app.current_theme
        colours = (str(theme.success), str(theme.warning), str(theme.error))
        force = force or self._style_key != (window, self.app.theme)
        self._style_key = (window, self.app.theme)

        def cells(pid: int) -> list[Text]:
            used, size, compactions, switches, cost_ms = data[pid]
            return [Text(str(pid), justify="right"), Text(f"{used}/{size}", justify="right"),
                    gauge(used, size, colours), Text(str(compactions), justify="right"),
                    Text(str(switches), justify="right"), Text(f"{cost_ms}ms" if cost_ms else "-", justify="right")]

        if force or list(data) != list(self._shown):
            self.clear()
            for pid in data:
                self.add_row(*cells(pid), key=str(pid))
        else:
            self.update_rows({str(pid): cells(pid) for pid, values in data.items() if self._shown.get(pid) != values})
        self._shown = data
