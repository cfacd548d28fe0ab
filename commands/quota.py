"""quota [--json] | quota set USER N — tokens per minute per user, and the admission limits."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from commands.registry import ArgParser, CommandError, UsageError, command
from commands.results import Table

if TYPE_CHECKING:
    from aios_shell.shell import Shell


def _args(p: ArgParser) -> None:
    p.add_argument("action", nargs="?", default="show", choices=["show", "set"], help="show (default) or set")
    p.add_argument("user", nargs="?", help="whose quota to set ('*': everyone without their own)")
    p.add_argument("tokens", nargs="?", type=int, help="tokens per minute (0: no quota)")
    p.add_argument("--json", action="store_true", help="print JSON")


@command("quota", "token quotas per user (tokens per minute) and the admission limits; admins set them",
         usage="quota [--json] | quota set USER|'*' TOKENS", args=_args,
         examples=("quota", "quota set bob 5000", "quota set '*' 0"))
async def quota(sh: Shell, args: argparse.Namespace) -> int | Table:
    q = sh.kernel.quotas
    if args.action == "set":
        if args.user is None or args.tokens is None:
            raise UsageError("quota set: expected a user and a number of tokens per minute")
        if args.tokens < 0:
            raise UsageError("quota set: tokens per minute must be 0 or more")
        if not sh.kernel.is_admin(sh.kernel.user):
            raise CommandError("quota set: only an admin may change quotas")
        if args.user == "*":
            q.tokens_per_minute = args.tokens
        else:
            q.per_user[args.user] = args.tokens
        sh.print(f"{args.user}: {args.tokens or 'no'} tokens per minute")
        return 0
    users = sorted({p.user for p in sh.kernel.procs} | set(q.per_user) | {sh.kernel.user})
    rows = [{"user": u, "used": q.used(u), "limit": q.limit(u),
             "processes": sum(1 for p in sh.kernel.procs.alive() if p.user == u)} for u in users]
    return Table(["USER", "TOKENS/MIN", "LIMIT", "PROCS"],
                 [[r["user"], r["used"], r["limit"] or "-", r["processes"]] for r in rows],
                 right=("TOKENS/MIN", "PROCS"),
                 after=[f"at most {q.max_procs} processes per user, {q.max_queued} queued model calls"],
                 records={"users": rows, "max_procs": q.max_procs, "max_queued": q.max_queued})
