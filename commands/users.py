"""users [--json] | users add NAME [-g GROUP…] [--admin] — and `su USER` to act as another user (admins)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from commands.registry import ArgParser, CommandError, UsageError, command
from commands.results import Table, Text
from kernel.api import PermissionDenied

if TYPE_CHECKING:
    from aios_shell.shell import Shell


def _args(p: ArgParser) -> None:
    p.add_argument("action", nargs="?", default="list", choices=["list", "add"], help="list (default) or add")
    p.add_argument("name", nargs="?", help="the user to add")
    p.add_argument("-g", "--group", action="append", default=[], help="a group of the new user (repeatable)")
    p.add_argument("--admin", action="store_true", help="the new user is an admin")
    p.add_argument("--json", action="store_true", help="print JSON")


JSON_SHAPE = """\
users: [{"name": str, "groups": [str], "admin": bool, "source": str}]
users add: {"added": str, "groups": [str], "admin": bool}"""


@command("users", "list aios users and their groups; an admin may add users",
         usage="users [add NAME [-g G] [--admin]] [--json]",
         args=_args, json_shape=JSON_SHAPE, examples=("users", "users add bob -g dev"))
async def users(sh: Shell, args: argparse.Namespace) -> Table | Text:
    if args.action == "add":
        if not args.name:
            raise UsageError("users add: expected a user name")
        try:
            sh.api.add_user(args.name, list(args.group), admin=args.admin)
        except (PermissionDenied, ValueError) as exc:
            raise CommandError(str(exc)) from None
        return Text([f"added {args.name}"], records={"added": args.name, "groups": list(args.group),
                                                      "admin": args.admin})
    rows = sh.api.users()
    return Table(["USER", "ADMIN", "GROUPS"], [[u.name, "yes" if u.admin else "", ",".join(u.groups)] for u in rows],
                 records=[u.to_dict() for u in rows])


def _su_args(p: ArgParser) -> None:
    p.add_argument("user", help="the user to act as")


@command("su", "act as another aios user (admins only; `su` back to yourself is always allowed)", usage="su USER",
         args=_su_args, examples=("su alice",))
async def su(sh: Shell, args: argparse.Namespace) -> Text:
    login = sh.login_user
    if args.user != login and not sh.api.is_admin(login):
        raise CommandError(f"su: only an admin may act as another user ({login} is not one)")
    if not args.user.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise UsageError(f"{args.user}: not a valid user name")
    sh.user = args.user
    return Text()
