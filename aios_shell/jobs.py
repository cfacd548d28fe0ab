"""Jobs, as bash has them: what a line started, numbered `%N` once it is in the background.

Every line item (`run a | run b > f`, `cmd && cmd`) runs as one asyncio task, its *job*. The
shell waits for a foreground job; Ctrl-Z stops its agents (STOP) and puts it in the jobs table,
`bg` continues it there (CONT) and `fg` waits for it again. A job's agents write to the terminal
only while the job is in the foreground: output written in the background is held for `fg`
(and is always in `logs PID`), so a prompt is never buried under a background answer.
"""

from __future__ import annotations

import asyncio
import contextvars
from dataclasses import dataclass, field
from typing import Any

from kernel.api import Process, Signal, State

HELD_MAX = 1_000_000  # characters of background output kept for `fg`

# the job the running code belongs to: commands and followers find it here
current_job: contextvars.ContextVar[Job | None] = contextvars.ContextVar("aios_job", default=None)


@dataclass(eq=False)
class Job:
    cmdline: str
    number: int = 0  # 0 until the job is put in the table
    procs: list[Process] = field(default_factory=list)
    task: asyncio.Task[int] | None = None
    foreground: bool = True
    held: list[str] = field(default_factory=list)
    held_chars: int = 0
    suspended: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def pid(self) -> int | None:
        return self.procs[-1].pid if self.procs else None

    @property
    def done(self) -> bool:
        return self.task is not None and self.task.done()

    @property
    def stopped(self) -> bool:
        return not self.done and any(p.state is State.STOPPED for p in self.procs)

    def live(self) -> list[Process]:
        return [p for p in self.procs if p.alive]

    def hold(self, text: str) -> None:
        if self.held_chars < HELD_MAX:
            self.held.append(text)
            self.held_chars += len(text)

    def take_held(self) -> str:
        text, self.held, self.held_chars = "".join(self.held), [], 0
        return text

    def status(self) -> int:
        """The job's exit status, as `$?` and `wait %N` give it (the last command's)."""
        task = self.task
        if task is None or not task.done():
            return 0
        if task.cancelled():
            return 130
        if task.exception() is not None:
            return 1
        return int(task.result())

    def state(self) -> str:
        if not self.done:
            return "Stopped" if self.stopped else "Running"
        if self.procs and not self.procs[-1].alive:
            return describe_exit(self.procs[-1])
        code = self.status()
        return "Done" if code == 0 else f"Exit {code}"

    def to_dict(self, current: bool = False) -> dict[str, Any]:
        return {"job": self.number, "pids": [p.pid for p in self.procs], "state": self.state(),
                "command": self.cmdline, "current": current}


def describe_exit(proc: Process) -> str:
    if proc.lost:
        return "Lost"
    if proc.term_signal is not None:
        return {Signal.KILL: "Killed", Signal.TERM: "Terminated", Signal.INT: "Interrupt",
                Signal.HUP: "Hangup"}.get(Signal(proc.term_signal), f"Signal {proc.term_signal}")
    return "Done" if proc.exit_code == 0 else f"Exit {proc.exit_code}"


@dataclass
class JobControl:
    """What a shell and all its subshells share: the job table, the foreground job, `$!`."""

    jobs: dict[int, Job] = field(default_factory=dict)
    fg: Job | None = None
    last_bg: int | None = None
    interrupted: bool = False
    last_stopped: int | None = None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    notices: list[str] | None = None  # job reports kept while the monitor has the screen

    def add(self, job: Job) -> Job:
        if not job.number:
            job.number = max(self.jobs, default=0) + 1
            self.jobs[job.number] = job
        return job

    def current(self) -> Job | None:
        """The job `fg`, `bg` and `%+` mean: the last one stopped here (Ctrl-Z), else a stopped one (by a signal
        from elsewhere: the newest of those), else the newest."""
        if self.last_stopped in self.jobs and self.jobs[self.last_stopped].stopped:
            return self.jobs[self.last_stopped]
        stopped = [n for n, job in self.jobs.items() if job.stopped]
        if stopped:
            return self.jobs[max(stopped)]
        return self.jobs[max(self.jobs)] if self.jobs else None

    def find(self, spec: str) -> Job | None:
        """`%N`, `%%`, `%+` or `%-`."""
        body = spec[1:] if spec.startswith("%") else spec
        if body in ("", "%", "+"):
            return self.current()
        if body == "-":
            numbers = sorted(self.jobs)
            return self.jobs[numbers[-2]] if len(numbers) > 1 else None
        return self.jobs.get(int(body)) if body.isdigit() else None
