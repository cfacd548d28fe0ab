"""The tool-call log: finished syscalls, permission requests and decisions, and any tool event.

There is no tool syscall yet, so `llm` calls are shown as they finish; an event that has a `tool`
field (the tools issue's events) is drawn generically from its fields.
"""

from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import RichLog

from aios_shell.tui.view import clean
from kernel.events import Event, PermissionDecided, PermissionRequested, SyscallDone

SKIP_FIELDS = {"ts", "pid", "tool"}


def stamp(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


def describe(event: Event, theme: object) -> Text | None:
    """One log line for `event`, or None when it is not a tool-ish event."""
    ok, bad, ask = str(theme.success), str(theme.error), str(theme.warning)  # type: ignore[attr-defined]
    head = Text.assemble((stamp(event.ts), "dim"), " ", (f"{getattr(event, 'pid', '-'):>5}", "bold"), " ")
    if isinstance(event, SyscallDone):
        outcome = ("ok", ok) if event.ok else (f"error: {clean(event.error or '', 60)}", bad)
        return head.append_text(Text.assemble(
            (f"{event.call:<10}", ""), " ", outcome,
            (f"  wait {event.wait_s:.2f}s run {event.service_s:.2f}s", "dim"),
            f"  {event.prompt_tokens}/{event.completion_tokens} tok",
        ))
    if isinstance(event, PermissionRequested):
        args = " ".join(f"{k}={clean(v, 40)}" for k, v in event.args.items())
        return head.append_text(Text.assemble((f"{clean(event.tool, 20):<10}", ""), " ", ("asks", ask),
                                              f"  {clean(args, 80)}"))
    if isinstance(event, PermissionDecided):
        colour = bad if event.decision == "deny" else ok
        return head.append_text(Text.assemble((f"{clean(event.tool, 20):<10}", ""), " ",
                                              (f"{event.decision}", colour), (f" by {event.by}", "dim")))
    tool = getattr(event, "tool", None)
    if tool is None:
        return None
    fields = {k: v for k, v in event.to_dict().items() if k not in SKIP_FIELDS and k != "type"}
    flat: dict[str, object] = {}
    for key, value in fields.items():
        flat.update({str(k): v for k, v in value.items()} if isinstance(value, dict) else {key: value})
    rest = " ".join(f"{k}={clean(v, 40)}" for k, v in flat.items())
    return head.append_text(Text.assemble((f"{clean(tool, 20):<10}", ""), " ", (event.kind, "dim"),
                                          f"  {clean(rest, 100)}"))


class ToolLogPane(RichLog):
    def __init__(self, *, id: str | None = "toollog") -> None:
        super().__init__(max_lines=500, wrap=False, markup=False, highlight=False, auto_scroll=True, id=id)
        self.border_title = "tool calls"

    def update_view(self, events: list[Event] | None = None, force: bool = False) -> None:
        theme = self.app.current_theme
        for event in events or ():
            line = describe(event, theme)
            if line is not None:
                self.write(line)
