"""The interactive shell: prompt-toolkit on the kernel's event loop, so agents run while you type.

Tab completes commands, flags, pids, agents, users, models and /proc paths; Ctrl-R searches the
history (per user, in $AIOS_HOME); the bottom bar shows who you are, the model, the scheduler and
the token rate. While a command runs the terminal is in its normal mode, so Ctrl-C (SIGINT) and
Ctrl-Z (SIGTSTP) reach the shell as signals: INT for the foreground job, or STOP and the background.
"""

from __future__ import annotations

import asyncio
import collections
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.input import Input
from prompt_toolkit.key_binding import KeyBindings
from prompt_toolkit.output import Output
from prompt_toolkit.patch_stdout import patch_stdout

from aios_shell.asker import PermissionAsker, PromptPaused, kernel_permissions
from aios_shell.completion import ShellCompleter
from aios_shell.shell import Shell
from kernel.api import Kernel, Loads, State, TokenGenerated

BANNER = "aios {version} — {backend} backend, model {model}. Type `help` for commands, `exit` or Ctrl-D to leave."
RATE_WINDOW = 5.0  # seconds of tokens the toolbar's rate averages over


class TokenMeter:
    """Tokens per second over the last few seconds, from the kernel's TokenGenerated events."""

    def __init__(self, kernel: Kernel, window: float = RATE_WINDOW) -> None:
        self.window = window
        self.times: collections.deque[float] = collections.deque()
        self.unsubscribe = kernel.bus.on(lambda _e: self.times.append(time.monotonic()), TokenGenerated)

    def rate(self) -> float:
        cutoff = time.monotonic() - self.window
        while self.times and self.times[0] < cutoff:
            self.times.popleft()
        return len(self.times) / self.window


