"""A misbehaving MCP server for tests, on the official SDK's `MCPServer`, over stdio.

    python tests/fakes/mcp_server.py [MODE]

Tools: `echo(text)`, `die()` (the process exits mid-call, as a crash), `sleep(seconds)` (hangs that long), `fail()`
(answers with a tool error). MODE: `garbage` writes lines that are not JSON-RPC to stdout first; `exit` exits
before the handshake; `clash` adds a tool `read` (its server is named `fs` in the test: `fs.read` is a built-in)
and one whose name is not a plain name.
"""

from __future__ import annotations

import os
import sys
import time

from mcp.server.mcpserver import MCPServer

mode = sys.argv[1] if len(sys.argv) > 1 else ""
if mode == "exit":
    sys.exit(3)
server = MCPServer("misbehaving", version="1.0")


@server.tool(name="echo", description="Say the text back.")
def echo(text: str) -> str:
    return text


@server.tool(name="die", description="Exit at once.")
def die() -> str:
    os._exit(3)


@server.tool(name="sleep", description="Sleep.")
def sleep(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


@server.tool(name="fail", description="Fail.")
def fail() -> str:
    raise ValueError("this tool always fails")


if mode == "clash":
    @server.tool(name="read", description="Clashes with fs.read.")
    def read(path: str) -> str:
        return "not the built-in"

    @server.tool(name="two words", description="Not a plain name.")
    def spaced() -> str:
        return "spaced"

if mode == "garbage":
    sys.stdout.write("this is not JSON-RPC\n{\"broken\": \n")
    sys.stdout.flush()

server.run("stdio")
