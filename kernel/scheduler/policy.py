"""The interface every scheduling policy implements."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from kernel.syscall import LLMCall


class Policy(Protocol):
    """A ready queue with an order. The dispatcher owns the slots; the policy owns the order."""

    name: str

    def push(self, call: LLMCall) -> None: ...

    def pop(self) -> LLMCall | None: ...

    def remove(self, call: LLMCall) -> bool: ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[LLMCall]: ...

    def reason(self, call: LLMCall) -> str:
        """Why `call` sits where it does, in a few words (shown by `sched`)."""
        ...
