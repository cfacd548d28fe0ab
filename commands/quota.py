"""quota [--json] | quota set USER N — tokens per minute per user, and the admission limits."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from commands.registry import ArgParser, CommandError, UsageError, command
from commands.results import Table, Text
from kernel.api import PermissionDenied

if TYPE_CHECKING:
    from aios_shell.shell import Shell


def _args(p: ArgParser) -> None:
    p.add_argument("action", nargs="?", default="show", choices=["show", "set"], help="show (default) or set")
    p.add_argument("user", nargs="?", help="whose quota to set ('*': everyone without their own)")
    p.add_argument("tokens", nargs="?", type=int, help="tokens per minute (0: no quota)")
    p.add_argument("--json", action="store_true", help="print JSON")


JSON_SHAPE = """\
quota: {"users": [{"user": str, "used": int (tokens this minute), "limit": int (0: none), "processes": int}],
        "max_procs": int, "max_queued": int}
quota set: {"user": str, "tokens_per_minute": int}"""


@command("quota", "token quotas per user (tokens per minute) and the admission limits; admins set them",
         usage="quota [--json] | quota set USER|'*' TOKENS [--json]", args=_args, json_shape=JSON_SHAPE,
         examples=("quota", "quota set bob 5000", "quota set '*' 0"))
async def quota(sh: Shell, args: argparse.Namespace) -> Table | Text:
    if args.action == "set":
        if args.user is None or args.tokens is None:
            raise UsageError("quota set: expected a user and a number of tokens per minute")
        if args.tokens < 0:
            raise UsageError("quota set: tokens per minute must be 0 or more")
        try:
            sh.api.set_quota(args.user, args.tokens)
        except PermissionDenied as exc:
            raise CommandError(f"quota set: {exc}") from None
        return Text([f"{args.user}: {args.tokens or 'no'} tokens per minute"],
                    records={"user": args.user, "tokens_per_minute": args.tokens})
    info = sh.api.quotas()
    return Table(["USER", "TOKENS/MIN", "LIMIT", "PROCS"],
                 [[r["user"], r["used"], r["limit"] or "-", r["processes"]] for r in info["users"]],
                 right=("TOKENS/MIN", "PROCS"),
                 after=[f"at most {info['max_procs']} processes per user, {info['max_queued']} queued model calls"],
                 records=info)
