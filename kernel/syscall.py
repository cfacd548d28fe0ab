"""Syscall records and AgentContext, the only API an agent program sees."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kernel import clock
from kernel.errors import NoSuchProcess
from kernel.events import WaitReason
from kernel.llm.backend import LLMRequest, Message
from kernel.process import Signal, State
from kernel.tools.registry import ToolResult

if TYPE_CHECKING:
    from kernel.kernel import Kernel
    from kernel.process import Process

_seq = itertools.count(1)


@dataclass(frozen=True)
class LLMResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    tool_calls: tuple[dict[str, Any], ...] = ()  # native tool calls: {"name": str, "arguments": dict}


@dataclass(eq=False)
class LLMCall:
    """One `llm` syscall, with the timestamps that waiting and turnaround are measured from."""

    sid: int
    proc: Process
    request: LLMRequest
    echo: bool = False
    echoed: bool = False  # some of the answer has reached stdout
    seq: int = field(default_factory=lambda: next(_seq))
    queued_at: float = field(default_factory=clock.now)  # when it last joined the ready queue
    submitted_at: float = field(default_factory=clock.now)  # when it was asked for
    dispatched_at: float | None = None
    first_token_at: float | None = None
    done_at: float | None = None
    raw: str = ""  # everything generated so far, across preemptions
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    chunks: int = 0
    segment_tokens: int = 0  # tokens since it last got a slot
    segment_started: float | None = None  # when it last got a slot
    overhead_s: float = 0.0  # kernel time spent on this call outside the backend
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_estimate: int = 0  # its prompt as the kernel counts it: what it shows until the backend's figure
    slot: int | None = None
    estimate: float | None = None  # its answer's tokens as learned when it was queued (`CallSizes`)
    read_tps: float = 0.0  # prompt tokens a second its server reads, where the kernel measures it (a switch's cost)
    held: bool = False
    bypassed: int = 0  # times a call behind it went first because its prompt was cached (`Dispatcher._next`)
    preempt: str | None = None  # set to a reason to make the serving loop yield the slot
    cancelled: bool = False
    answered: bool = False  # it ended with an answer (not an error, a preemption or a kill)
    on_text: Callable[[str], None] | None = None  # told each piece of the answer as it comes (the HTTP front)
    wait_s: float = 0.0
    service_s: float = 0.0
    future: asyncio.Future[LLMResult] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def prompt_so_far(self) -> int:
        """The prompt tokens it counts for now: its prompt once a slot has read it, until the backend's figure."""
        return self.prompt_estimate if self.dispatched_at is not None else 0

    def __lt__(self, other: LLMCall) -> bool:  # heap tie-break
        return self.seq < other.seq


class Pipe:
    """A one-way text stream, like a Unix pipe: one side `write`s as it goes, the agent reads.

    Reads wait for data; `close()` is end-of-file. A process with nothing piped in reads an
    already-closed, empty pipe (as from /dev/null).
    """

    def __init__(self, text: str = "", closed: bool = False) -> None:
        self._chunks: list[str] = [text] if text else []
        self._closed = closed
        self._ready = asyncio.Event()
        if text or closed:
            self._ready.set()

    @property
    def closed(self) -> bool:
        return self._closed

    def write(self, text: str) -> None:
        if text and not self._closed:
            self._chunks.append(text)
            self._ready.set()

    def close(self) -> None:
        self._closed = True
        self._ready.set()

    async def chunk(self) -> str:
        """The next piece written, as soon as there is one; "" at end-of-file."""
        while not self._chunks:
            if self._closed:
                return ""
            self._ready.clear()
            await self._ready.wait()
        return self._chunks.pop(0)

    async def read(self) -> str:
        """Everything until end-of-file."""
        parts = []
        while piece := await self.chunk():
            parts.append(piece)
        return "".join(parts)

    def __aiter__(self) -> Pipe:
        return self

    async def __anext__(self) -> str:
        piece = await self.chunk()
        if not piece:
            raise StopAsyncIteration
        return piece


class MemoryView:
    """`ctx.memory`: the user's long-term memory, with what this process added marked as its own."""

    def __init__(self, kernel: Kernel, proc: Process) -> None:
        self._kernel, self._proc = kernel, proc

    async def add(self, text: str, tags: str = "") -> int:
        """Remember `text` (secrets are masked); returns its id."""
        await self._kernel._gate(self._proc)
        return await asyncio.to_thread(self._kernel.memory.add, self._proc.user, text, tags, self._proc.pid)

    async def search(self, query: str, limit: int = 5, mine: bool = False) -> list[dict[str, Any]]:
        """Best matches first, from all of the user's memory (or only this process's with `mine`)."""
        await self._kernel._gate(self._proc)
        pid = self._proc.pid if mine else None
        return await asyncio.to_thread(self._kernel.memory.search, self._proc.user, query, limit, pid)


class FilesView:
    """`ctx.files`: the process's workspace through the fs tools, so access control, audit and versions apply."""

    def __init__(self, ctx: AgentContext) -> None:
        self._ctx = ctx

    async def _call(self, tool: str, **args: Any) -> str:
        result = await self._ctx.tool(tool, **args)
        if not result.ok:
            raise OSError(result.error)
        return result.output

    async def read(self, path: str) -> str:
        return await self._call("fs.read", path=path)

    async def write(self, path: str, content: str, append: bool = False) -> str:
        return await self._call("fs.write", path=path, content=content, append=append)

    async def list(self, path: str = ".") -> list[str]:
        return (await self._call("fs.list", path=path)).splitlines()


