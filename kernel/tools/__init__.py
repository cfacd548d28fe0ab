"""Tools: typed functions the agents call through the kernel, guarded by access control."""

from kernel.tools.registry import Tool, ToolContext, ToolError, ToolRegistry, ToolResult, tool

__all__ = ["Tool", "ToolContext", "ToolError", "ToolRegistry", "ToolResult", "tool", "default_registry"]


def default_registry() -> ToolRegistry:
    """The built-in tools plus those of installed plugins."""
    from kernel.tools.builtin import BUILTINS

    registry = ToolRegistry(BUILTINS)
    registry.load_entry_points()
    return registry
