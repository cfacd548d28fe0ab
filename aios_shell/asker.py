"""The REPL's inline permission prompt: one request at a time, answered deliberately.

    react[3] (alice) wants to call shell in /home/alice/proj
      command: ls -la
      "always" or "session" would save: shell(ls -la)
    allow? y once · s session · a always · n deny, then Enter (denied in 58s)

Requests come from the kernel's `PermissionRequested` events; the answer goes back through the
broker. While the shell's own prompt shows, it steps aside (its typed text is kept) and returns
after the question. Two agents asking at once get two questions, one after the other.

Keys meant for the shell never answer: what is typed in the question's first moments (GRACE), typeahead
included, is dropped; an answer is a whole line, one of y/s/a/n (or once/session/always/deny),
confirmed with Enter: `ls` Enter is no answer, it clears the line and says what is. Ctrl-C and Ctrl-D
deny at once (deny is always safe); Enter on an empty line does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from prompt_toolkit import PromptSession
from prompt_toolkit.filters import Condition
from prompt_toolkit.key_binding import KeyBindings
from prompt_toolkit.keys import Keys

from kernel.api import PermissionDecided, PermissionRequested, strip_controls
from kernel.api import one_line as clean

if TYPE_CHECKING:
    from kernel.api import Answerer, Kernel, KernelAPI

GRACE = 0.5  # seconds during which keys cannot answer (they were typed before the question showed)
KEYS = {"y": "once", "s": "session", "a": "always", "n": "deny"}
WORDS = {**KEYS, "yes": "once", "once": "once", "session": "session", "always": "always", "no": "deny",
         "deny": "deny"}
SAID = {"once": "allowed once", "session": "allowed for this session", "always": "always allowed",
        "deny": "denied"}
ARG_LINES = 12  # lines of one argument shown; the rest is counted (the audit keeps it all)


class PromptPaused(Exception):
    """A shell's prompt steps aside for a permission question; what was typed is kept."""


class Permissions(Protocol):
    """What the asker needs of the kernel: `KernelAPI` in-process, or the same over the socket when attached
    (where `answer_permission` is a coroutine)."""

    def attach_answerer(self) -> Any: ...
    def pending_permissions(self) -> list[PermissionRequested]: ...
    def may_answer(self, request: PermissionRequested) -> bool: ...
    def answer_permission(self, request_id: int, decision: str) -> Any: ...
    async def permissions_changed(self) -> None: ...
    def now(self) -> float: ...


