"""Read-only views of the kernel for the panes, taken on a batched refresh (never in a polling loop).

Processes come from the kernel's process table, the scheduler from its API (`kernel.api`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from commands.ps import fmt_time
from kernel.api import KernelAPI, SchedInfo, one_line, strip_controls

if TYPE_CHECKING:
    from kernel.api import Kernel, Process, Usage

COLUMNS = ("PID", "USER", "PRI", "NI", "STATE", "%CTX", "TOKENS", "TIME", "CMD")
NUMERIC = ("PID", "PRI", "NI", "%CTX", "TOKENS", "TIME")
# fixed widths: a cell that changes never makes the table measure its 500 rows again (CMD sizes itself)
WIDTHS = {"PID": 5, "USER": 7, "PRI": 3, "NI": 3, "STATE": 15, "%CTX": 4, "TOKENS": 9, "TIME": 8, "CMD": None}


DROP_FIRST = ("PRI", "USER", "NI", "%CTX")  # the lesser columns, dropped in this order when the pane is narrow
CMD_MIN = 18  # CMD keeps at least this much room; TOKENS, TIME and STATE are never dropped


def columns_for(width: int) -> tuple[str, ...]:
    """The columns that fit a table `width` cells wide (each column has a cell of padding either side)."""
    shown = list(COLUMNS)
    for name in DROP_FIRST:
        if sum((WIDTHS[c] or CMD_MIN) + 2 for c in shown) <= width:
            break
        shown.remove(name)
    return tuple(shown)


def short_status(status: str) -> str:
    """The STATE column's width: WAITING(permission) reads WAIT(perm)."""
    if len(status) <= WIDTHS["STATE"]:
        return status
    return status.replace("WAITING(", "WAIT(").replace("permission", "perm")


@dataclass(frozen=True)
class Row:
    """One line of the process table, with the raw values it sorts by."""

    pid: int
    ppid: int
    cells: tuple[str, ...]
    keys: tuple[Any, ...]
    state: str
    alive: bool


clean = one_line  # untrusted text made safe to draw on one line


def api(kernel: Any) -> Any:
    """The kernel's API for the monitor: `KernelAPI` in-process, or an attached kernel's copy (`tui.remote`)."""
    return getattr(kernel, "remote_api", None) or KernelAPI(kernel)


def window(kernel: Kernel) -> int:
    """The model's context window in tokens (0: not known)."""
    return api(kernel).model().context_window


def row(proc: Process, ctx_window: int, used: Usage | None = None, cmd: str | None = None) -> Row:
    """`cmd`: the command line as the viewer may see it (default: all of it)."""
    used = used or proc.usage()
    cmd = proc.cmdline if cmd is None else cmd
    pct = 100 * used.ctx_tokens / ctx_window if ctx_window else 0.0
    cells = (
        str(proc.pid), clean(proc.user, 16), str(20 + proc.nice), str(proc.nice), short_status(proc.status),
        f"{pct:.0f}", f"{used.prompt_tokens}/{used.completion_tokens}", fmt_time(used.llm_time), clean(cmd),
    )
    keys = (proc.pid, proc.user, 20 + proc.nice, proc.nice, proc.status, pct, used.tokens, used.llm_time,
            cmd.lower())
    return Row(proc.pid, proc.ppid, cells, keys, proc.state.value, proc.alive)


def rows(kernel: Kernel) -> list[Row]:
    """Every process of this kernel, exited ones included, in pid order."""
    ctx_window = window(kernel)
    cmdline = api(kernel).cmdlines()
    return [row(p, ctx_window, cmd=cmdline(p)) for p in kernel.procs]


def sched(kernel: Kernel, queue_limit: int | None = 0) -> SchedInfo:
    """The scheduler as the kernel's API shows it (the queue's first `queue_limit` entries)."""
    return api(kernel).sched(queue_limit=queue_limit)


def summary(kernel: Kernel) -> str:
    """The scheduler in one line, for a screen too narrow for its pane: `srpt · slots 3/4 · 2 queued`."""
    return sched(kernel).summary()


def clean_block(text: object) -> str:
    """Untrusted text made safe to draw, keeping its lines."""
    return strip_controls(str(text)).replace("\t", "    ")
