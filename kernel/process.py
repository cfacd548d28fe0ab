"""Processes, their states and signals, and the process table."""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field
from typing import Any

from kernel import clock


class State(enum.StrEnum):
    NEW = "NEW"
    READY = "READY"  # its model call waits in the scheduler's ready queue
    RUNNING = "RUNNING"  # it holds a model slot, or runs its own code
    WAITING = "WAITING"  # blocked on something outside the scheduler: see `waiting_on`
    STOPPED = "STOPPED"
    EXITED = "EXITED"


class Signal(enum.IntEnum):
    """The signals aios delivers, numbered as on Linux."""

    HUP = 1
    INT = 2
    KILL = 9
    TERM = 15
    CONT = 18
    STOP = 19

    @property
    def signame(self) -> str:
        return f"SIG{self.name}"


class NoSuchSignal(ValueError):
    pass


def parse_signal(spec: str) -> Signal:
    """`9`, `KILL`, `SIGKILL`, `kill` → Signal.KILL."""
    text = spec.strip().upper()
    if text.isdigit():
        try:
            return Signal(int(text))
        except ValueError:
            raise NoSuchSignal(f"invalid signal number: {spec}") from None
    name = text.removeprefix("SIG")
    try:
        return Signal[name]
    except KeyError:
        raise NoSuchSignal(f"invalid signal specification: {spec}") from None


@dataclass(frozen=True)
class Usage:
    """What a process has used so far, its model calls in flight included: the one source of the live
    counters that `ps`, `/proc/PID/status`, the monitor and its process screen show."""

    prompt_tokens: int
    completion_tokens: int
    llm_time: float  # seconds its calls held a slot
    queue_wait: float  # seconds its calls waited for one
    ctx_tokens: int  # the size of its context: the last call's prompt and what it has generated so far

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Process:
    pid: int
    ppid: int
    user: str
    program: str
    argv: tuple[str, ...]
    nice: int = 0
    state: State = State.NEW
    waiting_on: str | None = None  # llm | tool | permission, while WAITING
    exit_code: int | None = None
    term_signal: int | None = None
    error: str | None = None
    lost: bool = False
    created_at: float = field(default_factory=clock.now)
    started_at: float | None = None
    ended_at: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    llm_time: float = 0.0
    queue_wait: float = 0.0
    syscalls: int = 0
    tool_calls: int = 0
    ctx_switches: int = 0
    ctx_tokens: int = 0  # size of its context at its last model call
    ctx_window: int = 0  # the model's window at its last model call (0: none yet)
    compactions: int = 0  # times its context was compacted (this run; ContextCompacted events keep them)
    switch_cost_s: float = 0.0  # time its calls spent resuming after switches (ContextSwitched events)
    kernel_pid: int | None = None
    workspace: str | None = None  # the directory its fs and shell tools work in
    output: list[str] = field(default_factory=list, repr=False)
    # runtime only, never stored
    task: asyncio.Task[Any] | None = field(default=None, repr=False, compare=False)
    exited: asyncio.Event = field(default_factory=asyncio.Event, repr=False, compare=False)
    resumed: asyncio.Event = field(default_factory=asyncio.Event, repr=False, compare=False)
    pending_signal: Signal | None = field(default=None, repr=False, compare=False)
    state_before_stop: State | None = field(default=None, repr=False, compare=False)
    waiting_before_stop: str | None = field(default=None, repr=False, compare=False)
    stdin: Any = field(default=None, repr=False, compare=False)  # a kernel.syscall.Pipe, or None
    history: list[dict[str, Any]] = field(default_factory=list, repr=False, compare=False)  # carried-on conversation
    last_logged: tuple[str, str] | None = field(default=None, repr=False, compare=False)  # last transcript entry
    inflight: list[Any] = field(default_factory=list, repr=False, compare=False)  # its unsettled LLMCalls

    def __post_init__(self) -> None:
        self.resumed.set()

    @property
    def alive(self) -> bool:
        return self.state is not State.EXITED

    @property
    def status(self) -> str:
        """The state as `ps` prints it: `WAITING(llm)`, `EXITED(0)`, `EXITED(SIGKILL)`, `EXITED(lost)`."""
        if self.state is State.WAITING and self.waiting_on:
            return f"WAITING({self.waiting_on})"
        if self.state is State.EXITED:
            if self.lost:
                return "EXITED(lost)"
            if self.term_signal is not None:
                return f"EXITED({Signal(self.term_signal).signame})"
            return f"EXITED({self.exit_code})"
        return self.state.value

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def usage(self) -> Usage:
        """The settled counters plus what its calls in flight have used so far (a stopped or preempted
        call keeps what it generated: STOP does not take tokens back)."""
        prompt, completion, run, wait, ctx = (self.prompt_tokens, self.completion_tokens, self.llm_time,
                                              self.queue_wait, self.ctx_tokens)
        now = clock.now()
        for call in self.inflight:
            completion += call.chunks
            run += call.service_s
            wait += call.wait_s
            if call.slot is not None and call.segment_started is not None:
                run += max(0.0, now - call.segment_started)
            elif call.dispatched_at is None:
                wait += max(0.0, now - call.queued_at)  # still waiting for its first slot
            if call.dispatched_at is not None:
                prompt += call.prompt_so_far
                ctx = call.prompt_so_far + call.chunks
        return Usage(prompt, completion, run, wait, ctx)

    def accruing(self) -> tuple[int, int]:
        """How fast `usage()`'s model time and queue wait grow now: the calls on a slot, the calls still queued
        for their first one (each adds a second per second; between two events nothing else changes)."""
        run = wait = 0
        for call in self.inflight:
            if call.slot is not None and call.segment_started is not None:
                run += 1
            elif call.dispatched_at is None:
                wait += 1
        return run, wait

    @property
    def cmdline(self) -> str:
        return " ".join([self.program, *self.argv])

    @property
    def hidden_cmdline(self) -> str:
        """The command line as another user sees it: the program, its arguments (the task's text) hidden."""
        return f"{self.program} [hidden]" if self.argv else self.program

    def cpu_time(self) -> float:
        """Seconds the process spent on the model (the 'CPU' of aios)."""
        return self.llm_time

    def elapsed(self) -> float:
        start = self.started_at or self.created_at
        return (self.ended_at or clock.now()) - start

    @classmethod
    def from_record(cls, row: dict[str, Any]) -> Process:
        """A process as the database remembers it (an earlier run, or this one)."""
        import json

        proc = cls(
            pid=row["pid"], ppid=row["ppid"] or 0, user=row["user"], program=row["program"],
            argv=tuple(json.loads(row["argv"] or "[]")), nice=row["nice"] or 0,
            state=State(row["state"]), waiting_on=row.get("waiting_on"),
            exit_code=row.get("exit_code"), term_signal=row.get("signal"), error=row.get("error"),
            lost=bool(row.get("lost")), created_at=row["created_at"], started_at=row.get("started_at"),
            ended_at=row.get("ended_at"), prompt_tokens=row.get("prompt_tokens") or 0,
            completion_tokens=row.get("completion_tokens") or 0, llm_time=row.get("llm_time") or 0.0,
            queue_wait=row.get("queue_wait") or 0.0, syscalls=row.get("syscalls") or 0,
            tool_calls=row.get("tool_calls") or 0, ctx_switches=row.get("ctx_switches") or 0,
            ctx_tokens=row.get("ctx_tokens") or 0,
            kernel_pid=row.get("kernel_pid"), workspace=row.get("workspace"),
        )
        if row.get("output"):
            proc.output.append(row["output"])
        if proc.state is State.EXITED:
            proc.exited.set()
        return proc

    def to_dict(self) -> dict[str, Any]:
        used = self.usage()
        return {
            "pid": self.pid,
            "ppid": self.ppid,
            "user": self.user,
            "program": self.program,
            "argv": list(self.argv),
            "cmd": self.cmdline,
            "nice": self.nice,
            "state": self.state.value,
            "status": self.status,
            "waiting_on": self.waiting_on,
            "exit_code": self.exit_code,
            "signal": self.term_signal,
            "error": self.error,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "prompt_tokens": used.prompt_tokens,
            "completion_tokens": used.completion_tokens,
            "llm_time_s": round(used.llm_time, 6),
            "queue_wait_s": round(used.queue_wait, 6),
            "syscalls": self.syscalls,
            "tool_calls": self.tool_calls,
            "ctx_switches": self.ctx_switches,
            "ctx_tokens": used.ctx_tokens,
            "workspace": self.workspace,
            "ctx_window": self.ctx_window,
            "compactions": self.compactions,
            "switch_cost_s": round(self.switch_cost_s, 6),
        }