class Repl:
    def __init__(self, kernel: Kernel, input: Input | None = None, output: Output | None = None,
                 history: History | None = None, shell: Shell | None = None) -> None:
        self.kernel = kernel
        self.shell = shell or Shell(kernel, interactive=True)
        if history is None:
            history = self._history_file(kernel)
        self.completer = ShellCompleter(self.shell, [kernel.backend.model] if kernel.backend.model else [])
        self.meter = TokenMeter(kernel)
        keys = KeyBindings()

        @keys.add("c-z")
        def _nothing_to_stop(event: Any) -> None:
            """Ctrl-Z at the prompt: nothing runs in the foreground, so nothing happens (as in bash); it put a
            ^Z character in the line, and the next command failed on it unseen."""

        self.session: PromptSession[str] = PromptSession(
            input=input, output=output, history=history, completer=self.completer, complete_while_typing=False,
            bottom_toolbar=self.toolbar, refresh_interval=1.0, key_bindings=keys,
        )
        self.shell.history = lambda: list(self.session.history.get_strings())
        self.shell.clear_screen = self._clear
        self.asker = PermissionAsker(*kernel_permissions(kernel), self.session, self.shell.print, self._pause_prompt)
        self._prompting = False
        self._prompt_gone = asyncio.Event()
        self._prompt_gone.set()
        self._typed = ""
        self.can_hand_over: Callable[[], bool] = lambda: False  # the cli says whether the kernel can live on
        self.handed_over = False  # the person chose to leave the kernel running headless
        self.attached: Callable[[], int] = lambda: 0  # how many other terminals are attached

    async def _pause_prompt(self) -> None:
        """Make the prompt step aside and wait until it has let go of the terminal."""
        app = self.session.app
        if self._prompting and app.is_running:
            try:
                app.exit(exception=PromptPaused())
            except Exception:  # already leaving
                pass
        await self._prompt_gone.wait()

    @staticmethod
    def _history_file(kernel: Kernel) -> History:
        try:
            path = Path(kernel.config.home) / f"history-{kernel.user}"
            path.touch(exist_ok=True)
            return FileHistory(str(path))
        except OSError:
            return InMemoryHistory()

    def prompt(self) -> str:
        mark = "#" if self.kernel.is_admin(self.kernel.user) else "$"
        return f"{self.kernel.user}@aios {mark} "

    def toolbar(self) -> str:
        """`alice │ simulated sim-1 │ fifo 1/4 run, 0 queued │ 12 tok/s` — fits 80 columns."""
        k = self.kernel
        info = self.shell.api.sched(queue_limit=0)
        model = k.backend.model if len(k.backend.model) <= 24 else k.backend.model[:23] + "…"
        return (f" {k.user} │ {k.backend.name} {model} │ {info.policy} {info.busy}/{len(info.slots)} run, "
                f"{info.queued} queued │ {self.meter.rate():.0f} tok/s ")

    def _clear(self) -> None:
        self.session.output.erase_screen()
        self.session.output.cursor_goto(0, 0)
        self.session.output.flush()

    async def run(self) -> int:
        from aios_shell import __version__

        describe = self.kernel.backend.describe()
        self.shell.print(BANNER.format(version=__version__, backend=describe["backend"], model=describe["model"]))
        sandbox = self.kernel.sandbox.status()
        if not sandbox.ok:  # said once, here; `tools` and the monitor say it too
            self.shell.print(f"aios: warning: sandbox {sandbox}")
        loop = asyncio.get_running_loop()
        if isinstance(self.kernel.backend, Loads):  # load the embedded model while the user types
            loop.create_task(self._warm(self.kernel.backend.load))
        loop.create_task(self.completer.load_models())
        self.asker.start()
        try:
            while self.shell.exit_code is None:
                try:
                    line = await self.read(self.prompt(), default=self._typed)
                    self._typed = ""
                except PromptPaused:
                    self._typed = self.session.default_buffer.text
                    await self.asker.idle.wait()
                    continue
                except KeyboardInterrupt:
                    continue
                except EOFError:
                    if await self._confirm_exit():
                        break
                    continue
                if not line.strip():
                    continue
                await self.run_line(line)
                if self.shell.exit_code is not None and not await self._confirm_exit():
                    self.shell.exit_code = None  # `exit` asks as Ctrl-D does; `n` keeps the shell
        finally:
            self.asker.stop()
            self.meter.unsubscribe()
        return self.shell.exit_code if self.shell.exit_code is not None else self.shell.status

    async def read(self, message: str, **kw: Any) -> str:
        """Prompt for a line. Only while the prompt shows is stdout patched (so background output prints
        above it); a command's own output goes straight to the terminal, before the next prompt."""
        if not self.asker.idle.is_set():  # a permission question comes first
            await self.asker.idle.wait()
        self._prompting = True
        self._prompt_gone.clear()
        try:
            with patch_stdout(raw=True):
                return await self.session.prompt_async(message, **kw)
        finally:
            self._prompting = False
            self._prompt_gone.set()

    async def _confirm_exit(self) -> bool:
        """Ctrl-D: leave at once, or ask first when agents still run (they are hung up on exit) — or, where the
        kernel can live on headless, whether to hand it over or stop them."""
        live = self.shell.live_agents()
        if self.can_hand_over() and (live or self.attached()):
            return await self._hand_over_or_stop(live)
        if not live:
            return True
        stopped = sum(1 for p in live if p.state is State.STOPPED)
        running = len(live) - stopped
        said = [f"{running} {'agent is' if running == 1 else 'agents are'} still running"] if running else []
        if stopped:
            said.append(f"{stopped} {'is' if stopped == 1 else 'are'} stopped" if running else
                        f"{stopped} {'agent is' if stopped == 1 else 'agents are'} stopped")
        try:
            answer = await self.read(f"{' and '.join(said)}; exit and hang up? [y/N] ", completer=None)
        except (EOFError, KeyboardInterrupt):
            return True  # a second Ctrl-D leaves, as bash does after its warning
        return answer.strip().lower() in ("y", "yes")

    async def _hand_over_or_stop(self, live: list[Any]) -> bool:
        said = []
        if live:
            said.append(f"{len(live)} {'agent is' if len(live) == 1 else 'agents are'} still running")
        if others := self.attached():
            said.append(f"{others} other {'terminal is' if others == 1 else 'terminals are'} attached")
        question = f"{' and '.join(said)}: h hand over (the kernel goes on headless), s stop, Enter stay [h/s/N] "
        while True:
            try:
                answer = (await self.read(question, completer=None)).strip().lower()
            except (EOFError, KeyboardInterrupt):
                return False  # Ctrl-D or Ctrl-C at the question: stay (stopping agents takes a word)
            if answer in ("h", "hand", "hand over"):
                self.handed_over = True
                return True
            if answer in ("s", "stop"):
                return True
            if answer in ("", "n", "no"):
                return False

    async def _warm(self, load: Any) -> None:
        try:
            await load()
        except Exception as exc:
            self.shell.error(f"aios: {exc}")

    async def run_line(self, line: str) -> int:
        """Run a line; Ctrl-C interrupts its foreground job and Ctrl-Z stops it, never the shell."""
        loop = asyncio.get_running_loop()
        installed = []
        for signum, handler in ((signal.SIGINT, self.shell.interrupt), (signal.SIGTSTP, self.shell.suspend)):
            try:
                loop.add_signal_handler(signum, handler)
                installed.append(signum)
            except (RuntimeError, ValueError):  # not the main thread (tests)
                pass
        try:
            return await self.shell.run_line(line)
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)
