"""The machine and the model: CPU per core, memory, the kernel's own RSS, tokens/s, the backend.

With an Ollama backend (or a pool with Ollama members) the pane also lists the models the server holds
in memory (`ollama ps`: name, size, VRAM), asked from a worker at most every POLL_EVERY seconds so a slow
or dead server never holds up the screen; other backends show what `describe()` knows (the embedded
model's file and threads, a pool's endpoints).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Sparkline, Static
from textual.worker import Worker, WorkerState

from aios_shell.tui.probe import LoadedModel, SystemSample, loaded_models, ollama_backends
from aios_shell.tui.view import clean
from kernel.api import Event, TokenGenerated

HISTORY = 60  # seconds of tokens/s in the sparkline
SAMPLE_EVERY = 1.0
POLL_EVERY = 5.0  # seconds between two questions to the model server (`ollama ps`)
POLL_TIMEOUT = 3.0


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
        self._text = Text()
        self.models: list[LoadedModel] | None = None  # None: not asked yet (or not an Ollama backend)
        self.models_error: str | None = None
        self.polls = 0  # questions asked to the model server so far
        self._polling = False
        self._polled = float("-inf")  # monotonic time the last question ended

    def compose(self) -> ComposeResult:
        yield Static(id="sys-text")
        yield Sparkline([0.0] * HISTORY, id="sys-spark")

    def on_mount(self) -> None:
        self.sample()
        self.set_interval(SAMPLE_EVERY, self.sample)

    def sample(self) -> None:
        """Read the machine (psutil) once a second; the kernel is only read from events."""
        self._sample = self.app.probe.sample()
        self.poll_models()
        self.update_view()

    # -- the model server ---------------------------------------------------------------------
    def poll_models(self) -> bool:
        """Ask the model server what it has loaded, in a worker, unless asked less than POLL_EVERY ago."""
        kernel = getattr(self.app, "kernel", None)
        if kernel is None or self._polling or time.monotonic() - self._polled < POLL_EVERY:
            return False
        if not ollama_backends(kernel.backend):
            return False
        self._polling = True
        self.polls += 1
        self.run_worker(loaded_models(kernel.backend, POLL_TIMEOUT), group="models", exclusive=True,
                        exit_on_error=False)
        return True

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "models" or event.state not in (WorkerState.SUCCESS, WorkerState.ERROR,
                                                                   WorkerState.CANCELLED):
            return
        event.stop()
        self._polling = False
        self._polled = time.monotonic()
        if event.state is WorkerState.SUCCESS:
            self.models, self.models_error = list(event.worker.result or []), None
        elif event.state is WorkerState.ERROR:
            error = event.worker.error
            text = str(error) or type(error).__name__
            if isinstance(error, TimeoutError):
                text = f"no answer in {POLL_TIMEOUT:g}s"
            self.models_error = clean(text, 80)
        self.update_view()

    def backend_text(self, info: dict[str, Any], theme: Any) -> Text:
        """The lines under `model`: loaded models (Ollama), the model file (embedded), endpoints (pool)."""
        text = Text()
        if info.get("path"):
            text.append("file  ", style="dim")
            text.append(f"{clean(info['path'], 40)} · threads {info.get('threads', '?')}\n")
        for ep in info.get("endpoints") or ():
            up = ep.get("state") == "up"
            text.append("  ")
            text.append("● " if up else "○ ", style=str(theme.success if up else theme.error))
            text.append(f"{clean(ep.get('endpoint', '?'), 24)} {clean(ep.get('backend', '?'), 10)} "
                        f"P={ep.get('slots', '?')} · {ep.get('calls', 0)} calls\n")
        if self.models_error is not None:
            text.append("loaded ", style="dim")
            text.append(f"? {self.models_error}\n", style=str(theme.warning))
        elif self.models is not None:
            text.append("loaded ", style="dim")
            text.append("none\n" if not self.models else f"{len(self.models)} (ollama ps)\n",
                        style="" if self.models else "dim")
            for m in self.models:
                where = f" @{clean(m.where, 20)}" if m.where else ""
                vram = f"vram {size(m.vram)}" if m.vram else "cpu only"
                text.append("  ")
                text.append(clean(m.name, 32), style=f"bold {theme.accent}")
                text.append(f" {size(m.size)} · {vram}{where}\n")
        return text

    def tokens_per_second(self, now: float) -> list[float]:
        """Tokens generated in each of the last HISTORY complete seconds (the one under way is not done)."""
        second = int(now)
        for old in [s for s in self._tokens if s < second - HISTORY]:
            del self._tokens[old]
        return [float(self._tokens.get(s, 0)) for s in range(second - HISTORY, second)]

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
            text.append_text(self.backend_text(info, theme))
            sandbox = kernel.sandbox.status()
            text.append("sandbox ", style="dim")
            text.append(sandbox.mode + ("\n" if sandbox.ok else " unavailable: shell off\n"),
                        style="" if sandbox.ok else f"bold {theme.error}")
        text.append("tok/s ", style="dim")
        text.append(f"{rates[-1]:.0f}", style=f"bold {theme.accent}")
        text.append(f"  peak {max(rates):.0f} over {HISTORY}s", style="dim")
        if text != self._text:  # under load most refreshes change nothing here: no repaint then
            lines = text.plain.count("\n")
            self.query_one("#sys-text", Static).update(text, layout=lines != self._lines)  # relayout: new height
            self._lines, self._text = lines, text
        self.query_one("#sys-spark", Sparkline).data = rates  # reactive: equal data repaints nothing