class AgentContext:
    """What an agent program can do: talk to the model, call tools, remember (`memory`), keep files
    (`files`), write output, read its arguments and input, start children."""

    def __init__(self, kernel: Kernel, proc: Process) -> None:
        self._kernel = kernel
        self._proc = proc
        self.memory = MemoryView(kernel, proc)
        self.files = FilesView(self)
        self._waits = 0  # children being waited for, by as many tasks of this agent

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def argv(self) -> tuple[str, ...]:
        return self._proc.argv

    @property
    def user(self) -> str:
        return self._proc.user

    @property
    def history(self) -> list[dict[str, Any]]:
        """The conversation this process carries on (a resumed process gets its predecessor's); [] if none."""
        return list(self._proc.history)

    @property
    def model(self) -> str:
        return self._kernel.backend.model

    async def llm(
        self,
        messages: list[Message] | str,
        *,
        max_tokens: int = 256,
        temperature: float = 0.7,
        stop: tuple[str, ...] = (),
        echo: bool = False,
        options: dict[str, Any] | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> LLMResult:
        """Ask the model; waits for a slot as the scheduler decides. `echo` streams the answer to stdout.

        `options` go to the backend as they are (Ollama options; `tokens` fixes the simulated reply's length).
        `tools` (schemas from `ctx.tools()`) let a model with native tool calling answer with `tool_calls`.
        """
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        request = LLMRequest(
            messages=list(messages), max_tokens=max_tokens, temperature=temperature, stop=tuple(stop),
            options=dict(options or {}), tools=list(tools or []),
        )
        return await self._kernel.syscall_llm(self._proc, request, echo=echo)

    async def tool(self, name: str, /, **args: Any) -> ToolResult:
        """Call a tool; access control may ask a person first. A denial or failure is an error result.

        `name` is positional-only, so a tool may itself take an argument called `name`."""
        return await self._kernel.syscall_tool(self._proc, name, args)

    def tools(self) -> list[dict[str, Any]]:
        """The tools this process may call, as function schemas for the model."""
        return self._kernel.tools.schemas()

    async def write(self, text: str) -> None:
        """Write to the process's standard output."""
        await self._kernel.syscall_write(self._proc, text)

    async def print(self, *parts: Any) -> None:
        await self.write(" ".join(str(p) for p in parts) + "\n")

    @property
    def stdin(self) -> Pipe:
        """Standard input: what is piped in (`run a | run b`) as it is written; empty when nothing is."""
        if self._proc.stdin is None:
            self._proc.stdin = Pipe(closed=True)
        return self._proc.stdin

    async def client_env(self) -> dict[str, str]:
        """What an outside program needs to call the model as this process, through the kernel's HTTP front
        (started here if it is not running): `OLLAMA_HOST`, `OPENAI_BASE_URL`, `OPENAI_API_KEY`, `AIOS_TOKEN`,
        `AIOS_MODEL`."""
        await self._kernel._gate(self._proc)
        front = await self._kernel.http_front()
        return front.client_env(self._proc)

    async def exec(self, argv: list[str], env: dict[str, str] | None = None) -> int:
        """Run an outside program as this process's child, in the tool sandbox with the host's network; what it
        writes is this process's output, `kill -STOP`/`-CONT` reach it, and its exit status is returned."""
        from kernel.http.external import run_external

        await self._kernel._gate(self._proc)
        return await run_external(self._kernel, self._proc, list(argv), dict(env or {}))

    def spawn(self, program: str, argv: tuple[str, ...] | list[str] = (), *, stdin: str | None = None) -> int:
        """Start a child process (its ppid is this one; same user and niceness); returns its pid."""
        pipe = None if stdin is None else Pipe(stdin, closed=True)
        child = self._kernel.spawn(program, argv, nice=self._proc.nice, user=self._proc.user,
                                   ppid=self._proc.pid, stdin=pipe, workspace=self._kernel.workspace(self._proc))
        return child.pid

    def _child(self, pid: int) -> Process:
        child = self._kernel.procs.get(pid)
        if child is None or child.ppid != self._proc.pid:
            raise NoSuchProcess(pid)
        return child

    async def wait(self, pid: int) -> int:
        """Wait for a child to exit (`ps` shows WAITING(child)); returns its exit code (128+N when signal N
        ended it)."""
        child = self._child(pid)
        if child.alive:
            self._waits += 1
            self._kernel.set_state(self._proc, State.WAITING, WaitReason.CHILD)
            try:
                await child.exited.wait()
            finally:
                self._waits -= 1
                if not self._waits:
                    self._kernel.set_state(self._proc, State.RUNNING)
        return child.exit_code if child.exit_code is not None else 1

    def signal(self, pid: int, sig: Signal = Signal.TERM) -> None:
        """Send a signal to a child (nothing if it has already exited)."""
        child = self._child(pid)
        if child.alive:
            self._kernel.signal(pid, sig, sender=self._proc.user)

    @property
    def signalled(self) -> Signal | None:
        """The signal that is ending this process (TERM, INT, HUP, KILL), once one was sent; else None."""
        return self._proc.pending_signal

    def output(self, pid: int) -> str:
        """What a child has written so far."""
        child = self._kernel.procs.get(pid)
        return "".join(child.output) if child is not None and child.ppid == self._proc.pid else ""
