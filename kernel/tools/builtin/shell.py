"""The shell tool: run one program with arguments in the workspace, in the sandbox (see kernel.tools.sandbox).

There is no shell: the command is split with `shlex` (POSIX rules: quotes and backslashes work) and the
words are exec'd as they are. `&&`, `;`, `|`, `>`, `$(…)` and backticks are plain arguments, so a rule such
as `shell(git status*)` can never be stretched into `git status && rm -rf .`.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from kernel.tools.registry import ToolContext, ToolError, tool
from kernel.tools.sandbox import Limits, SandboxResult, SandboxUnavailable, default_sandbox

TIMEOUT_MARGIN = 10.0  # the tool's own timeout is the sandbox's plus this (cleanup, slow start)


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} bytes"


def format_result(result: SandboxResult, limits: Limits) -> str:
    """The program's output, then a line per thing that went wrong ("[exit 1]", "[killed: cpu limit]", …)."""
    notes = []
    if result.truncated:
        notes.append(f"[output truncated at {_size(limits.output_bytes)}]")
    if result.killed == "timeout":
        notes.append(f"[killed: timeout after {limits.timeout_s:g} s]")
    elif result.killed == "cpu":
        notes.append(f"[killed: cpu limit ({limits.cpu_s:g} s)]")
    elif result.killed == "file size":
        notes.append(f"[killed: file size limit ({_size(limits.file_bytes)})]")
    elif result.killed and result.killed != "output":
        notes.append(f"[killed: {result.killed}]")
    elif result.exit_code != 0 and not result.killed:
        notes.append(f"[exit {result.exit_code}]")
    text = result.output
    if notes and text and not text.endswith("\n"):
        text += "\n"
    out = text + "\n".join(notes)
    return out if out else "(no output)"


@tool("shell", timeout=Limits().timeout_s + TIMEOUT_MARGIN, target="command")
async def shell(ctx: ToolContext, command: str) -> str:
    """Run a program with arguments in the workspace (no shell: pipes, &&, ; and $() are not interpreted).
    Its output (stdout and stderr together) is the result; a non-zero exit or a limit makes it an error."""
    try:
        argv = shlex.split(command, posix=True)
    except ValueError as exc:
        raise ToolError(f"cannot parse command: {exc}") from None
    if not argv:
        raise ToolError("empty command")
    if any("\x00" in a for a in argv):
        raise ToolError("cannot parse command: NUL byte")
    limits = ctx.services.get("limits") or Limits()
    sandbox = ctx.services.get("sandbox") or default_sandbox()
    net = ctx.allows("net", command)  # the network only for a command a rule `net(…)` allows
    try:
        result = await sandbox.run(argv, Path(ctx.workspace), user=ctx.user, own=ctx.own_workspace, net=net,
                                   limits=limits)
    except SandboxUnavailable as exc:
        raise ToolError(str(exc)) from None
    except FileNotFoundError:
        raise ToolError(f"command not found: {argv[0]}") from None
    except OSError as exc:
        raise ToolError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    text = format_result(result, limits)
    if result.exit_code != 0 or result.killed:  # the program's status is the outcome: a failure is an error
        raise ToolError(text)
    return text
