"""The protocol every model backend implements.

A backend declares what it is as class attributes and implements one streaming
method, `stream(request)`, an async iterator of `Chunk`s whose last item has
`done=True` and the token counts. Closing the iterator early (`aclose()`, or
cancelling the task that iterates it) must stop the generation at the next token.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Protocol, runtime_checkable

Message = dict[str, Any]


@dataclass(frozen=True)
class LLMRequest:
    messages: list[Message]
    max_tokens: int = 256
    temperature: float = 0.7
    stop: tuple[str, ...] = ()
    seed: int | None = None
    # text the model already produced for this call before a preemption; the
    # backend continues after it (it is not streamed again)
    partial: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    # tools the model may call (function schemas); backends with native tool calling pass them on
    tools: list[dict[str, Any]] = field(default_factory=list)
    # the server slot to serve it in, where the kernel picks one (llama.cpp's `id_slot`; see `ChoosesSlots`)
    slot: int | None = None

    def continued(self, partial: str, produced: int) -> LLMRequest:
        """This request, to go on after `partial` (`produced` tokens of answer so far): what it has counts
        against its max_tokens, so a call preempted or stopped and resumed is no longer than it asked for."""
        if not partial:
            return replace(self, partial="")
        return replace(self, partial=partial, max_tokens=max(1, self.max_tokens - produced))


@dataclass(frozen=True)
class Chunk:
    text: str = ""
    done: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    # native tool calls, as {"name": str, "arguments": dict}; usually on the last chunk
    tool_calls: tuple[dict[str, Any], ...] = ()


def estimate_tokens(text: str) -> int:
    """Tokens in `text` for a server that exposes no tokenizer (Ollama, the OpenAI API): four characters a token,
    the usual estimate."""
    return max(1, (len(text) + 3) // 4) if text else 0


def call_arguments(text: str) -> dict[str, Any]:
    """A tool call's arguments sent as JSON text (OpenAI's form) as an object; text that is no JSON object comes
    back as `{"_raw": text}`, which fails the tool's schema with a clear line."""
    try:
        value = json.loads(text) if text.strip() else {}
    except ValueError:
        return {"_raw": text}
    return value if isinstance(value, dict) else {"_raw": text}


class BackendError(Exception):
    """A model call failed; `str(exc)` is one line fit to show a user."""


class ToolsUnsupported(BackendError):
    """The model cannot take `tools`; ask again without them (describe the tools in the prompt)."""


class BackendUnavailable(BackendError):
    """The backend cannot be reached (server down, refused, timed out)."""


class ModelNotFound(BackendError):
    """The model is not there; the message says how to get it."""


@runtime_checkable
class Backend(Protocol):
    name: ClassVar[str]
    model: str
    slots: int
    context_window: int

    def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]: ...

    def count_tokens(self, text: str) -> int: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def describe(self) -> dict[str, Any]: ...


# What a backend may do besides serving calls: each a protocol it either has or has not (`isinstance`).
@runtime_checkable
class LiveCapacity(Protocol):
    """Free slots that change by themselves (a pool whose endpoints go down and come back): the dispatcher reads
    `available_slots()` and sets `wake`, which the backend calls when capacity grew."""

    wake: Callable[[], None] | None

    def available_slots(self) -> int: ...


@runtime_checkable
class CachesPrompts(Protocol):
    """Keeps each slot's last prompt and reads only what it does not hold (Ollama's runner, llama.cpp's server with
    `cache_prompt`): `cached_tokens(request)` is how many of a request's prompt tokens a free slot holds now
    (`caches_prompts` False: this one, as configured, keeps none)."""

    caches_prompts: bool

    def cached_tokens(self, request: LLMRequest) -> int: ...


@runtime_checkable
class ChoosesSlots(Protocol):
    """A prompt-caching server whose client names the slot (llama.cpp's server: `id_slot`): a request with `slot`
    set is served in that slot, and `slot_cached(request, slot)` is how many of its prompt tokens that slot holds
    (what llama.cpp's `/slots` shows). The kernel, its only client, picks slots and keeps an agent's across its
    tool calls (`kernel.scheduler.slots`)."""

    caches_prompts: bool

    def slot_cached(self, request: LLMRequest, slot: int) -> int: ...


@dataclass(frozen=True)
class SavedState:
    """What saving a slot's state wrote (llama.cpp's answer to `action=save`: `n_saved`, `n_written`)."""

    tokens: int
    bytes: int


@runtime_checkable
class SwapsSlots(Protocol):
    """A server whose client may save a slot's state under a name and restore it into a slot later (llama.cpp's
    `POST /slots/ID?action=save|restore`): the kernel swaps a conversation out of a slot another call needs, and
    back in when its agent returns, or into any slot for a call that shares its prefix (a program's system
    prompt), instead of the prompt being read again. `saved_cached(request, name)` is how many of the request's
    prompt tokens the state saved as `name` holds."""

    async def save_slot(self, slot: int, name: str) -> SavedState: ...

    async def restore_slot(self, slot: int, name: str) -> int: ...

    def saved_cached(self, request: LLMRequest, name: str) -> int: ...

    def drop_saved(self, name: str) -> None: ...


@runtime_checkable
class HoldsPrompts(Protocol):
    """Can say how much of a conversation it still holds, and where (`/proc/PID/context` shows it):
    `held_tokens(request)` is the longest prefix of `request`'s prompt that a slot's cache or a saved KV state
    holds, and a few words naming where."""

    def held_tokens(self, request: LLMRequest) -> tuple[int, str]: ...


@runtime_checkable
class ListsModels(Protocol):
    """Can say which models it has (`models`, `ls /models`)."""

    async def list_models(self) -> list[str]: ...


@runtime_checkable
class PullsModels(Protocol):
    """Can download a model, reporting progress (`pull`)."""

    def pull(self, model: str) -> AsyncIterator[dict[str, Any]]: ...


@runtime_checkable
class Loads(Protocol):
    """Loads its model ahead of the first call (the shell warms it while the prompt shows)."""

    async def load(self) -> None: ...


@runtime_checkable
class ReportsLoaded(Protocol):
    """Can say which models are in memory now (the monitor's system pane)."""

    async def loaded(self) -> list[dict[str, Any]]: ...