class ProcessTable:
    """The processes of this kernel, by pid: every live one, and the most recent `keep_exited` that exited
    (older ones live on in the database, where `ps -a` and `lookup` find them), so memory stays flat."""

    def __init__(self, keep_exited: int = 1000) -> None:
        self._procs: dict[int, Process] = {}
        self._exited: dict[int, None] = {}  # pids in the order they exited
        self._live: dict[str, int] = {}  # live processes per user
        self.keep_exited = keep_exited

    def add(self, proc: Process) -> None:
        self._procs[proc.pid] = proc
        if proc.alive:
            self._live[proc.user] = self._live.get(proc.user, 0) + 1

    def live(self, user: str) -> int:
        """How many of `user`'s processes are alive (without walking the table: spawn asks every time)."""
        return self._live.get(user, 0)

    def exited(self, proc: Process) -> None:
        """`proc` has exited: keep it a while, forget the oldest exited beyond `keep_exited`."""
        if proc.pid in self._exited:
            return
        if self._live.get(proc.user, 0) > 1:
            self._live[proc.user] -= 1
        else:
            self._live.pop(proc.user, None)
        self._exited[proc.pid] = None
        while len(self._exited) > self.keep_exited:
            oldest = next(iter(self._exited))
            del self._exited[oldest]
            self._procs.pop(oldest, None)

    def get(self, pid: int) -> Process | None:
        return self._procs.get(pid)

    def __contains__(self, pid: int) -> bool:
        return pid in self._procs

    def __iter__(self):  # noqa: ANN204 - plain iterator over processes
        return iter(sorted(self._procs.values(), key=lambda p: p.pid))

    def __len__(self) -> int:
        return len(self._procs)

    def alive(self) -> list[Process]:
        return [p for p in self if p.alive]

    def family(self, procs: list[Process]) -> list[Process]:
        """The live ones of `procs` and, after each, its live descendants: what a signal to a job reaches,
        as a shell's signal to a process group does."""
        children: dict[int, list[Process]] = {}
        for p in self.alive():
            children.setdefault(p.ppid, []).append(p)
        found: dict[int, Process] = {}
        todo = [p for p in procs if p.alive]
        while todo:
            p = todo.pop(0)
            if p.pid not in found:
                found[p.pid] = p
                todo[:0] = children.get(p.pid, [])
        return list(found.values())
