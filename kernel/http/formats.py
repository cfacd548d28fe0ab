"""The Ollama and OpenAI wire formats, to and from the kernel's `LLMRequest` and answers.

Requests are checked here: anything malformed is a `BadRequest` with one line the client gets as its HTTP 400.
Messages become the kernel's neutral form (tool calls as {"name", "arguments": dict}, a tool result's `name`);
answers go back as each API streams them: Ollama's NDJSON lines (`message.content` / `response` pieces, then a
`done` line with counts), OpenAI's `chat.completion.chunk` events (deltas, a `finish_reason`, a usage chunk when
`stream_options.include_usage` asks).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from kernel.llm.backend import LLMRequest, call_arguments

DEFAULT_MAX_TOKENS = 1024  # Ollama's -1 (no limit) and OpenAI's "no max_tokens", as one call's cap here
MAX_MESSAGES = 10_000


class BadRequest(Exception):
    """A request the API defines as wrong (HTTP 400); `str(exc)` is one line for the client."""


def _number(value: Any, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise BadRequest(f"{name} must be a number from {low:g} to {high:g}")
    return float(value)


def _text(content: Any, where: str) -> str:
    """A message's content: a string, or OpenAI's list of parts (their text joined)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if all(isinstance(p, str) for p in parts):
            return "".join(parts)
    raise BadRequest(f"{where}: content must be text")


def _arguments(raw: Any, where: str) -> dict[str, Any]:
    """Ollama's arguments (an object) or OpenAI's (JSON text)."""
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        return call_arguments(raw)
    raise BadRequest(f"{where}: tool call arguments must be an object")


def messages(raw: Any) -> list[dict[str, Any]]:
    """Either API's messages in the kernel's form."""
    if not isinstance(raw, list) or not raw:
        raise BadRequest("messages must be a non-empty list")
    if len(raw) > MAX_MESSAGES:
        raise BadRequest(f"at most {MAX_MESSAGES} messages")
    out: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # OpenAI tool call id -> its tool's name
    for i, m in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "tool", "developer"):
            raise BadRequest(f"{where}: role must be system, user, assistant or tool")
        role = "system" if m["role"] == "developer" else m["role"]
        msg: dict[str, Any] = {"role": role, "content": _text(m.get("content"), where)}
        if role == "assistant" and m.get("tool_calls"):
            if not isinstance(m["tool_calls"], list):
                raise BadRequest(f"{where}: tool_calls must be a list")
            calls = []
            for c in m["tool_calls"]:
                fn = c.get("function") if isinstance(c, dict) else None
                if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                    raise BadRequest(f"{where}: a tool call needs function.name")
                calls.append({"name": fn["name"], "arguments": _arguments(fn.get("arguments"), where)})
                if isinstance(c.get("id"), str):
                    names[c["id"]] = fn["name"]
            msg["tool_calls"] = calls
        if role == "tool":
            name = m.get("tool_name") or m.get("name") or names.get(str(m.get("tool_call_id")), "")
            msg["name"] = str(name)
        out.append(msg)
    return out


def _tools(raw: Any) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(t, dict) and isinstance(t.get("function"), dict)
                                            and isinstance(t["function"].get("name"), str) for t in raw):
        raise BadRequest("tools must be a list of {\"type\": \"function\", \"function\": {\"name\": …}}")
    return raw


