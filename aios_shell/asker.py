"""The REPL's inline permission prompt: one request at a time, a single key answers.

    react[3] (alice) wants to call shell: command=ls
    allow? [y] once  [s] session  [a] always  [n] deny  (denied in 60s)

Requests come from the kernel's `PermissionRequested` events; the answer goes back through the
broker. While the shell's own prompt shows, it steps aside (its typed text is kept) and returns
after the question. Two agents asking at once get two questions, one after the other.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.key_binding import KeyBindings
from prompt_toolkit.keys import Keys

from kernel import Kernel
from kernel.events import PermissionDecided, PermissionRequested
from kernel.sanitize import one_line as clean

GRACE = 0.5  # seconds during which keys cannot answer (they were typed before the question showed)
KEYS = {"y": "once", "s": "session", "a": "always", "n": "deny"}
SAID = {"once": "allowed once", "session": "allowed for this session", "always": "always allowed",
        "deny": "denied"}


class PermissionAsker:
    """Asks the person at the terminal; `pause_prompt` makes the shell's prompt step aside."""

    def __init__(self, kernel: Kernel, session: PromptSession[str], print: Callable[[str], None],
                 pause_prompt: Callable[[], Awaitable[None]]) -> None:
        self.kernel = kernel
        self.session = session
        self.print = print
        self.pause_prompt = pause_prompt
        self.queue: asyncio.Queue[PermissionRequested] = asyncio.Queue()
        self.decided: set[int] = set()
        self.idle = asyncio.Event()
        self.idle.set()
        self._task: asyncio.Task[None] | None = None
        self._detach: Callable[[], None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._question: Any = None

    def start(self) -> None:
        broker = self.kernel.permissions
        self._detach = broker.attach()
        self._unsubscribe = self.kernel.bus.on(self._on_event, PermissionRequested, PermissionDecided)
        for request in broker.pending():
            self._on_event(request)
        self._task = asyncio.get_running_loop().create_task(self._serve(), name="permission-asker")

    def stop(self) -> None:
        if self._detach:
            self._detach()
        if self._unsubscribe:
            self._unsubscribe()
        if self._task:
            self._task.cancel()

    def _on_event(self, event: Any) -> None:
        if isinstance(event, PermissionRequested):
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
            while self.kernel.permissions.screen is not None and request.request_id not in self.decided:
                await asyncio.sleep(0.1)  # the monitor is up: its dialog asks; ours comes back if it quits first
            try:
                if request.request_id not in self.decided:
                    await self.pause_prompt()
                    answer = await self.ask(request)
                    if answer and self.kernel.permissions.answer(request.request_id, answer):
                        self.print(f"  → {SAID[answer]}")
            except Exception as exc:  # never leave a request hanging on a display problem
                self.kernel.permissions.answer(request.request_id, "deny")
                self.print(f"aios: permission prompt failed ({exc}); denied")
            finally:
                if self.queue.empty():
                    self.idle.set()

    def describe(self, request: PermissionRequested) -> str:
        args = "  ".join(f"{clean(k, 20)}={clean(v, 200)}" for k, v in request.args.items())
        return (f"{clean(request.program, 30)}[{request.pid}] ({clean(request.user, 30)}) wants to call "
                f"{clean(request.tool, 40)}: {args}")

    async def ask(self, request: PermissionRequested) -> str:
        """One key: y, s, a or n (Enter or Ctrl-C deny). Returns "" when it was decided elsewhere."""
        keys = KeyBindings()
        shown = time.monotonic()

        def answer(event: Any, decision: str) -> None:
            # keys typed in the first moments were meant for the shell's prompt, not for this question
            if time.monotonic() - shown >= GRACE:
                event.app.exit(result=decision)

        keys.add(Keys.Any)(lambda event: None)  # other keys do nothing: no text goes into the answer
        for key, decision in KEYS.items():
            keys.add(key)(lambda event, d=decision: answer(event, d))
        for key in ("enter", "c-c", "c-d", "escape"):
            keys.add(key)(lambda event: answer(event, "deny"))
        left = max(0, round(request.deadline - self.kernel.permissions.clock()))
        question: PromptSession[str] = PromptSession(input=self.session.input, output=self.session.output,
                                                     key_bindings=keys)
        self.print(self.describe(request))
        self._question = (request.request_id, question)
        try:
            return await question.prompt_async(
                f"allow? [y] once  [s] session  [a] always  [n] deny  (denied in {left}s) ")
        finally:
            self._question = None
