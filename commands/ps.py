"""ps [-a] [--json] — the process table."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from commands.registry import ArgParser, command

if TYPE_CHECKING:
    from aios_shell.shell import Shell

COLUMNS = ["PID", "PPID", "USER", "PRI", "NI", "STATE", "%CTX", "TOKENS", "TIME", "CMD"]
JSON_SHAPE = """\
a list of processes, oldest first:
  [{"pid": int, "ppid": int, "user": str, "program": str, "argv": [str], "cmd": str,
    "nice": int, "state": "NEW|READY|RUNNING|WAITING|STOPPED|EXITED",
    "status": str  (as the STATE column: "WAITING(llm)", "EXITED(0)", "EXITED(SIGKILL)", "EXITED(lost)"),
    "waiting_on": "llm|tool|permission"|null, "exit_code": int|null, "signal": int|null,
    "error": str|null, "created_at": float, "started_at": float|null, "ended_at": float|null,
    "prompt_tokens": int, "completion_tokens": int, "llm_time_s": float, "queue_wait_s": float,
    "syscalls": int, "tool_calls": int, "ctx_switches": int, "ctx_tokens": int}]"""


def _args(p: ArgParser) -> None:
    p.add_argument("-a", "--all", action="store_true",
                   help="every process, exited ones and those of earlier runs included")
    p.add_argument("--json", action="store_true", help="print JSON (shape below)")


def fmt_time(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes)}:{secs:05.2f}"


@command("ps", "report the processes: live ones, or all with -a", usage="ps [-a] [--json]",
         args=_args, json_shape=JSON_SHAPE)
async def ps(sh: Shell, args: argparse.Namespace) -> int:
    procs = sh.kernel.ps(all=args.all)
    if args.json:
        sh.json([p.to_dict() for p in procs])
        return 0
    window = sh.kernel.backend.context_window or 0
    rows = []
    for p in procs:
        ctx = f"{100 * p.ctx_tokens / window:.0f}" if window and p.ctx_tokens else "0"
        rows.append([p.pid, p.ppid, p.user, 20 + p.nice, p.nice, p.status, ctx,
                     f"{p.prompt_tokens}/{p.completion_tokens}", fmt_time(p.llm_time), p.cmdline])
    sh.table(COLUMNS, rows, right=("PID", "PPID", "PRI", "NI", "%CTX", "TOKENS", "TIME"))
    return 0
