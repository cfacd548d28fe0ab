"""MCP servers as devices: `[mcp.servers.NAME]` in `$AIOS_HOME/config.toml`, their tools as `NAME.TOOL`.

    [mcp.servers.time]
    command = ["mcp-server-time"]          # stdio: started by aios, inside the tool sandbox
    env = { TZ = "Europe/Paris" }          # given to it as written (the kernel's own environment is not)
    cwd = "/srv/repo"                      # its working directory, writable to it (default: its own)
    timeout = 30                           # seconds one call may take
    net = false                            # network inside the sandbox

    [mcp.servers.search]
    url = "http://127.0.0.1:8000/mcp"      # streamable HTTP, a server someone else runs, on this machine

The official `mcp` SDK is the client. A stdio server is started when first needed (the first process of a user
starts, which waits `START_WAIT` for it at most; a call names its tool; someone lists the tools), once per aios
user: as root each user's copy runs under that user's sandbox
uid, in bubblewrap's namespaces as the `shell` tool's programs do (the host read-only, AIOS_HOME and other users'
work hidden, no network unless `net`), its stderr to `AIOS_HOME/logs/mcp-NAME-USER.log`. Its tools are registered
as `NAME.TOOL` with the server's input schemas and go through the tool service like the built-ins: access rules
(`NAME.TOOL(PATTERN)`, matched against the tool's first required string argument), permission prompts, audit,
timeouts. A tool whose name clashes with one already there, or is not a plain name, is skipped with one line.

A server that crashes (its pipe closes, it does not start in time) fails the call in one line and is started
again once, said in `dmesg`; a second crash disables it until the kernel restarts. Servers stop when the kernel
does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import jsonschema

from kernel.tools.registry import Tool, ToolContext, ToolError, ToolRegistry

START_TIMEOUT = 20.0  # seconds a server has to answer its handshake and list its tools
START_WAIT = 5.0  # seconds a process's start waits for its user's servers (a slow one's tools come later)
CALL_TIMEOUT = 30.0
_PLAIN = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class ServerSpec:
    name: str
    command: tuple[str, ...] = ()
    url: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    timeout: float = CALL_TIMEOUT
    net: bool = False


def load_specs(home: Path) -> tuple[list[ServerSpec], list[str]]:
    """The servers `config.toml` names, and one line for each that is wrong (it is left out)."""
    path = Path(home) / "config.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [], []
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return [], [f"config.toml: {exc}; no MCP server is started"]
    servers = (data.get("mcp") or {}).get("servers") or {}
    if not isinstance(servers, dict):
        return [], ["config.toml: [mcp.servers] must be a table of servers"]
    specs, problems = [], []
    for name, raw in servers.items():
        try:
            specs.append(_spec(name, raw))
        except ValueError as exc:
            problems.append(f"config.toml: mcp server '{name}': {exc}; left out")
    return specs, problems


def _spec(name: str, raw: Any) -> ServerSpec:
    if not _PLAIN.fullmatch(name):
        raise ValueError("a name is letters, digits, '_' and '-'")
    if not isinstance(raw, dict):
        raise ValueError("expected a table")
    unknown = set(raw) - {"command", "url", "env", "cwd", "timeout", "net"}
    if unknown:
        raise ValueError(f"unknown keys: {', '.join(sorted(unknown))}")
    command, url = raw.get("command"), raw.get("url")
    if (command is None) == (url is None):
        raise ValueError("give either command = [...] or url = \"http://127.0.0.1:PORT/mcp\"")
    if command is not None and (not isinstance(command, list) or not command
                                or not all(isinstance(a, str) and a and "\0" not in a for a in command)):
        raise ValueError("command must be a list of strings, the program first")
    if url is not None:
        if not isinstance(url, str) or not re.match(r"https?://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?(/|$)", url):
            raise ValueError("url must be an http address on this machine (127.0.0.1)")
    env = raw.get("env") or {}
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise ValueError("env must be a table of strings")
    cwd = raw.get("cwd")
    if cwd is not None and (not isinstance(cwd, str) or not Path(cwd).expanduser().is_dir()):
        raise ValueError(f"cwd {cwd!r} is not a directory")
    timeout = raw.get("timeout", CALL_TIMEOUT)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 < timeout <= 3600:
        raise ValueError("timeout must be seconds, more than 0 and at most 3600")
    net = raw.get("net", False)
    if not isinstance(net, bool):
        raise ValueError("net must be true or false")
    return ServerSpec(name=name, command=tuple(command or ()), url=url, env=dict(env),
                      cwd=Path(cwd).expanduser() if cwd else None, timeout=float(timeout), net=net)


def _text(result: Any) -> str:
    """A tool result's content as text: its text parts; other parts named; else its structured content."""
    parts = []
    for item in result.content or ():
        kind = getattr(item, "type", "")
        if kind == "text":
            parts.append(item.text)
        elif kind == "resource" and getattr(item.resource, "text", None) is not None:
            parts.append(item.resource.text)
        else:
            parts.append(f"[{kind or 'content'}{': ' + item.mime_type if getattr(item, 'mime_type', None) else ''}]")
    if not parts and getattr(result, "structured_content", None) is not None:
        parts.append(json.dumps(result.structured_content))
    return "\n".join(parts)


