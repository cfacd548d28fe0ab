"""The machine and the model: CPU per core, memory, the kernel's own RSS, tokens/s, the backend."""

from __future__ import annotations

from collections import Counter

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Sparkline, Static

from aios_shell.tui.probe import SystemSample
from aios_shell.tui.view import clean
from kernel.events import Event, TokenGenerated

HISTORY = 60  # seconds of tokens/s in the sparkline
SAMPLE_EVERY = 1.0


def bar(pct: float, width: int, colour: str) -> Text:
    filled = round(max(0.0, min(100.0, pct)) / 100 * width)
    return Text.assemble(("▮" * filled, colour), ("·" * (width - filled), "dim"))


def size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit in ("B", "KiB", "MiB") else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


class SystemPane(Vertical):
    def __init__(self, *, id: str | None = "system") -> None:
        super().__init__(id=id)
        self.border_title = "system"
        self._tokens: Counter[int] = Counter()
        self._sample = SystemSample()
        self._lines = -1

    def compose(self) -> ComposeResult:
        yield Static(id="sys-text")
        yield Sparkline([0.0] * HISTORY, id="sys-spark")

    def on_mount(self) -> None:
        self.sample()
        self.set_interval(SAMPLE_EVERY, self.sample)

    def sample(self) -> None:
        """Read the machine (psutil) once a second; the kernel is only read from events."""
        self._sample = self.app.probe.sample()
        self.update_view()

    def tokens_per_second(self, now: float) -> list[float]:
        second = int(now)
        for old in [s for s in self._tokens if s <= second - HISTORY]:
            del self._tokens[old]
        return [float(self._tokens.get(s, 0)) for s in range(second - HISTORY + 1, second + 1)]

    def update_view(self, events: list[Event] | None = None, force: bool = False) -> None:
        for event in events or ():
            if isinstance(event, TokenGenerated):
                self._tokens[int(event.ts)] += 1
        theme = self.app.current_theme
        s = self._sample
        text = Text()
        cores = s.cpu_per_core or [0.0]
        per_line = max(1, (self.size.width - 2) // 24) if self.size.width else 2
        for i, pct in enumerate(cores):
            colour = str(theme.success if pct < 60 else theme.warning if pct < 90 else theme.error)
            text.append(f"cpu{i:<2}", style="dim")
            text.append_text(bar(pct, 12, colour))
            text.append(f" {pct:3.0f}%")
            text.append("\n" if (i + 1) % per_line == 0 or i == len(cores) - 1 else "  ")
        mem_pct = 100 * s.mem_used / s.mem_total if s.mem_total else 0.0
        text.append("mem  ", style="dim")
        text.append_text(bar(mem_pct, 12, str(theme.primary)))
        text.append(f" {mem_pct:3.0f}%\n")
        text.append("     ", style="dim")
        text.append(f"{size(s.mem_used)} of {size(s.mem_total)}\n")
        text.append("kernel rss ", style="dim")
        text.append(f"{size(s.rss)}\n")
        kernel = getattr(self.app, "kernel", None)
        rates = self.tokens_per_second(self.app.clock())
        if kernel is not None:
            info = kernel.backend.describe()
            text.append("model ", style="dim")
            text.append(f"{clean(info.get('model', '?'), 40)} · {clean(info.get('backend', '?'), 20)} · "
                        f"P={info.get('slots', '?')} · ctx {info.get('context_window', '?')}\n")
        text.append("tok/s ", style="dim")
        text.append(f"{rates[-2] if len(rates) > 1 else 0:.0f}", style=f"bold {theme.accent}")
        text.append(f"  peak {max(rates):.0f} over {HISTORY}s", style="dim")
        lines = text.plain.count("\n")
        self.query_one("#sys-text", Static).update(text, layout=lines != self._lines)  # relayout on new height only
        self._lines = lines
        self.query_one("#sys-spark", Sparkline).data = rates
