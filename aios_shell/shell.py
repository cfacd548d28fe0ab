"""The shell: runs parsed lines of commands against a kernel, for the REPL, `-c` and scripts."""

from __future__ import annotations

import asyncio
import shlex
from dataclasses import dataclass
from typing import Any

from rich.console import Console

from aios_shell.lang import AndOr, Command, ParseError, parse
from aios_shell.render import make_console, table, to_json
from commands.registry import CommandError, HelpShown, UsageError, lookup
from kernel import Kernel
from kernel.errors import KernelError
from kernel.events import ProcessExited, ProcessOutput
from kernel.llm.backend import BackendError
from kernel.process import Process, Signal
from kernel.programs import NoSuchProgram
from kernel.sanitize import strip_controls


@dataclass
class Job:
    number: int
    proc: Process
    notified: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid


class Shell:
    def __init__(
        self,
        kernel: Kernel,
        out: Console | None = None,
        err: Console | None = None,
        interactive: bool = False,
    ) -> None:
        self.kernel = kernel
        self.out = out or make_console()
        self.err = err or make_console(stderr=True)
        self.interactive = interactive
        self.status = 0
        self.last_bg: int | None = None
        self.jobs: dict[int, Job] = {}
        self.exit_code: int | None = None  # set by `exit`
        self.foreground: Process | None = None
        self.interrupted = False
        self._job_numbers = 0
        self._bg_tasks: set[asyncio.Task[Any]] = set()

    # -- output ---------------------------------------------------------------------------
    def write(self, text: str) -> None:
        self.out.file.write(strip_controls(text))
        self.out.file.flush()

    def print(self, text: str = "") -> None:
        self.out.print(strip_controls(text), markup=False, highlight=False)

    def error(self, message: str) -> None:
        """One line on stderr, whatever the message holds."""
        style = "red" if self.err.is_terminal else None
        line = strip_controls(message.replace("\r", "\\r").replace("\n", "\\n"))
        self.err.print(line, style=style, markup=False, highlight=False, soft_wrap=True)

    def table(self, columns: list[str], rows: list[list[Any]], right: tuple[str, ...] = ()) -> None:
        table(self.out, columns, rows, right=right)

    def json(self, obj: Any) -> None:
        self.out.file.write(to_json(obj) + "\n")
        self.out.file.flush()

    # -- running --------------------------------------------------------------------------
    def variables(self) -> dict[str, str]:
        return {"?": str(self.status), "!": "" if self.last_bg is None else str(self.last_bg)}

    async def run_line(self, text: str) -> int:
        """Run a line (or several) of shell text; returns `$?` afterwards."""
        self.interrupted = False
        try:
            items = parse(text)
        except ParseError as exc:
            self.error(f"aios: {exc}")
            self.status = 2
            return 2
        for item in items:
            if self.exit_code is not None or self.interrupted:
                break
            await self._run_andor(item)
        if self.interrupted:
            self.status = 130
        return self.status

    async def run_script(self, text: str) -> int:
        """Run a script; `exit` stops it and sets the status, as in sh."""
        status = await self.run_line(text)
        return self.exit_code if self.exit_code is not None else status

    async def _run_andor(self, item: AndOr) -> int:
        if item.background:
            if not item.rest and len(item.first) == 1:
                return await self._simple(item.first[0], background=True)
            task = asyncio.get_running_loop().create_task(self._chain(item))
            self._bg_tasks.add(task)
            task.add_done_callback(self._bg_tasks.discard)
            self.status = 0
            return 0
        return await self._chain(item)

    async def _chain(self, item: AndOr) -> int:
        status = await self._pipeline(item.first)
        for op, pipeline in item.rest:
            if self.exit_code is not None or self.interrupted:
                break
            if (op == "&&") == (status == 0):
                status = await self._pipeline(pipeline)
        return status

    async def _pipeline(self, commands: list[Command]) -> int:
        if len(commands) > 1:
            self.error("aios: pipes between agents are not supported yet")
            self.status = 2
            return 2
        return await self._simple(commands[0])

    async def _simple(self, cmd: Command, background: bool = False) -> int:
        argv = [word.expand(self.variables()) for word in cmd.words]
        status = await self.execute(argv, background=background, redirect=cmd.redirect is not None)
        self.status = status
        return status

    async def execute(self, argv: list[str], background: bool = False, redirect: bool = False) -> int:
        """Run one command given as words; every failure becomes one line and a status."""
        name = argv[0]
        if redirect:
            self.error(f"aios: {name}: redirection is not supported yet")
            return 2
        spec = lookup(name)
        if spec is None:
            self.error(f"aios: {shlex.quote(name)}: command not found (try: help)")
            return 1
        try:
            args = spec.parse(argv[1:])
            args.background = background
            result = await spec.handler(self, args)
            return int(result or 0)
        except HelpShown:
            self.print(spec.help())
            return 0
        except UsageError as exc:
            self.error(f"{name}: {exc} (see: help {spec.name})")
            return 2
        except CommandError as exc:
            self.error(f"{name}: {exc}")
            return exc.status
        except (KernelError, NoSuchProgram, BackendError) as exc:
            self.error(f"{name}: {exc}")
            return 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never a traceback in the user's face
            self.error(f"{name}: internal error: {type(exc).__name__}: {exc}")
            return 1

    # -- jobs -------------------------------------------------------------------------------
    def add_job(self, proc: Process) -> Job:
        self._job_numbers = max(self.jobs, default=0) + 1
        job = Job(self._job_numbers, proc)
        self.jobs[job.number] = job
        self.last_bg = proc.pid
        if self.interactive:
            self.print(f"[{job.number}] {proc.pid}")
        task = asyncio.get_running_loop().create_task(self._watch_job(job))
        self._bg_tasks.add(task)
        task.add_done_callback(self._bg_tasks.discard)
        return job

    async def _watch_job(self, job: Job) -> None:
        await job.proc.exited.wait()
        if self.interactive and self.foreground is not job.proc:
            self.print(f"[{job.number}]+  {describe_exit(job.proc):<12} {job.proc.cmdline}")
        self.jobs.pop(job.number, None)

    async def follow(self, proc: Process) -> int:
        """Stream a process's output until it exits; Ctrl-C sends it TERM. Returns its status."""
        self.foreground = proc
        ended_with_newline = True
        with self.kernel.bus.subscribe(ProcessOutput, ProcessExited) as events:
            try:
                while proc.alive:
                    event = await events.get()
                    if getattr(event, "pid", None) != proc.pid:
                        continue
                    if isinstance(event, ProcessOutput):
                        self.write(event.text)
                        ended_with_newline = event.text.endswith("\n")
                    elif isinstance(event, ProcessExited):
                        break
            finally:
                self.foreground = None
        if not ended_with_newline:
            self.write("\n")
        if proc.error:
            self.error(f"{proc.program}[{proc.pid}]: {proc.error}")
        elif proc.term_signal is not None and self.interactive:
            self.error(describe_exit(proc))
        return proc.exit_code if proc.exit_code is not None else 1

    def interrupt(self) -> None:
        """Ctrl-C: TERM to the foreground process; a running script stops."""
        self.interrupted = True
        proc = self.foreground
        if proc is not None and proc.alive:
            self.kernel.signal(proc.pid, Signal.INT)


def describe_exit(proc: Process) -> str:
    if proc.lost:
        return "Lost"
    if proc.term_signal is not None:
        return {Signal.KILL: "Killed", Signal.TERM: "Terminated", Signal.INT: "Interrupt",
                Signal.HUP: "Hangup"}.get(Signal(proc.term_signal), f"Signal {proc.term_signal}")
    return "Done" if proc.exit_code == 0 else f"Exit {proc.exit_code}"