class McpTool(Tool):
    """A tool one MCP server declared: its schema is the server's, its arguments checked against it."""

    def __init__(self, name: str, description: str, input_schema: dict[str, Any], timeout: float,
                 fn: Callable[..., Any], server: str) -> None:
        self.server = server
        self.input_schema = input_schema if input_schema.get("type") == "object" else {"type": "object"}
        props = self.input_schema.get("properties") or {}
        target = next((k for k in self.input_schema.get("required") or () if (props.get(k) or {}).get("type")
                       == "string"), None)
        super().__init__(name=name, fn=fn, description=" ".join((description or name).split())[:1000],
                         timeout=timeout, target=target, model=None)

    def __post_init__(self) -> None:  # no pydantic model: the JSON schema checks the arguments
        self._validator = jsonschema.Draft202012Validator(self.input_schema)

    @property
    def schema(self) -> dict[str, Any]:
        params = {k: v for k, v in self.input_schema.items() if k not in ("title", "$schema")}
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": params}}

    def validate(self, args: dict[str, Any]) -> dict[str, Any]:
        problems = [f"{'.'.join(str(p) for p in e.absolute_path) or 'arguments'}: {e.message}"
                    for e in self._validator.iter_errors(args)]
        if problems:
            raise ToolError(f"bad arguments for {self.name}: {'; '.join(problems[:5])}")
        return dict(args)


class _Instance:
    """One running copy of a server (for one user): a task holds the SDK's client open until stopped."""

    def __init__(self) -> None:
        self.client: Any = None
        self.ready = asyncio.Event()
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.failure: str | None = None
        self.tools: list[Any] = []


