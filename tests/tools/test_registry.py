"""The tool registry: schemas from signatures, readable validation, failures isolated, calls concurrent."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from kernel.tools import default_registry
from kernel.tools.registry import ToolContext, ToolError, ToolRegistry, tool


@tool("demo.greet", timeout=5, target="name")
def greet(ctx: ToolContext, name: str, times: int = 1, loud: bool = False) -> str:
    """Greet someone.

    Everything after the first paragraph stays out of the description."""
    text = " ".join([f"hello {name}"] * times)
    return text.upper() if loud else text


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    return ToolContext(pid=1, user="alice", workspace=tmp_path / "ws")


def test_schema_comes_from_the_signature() -> None:
    fn = greet.schema["function"]
    assert fn["name"] == "demo.greet"
    assert fn["description"] == "Greet someone."
    params = fn["parameters"]
    assert params["type"] == "object"
    assert params["required"] == ["name"]
    assert params["properties"]["name"] == {"type": "string"}
    assert params["properties"]["times"] == {"type": "integer", "default": 1}
    assert params["properties"]["loud"] == {"type": "boolean", "default": False}
    assert greet.target_of({"name": "bob"}) == "bob"


@pytest.mark.parametrize(("args", "expected"), [
    ({}, "bad arguments for demo.greet: name: Field required"),
    ({"name": "bob", "times": "many"}, "bad arguments for demo.greet: times: Input should be a valid integer"),
    ({"name": "bob", "shout": True}, "bad arguments for demo.greet: shout: Extra inputs are not permitted"),
])
async def test_validation_errors_are_readable(ctx: ToolContext, args: dict, expected: str) -> None:
    result = await ToolRegistry([greet]).call("demo.greet", ctx, args)
    assert not result.ok
    assert result.error is not None and result.error.startswith(expected)


async def test_a_good_call(ctx: ToolContext) -> None:
    result = await ToolRegistry([greet]).call("demo.greet", ctx, {"name": "bob", "times": "2"})
    assert result.ok and result.output == "hello bob hello bob"


async def test_unknown_tool(ctx: ToolContext) -> None:
    result = await ToolRegistry().call("nope", ctx, {})
    assert not result.ok and "no such tool: nope" in result.text


async def test_a_raising_tool_returns_an_error_and_stays_usable(ctx: ToolContext) -> None:
    @tool("demo.flaky")
    def flaky(ctx: ToolContext, fail: str) -> str:
        if fail == "crash":
            raise RuntimeError("boom")
        if fail == "clean":
            raise ToolError("nothing to do")
        return "fine"

    registry = ToolRegistry([flaky])
    crashed = await registry.call("demo.flaky", ctx, {"fail": "crash"})
    assert not crashed.ok and crashed.error == "demo.flaky failed: RuntimeError: boom"
    clean = await registry.call("demo.flaky", ctx, {"fail": "clean"})
    assert clean.text == "error: nothing to do"
    assert (await registry.call("demo.flaky", ctx, {"fail": "no"})).output == "fine"


async def test_a_hanging_tool_times_out_and_the_next_call_works(ctx: ToolContext) -> None:
    cancelled = asyncio.Event()

    @tool("demo.hang", timeout=0.05)
    async def hang(ctx: ToolContext, forever: bool) -> str:
        if forever:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise
        return "done"

    registry = ToolRegistry([hang])
    result = await registry.call("demo.hang", ctx, {"forever": True})
    assert not result.ok and result.error == "demo.hang timed out after 0.05 s"
    assert cancelled.is_set()  # the hanging coroutine was cancelled, not left running
    assert (await registry.call("demo.hang", ctx, {"forever": False})).output == "done"


async def test_async_calls_overlap(ctx: ToolContext) -> None:
    inside, most, release = 0, 0, asyncio.Event()
    both_in = asyncio.Event()

    @tool("demo.slow")
    async def slow(ctx: ToolContext, n: int) -> str:
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        if inside == 2:
            both_in.set()
        await release.wait()
        inside -= 1
        return str(n)

    registry = ToolRegistry([slow])
    calls = asyncio.gather(registry.call("demo.slow", ctx, {"n": 1}), registry.call("demo.slow", ctx, {"n": 2}))
    await asyncio.wait_for(both_in.wait(), 10)  # only reachable if the second started before the first ended
    release.set()
    results = await calls
    assert [r.output for r in results] == ["1", "2"]
    assert most == 2


async def test_sync_calls_overlap_in_threads(ctx: ToolContext) -> None:
    barrier = threading.Barrier(2, timeout=10)

    @tool("demo.blocking")
    def blocking(ctx: ToolContext, n: int) -> str:
        barrier.wait()  # raises BrokenBarrierError unless both calls are inside at once
        return str(n)

    registry = ToolRegistry([blocking])
    results = await asyncio.gather(*(registry.call("demo.blocking", ctx, {"n": n}) for n in (1, 2)))
    assert [r.output for r in results] == ["1", "2"]


def test_the_builtins_are_registered() -> None:
    registry = default_registry()
    assert {"fs.read", "fs.write", "fs.list", "shell", "calc"} <= set(registry.names())
    targets = {name: registry.get(name).target for name in ("fs.read", "fs.write", "fs.list", "shell", "calc")}
    assert targets == {"fs.read": "path", "fs.write": "path", "fs.list": "path", "shell": "command",
                       "calc": "expression"}
    write = registry.get("fs.write").schema["function"]["parameters"]
    assert write["required"] == ["path", "content"]
    assert write["properties"]["append"] == {"type": "boolean", "default": False}
