"""The shell: runs parsed lines of commands against a kernel, for the REPL, `-c` and scripts.

Each line item runs as a job (see `aios_shell.jobs`) in a *subshell*, a shallow copy of the shell
that shares the job table and has its own `$?`, standard output and standard input, as a forked
bash does. A pipeline `a | b | c` runs its stages at once, each writing into a `Pipe` the next one
reads as the text arrives; `> FILE` and `>> FILE` point a stage's standard output at a file.
"""

from __future__ import annotations

import asyncio
import copy
import io
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from aios_shell.jobs import Job, JobControl, current_job, describe_exit
from aios_shell.lang import AndOr, Command, ParseError, parse
from aios_shell.render import error_line, make_console, show
from commands.registry import CommandError, HelpShown, UsageError, lookup
from commands.results import RESULTS
from kernel.api import (
    BackendError,
    Kernel,
    KernelAPI,
    KernelError,
    NoSuchProgram,
    Pipe,
    Process,
    ProcessExited,
    ProcessOutput,
    Signal,
    strip_controls,
)

__all__ = ["Job", "Shell", "describe_exit"]


class PipeFile(io.TextIOBase):
    """A file object whose writes go into a `Pipe` (a pipeline stage's standard output)."""

    def __init__(self, pipe: Pipe) -> None:
        self.pipe = pipe

    def write(self, text: str) -> int:
        self.pipe.write(text)
        return len(text)

    def isatty(self) -> bool:
        return False




