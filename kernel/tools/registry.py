"""The tool service: a tool is a typed Python function, its JSON schema comes from its signature.

    @tool("calc", timeout=2, target="expression")
    def calc(ctx: ToolContext, expression: str) -> str:
        "Evaluate arithmetic safely."

The first parameter is the `ToolContext` (who calls, in which workspace); the others are the tool's
arguments, validated with pydantic before the call. A tool returns text or raises `ToolError`; a call
that fails, raises or runs past its timeout returns an error result and the tool stays available.
Calls run concurrently: sync tools in worker threads, async tools on the loop, no global lock.
Third-party tools register through the `aios.tools` entry-point group (an entry point names a `Tool`
or a list of them).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pydantic

ENTRY_POINT_GROUP = "aios.tools"
DEFAULT_TIMEOUT = 30.0


class ToolError(Exception):
    """What a tool raises to return a clean error to the agent."""


@dataclass
class ToolContext:
    """What a tool knows about its caller."""

    pid: int
    user: str
    workspace: Path
    program: str = ""
    services: dict[str, Any] = field(default_factory=dict)  # e.g. "memory": the kernel's Memory
    own_workspace: bool = True  # aios made the workspace (False: a directory the user chose with `run -w`)
    rules: Callable[[str, str], bool] | None = None  # whether a rule allows (tool, target) outright, unasked

    def allows(self, tool: str, target: str) -> bool:
        """Whether a rule allows `tool` on `target` without asking (False when no rules were given)."""
        return bool(self.rules and self.rules(tool, target))


@dataclass(frozen=True)
class ToolResult:
    ok: bool
    output: str = ""
    error: str | None = None
    duration_s: float = 0.0

    @property
    def text(self) -> str:
        """What the agent sees: the output, or `error: …`."""
        return self.output if self.ok else f"error: {self.error}"


@dataclass
class Tool:
    name: str
    fn: Callable[..., Any]
    description: str
    timeout: float = DEFAULT_TIMEOUT
    target: str | None = None  # the argument that access rules match, as in `shell(git status*)`
    to_target: Callable[[Path, str], str] | None = None  # how that argument reads in a rule (fs: workspace/…)
    model: type[pydantic.BaseModel] | None = None

    def __post_init__(self) -> None:
        if self.model is None:
            self.model = _args_model(self.name, self.fn)

    @property
    def schema(self) -> dict[str, Any]:
        """The tool as the model sees it (Ollama / OpenAI function format)."""
        params = self.model.model_json_schema() if self.model else {"type": "object", "properties": {}}
        params.pop("title", None)
        for prop in params.get("properties", {}).values():
            prop.pop("title", None)
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": params}}

    def validate(self, args: dict[str, Any]) -> dict[str, Any]:
        """Arguments checked against the signature; raises ToolError with a readable line."""
        assert self.model is not None
        try:
            return dict(self.model.model_validate(args))
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in exc.errors()
            )
            raise ToolError(f"bad arguments for {self.name}: {problems}") from None

    def target_of(self, args: dict[str, Any]) -> str:
        """The string a rule's pattern is matched against ('' when the tool has none)."""
        return str(args.get(self.target, "")) if self.target else ""

    def rule_target(self, workspace: Path, args: dict[str, Any]) -> str:
        """The target as rules see it, e.g. `workspace/notes.txt` for an fs path."""
        raw = self.target_of(args)
        return self.to_target(workspace, raw) if self.to_target else raw


def _args_model(name: str, fn: Callable[..., Any]) -> type[pydantic.BaseModel]:
    params = list(inspect.signature(fn).parameters.values())[1:]  # the first is the ToolContext
    hints = inspect.get_annotations(fn, eval_str=True)
    fields: dict[str, Any] = {}
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[p.name] = (hints.get(p.name, Any), default)
    config = pydantic.ConfigDict(extra="forbid", strict=False)
    return pydantic.create_model(f"{name.replace('.', '_')}_args", __config__=config, **fields)


def tool(name: str, *, timeout: float = DEFAULT_TIMEOUT, target: str | None = None,
         description: str | None = None) -> Callable[[Callable[..., Any]], Tool]:
    """Make a function a `Tool`; its docstring's first paragraph is the description."""

    def wrap(fn: Callable[..., Any]) -> Tool:
        doc = description or (inspect.getdoc(fn) or name).split("\n\n")[0].replace("\n", " ")
        return Tool(name=name, fn=fn, description=doc, timeout=timeout, target=target)

    return wrap


class ToolRegistry:
    """Tools by name."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for t in tools:
            self.register(t)

    def register(self, t: Tool) -> Tool:
        self._tools[t.name] = t
        return t

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def names(self) -> list[str]:
        return sorted(self._tools)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._tools[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._tools)

    def schemas(self, names: Iterable[str] | None = None) -> list[dict[str, Any]]:
        wanted = self.names() if names is None else [n for n in names if n in self._tools]
        return [self._tools[n].schema for n in wanted]

    def load_entry_points(self) -> list[str]:
        """Register third-party tools; a broken plugin is skipped and named in the returned list."""
        broken = []
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                found = ep.load()
                for t in found if isinstance(found, (list, tuple)) else [found]:
                    if isinstance(t, Tool):
                        self.register(t)
            except Exception as exc:  # a plugin must not stop the kernel
                broken.append(f"{ep.name}: {exc}")
        return broken

    async def call(self, name: str, ctx: ToolContext, args: dict[str, Any],
                   timeout: float | None = None) -> ToolResult:
        """Run a tool with a timeout; every failure becomes an error result."""
        started = time.monotonic()
        t = self._tools.get(name)
        if t is None:
            return ToolResult(False, error=f"no such tool: {name} (try: tools)")
        try:
            checked = t.validate(args)
            limit = timeout if timeout is not None else t.timeout
            if inspect.iscoroutinefunction(t.fn):
                out = await asyncio.wait_for(t.fn(ctx, **checked), limit)
            else:
                out = await asyncio.wait_for(asyncio.to_thread(t.fn, ctx, **checked), limit)
        except ToolError as exc:
            return ToolResult(False, error=str(exc), duration_s=time.monotonic() - started)
        except TimeoutError:
            return ToolResult(False, error=f"{name} timed out after {limit:g} s",
                              duration_s=time.monotonic() - started)
        except Exception as exc:  # a broken tool must not take the agent down
            return ToolResult(False, error=f"{name} failed: {type(exc).__name__}: {exc}",
                              duration_s=time.monotonic() - started)
        return ToolResult(True, output="" if out is None else str(out), duration_s=time.monotonic() - started)