def _stops(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        return (raw,)
    if isinstance(raw, list) and all(isinstance(s, str) for s in raw) and len(raw) <= 16:
        return tuple(raw)
    raise BadRequest("stop must be a string or a list of strings")


def ollama_request(body: dict[str, Any], generate: bool = False) -> LLMRequest:
    """`/api/chat` (or `/api/generate`) as a kernel request."""
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise BadRequest("options must be an object")
    if generate:
        if not isinstance(body.get("prompt", ""), str) or not isinstance(body.get("system", ""), str):
            raise BadRequest("prompt and system must be text")
        msgs = ([{"role": "system", "content": body["system"]}] if body.get("system") else []) + \
            [{"role": "user", "content": body.get("prompt", "")}]
    else:
        msgs = messages(body.get("messages"))
    predict = options.get("num_predict", -1)
    max_tokens = DEFAULT_MAX_TOKENS if predict in (-1, -2, None) else int(_number(predict, "num_predict", 1, 1 << 20))
    seed = options.get("seed")
    return LLMRequest(messages=msgs, max_tokens=max_tokens,
                      temperature=_number(options.get("temperature", 0.8), "temperature", 0, 100),
                      stop=_stops(options.get("stop")), seed=int(seed) if isinstance(seed, int) else None,
                      tools=_tools(body.get("tools")))


def openai_request(body: dict[str, Any]) -> LLMRequest:
    """`/v1/chat/completions` as a kernel request."""
    cap = body.get("max_completion_tokens", body.get("max_tokens"))
    seed = body.get("seed")
    return LLMRequest(messages=messages(body.get("messages")),
                      max_tokens=DEFAULT_MAX_TOKENS if cap is None else int(_number(cap, "max_tokens", 1, 1 << 20)),
                      temperature=_number(body.get("temperature", 1.0) if body.get("temperature") is not None
                                          else 1.0, "temperature", 0, 2),
                      stop=_stops(body.get("stop")), seed=int(seed) if isinstance(seed, int) else None,
                      tools=_tools(body.get("tools")))


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ollama_piece(model: str, text: str, generate: bool) -> dict[str, Any]:
    if generate:
        return {"model": model, "created_at": now_iso(), "response": text, "done": False}
    return {"model": model, "created_at": now_iso(), "message": {"role": "assistant", "content": text}, "done": False}


def ollama_final(model: str, result: Any, generate: bool, started: float, text: str = "") -> dict[str, Any]:
    """The last line: counts and durations in nanoseconds, as Ollama sends them; `text` for a whole answer."""
    total = int((time.perf_counter() - started) * 1e9)
    out: dict[str, Any] = {"model": model, "created_at": now_iso(), "done": True,
                           "done_reason": "length" if result.finish_reason == "length" else "stop",
                           "total_duration": total, "load_duration": 0,
                           "prompt_eval_count": result.prompt_tokens, "prompt_eval_duration": 0,
                           "eval_count": result.completion_tokens, "eval_duration": total}
    if generate:
        out["response"] = text
    else:
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if result.tool_calls:
            message["tool_calls"] = [{"function": {"name": c["name"], "arguments": c.get("arguments") or {}}}
                                     for c in result.tool_calls]
        out["message"] = message
    return out


def _finish(result: Any) -> str:
    if result.tool_calls:
        return "tool_calls"
    return "length" if result.finish_reason == "length" else "stop"


def _calls(result: Any) -> list[dict[str, Any]]:
    return [{"id": f"call_{i}", "type": "function",
             "function": {"name": c["name"], "arguments": json.dumps(c.get("arguments") or {})}}
            for i, c in enumerate(result.tool_calls)]


def _usage(result: Any) -> dict[str, int]:
    return {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
            "total_tokens": result.prompt_tokens + result.completion_tokens}


def openai_chunk(ident: str, model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": ident, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}


def openai_tail(ident: str, model: str, result: Any, usage: bool) -> list[dict[str, Any]]:
    """What ends a stream: the tool calls, the finish reason, and the usage chunk when asked for."""
    out = []
    if result.tool_calls:
        out.append(openai_chunk(ident, model, {"tool_calls": [{"index": i, **c} for i, c in
                                                              enumerate(_calls(result))]}))
    out.append(openai_chunk(ident, model, {}, _finish(result)))
    if usage:
        out.append({"id": ident, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                    "choices": [], "usage": _usage(result)})
    return out


def openai_whole(ident: str, model: str, result: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": result.text}
    if result.tool_calls:
        message["tool_calls"] = _calls(result)
    return {"id": ident, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": _finish(result), "logprobs": None}],
            "usage": _usage(result)}
