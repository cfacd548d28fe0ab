"""tools [NAME] [--json] — the tools agents can call, with their arguments, the sandbox that runs them, and the MCP
servers of `config.toml` (started here if they are not up yet)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from commands.registry import ArgParser, CommandError, command
from commands.results import Table

if TYPE_CHECKING:
    from aios_shell.shell import Shell

JSON_SHAPE = """\
a list of function schemas, as models see them:
  [{"type": "function", "function": {"name": str, "description": str, "parameters": {JSON schema}}}]"""


def _args(p: ArgParser) -> None:
    p.add_argument("name", nargs="*", help="show only these tools")
    p.add_argument("--json", action="store_true", help="print the schemas as JSON")


def _signature(schema: dict) -> str:
    params = schema["function"]["parameters"]
    required = set(params.get("required", []))
    parts = []
    for name, prop in params.get("properties", {}).items():
        kind = prop.get("type", "any")
        parts.append(f"{name}: {kind}" if name in required else f"[{name}: {kind}]")
    return ", ".join(parts)


@command("tools", "list the tools agents can call, with their arguments", usage="tools [NAME…] [--json]",
         args=_args, json_shape=JSON_SHAPE, examples=("tools", "tools shell --json"))
async def tools(sh: Shell, args: argparse.Namespace) -> Table:
    servers = await sh.api.load_tools()  # MCP servers start when first needed: listing their tools is a need
    found = sh.api.tools(args.name or None)
    unknown = [n for n in args.name if n not in {t.name for t in found}]
    if unknown:
        raise CommandError(f"no such tool: {', '.join(unknown)}")
    schemas = [t.schema for t in found]
    rows = [[s["function"]["name"], _signature(s), s["function"]["description"]] for s in schemas]
    after = [f"sandbox: {sh.api.sandbox_status()}"]
    after += [f"mcp server {s['name']} ({s['transport']}): {s['state']}" + (f": {s['error']}" if s["error"] else "")
              for s in servers]
    return Table(["TOOL", "ARGUMENTS", "DESCRIPTION"], rows, records=schemas, after=after)