class McpServers:
    """The configured servers, started per user when needed; `ensure(user)` starts a user's and registers tools."""

    def __init__(self, home: Path, registry: ToolRegistry, log: Callable[[str, str], None],
                 wrap: Callable[[list[str], Path, str, bool, bool], tuple[list[str], dict[str, str]]] | None = None,
                 ) -> None:
        self.home = Path(home)
        self.registry = registry
        self.log = log  # (level, line): the kernel's log, `dmesg`
        self.wrap = wrap  # (argv, workspace, user, own, net) -> (argv, env) in the sandbox; None: run as is
        self.specs, problems = load_specs(self.home)
        for line in problems:
            self.log("error", line)
        self._instances: dict[tuple[str, str], _Instance] = {}
        self._crashes: dict[str, int] = {}
        self._disabled: dict[str, str] = {}
        self._lock = asyncio.Lock()

    def serves(self, tool: str) -> bool:
        """Whether `tool` is named as one of a configured server's (`NAME.…`)."""
        return any(tool.startswith(spec.name + ".") for spec in self.specs)

    def state(self) -> list[dict[str, Any]]:
        """Each server: its name, transport, and whether it is up, for whom, or disabled and why."""
        out = []
        for spec in self.specs:
            users = sorted(u for (n, u), i in self._instances.items() if n == spec.name and i.client is not None)
            out.append({"name": spec.name, "transport": "http" if spec.url else "stdio",
                        "state": "disabled" if spec.name in self._disabled else "up" if users else "stopped",
                        "users": users, "error": self._disabled.get(spec.name), "crashes": self._crashes.get(
                            spec.name, 0)})
        return out

    async def ensure(self, user: str, wait: float | None = None) -> None:
        """Start `user`'s copy of every server not up yet (at most START_TIMEOUT each, together); with `wait`,
        return after that long at most, the slow ones going on starting."""
        if not self.specs:
            return
        starts = [asyncio.ensure_future(self._up(spec, user)) for spec in self.specs
                  if spec.name not in self._disabled]
        if starts:
            await asyncio.wait(starts, timeout=wait)

    async def _up(self, spec: ServerSpec, user: str) -> _Instance | None:
        key = _key(spec, user)
        async with self._lock:
            inst = self._instances.get(key)
            if inst is None or (inst.task is not None and inst.task.done()):
                inst = self._instances[key] = _Instance()
                inst.task = asyncio.get_running_loop().create_task(self._serve(spec, user, inst),
                                                                   name=f"mcp-{spec.name}-{user}")
        try:
            await asyncio.wait_for(asyncio.shield(inst.ready.wait()), START_TIMEOUT)
        except TimeoutError:
            inst.failure = inst.failure or f"did not start within {START_TIMEOUT:g} s"
            inst.stop.set()
            if inst.task is not None:
                inst.task.cancel()
        if inst.client is None:
            if self._instances.get(key) is inst:  # the first to see it says so; the next need starts a fresh one
                del self._instances[key]
                self._crashed(spec, inst.failure or "it exited")
            return None
        return inst

    def _transport(self, spec: ServerSpec, user: str) -> tuple[Any, TextIO | None]:
        """What the SDK's client connects with (a URL, or the stdio client of the spawned server), and the log its
        stderr goes to (for `_serve` to close)."""
        from mcp.client.stdio import StdioServerParameters, stdio_client

        if spec.url:
            return spec.url, None
        argv = [_resolve(spec.command[0]), *spec.command[1:]]
        workspace = spec.cwd or self.home / "mcp" / user / spec.name
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(workspace)}
        if self.wrap is not None:
            argv, env = self.wrap(argv, workspace, user, spec.cwd is None, spec.net)
        else:
            workspace.mkdir(parents=True, exist_ok=True)
        env.update(spec.env)
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        errlog = open(logs / f"mcp-{spec.name}-{user}.log", "a", encoding="utf-8")  # noqa: SIM115 (closed in _serve)
        params = StdioServerParameters(command=argv[0], args=argv[1:], env=env, cwd=str(workspace),
                                       encoding_error_handler="replace")
        return stdio_client(params, errlog=errlog), errlog

    async def _serve(self, spec: ServerSpec, user: str, inst: _Instance) -> None:
        from mcp import Client

        errlog = None
        try:
            transport, errlog = self._transport(spec, user)
            async with Client(transport, cache=None, read_timeout_seconds=spec.timeout) as client:
                listed = await client.list_tools()
                inst.tools = list(listed.tools)
                inst.client = client
                self._register(spec, inst.tools)
                inst.ready.set()
                await inst.stop.wait()
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # an SDK error, a spawn that failed, an exception group from its tasks
            inst.failure = _why(exc)
        finally:
            inst.client = None
            inst.ready.set()
            if errlog is not None:
                errlog.close()

    def _register(self, spec: ServerSpec, tools: list[Any]) -> None:
        for t in tools:
            name = f"{spec.name}.{t.name}"
            existing = self.registry.get(name)
            if isinstance(existing, McpTool) and existing.server == spec.name:
                continue  # a restart, or a second user's copy: already there
            if not _PLAIN.fullmatch(str(t.name)):
                self.log("warning", f"mcp server '{spec.name}': tool {str(t.name)[:80]!r} skipped: not a plain name")
                continue
            if existing is not None:
                self.log("warning", f"mcp server '{spec.name}': tool '{t.name}' skipped: {name} is already a tool")
                continue
            schema = getattr(t, "input_schema", None) or getattr(t, "inputSchema", None) or {}
            self.registry.register(McpTool(name, t.description or "", dict(schema), spec.timeout,
                                           self._caller(spec, str(t.name)), spec.name))

    def _caller(self, spec: ServerSpec, tool: str) -> Callable[..., Any]:
        async def call(ctx: ToolContext, **args: Any) -> str:
            return await self.call(spec, tool, ctx.user, args)
        return call

    async def call(self, spec: ServerSpec, tool: str, user: str, args: dict[str, Any]) -> str:
        """Call `tool` on `user`'s copy of the server; a crash is one line, and the server is started again."""
        if spec.name in self._disabled:
            raise ToolError(f"mcp server '{spec.name}' is disabled: {self._disabled[spec.name]}")
        inst = await self._up(spec, user)
        if inst is None:
            raise ToolError(f"mcp server '{spec.name}' is not running: {self._disabled.get(spec.name) or 'see dmesg'}")
        try:
            result = await inst.client.call_tool(tool, args)
        except (asyncio.CancelledError, TimeoutError):
            raise
        except BaseException as exc:
            why = _why(exc)
            if "timed out" not in why.lower() and not _is_tool_error(exc):  # its connection is gone
                inst.stop.set()
                if self._instances.get(_key(spec, user)) is inst:
                    del self._instances[_key(spec, user)]  # the next call starts a fresh one
                    self._crashed(spec, why)
            raise ToolError(f"{spec.name}.{tool}: the mcp server failed: {why}") from None
        text = _text(result)
        if result.is_error:
            raise ToolError(text or f"{spec.name}.{tool} failed")
        return text

    def _crashed(self, spec: ServerSpec, why: str) -> None:
        self._crashes[spec.name] = n = self._crashes.get(spec.name, 0) + 1
        if n >= 2:
            self._disabled[spec.name] = f"crashed twice (last: {why})"
            self.log("error", f"mcp server '{spec.name}' crashed again ({why}); disabled until the kernel restarts")
        else:
            self.log("warning", f"mcp server '{spec.name}' crashed ({why}); it is started again at its next call")

    async def close(self) -> None:
        """Stop every server (each SDK client closes its pipes and ends its process)."""
        for inst in self._instances.values():
            inst.stop.set()
            if inst.client is None and inst.task is not None:  # still in its handshake: nothing to close cleanly
                inst.task.cancel()
        tasks = [i.task for i in self._instances.values() if i.task is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=5)
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self._instances.clear()


def _key(spec: ServerSpec, user: str) -> tuple[str, str]:
    """Which copy serves `user`: their own for a stdio server, the one for everyone at a URL."""
    return spec.name, "" if spec.url else user


def _resolve(program: str) -> str:
    """A program name as a path: on PATH, or beside the kernel's Python (a server installed with aios)."""
    if "/" in program:
        return program
    where = os.pathsep.join([os.environ.get("PATH", ""), os.path.dirname(sys.executable)])
    return shutil.which(program, path=where) or program


def _is_tool_error(exc: BaseException) -> bool:
    """An error the server answered with (a JSON-RPC error), not a broken connection."""
    return type(exc).__name__ in ("MCPError", "McpError") and "closed" not in str(exc).lower()


def _why(exc: BaseException) -> str:
    """One line for what ended a server or a call (the first of an exception group)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = " ".join(str(exc).split())[:200]
    with contextlib.suppress(Exception):
        if isinstance(exc, FileNotFoundError):
            return f"no such program: {exc.filename or text}"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
