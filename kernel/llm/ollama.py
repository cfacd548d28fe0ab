"""Ollama through the official `ollama.AsyncClient`, streaming.

Every failure of the client is mapped to one readable line: a dead server, a
missing model (with the `pull` hint), an HTTP error, a stream cut mid-way, a
server that does not answer in time. Closing the stream (cancellation) closes
the HTTP response, so Ollama stops generating.

Tool calling: `request.tools` (function schemas) go to `chat(tools=…)` only when
there are some; `message.tool_calls` in the stream become `Chunk.tool_calls`
({"name", "arguments"}). Messages in the kernel's neutral form are translated: an
assistant message's `tool_calls` as {"name", "arguments"} are wrapped as Ollama's
{"function": {…}}, and a tool message's `name` is sent as `tool_name`. A model
without tool support makes Ollama answer 400 "… does not support tools"; that is
raised as `ToolsUnsupported`, so an agent can fall back to tools described in text.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import httpx
import ollama

from kernel.llm.backend import (
    BackendError,
    BackendUnavailable,
    Chunk,
    LLMRequest,
    ModelNotFound,
    ToolsUnsupported,
    estimate_tokens,
)
from kernel.settings import whole

DEFAULT_HOST = "127.0.0.1:11434"
DEFAULT_MODEL = "gemma3:270m"


def ollama_host() -> str:
    return os.environ.get("OLLAMA_HOST") or DEFAULT_HOST


def base_url(host: str) -> str:
    host = host.strip().rstrip("/")
    if "://" not in host:
        host = "http://" + host
    if host.count(":") < 2:  # no port given
        host += ":11434"
    return host


def probe(host: str, timeout: float = 0.5) -> bool:
    """True when an Ollama server answers at `host` (`{"version": …}` from /api/version)."""
    return probe_reason(host, timeout) is None


def probe_reason(host: str, timeout: float = 0.5) -> str | None:
    """None when Ollama answers at `host`; else why not, one line (nothing there, or something that is not
    Ollama: another status, not JSON, JSON without a version)."""
    try:
        response = httpx.get(base_url(host) + "/api/version", timeout=timeout)
    except httpx.HTTPError:
        return f"cannot reach Ollama at {host}"
    if response.status_code != 200:
        return f"the server at {host} is not Ollama (/api/version answered {response.status_code})"
    try:
        body = response.json()
    except ValueError:
        return f"the server at {host} is not Ollama (/api/version did not answer JSON)"
    if not isinstance(body, dict) or not isinstance(body.get("version"), str):
        return f"the server at {host} is not Ollama (/api/version has no version)"
    return None


def list_models(host: str, timeout: float = 2.0) -> list[str]:
    try:
        response = httpx.get(base_url(host) + "/api/tags", timeout=timeout)
        response.raise_for_status()
        body = response.json()
    except (httpx.HTTPError, ValueError):
        return []
    models = body.get("models") if isinstance(body, dict) else None
    return [str(m.get("name") or m.get("model")) for m in models or [] if isinstance(m, dict)]


def _to_ollama(message: dict[str, Any]) -> dict[str, Any]:
    """A kernel message as Ollama wants it (tool calls wrapped in `function`, `tool_name` on results)."""
    out = dict(message)
    if out.get("tool_calls"):
        out["tool_calls"] = [c if "function" in c else {"function": {"name": c.get("name", ""),
                                                                      "arguments": c.get("arguments") or {}}}
                             for c in out["tool_calls"]]
    if out.get("role") == "tool" and "name" in out and "tool_name" not in out:
        out["tool_name"] = out.pop("name")
    return out


class OllamaBackend:
    name: ClassVar[str] = "ollama"

    def __init__(
        self,
        model: str | None = None,
        host: str | None = None,
        slots: int | None = None,
        keep_alive: str | float = "5m",
        connect_timeout: float = 5.0,
        read_timeout: float = 300.0,
        context_window: int = 8192,
    ) -> None:
        self.host = host or ollama_host()
        self.url = base_url(self.host)
        self.model = model or ""
        self.slots = slots or whole("OLLAMA_NUM_PARALLEL", 1, minimum=1, maximum=1024)
        self.keep_alive = keep_alive
        self.context_window = context_window
        timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        self.timeout = timeout
        self.client = ollama.AsyncClient(host=self.url, timeout=timeout)

    def _error(self, exc: BaseException) -> BackendError:
        """Map whatever the client raised to one clear line."""
        where = f"Ollama at {self.host}"
        if isinstance(exc, ollama.ResponseError):
            text = str(exc.error).strip()
            if "does not support tools" in text.lower():
                return ToolsUnsupported(f"model '{self.model}' on {where} does not support tool calling")
            if exc.status_code == 404 or "not found" in text.lower():
                return ModelNotFound(f"model '{self.model}' not found on {where}; try: pull {self.model}")
            if exc.status_code and exc.status_code >= 400 and exc.status_code != -1:
                return BackendError(f"{where} failed ({exc.status_code}): {text}")
            return BackendError(f"{where} reported an error: {text}")
        if isinstance(exc, (ConnectionError, httpx.ConnectError, httpx.ConnectTimeout)):
            return BackendUnavailable(f"cannot reach Ollama at {self.host}")
        if isinstance(exc, httpx.TimeoutException):
            return BackendUnavailable(f"{where} did not answer in time")
        if isinstance(exc, (httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError)):
            return BackendError(f"connection to {where} lost mid-stream")
        return BackendError(f"{where}: {type(exc).__name__}: {exc}")

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)  # Ollama exposes no tokenizer

    async def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        messages = [_to_ollama(m) for m in request.messages]
        if request.partial:
            messages.append({"role": "assistant", "content": request.partial})
        options: dict[str, Any] = {"num_predict": request.max_tokens, "temperature": request.temperature}
        if request.stop:
            options["stop"] = list(request.stop)
        if request.seed is not None:
            options["seed"] = request.seed
        options.update(request.options)
        extra: dict[str, Any] = {"tools": list(request.tools)} if request.tools else {}
        try:
            stream = await self.client.chat(
                model=self.model, messages=messages, stream=True, options=options, keep_alive=self.keep_alive,
                **extra,
            )
        except (ollama.ResponseError, ConnectionError, httpx.HTTPError) as exc:
            raise self._error(exc) from exc
        produced = 0
        calls: list[dict[str, Any]] = []  # Ollama sends them in a chunk before the last; they go on the last
        try:
            async for part in stream:
                text = part.message.content or "" if part.message else ""
                if part.message and part.message.tool_calls:
                    calls += [{"name": c.function.name, "arguments": dict(c.function.arguments or {})}
                              for c in part.message.tool_calls]
                if text:
                    produced += 1
                    yield Chunk(text=text)
                if part.done:
                    yield Chunk(
                        done=True,
                        prompt_tokens=part.prompt_eval_count or 0,
                        completion_tokens=part.eval_count or produced,
                        finish_reason=part.done_reason or "stop",
                        tool_calls=tuple(calls),
                    )
                    return
        except (ollama.ResponseError, ConnectionError, httpx.HTTPError) as exc:
            raise self._error(exc) from exc
        finally:
            await stream.aclose()
        raise BackendError(f"Ollama at {self.host} ended the stream without finishing")

    async def list_models(self) -> list[str]:
        """The models the server has, by name."""
        try:
            response = await self.client.list()
        except (ollama.ResponseError, ConnectionError, httpx.HTTPError) as exc:
            raise self._error(exc) from exc
        return [m.model for m in response.models if m.model]

    async def loaded(self) -> list[dict[str, Any]]:
        """The models the server holds in memory now (`ollama ps`), each as {"name", "model", "size",
        "size_vram" (bytes), "context_length" (or None), "expires_at" (ISO time or None)}."""
        try:
            response = await self.client.ps()
        except (ollama.ResponseError, ConnectionError, httpx.HTTPError) as exc:
            raise self._error(exc) from exc
        return [{"name": m.name or m.model or "?", "model": m.model or m.name or "", "size": int(m.size or 0),
                 "size_vram": int(m.size_vram or 0), "context_length": m.context_length,
                 "expires_at": m.expires_at.isoformat() if m.expires_at else None}
                for m in response.models]

    async def pull(self, model: str) -> AsyncIterator[dict[str, Any]]:
        """Download `model`; yields progress as {"status": str, "completed": int|None, "total": int|None}."""
        try:
            stream = await self.client.pull(model, stream=True)
            async for part in stream:
                yield {"status": part.status or "", "completed": part.completed, "total": part.total}
        except ollama.ResponseError as exc:
            text = str(exc.error).strip()
            if exc.status_code == 404 or "not found" in text.lower() or "does not exist" in text.lower():
                raise ModelNotFound(f"model '{model}' is not in the Ollama library: {text}") from exc
            raise BackendError(f"Ollama at {self.host} could not pull '{model}': {text}") from exc
        except (ConnectionError, httpx.HTTPError) as exc:
            raise self._error(exc) from exc

    async def start(self) -> None:
        if not self.model:
            models = list_models(self.host)
            self.model = models[0] if models else DEFAULT_MODEL

    async def close(self) -> None:
        await self.client._client.aclose()

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": self.model,
            "host": self.host,
            "slots": self.slots,
            "keep_alive": self.keep_alive,
            "context_window": self.context_window,
        }
