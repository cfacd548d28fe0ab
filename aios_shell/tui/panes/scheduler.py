"""The scheduler: its policy, who holds each of the P slots, the ready queue in order and why."""

from __future__ import annotations

from collections import deque

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from aios_shell.tui import view
from kernel.api import Event, SyscallDispatched, SyscallPreempted

RATE_WINDOW = 5.0  # seconds the per-second rates average over


class SchedulerPane(Static):
    def __init__(self, *, id: str | None = "scheduler") -> None:
        super().__init__(id=id)
        self.border_title = "scheduler"
        self._preempts: deque[float] = deque(maxlen=10_000)
        self._switches: deque[float] = deque(maxlen=10_000)

    def rates(self, now: float) -> tuple[float, float]:
        """(preemptions, switches) per second over the last RATE_WINDOW seconds."""
        for times in (self._preempts, self._switches):
            while times and times[0] < now - RATE_WINDOW:
                times.popleft()
        return len(self._preempts) / RATE_WINDOW, len(self._switches) / RATE_WINDOW

    def update_view(self, events: list[Event] | None = None, force: bool = False) -> None:
        for event in events or ():
            if isinstance(event, SyscallPreempted):
                self._preempts.append(event.ts)
            elif isinstance(event, SyscallDispatched):
                self._switches.append(event.ts)
        kernel = getattr(self.app, "kernel", None)
        if kernel is None:
            return
        theme = self.app.current_theme
        preempt, switch = self.rates(self.app.clock())
        room = max(1, self.size.height - 2) if self.size.height else 20  # at most; the slots take some
        info = view.sched(kernel, queue_limit=room)
        head = Text.assemble(
            ("policy ", "dim"), (info.policy, f"bold {theme.accent}"),
            ("  slots ", "dim"), f"{info.busy}/{len(info.slots)}",
            ("  preempt ", "dim"), f"{preempt:.1f}/s", ("  switch ", "dim"), f"{switch:.1f}/s",
        )
        grid = Table.grid(padding=(0, 1), expand=True)
        grid.add_column("slot", justify="right", style="dim", no_wrap=True)
        grid.add_column("pid", justify="right", no_wrap=True)
        grid.add_column("what", ratio=1, no_wrap=True, overflow="ellipsis")
        for slot in info.slots:
            if slot.idle and slot.kept_for is not None:  # its agent is in a tool: the slot holds its conversation
                grid.add_row(f"P{slot.slot}", Text(str(slot.kept_for), style="dim"),
                             Text("kept · in a tool", style="dim"))
            elif slot.idle:
                grid.add_row(f"P{slot.slot}", "", Text("idle", style="dim"))
            else:
                grid.add_row(f"P{slot.slot}", Text(str(slot.pid), style=f"bold {theme.success}"),
                             f"{view.clean(slot.cmd, 60)} · {slot.tokens} tok")
        room = max(1, self.size.height - len(info.slots) - 2) if self.size.height else 20
        queue = Table.grid(padding=(0, 1), expand=True)
        queue.add_column("n", justify="right", style="dim", no_wrap=True)
        queue.add_column("pid", justify="right", no_wrap=True)
        queue.add_column("why", ratio=1, no_wrap=True, overflow="ellipsis")
        for entry in info.queue[:room]:
            queue.add_row(str(entry.pos), Text(str(entry.pid), style=str(theme.warning)), view.clean(entry.reason, 80))
        total = info.queued
        title = Text.assemble(("ready queue ", "dim"), str(total), (" (empty)" if not total else "", "dim"))
        self.update(Group(head, grid, title, queue), layout=False)  # its size is fixed: no relayout
