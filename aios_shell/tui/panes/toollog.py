"""The tool-call log: one row per tool call, from the moment it is asked for until it is done.

A call's events are joined into its row: `ToolCalled(pid, sid, tool, args)` opens it, a permission
request for that process and tool marks it `asking`, the decision fills in who allowed or denied it,
`ToolCallDecided(pid, sid)` says what a rule decided when no person was asked, and `SyscallDone(call="tool:NAME")`
with the same pid and sid gives its duration and outcome. Events whose call began before the monitor did still get
a row of their own.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.geometry import Size

from aios_shell.tui import view
from aios_shell.tui.panes.processes import CachedRowTable
from aios_shell.tui.view import clean
from kernel.api import (
    Decision,
    Event,
    PermissionDecided,
    PermissionRequested,
    SyscallDone,
    ToolCallDecided,
    ToolCalled,
    redact,
)

KEEP = 200  # calls kept (the oldest leave first)
COLUMNS = ("TIME", "PID", "TOOL", "ARGS", "DECISION", "DUR", "OUTCOME")


def stamp(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


def show_args(args: object) -> str:
    """Arguments as `key=value …`, secrets masked and control sequences gone, on one line."""
    if not isinstance(args, dict):
        return clean(redact(str(args)), 300) if args else ""
    return clean(" ".join(f"{clean(k, 40)}={clean(redact(str(v)), 120)}" for k, v in args.items()), 300)


@dataclass
class ToolCall:
    """What the log knows about one call so far."""

    key: str
    ts: float
    pid: int
    tool: str
    args: str = ""
    decision: str = ""  # "" until known; asking | once | session | always | deny | allow
    by: str = ""  # user | timeout | cancelled | rule
    duration: float | None = None
    ok: bool | None = None  # None while it runs
    outcome: str = ""
    request_id: int | None = None

    @property
    def done(self) -> bool:
        return self.ok is not None


class ToolCalls:
    """The join: feeds on events, keeps the last `keep` calls in the order they began."""

    def __init__(self, keep: int = KEEP) -> None:
        self.keep = keep
        self.calls: OrderedDict[str, ToolCall] = OrderedDict()
        self._requests: dict[int, str] = {}  # permission request id → call key
        self._other = 0

    def _open(self, pid: int, tool: str, want: str | None = None) -> ToolCall | None:
        """The newest call of `pid` to `tool` still running (and, unless `want` is None, at that decision)."""
        for call in reversed(self.calls.values()):
            if call.pid == pid and call.tool == tool and not call.done and want in (None, call.decision):
                return call
        return None

    def _add(self, call: ToolCall) -> ToolCall:
        self.calls[call.key] = call
        while len(self.calls) > self.keep:
            _, old = self.calls.popitem(last=False)
            self._requests.pop(old.request_id, None)  # type: ignore[arg-type]
        return call

    def feed(self, event: Event) -> str | None:
        """Take one event; the key of the call it changed, or None when it is not about a tool call."""
        if isinstance(event, ToolCalled):
            key = f"{event.pid}:{event.sid}"
            return self._add(ToolCall(key, event.ts, event.pid, clean(event.tool, 40), show_args(event.args))).key
        if isinstance(event, PermissionRequested):
            tool = clean(event.tool, 40)
            call = self._open(event.pid, tool, want="") or self._add(
                ToolCall(f"ask:{event.request_id}", event.ts, event.pid, tool, show_args(event.args)))
            call.decision, call.request_id = "asking", event.request_id
            self._requests[event.request_id] = call.key
            return call.key
        if isinstance(event, PermissionDecided):
            tool = clean(event.tool, 40)
            key = self._requests.pop(event.request_id, None)
            call = self.calls.get(key) if key else self._open(event.pid, tool, want="asking")
            if call is None:
                call = self._add(ToolCall(f"ask:{event.request_id}", event.ts, event.pid, tool))
            call.decision, call.by = clean(event.decision, 12), clean(event.by, 12)
            return call.key
        if isinstance(event, SyscallDone):
            if not event.call.startswith("tool:"):
                return None
            tool = clean(event.call[5:], 40)
            call = self.calls.get(f"{event.pid}:{event.sid}") or self._open(event.pid, tool)
            if call is None:
                call = self._add(ToolCall(f"{event.pid}:{event.sid}", event.ts, event.pid, tool))
            call.duration, call.ok = event.wait_s + event.service_s, event.ok  # as long as the agent waited
            call.outcome = "ok" if event.ok else clean(redact(event.error or "failed"), 200)
            if not call.decision:  # a kernel of an earlier version, which said nothing of its decision
                call.decision = "allow" if event.ok or event.service_s > 0 else "—"
                call.by = "rule" if call.decision != "—" else ""
            return call.key
        if isinstance(event, ToolCallDecided):
            call = self.calls.get(f"{event.pid}:{event.sid}") or self._open(event.pid, clean(event.tool, 40))
            if call is None:
                call = self._add(ToolCall(f"{event.pid}:{event.sid}", event.ts, event.pid, clean(event.tool, 40)))
            if not event.asked and call.decision in ("", "asking"):  # a rule decided, or the call was invalid
                call.decision = "—" if event.decision == Decision.ERROR else clean(str(event.decision), 12)
                call.by = "rule" if event.decision != Decision.ERROR else ""
            return call.key
        tool = getattr(event, "tool", None)  # an event the log does not know yet, but about a tool
        pid = getattr(event, "pid", None)
        if not isinstance(tool, str) or not isinstance(pid, int):
            return None
        self._other += 1
        outcome = getattr(event, "outcome", None)
        call = ToolCall(f"ev:{self._other}", event.ts, pid, clean(tool, 40), show_args(getattr(event, "args", "")),
                        decision="—", ok=True, outcome=clean(outcome if isinstance(outcome, str) else event.kind, 200))
        return self._add(call).key


def widths(width: int) -> dict[str, int]:
    """Column widths (text, without the one-space gap) for a pane `width` cells wide."""
    fixed = {"TIME": 8, "PID": 5, "TOOL": 10, "DECISION": 12, "DUR": 6}
    if width < 80:
        fixed = {"TIME": 8, "PID": 4, "TOOL": 8, "DECISION": 8, "DUR": 5}
    rest = max(14, width - 2 - sum(fixed.values()) - len(COLUMNS))  # 2: the scroll bar
    args = max(8, rest * 11 // 20)
    return {**fixed, "ARGS": args, "OUTCOME": max(6, rest - args)}


class ToolLogPane(CachedRowTable):
    """The rows of `ToolCalls`, newest at the bottom; it follows new calls unless scrolled up."""

    def __init__(self, *, id: str | None = "toollog") -> None:
        super().__init__(cursor_type="none", zebra_stripes=False, cell_padding=0, id=id)
        self.border_title = "tool calls"
        self.log_calls = ToolCalls()
        self._widths: dict[str, int] = {}
        self._style_key = ""
        self.following = True  # at the bottom: new calls scroll into view

    def watch_virtual_size(self, old: Size, new: Size) -> None:
        """Rows are measured when the table is idle, which may come after the refresh a `scroll_end` called
        on adding them waits for; so the pane follows the end from here, once the new height is known. Forced
        and at once: the layout that shows the scroll bar (without which a scroll is refused) may come later."""
        if self.following and new.height != old.height:
            self.scroll_end(animate=False, immediate=True, force=True)

    def history(self, kernel: Any) -> None:
        """The calls this kernel made before the pane opened, from the stored events."""
        kinds = (ToolCalled, PermissionRequested, PermissionDecided, ToolCallDecided, SyscallDone)
        try:
            stored = view.api(kernel).events(types=kinds, since=kernel.boot_time, last=20 * self.log_calls.keep)
        except Exception:  # the log's past is a convenience: never in the way of the monitor
            return
        for event in stored:
            self.log_calls.feed(event)

    def on_mount(self) -> None:
        self._rebuild()

    def on_resize(self) -> None:
        if widths(self.size.width) != self._widths:
            self._rebuild()

    def cells(self, call: ToolCall) -> list[Text]:
        theme = self.app.current_theme
        w = self._widths
        ok, bad, ask = str(theme.success), str(theme.error), str(theme.warning)
        decision = call.decision if call.by in ("", "user", "rule") else f"{call.decision}:{call.by}"
        decision_style = {"deny": bad, "asking": f"bold {ask}", "": "dim", "—": "dim"}.get(call.decision, ok)
        duration = "" if call.duration is None else (f"{call.duration:.2f}s" if call.duration < 10
                                                      else f"{call.duration:.0f}s")
        outcome = call.outcome if call.done else "denied" if call.decision == "deny" else "…"
        values = (
            (stamp(call.ts), "dim"), (str(call.pid).rjust(w["PID"]), "bold"), (call.tool, ""), (call.args, ""),
            (decision or "…", decision_style), (duration.rjust(w["DUR"]), "dim"),
            (outcome, "dim" if not call.done else ok if call.ok else bad),
        )
        return [Text(clean(value, w[name]) + " ", style=style, no_wrap=True, overflow="ellipsis")
                for name, (value, style) in zip(COLUMNS, values, strict=True)]

    def _rebuild(self) -> None:
        self._widths = widths(self.size.width)
        self._style_key = self.app.theme
        self.clear(columns=True)
        for name in COLUMNS:
            self.add_column(Text(name, style="bold"), key=name, width=self._widths[name] + 1)
        for key, call in self.log_calls.calls.items():
            self.add_row(*self.cells(call), key=key)
        if self.following:
            self.scroll_end(animate=False)

    def update_view(self, events: list[Event] | None = None, force: bool = False) -> None:
        touched: dict[str, None] = {}
        for event in events or ():
            key = self.log_calls.feed(event)
            if key is not None:
                touched[key] = None
        if force or self.app.theme != self._style_key:
            self._rebuild()
            return
        if not touched:
            return
        calls = self.log_calls.calls
        self.following = self.scroll_y >= self.max_scroll_y - 1
        for key in [k for k in self.rows if k.value not in calls]:  # fell off the end
            self.remove_row(key)
        changed: dict[str, Any] = {}
        for key in touched:
            if key not in calls:
                continue
            if key in self.rows:
                changed[key] = self.cells(calls[key])
            else:
                self.add_row(*self.cells(calls[key]), key=key)
        self.update_rows(changed)