class Shell:
    def __init__(
        self,
        kernel: Kernel,
        out: Console | None = None,
        err: Console | None = None,
        interactive: bool = False,
        cwd: Path | None = None,
        user: str | None = None,
    ) -> None:
        self.kernel = kernel
        self._user = user  # a client's user (from its socket); None: the kernel's own user, whom `su` changes
        self.out = out or make_console()
        self.err = err or make_console(stderr=True)
        self.interactive = interactive
        self.remote = False  # an attached client's shell, run in the hosting process (no terminal of its own)
        self.foreign = ""  # set for a client of another OS user: files here would be opened as the kernel's user
        self.cwd = Path(cwd) if cwd is not None else Path.cwd()
        self.login_user = user or kernel.config.user  # who started the shell; `su` needs them to be an admin
        self.status = 0
        self.exit_code: int | None = None  # set by `exit`
        self.stdin: Pipe | None = None  # what agents started here read (a pipe), or nothing
        self.captured = False  # stdout is a pipe or a file, not the terminal
        self.ctl = JobControl()
        self.jobs = self.ctl.jobs
        self.history: Callable[[], list[str]] | None = None  # set by the REPL
        self.monitor: Any = None  # the monitor whose `:` line this shell runs (`top` refuses to nest)
        self.clear_screen: Callable[[], None] | None = None  # set by the REPL

    # -- who this shell acts as --------------------------------------------------------------------
    @property
    def user(self) -> str:
        return self._user or self.kernel.user

    @user.setter
    def user(self, name: str) -> None:
        if self._user is None:
            self.kernel.config.user = name  # the hosting shell: the kernel's user (the monitor follows it)
        else:
            self._user = name

    @property
    def api(self) -> KernelAPI:
        """The door into the kernel, for whom this shell acts as."""
        return KernelAPI(self.kernel, caller=self._user)

    # -- state shared with subshells ----------------------------------------------------------
    @property
    def last_bg(self) -> int | None:
        return self.ctl.last_bg

    @property
    def interrupted(self) -> bool:
        return self.ctl.interrupted

    @property
    def foreground(self) -> Job | None:
        return self.ctl.fg

    def fork(self, out: Console | None = None, stdin: Pipe | None = None) -> Shell:
        """A subshell: same kernel and jobs, its own `$?`; `out`/`stdin` replace the parent's."""
        child = copy.copy(self)
        if out is not None:
            child.out, child.captured = out, True
        if stdin is not None:
            child.stdin = stdin
        child.exit_code = None
        return child

    # -- output ---------------------------------------------------------------------------------
    def write(self, text: str) -> None:
        self.out.file.write(strip_controls(text))
        self.out.file.flush()

    def print(self, text: str = "") -> None:
        self.out.print(strip_controls(text), markup=False, highlight=False)

    def error(self, message: str) -> None:
        """One line on stderr, whatever the message holds."""
        error_line(self.err, message)

    def _emit(self, text: str, job: Job | None) -> None:
        """Agent output: to stdout, or held while its job is in the background. A script has no prompt to
        keep clear: a background job's output is written there too, a whole line at a time (so two jobs'
        answers do not interleave word by word)."""
        if self.captured or job is None or job.foreground:
            self.write(text)
            return
        job.hold(text)
        if not self.interactive and "\n" in text:
            held = job.take_held()
            lines, _, rest = held.rpartition("\n")
            self.write(lines + "\n")
            if rest:
                job.hold(rest)

    # -- running lines ----------------------------------------------------------------------------
    def variables(self) -> dict[str, str]:
        last_bg = self.ctl.last_bg
        return {"?": str(self.status), "!": "" if last_bg is None else str(last_bg)}

    async def run_line(self, text: str) -> int:
        """Run a line (or several) of shell text; returns `$?` afterwards."""
        self.ctl.interrupted = False
        try:
            items = parse(text)
        except ParseError as exc:
            self.error(f"aios: {exc}")
            self.status = 2
            return 2
        for item in items:
            if self.exit_code is not None or self.ctl.interrupted:
                break
            if item.background:
                await self._background(item)
            else:
                await self._foreground(item)
        if self.ctl.interrupted:
            self.status = 130
        return self.status

    async def run_script(self, text: str) -> int:
        """Run a script; `exit` stops it and sets the status, as in sh."""
        status = await self.run_line(text)
        return self.exit_code if self.exit_code is not None else status

    def _start(self, item: AndOr, foreground: bool) -> tuple[Job, Shell]:
        job = Job(cmdline=item_text(item), foreground=foreground)
        sub = self.fork()

        async def main() -> int:
            current_job.set(job)
            return await sub._chain(item)

        job.task = asyncio.get_running_loop().create_task(main())
        return job, sub

    async def _foreground(self, item: AndOr) -> None:
        job, sub = self._start(item, foreground=True)
        self.status = await self.wait_foreground(job)
        if sub.exit_code is not None and job.done:
            self.exit_code = sub.exit_code

    async def _background(self, item: AndOr) -> None:
        first = item.first[0].words[0].expand({}) if len(item.first) == 1 and item.first[0].words else ""
        if first.startswith("%") and not item.rest and item.first[0].redirect is None:
            # `%1 &` is `bg %1`, as in bash (a background `fg` of the current job would wait on itself)
            words = [w.expand({}) for w in item.first[0].words]
            self.status = await self.execute(["bg", *words])
            return
        job, _sub = self._start(item, foreground=False)
        self.add_job(job)
        for _ in range(4):  # let it start its agents, so `$!` and `[N] PID` know their pids
            await asyncio.sleep(0)
        if job.pid is not None:
            self.ctl.last_bg = job.pid
        if self.interactive:
            self.print(f"[{job.number}] {job.pid or ''}".rstrip())
        self.status = 0

    async def _chain(self, item: AndOr) -> int:
        status = await self._pipeline(item.first)
        for op, pipeline in item.rest:
            if self.exit_code is not None or self.ctl.interrupted:
                break
            if (op == "&&") == (status == 0):
                status = await self._pipeline(pipeline)
        return status

    async def _pipeline(self, commands: list[Command]) -> int:
        if len(commands) == 1:
            return await self._simple(commands[0])
        pipes = [Pipe() for _ in commands[1:]]
        last = len(commands) - 1

        async def stage(i: int, cmd: Command) -> int:
            out = make_console(PipeFile(pipes[i])) if i < last else None
            sub = self.fork(out=out, stdin=pipes[i - 1] if i else None)
            try:
                return await sub._simple(cmd)
            finally:
                if i < last:
                    pipes[i].close()

        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(stage(i, cmd)) for i, cmd in enumerate(commands)]
        try:
            results = await asyncio.gather(*tasks)
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()
            raise
        self.status = results[-1]
        return results[-1]

    async def _simple(self, cmd: Command) -> int:
        variables = self.variables()
        argv = [word.expand(variables) for word in cmd.words]
        if cmd.redirect is None:
            status = await self.execute(argv)
        else:
            status = await self._redirected(argv, cmd.redirect.expand(variables), cmd.append)
        self.status = status
        return status

    def host_path(self, path: str) -> Path:
        """`path` (relative to the shell's directory) as this process would open it; a client of another OS
        user gets none: the kernel's process would open it with the kernel's rights, not theirs."""
        if self.foreign:
            raise CommandError(f"{path}: files are not reachable over another OS user's kernel (it would open them "
                               f"as {self.foreign}); redirect in your own shell instead: aios … > FILE")
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.cwd / p

    async def _redirected(self, argv: list[str], target: str, append: bool) -> int:
        try:
            path = self.host_path(target)
        except CommandError as exc:
            self.error(f"aios: {exc}")
            return 1
        try:
            file = open(path, "a" if append else "w", encoding="utf-8")
        except OSError as exc:
            self.error(f"aios: {target}: {exc.strerror or exc}")
            return 1
        safe = _GuardedFile(file)
        sub = self.fork(out=make_console(safe))  # type: ignore[arg-type]
        try:
            status = await sub.execute(argv)
        finally:
            try:
                file.close()
            except OSError as exc:
                safe.failed = safe.failed or exc
        if sub.exit_code is not None:
            self.exit_code = sub.exit_code
        if safe.failed is not None:  # the command ran to its end; what it wrote did not all arrive
            self.error(f"aios: {target}: write error: {safe.failed.strerror or safe.failed}")
            return status or 1
        return status

    async def execute(self, argv: list[str]) -> int:
        """Run one command given as words; every failure becomes one line and a status."""
        name = argv[0]
        if name.startswith("%"):  # `%1` is `fg %1`, as in bash
            name, argv = "fg", ["fg", *argv]
        spec = lookup(name)
        if spec is None:
            self.error(f"aios: {shlex.quote(name)}: command not found (try: help)")
            return 127  # as bash says it
        try:
            args = spec.parse(argv[1:])
            result = await spec.handler(self, args)
            if not isinstance(result, RESULTS):
                raise TypeError(f"{spec.name} returned {type(result).__name__}, not a result")
            return show(self.out, self.err, result, as_json=bool(getattr(args, "json", False)))
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

    # -- jobs -----------------------------------------------------------------------------------
    def add_job(self, job: Job) -> Job:
        """Put a job in the table (`%N`); the shell reports when a background job ends."""
        if job.number:
            return job
        self.ctl.add(job)
        if job.task is not None:
            job.task.add_done_callback(lambda _t: self._job_done(job))
        return job

    def _job_done(self, job: Job) -> None:
        if job.foreground:
            self.jobs.pop(job.number, None)
            return
        if not self.interactive:
            if job.held:  # the end of its last line
                rest = job.take_held()
                self.write(rest if rest.endswith("\n") else rest + "\n")
            return
        self.jobs.pop(job.number, None)  # first: whatever the printing does, the job has left the table
        hint = f"  (its output: logs {job.pid})" if job.held and job.pid else ""
        line = f"[{job.number}]+  {job.state():<22}  {job.cmdline}{hint}"
        if self.ctl.notices is not None:  # the monitor has the screen: said when it gives it back
            self.ctl.notices.append(line)
        else:
            self.print(line)

    async def wait_foreground(self, job: Job) -> int:
        """Wait for a job in the foreground; Ctrl-Z (`suspend`) stops it and gives the shell back."""
        assert job.task is not None
        prev, self.ctl.fg = self.ctl.fg, job
        job.foreground = True
        if job.held:
            self.write(job.take_held())
        job.suspended.clear()
        waiter = asyncio.get_running_loop().create_task(job.suspended.wait())
        try:
            await asyncio.wait({job.task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            job.task.cancel()
            raise
        finally:
            waiter.cancel()
            self.ctl.fg = prev
        if job.task.done():
            if job.number:
                self.jobs.pop(job.number, None)
            return job.status()
        job.foreground = False
        self.add_job(job)
        self.ctl.last_stopped = job.number
        self.print(f"\n[{job.number}]+  Stopped                 {job.cmdline}")
        return 148  # 128 + SIGTSTP, as bash reports it

    async def follow(self, proc: Process, attach: bool = True) -> int:
        """Stream a process's output until it exits; returns its exit status.

        With `attach` the process joins the current job, so Ctrl-C and Ctrl-Z reach it.
        """
        job = current_job.get()
        if attach and job is not None and proc not in job.procs:
            job.procs.append(proc)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        unsubscribe = self.kernel.bus.on(
            lambda e: queue.put_nowait(e) if getattr(e, "pid", None) == proc.pid else None,
            ProcessOutput, ProcessExited,
        )
        ended_with_newline = True
        try:
            while proc.alive or not queue.empty():
                event = await queue.get()
                if isinstance(event, ProcessOutput):
                    self._emit(event.text, job)
                    ended_with_newline = event.text.endswith("\n")
                elif isinstance(event, ProcessExited):
                    break
        finally:
            unsubscribe()
        if not ended_with_newline:
            self._emit("\n", job)
        if not attach:
            return proc.exit_code if proc.exit_code is not None else 0
        if proc.error:
            self.error(f"{proc.program}[{proc.pid}]: {proc.error}")
        elif proc.term_signal is not None and self.interactive and (job is None or job.foreground):
            self.error(describe_exit(proc))
        return proc.exit_code if proc.exit_code is not None else 1

    def interrupt(self) -> None:
        """Ctrl-C: INT to the foreground job's agents, or stop the builtin it runs; a script stops."""
        self.ctl.interrupted = True
        job = self.ctl.fg
        if job is None:
            return
        live = job.live()
        if not live and job.task is not None:
            job.task.cancel()  # `sleep`, `wait`, `logs -f`: interrupt the builtin itself
        for proc in self.family(job):
            try:
                self.api.signal(proc.pid, Signal.INT)
            except KernelError:
                pass

    def suspend(self) -> None:
        """Ctrl-Z: STOP the foreground job's agents and put the job in the background, stopped."""
        job = self.ctl.fg
        if job is None or not job.live():
            return
        for proc in self.family(job):
            try:
                self.api.signal(proc.pid, Signal.STOP)
            except KernelError:
                pass
        job.suspended.set()

    def family(self, job: Job) -> list[Process]:
        """The job's live agents and the children they started: what job control signals, as a shell signals
        a process group."""
        return self.kernel.procs.family(job.procs)

    def live_agents(self) -> list[Process]:
        """This user's processes still running in this kernel."""
        return [p for p in self.kernel.ps() if p.user == self.user]


def item_text(item: AndOr) -> str:
    """A line item as `jobs` shows it."""

    def pipeline(cmds: list[Command]) -> str:
        parts = []
        for cmd in cmds:
            text = " ".join(_quote(w.raw) for w in cmd.words)
            if cmd.redirect is not None:
                text += (" >> " if cmd.append else " > ") + _quote(cmd.redirect.raw)
            parts.append(text)
        return " | ".join(parts)

    text = pipeline(item.first) + "".join(f" {op} {pipeline(p)}" for op, p in item.rest)
    return text + (" &" if item.background else "")


def _quote(word: str) -> str:
    return word if word and re.fullmatch(r"[\w@%+=:,./$?!-]+", word) else '"' + word.replace('"', '\\"') + '"'


class _GuardedFile:
    """A redirect's file: a failing write (a /proc file, a full disk) is kept, not raised into the command,
    so the command (and its agents) runs to its end in the foreground and the shell says it once after."""

    def __init__(self, file: Any) -> None:
        self.file = file
        self.failed: OSError | None = None

    def write(self, text: str) -> int:
        if self.failed is None:
            try:
                return self.file.write(text)
            except OSError as exc:
                self.failed = exc
        return len(text)

    def flush(self) -> None:
        if self.failed is None:
            try:
                self.file.flush()
            except OSError as exc:
                self.failed = exc

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.file.fileno()
