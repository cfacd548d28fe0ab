"""ps [-a] [-l] [-u USER] [--sort KEY] [--forest] [--json] — the process table."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from commands.registry import ArgParser, UsageError, command
from commands.results import Table

if TYPE_CHECKING:
    from aios_shell.shell import Shell
    from kernel.api import ProcInfo

COLUMNS = ["PID", "PPID", "USER", "PRI", "NI", "STATE", "%CTX", "TOKENS", "TIME", "CMD"]
LONG = ["PID", "PPID", "USER", "PRI", "NI", "STATE", "%CTX", "TOKENS", "TIME", "WAIT", "CALLS", "SWITCHES", "QUOTA",
        "CMD"]
# on a terminal too narrow for CMD, these give way first (PRI is 20 + NI; the rest are ps -l's extras)
NARROW = ("PRI", "QUOTA", "SWITCHES", "WAIT", "%CTX", "PPID", "CALLS", "USER")
RIGHT = ("PID", "PPID", "PRI", "NI", "%CTX", "TOKENS", "TIME", "WAIT", "CALLS", "SWITCHES")
SORT_KEYS: dict[str, Any] = {
    "pid": lambda p: p.pid, "ppid": lambda p: p.ppid, "user": lambda p: p.user, "nice": lambda p: p.nice,
    "pri": lambda p: p.nice, "state": lambda p: p.status, "tokens": lambda p: p.tokens,
    "time": lambda p: p.llm_time_s, "wait": lambda p: p.queue_wait_s, "cmd": lambda p: p.cmd,
    "start": lambda p: p.created_at, "ctx": lambda p: p.ctx_tokens,
}
# the names procps' ps knows them by, and the column headings
ALIASES = {"ni": "nice", "stat": "state", "s": "state", "args": "cmd", "command": "cmd", "comm": "cmd",
           "start_time": "start", "lstart": "start", "uid": "user", "euser": "user", "%ctx": "ctx", "cputime": "time"}
SHAPE = [{
    "pid": int, "ppid": int, "user": str, "program": str, "argv": [str], "cmd": str, "nice": int, "state": str,
    "status": str, "waiting_on": (str, None), "exit_code": (int, None), "signal": (int, None),
    "error": (str, None), "created_at": float, "started_at": (float, None), "ended_at": (float, None),
    "prompt_tokens": int, "completion_tokens": int, "llm_time_s": float, "queue_wait_s": float,
    "syscalls": int, "tool_calls": int, "ctx_switches": int, "ctx_tokens": int, "workspace": (str, None),
    "ctx_window": int, "compactions": int, "switch_cost_s": float,
}]
JSON_SHAPE = """\
a list of processes, oldest first (or in --sort order):
  [{"pid": int, "ppid": int, "user": str, "program": str, "argv": [str], "cmd": str,
    "nice": int, "state": "NEW|READY|RUNNING|WAITING|STOPPED|EXITED",
    "status": str  (as the STATE column: "WAITING(llm)", "EXITED(0)", "EXITED(SIGKILL)", "EXITED(lost)"),
    "waiting_on": "llm|tool|permission|quota|child"|null, "exit_code": int|null, "signal": int|null,
    "error": str|null, "created_at": float, "started_at": float|null, "ended_at": float|null,
    "prompt_tokens": int, "completion_tokens": int, "llm_time_s": float, "queue_wait_s": float,
    "syscalls": int, "tool_calls": int, "ctx_switches": int, "ctx_tokens": int,
    "workspace": str|null  (where its tools work; null: $AIOS_HOME/workspaces/PID),
    "ctx_window": int, "compactions": int, "switch_cost_s": float}]"""


def _args(p: ArgParser) -> None:
    p.add_argument("-a", "--all", action="store_true",
                   help="every process, exited ones and those of earlier runs included")
    p.add_argument("-l", "--long", action="store_true",
                   help="more columns: queue WAIT, model CALLS, SWITCHES, the user's QUOTA (tokens in the last "
                        "minute/limit)")
    p.add_argument("-u", "--user", metavar="USER", help="only this user's processes")
    p.add_argument("--sort", metavar="KEY", help=f"sort by {', '.join(SORT_KEYS)} (or procps' names: ni, stat, "
                   "args…); -KEY descending, KEY or +KEY ascending; several as KEY,KEY")
    p.signed = ("--sort",)
    p.add_argument("--forest", action="store_true", help="show children under their parents")
    p.add_argument("--json", action="store_true", help="print JSON (shape below)")


def fmt_time(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes)}:{secs:05.2f}"


def forest(procs: list[ProcInfo]) -> list[tuple[ProcInfo, int]]:
    """Processes in tree order with their depth; an orphan (parent not listed) is a root."""
    listed = {p.pid for p in procs}
    children: dict[int, list[ProcInfo]] = {}
    for p in procs:
        children.setdefault(p.ppid if p.ppid in listed and p.ppid != p.pid else 0, []).append(p)
    out: list[tuple[ProcInfo, int]] = []

    def walk(parent: int, depth: int) -> None:
        for child in children.get(parent, []):
            out.append((child, depth))
            walk(child.pid, depth + 1)

    walk(0, 0)
    return out


def select(sh: Shell, args: argparse.Namespace) -> list[ProcInfo]:
    procs = sh.api.ps(all=args.all, user=args.user)
    if args.sort:
        for spec in reversed([s.strip() for s in args.sort.split(",") if s.strip()]):  # stable: last key first
            name = spec.lstrip("-+").lower()
            key = ALIASES.get(name, name)
            if key not in SORT_KEYS:
                raise UsageError(f"{spec}: unknown sort key (keys: {', '.join(SORT_KEYS)})")
            procs = sorted(procs, key=SORT_KEYS[key], reverse=spec.startswith("-"))
    return procs


@command("ps", "report the processes: live ones, or all with -a",
         usage="ps [-a] [-l] [-u USER] [--sort KEY] [--forest] [--json]", args=_args, json_shape=JSON_SHAPE,
         examples=("ps", "ps -a --sort=-tokens", "ps -a --forest", "ps -u alice --json"),
         complete_options={"-u": "user", "--user": "user", "--sort": tuple(SORT_KEYS)})
async def ps(sh: Shell, args: argparse.Namespace) -> Table:
    procs = select(sh, args)
    ordered = forest(procs) if args.forest else [(p, 0) for p in procs]
    records = [p.to_dict() for p, _ in ordered]
    if args.json:
        return Table(COLUMNS, [], records=records)
    window = sh.api.model().context_window
    rows = []
    for p, depth in ordered:
        ctx = f"{100 * p.ctx_tokens / window:.0f}" if window and p.ctx_tokens else "0"
        cmd = ("    " * (depth - 1) + " \\_ " if depth else "") + p.cmd
        row = [p.pid, p.ppid, p.user, 20 + p.nice, p.nice, p.status, ctx,
               f"{p.prompt_tokens}/{p.completion_tokens}", fmt_time(p.llm_time_s)]
        if args.long:
            row += [fmt_time(p.queue_wait_s), p.syscalls, p.ctx_switches, sh.api.quota_use(p.user)]
        rows.append([*row, cmd])
    return Table(LONG if args.long else COLUMNS, rows, records=records, right=RIGHT, optional=NARROW)
