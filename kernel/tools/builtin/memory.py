"""memory.search and memory.add: an agent's long-term memory, the notes of the user it runs for."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel.tools.registry import ToolContext, ToolError, tool

if TYPE_CHECKING:
    from kernel.memory import Memory


def _memory(ctx: ToolContext) -> Memory:
    memory = ctx.services.get("memory")
    if memory is None:
        raise ToolError("memory is not available")
    return memory


@tool("memory.search", timeout=10, target="query")
def memory_search(ctx: ToolContext, query: str, limit: int = 5) -> str:
    """Search your long-term memory (notes kept by earlier runs too); one line per note, best match first."""
    hits = _memory(ctx).search(ctx.user, query, limit=limit)
    if not hits:
        return "(no memories match)"
    return "\n".join(f"#{h['id']}  {' '.join(h['text'].split())}" for h in hits)


@tool("memory.add", timeout=10, target="text")
def memory_add(ctx: ToolContext, text: str, tags: str = "") -> str:
    """Remember a short note for later runs; optional tags (words) help to find it."""
    try:
        note = _memory(ctx).add(ctx.user, text, tags=tags, pid=ctx.pid)
    except ValueError as exc:
        raise ToolError(str(exc)) from None
    return f"remembered #{note}"
