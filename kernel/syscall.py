"""Syscall records and AgentContext, the only API an agent program sees."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kernel.llm.backend import LLMRequest, Message

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


@dataclass(eq=False)
class LLMCall:
    """One `llm` syscall, with the timestamps that waiting and turnaround are measured from."""

    sid: int
    proc: Process
    request: LLMRequest
    echo: bool = False
    seq: int = field(default_factory=lambda: next(_seq))
    queued_at: float = field(default_factory=time.time)
    dispatched_at: float | None = None
    first_token_at: float | None = None
    done_at: float | None = None
    raw: str = ""  # everything generated so far, across preemptions
    chunks: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    slot: int | None = None
    held: bool = False
    preempt: str | None = None  # set to a reason to make the serving loop yield the slot
    cancelled: bool = False
    wait_s: float = 0.0
    service_s: float = 0.0
    future: asyncio.Future[LLMResult] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    @property
    def pid(self) -> int:
        return self.proc.pid

    def __lt__(self, other: LLMCall) -> bool:  # heap tie-break
        return self.seq < other.seq


class AgentContext:
    """What an agent program can do: talk to the model, write output, read its arguments."""

    def __init__(self, kernel: Kernel, proc: Process) -> None:
        self._kernel = kernel
        self._proc = proc

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
    ) -> LLMResult:
        """Ask the model; waits for a slot as the scheduler decides. `echo` streams the answer to stdout."""
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        request = LLMRequest(
            messages=list(messages), max_tokens=max_tokens, temperature=temperature, stop=tuple(stop)
        )
        return await self._kernel.syscall_llm(self._proc, request, echo=echo)

    async def write(self, text: str) -> None:
        """Write to the process's standard output."""
        await self._kernel.syscall_write(self._proc, text)

    async def print(self, *parts: Any) -> None:
        await self.write(" ".join(str(p) for p in parts) + "\n")
