"""Any engine that serves the OpenAI API (llama.cpp's server, vLLM, SGLang, LM Studio), through the official
`openai.AsyncOpenAI` client, streaming.

`--backend openai --base-url URL` (or `OPENAI_BASE_URL`), and pool entries `openai:URL[@N]`. The URL is the API's
root, with or without its `/v1`. The key is `OPENAI_API_KEY` where set (local engines want none). A call is one
`POST /v1/chat/completions` with `stream=True`; closing the stream (cancellation) closes the HTTP response, so the
engine stops generating. The usage counts come from the engine's last chunk (`stream_options.include_usage`) where
it sends one, else the prompt is counted at four characters a token and the answer a token a chunk.

Messages in the kernel's neutral form are translated: an assistant message's `tool_calls` as {"name",
"arguments"} get ids and the `function` wrapping with JSON-encoded arguments, and each tool result is matched to
its call's id in order (`tool_call_id`). Tool calls streamed in fragments are put together by index; arguments
that are not a JSON object reach the tool as `{"_raw": text}`, which fails its schema with a clear line.

A call preempted mid-answer goes on with what it had produced as a last assistant message: the OpenAI API has
no continuation, so how an engine takes it is its own (llama.cpp's server continues the message). Every failure
is one line naming the server: refused, timed out, cut mid-stream, an unknown model, any other HTTP status.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import openai

from kernel.llm.backend import (
    BackendError,
    BackendUnavailable,
    Chunk,
    LLMRequest,
    ModelNotFound,
    ToolsUnsupported,
    call_arguments,
    estimate_tokens,
)

DEFAULT_CONTEXT = 8192


def api_root(url: str) -> str:
    """`URL` as the client wants it: a scheme, no trailing slash, ending in `/v1`."""
    url = url.strip().rstrip("/")
    if not url:
        raise BackendError("the openai backend needs the server's address: --base-url URL (or OPENAI_BASE_URL)")
    if "://" not in url:
        url = "http://" + url
    if not url.endswith("/v1"):
        url += "/v1"
    return url


def to_openai(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Kernel messages as the OpenAI API wants them: tool calls with ids and JSON arguments, results naming them."""
    out: list[dict[str, Any]] = []
    pending: list[str] = []  # ids of calls not answered yet, oldest first
    n = 0
    for message in messages:
        m = {k: v for k, v in message.items() if k in ("role", "content", "name", "tool_call_id", "tool_calls")}
        m.setdefault("content", "")
        if m.get("tool_calls"):
            calls = []
            for call in m["tool_calls"]:
                fn = call.get("function") or call
                n += 1
                ident = str(call.get("id") or f"call_{n}")
                arguments = fn.get("arguments") or {}
                calls.append({"id": ident, "type": "function", "function": {
                    "name": str(fn.get("name", "")),
                    "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments)}})
                pending.append(ident)
            m["tool_calls"] = calls
        elif "tool_calls" in m:
            del m["tool_calls"]
        if m.get("role") == "tool":
            m.setdefault("tool_call_id", pending.pop(0) if pending else f"call_{n or 1}")
            if m["tool_call_id"] in pending:
                pending.remove(m["tool_call_id"])
        elif m.get("role") != "assistant" and "name" in m:
            del m["name"]
        out.append(m)
    return out


class OpenAIBackend:
    name: ClassVar[str] = "openai"

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        slots: int | None = None,
        api_key: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 300.0,
        context_window: int | None = None,
    ) -> None:
        self.url = api_root(base_url if base_url is not None else os.environ.get("OPENAI_BASE_URL", ""))
        self.host = self.url.removesuffix("/v1")  # the pool names endpoints by it
        self.model = model or ""
        self.slots = slots or 1
        self.context_window = context_window or DEFAULT_CONTEXT
        self._window_given = context_window is not None
        self.timeout = openai.Timeout(read_timeout, connect=connect_timeout)
        self.client = openai.AsyncOpenAI(base_url=self.url, api_key=api_key or os.environ.get("OPENAI_API_KEY")
                                         or "none", timeout=self.timeout, max_retries=0)

    def _error(self, exc: BaseException) -> BackendError:
        """Whatever the client raised, as one line naming the server."""
        where = f"the OpenAI-compatible server at {self.host}"
        if isinstance(exc, BackendError):
            return exc
        if isinstance(exc, openai.APITimeoutError):
            return BackendUnavailable(f"{where} did not answer in time")
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc.__context__
            if cause is not None and "connect" not in type(cause).__name__.lower():
                return BackendError(f"connection to {where} lost mid-stream")
            return BackendUnavailable(f"cannot reach {where}")
        if isinstance(exc, openai.APIStatusError):
            text = _message(exc)
            lowered = text.lower()
            if exc.status_code == 404 or ("model" in lowered and "not found" in lowered):
                return ModelNotFound(f"model '{self.model}' not found at {where}: {text}")
            if exc.status_code == 400 and "tool" in lowered and ("support" in lowered or "not" in lowered):
                return ToolsUnsupported(f"model '{self.model}' at {where} does not support tool calling")
            return BackendError(f"{where} failed ({exc.status_code}): {text}")
        if isinstance(exc, openai.OpenAIError):
            return BackendError(f"{where}: {exc}")
        # the transport's own errors surface mid-stream (a reset, a truncated body)
        return BackendError(f"connection to {where} lost mid-stream ({type(exc).__name__})")

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)  # the API exposes no tokenizer

    async def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        messages = to_openai(request.messages)
        if request.partial:
            messages.append({"role": "assistant", "content": request.partial})
        extra: dict[str, Any] = {}
        if request.stop:
            extra["stop"] = list(request.stop)[:4]  # the API takes at most four
        if request.seed is not None:
            extra["seed"] = request.seed
        if request.tools:
            extra["tools"] = list(request.tools)
        body = {k: v for k, v in request.options.items() if k not in ("num_predict", "temperature")}
        try:
            stream = await self.client.chat.completions.create(
                model=self.model, messages=messages, stream=True, max_tokens=request.max_tokens,
                temperature=request.temperature, stream_options={"include_usage": True},
                extra_body=body or None, **extra)
        except Exception as exc:
            raise self._error(exc) from exc
        produced, finish = 0, None
        calls: dict[int, dict[str, str]] = {}
        usage = None
        try:
            async for part in stream:
                if part.usage is not None:
                    usage = part.usage
                for choice in part.choices or ():
                    delta = choice.delta
                    if delta is not None:
                        for call in delta.tool_calls or ():
                            slot = calls.setdefault(call.index or 0, {"name": "", "arguments": ""})
                            if call.function is not None:
                                slot["name"] += call.function.name or ""
                                slot["arguments"] += call.function.arguments or ""
                        if delta.content:
                            produced += 1
                            yield Chunk(text=delta.content)
                    finish = choice.finish_reason or finish
        except Exception as exc:
            raise self._error(exc) from exc
        finally:
            await stream.close()
        if finish is None and usage is None:
            raise BackendError(f"the OpenAI-compatible server at {self.host} ended the stream without finishing")
        prompt = usage.prompt_tokens if usage is not None and usage.prompt_tokens else sum(
            self.count_tokens(str(m.get("content") or "")) for m in messages)
        completion = usage.completion_tokens if usage is not None and usage.completion_tokens else produced
        yield Chunk(done=True, prompt_tokens=prompt, completion_tokens=completion,
                    finish_reason="tool_calls" if calls and finish in (None, "tool_calls") else finish or "stop",
                    tool_calls=tuple({"name": c["name"], "arguments": call_arguments(c["arguments"])}
                                     for _, c in sorted(calls.items()) if c["name"]))

    async def list_models(self) -> list[str]:
        """The models the server serves (`/v1/models`), by id."""
        try:
            page = await self.client.models.list()
        except Exception as exc:
            raise self._error(exc) from exc
        models = []
        for m in page.data:
            models.append(m.id)
            window = getattr(m, "max_model_len", None) or (m.model_extra or {}).get("max_model_len")
            if not self._window_given and isinstance(window, int) and window > 0 and m.id == (self.model or m.id):
                self.context_window = window  # vLLM says how long a context its model takes
        return models

    async def start(self) -> None:
        """Ask the server what it serves: the first model, when none was named (one line if it does not answer)."""
        models = await self.list_models()
        if not self.model:
            if not models:
                raise ModelNotFound(f"the OpenAI-compatible server at {self.host} serves no model")
            self.model = models[0]

    async def close(self) -> None:
        await self.client.close()

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model, "host": self.host, "slots": self.slots,
                "context_window": self.context_window}


def _message(exc: openai.APIStatusError) -> str:
    """The one line an error response carries (`{"error": {"message": …}}`, `{"detail": …}`, or its text)."""
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            inner = inner.get("message") or inner.get("detail") or inner
        text = inner if isinstance(inner, str) else json.dumps(inner)
    else:
        text = str(body or exc.message or exc.response.reason_phrase)
    return " ".join(text.split())[:300]