class PermissionAsker:
    """Asks the person at the terminal; `pause_prompt` makes the shell's prompt step aside. `subscribe(handler)`
    calls the handler with each PermissionRequested and PermissionDecided and returns how to stop."""

    def __init__(self, api: Permissions, subscribe: Callable[[Callable[[Any], None]], Callable[[], None]],
                 session: PromptSession[str], print: Callable[[str], None],
                 pause_prompt: Callable[[], Awaitable[None]]) -> None:
        self.api = api
        self.subscribe = subscribe
        self.session = session
        self.print = print
        self.pause_prompt = pause_prompt
        self.queue: asyncio.Queue[PermissionRequested] = asyncio.Queue()
        self.decided: set[int] = set()
        self.idle = asyncio.Event()
        self.idle.set()
        self._task: asyncio.Task[None] | None = None
        self._handle: Answerer | None = None
        self.standing_aside = False  # a request waits while another front end (the monitor) has the turn
        self._unsubscribe: Callable[[], None] | None = None
        self._question: Any = None
        self.note = ""  # what the question says about the last line typed at it
        self.dropped = 0  # keys dropped because they came before the question could be read
        self.message: Callable[[], str] | None = None  # the open question's prompt line, as drawn now

    def start(self) -> None:
        self._handle = self.api.attach_answerer()
        self._unsubscribe = self.subscribe(self._on_event)
        for request in self.api.pending_permissions():
            self._on_event(request)
        self._task = asyncio.get_running_loop().create_task(self._serve(), name="permission-asker")

    def stop(self) -> None:
        if self._handle:
            self._handle.detach()
        if self._unsubscribe:
            self._unsubscribe()
        if self._task:
            self._task.cancel()

    def _on_event(self, event: Any) -> None:
        if isinstance(event, PermissionRequested):
            if not self.api.may_answer(event):
                return  # another user's process asks: theirs to answer
            self.idle.clear()
            self.queue.put_nowait(event)
        elif isinstance(event, PermissionDecided):
            self.decided.add(event.request_id)
            if self._question is not None and self._question[0] == event.request_id:
                app = self._question[1].app
                if app.is_running:  # answered elsewhere (the monitor) or timed out
                    app.exit(result="")

    async def _serve(self) -> None:
        while True:
            request = await self.queue.get()
            while self._handle is not None and not self._handle.has_turn and request.request_id not in self.decided:
                self.standing_aside = True  # the monitor is up: its dialog asks; ours comes back if it quits first
                await self.api.permissions_changed()
            self.standing_aside = False
            try:
                if request.request_id not in self.decided:
                    await self.pause_prompt()
                    answer = await self.ask(request)
                    if answer and await _result(self.api.answer_permission(request.request_id, answer)):
                        self.print(f"  → {SAID[answer]}")
            except Exception as exc:  # never leave a request hanging on a display problem
                with contextlib.suppress(Exception):
                    await _result(self.api.answer_permission(request.request_id, "deny"))
                self.print(f"aios: permission prompt failed ({exc}); denied")
            finally:
                if self.queue.empty():
                    self.idle.set()

    def describe(self, request: PermissionRequested) -> str:
        """Everything being decided: who asks, the tool, where, every argument in full, what would be saved."""
        where = f" in {clean(request.workspace, 200)}" if request.workspace else ""
        lines = [f"{clean(request.program, 30)}[{request.pid}] ({clean(request.user, 30)}) wants to call "
                 f"{clean(request.tool, 40)}{where}"]
        for key, value in request.args.items():
            text = strip_controls(str(value)).replace("\t", "  ").splitlines() or [""]
            shown = text[:ARG_LINES]
            lines.append(f"  {clean(key, 30)}: {shown[0]}")
            lines += [f"  {' ' * len(clean(key, 30))}  {line}" for line in shown[1:]]
            if len(text) > ARG_LINES:
                lines.append(f"  … {len(text) - ARG_LINES} more lines")
        if request.rule:
            lines.append(f"  \"always\" or \"session\" would save: {clean(request.rule, 300)}")
        return "\n".join(lines)

    async def ask(self, request: PermissionRequested) -> str:
        """A whole-line answer (y, s, a, n, then Enter; Ctrl-C denies). "" when it was decided elsewhere."""
        keys = KeyBindings()
        shown = time.monotonic()
        clock = self.api.now

        in_grace = Condition(lambda: time.monotonic() - shown < GRACE)

        @keys.add(Keys.Any, filter=in_grace, eager=True)
        def _early(event: Any) -> None:  # within GRACE every key is dropped; after it, keys edit the line
            if event.key_sequence[0].key == Keys.CPRResponse:  # the terminal's answer, not a person's key
                row = event.data[2:-1].split(";")[0]
                if row.isdigit():
                    event.app.renderer.report_absolute_cursor_row(int(row))
            else:
                self.dropped += 1

        @keys.add("enter")
        @keys.add("c-j")
        def _enter(event: Any) -> None:
            typed = event.current_buffer.text.strip().lower()
            event.current_buffer.reset()
            if time.monotonic() - shown < GRACE or not typed:
                return
            decision = WORDS.get(typed)
            if decision is not None:
                event.app.exit(result=decision)
            else:
                self.note = f"not an answer: {typed[:20]}"

        for key in ("c-c", "c-d"):
            keys.add(key)(lambda event: event.app.exit(result="deny"))

        def message() -> str:
            left = max(0, round(request.deadline - clock()))
            note = f" — {self.note}" if self.note else ""
            return f"allow? y once · s session · a always · n deny, then Enter (denied in {left}s){note} "

        self.note = ""
        self.dropped = 0  # keys that came too early to be an answer
        question: PromptSession[str] = PromptSession(input=self.session.input, output=self.session.output,
                                                     key_bindings=keys, refresh_interval=1.0)
        self.print(self.describe(request))
        self._question = (request.request_id, question)
        self.message = message
        try:
            return await question.prompt_async(message)
        finally:
            self._question = None
            self.message = None



async def _result(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def kernel_permissions(kernel: Kernel) -> tuple[KernelAPI, Callable[[Callable[[Any], None]], Callable[[], None]]]:
    """The asker's view of an in-process kernel: its API for the kernel's user, and its bus."""
    from kernel.api import KernelAPI

    return KernelAPI(kernel), lambda handler: kernel.bus.on(handler, PermissionRequested, PermissionDecided)
