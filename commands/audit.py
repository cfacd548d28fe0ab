"""audit [-n N] [--pid PID] [--json] | audit verify — who called which tool, and what was decided."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from commands.namespace import fmt_ts
from commands.registry import ArgParser, CommandError, command
from commands.results import Table, Text
from kernel.api import one_line

if TYPE_CHECKING:
    from aios_shell.shell import Shell

JSON_SHAPE = """\
[{"id": int, "ts": float, "user": str, "pid": int, "program": str, "tool": str, "args": {…} (secrets
  redacted), "decision": "allow|deny|error", "by": str, "reason": str, "prev": str, "hash": str}]
audit verify --json: {"ok": bool, "rows": int, "bad_id": int|null, "message": str}"""


def _args(p: ArgParser) -> None:
    p.add_argument("action", nargs="?", default="list", choices=["list", "verify"], help="list (default) or verify")
    p.add_argument("-n", type=int, default=20, help="the last N entries (0: all)")
    p.add_argument("--pid", type=int, help="only this process's calls")
    p.add_argument("--json", action="store_true", help="print JSON (shape below)")


@command("audit", "the audit log of tool calls and permission decisions; `audit verify` checks its hash chain",
         usage="audit [-n N] [--pid PID] [--json] | audit verify", args=_args, json_shape=JSON_SHAPE,
         examples=("audit", "audit -n 0 --pid 3", "audit verify"))
async def audit(sh: Shell, args: argparse.Namespace) -> Table | Text:
    api = sh.api
    if args.action == "verify":
        check = api.verify_audit()
        return Text([check.message], status=0 if check.ok else 1,
                    records={"ok": check.ok, "rows": check.rows, "bad_id": check.bad_id, "message": check.message})
    if args.n < 0:
        raise CommandError("-n: expected 0 or more")
    rows = api.audit(limit=args.n or None, pid=args.pid)  # others' calls are for admins
    return Table(["ID", "TIME", "USER", "PID", "PROGRAM", "TOOL", "ARGS", "DECISION", "BY"],
                 [[r.id, fmt_ts(r.ts), r.user, r.pid, one_line(r.program, 20), one_line(r.tool, 20),
                   one_line(json.dumps(r.args, ensure_ascii=False), 60), r.decision, one_line(r.by, 24)]
                  for r in rows],
                 records=[r.to_dict() for r in rows], right=("ID", "PID"))
