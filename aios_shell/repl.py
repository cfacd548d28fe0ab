"""The interactive shell: prompt-toolkit on the kernel's event loop, so agents run while you type."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.input import Input
from prompt_toolkit.output import Output
from prompt_toolkit.patch_stdout import patch_stdout

from aios_shell.shell import Shell
from kernel import Kernel

BANNER = "aios {version} — {backend} backend, model {model}. Type `help` for commands, `exit` or Ctrl-D to leave."


class Repl:
    def __init__(self, kernel: Kernel, input: Input | None = None, output: Output | None = None,
                 history: History | None = None, shell: Shell | None = None) -> None:
        self.kernel = kernel
        self.shell = shell or Shell(kernel, interactive=True)
        if history is None:
            history = self._history_file(kernel)
        self.session: PromptSession[str] = PromptSession(input=input, output=output, history=history)
        self._pipe = input is not None

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

    async def run(self) -> int:
        from aios_shell import __version__

        describe = self.kernel.backend.describe()
        self.shell.print(BANNER.format(version=__version__, backend=describe["backend"], model=describe["model"]))
        warm = getattr(self.kernel.backend, "load", None)
        if warm is not None:  # load the embedded model while the user types
            asyncio.get_running_loop().create_task(self._warm(warm))
        with patch_stdout(raw=True):
            while self.shell.exit_code is None:
                try:
                    line = await self.session.prompt_async(self.prompt())
                except KeyboardInterrupt:
                    continue
                except EOFError:
                    break
                if not line.strip():
                    continue
                await self.run_line(line)
        return self.shell.exit_code if self.shell.exit_code is not None else self.shell.status

    async def _warm(self, load) -> None:  # noqa: ANN001 - the backend's own coroutine
        try:
            await load()
        except Exception as exc:
            self.shell.error(f"aios: {exc}")

    async def run_line(self, line: str) -> int:
        """Run a line; Ctrl-C while it runs interrupts its foreground process, never the shell."""
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGINT, self.shell.interrupt)
            installed = True
        except (RuntimeError, ValueError):  # not the main thread (tests)
            installed = False
        try:
            return await self.shell.run_line(line)
        finally:
            if installed:
                loop.remove_signal_handler(signal.SIGINT)
