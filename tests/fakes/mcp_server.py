"""A misbehaving MCP server for tests, on the official SDK's `MCPServer`, over stdio.

    python tests/fakes/mcp_server.py [MODE]

Tools: `echo(text)`, `die()` (the process exits mid-call, as a crash), `sleep(seconds)` (hangs that long), `fail()`
(answers with a tool error), `cat(path)` and `write(path, text)` (what the sandbox lets it see and change).
MODE: `slow` sleeps a minute first; `garbage` writes lines that are not JSON-RPC to stdout first; `exit` exits
before the handshake; `clash` adds a tool `read` (its server is named `fs` in the test: `fs.read` is a built-in)
and one whose name is not a plain name; `http:PORT` serves streamable HTTP at http://127.0.0.1:PORT/mcp.
"""

from __future__ import annotations

import os
import sys
import time

from mcp.server.mcpserver import MCPServer

mode = sys.argv[1] if len(sys.argv) > 1 else ""
if mode == "exit":
    sys.exit(3)
if mode == "slow":  # a minute before it answers its handshake
    time.sleep(60)
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


@server.tool(name="cat", description="Read a file (what the sandbox lets it see).")
def cat(path: str) -> str:
    with open(path) as f:
        return f.read()


@server.tool(name="write", description="Write a file (where the sandbox lets it write).")
def write(path: str, text: str) -> str:
    with open(path, "w") as f:
        f.write(text)
    return "written"


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

if mode.startswith("http:"):  # streamable HTTP on 127.0.0.1:PORT/mcp
    server.run("streamable-http", host="127.0.0.1", port=int(mode[5:]))
else:
    server.run("stdio")
