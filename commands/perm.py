"""perm — list, add and revoke permission grants; trust a project's policy file.

    perm                         rules and grants that apply to you (policy file, --yes-for, grants)
    perm allow RULE [--always]   allow without asking, for this session (or always, for you)
    perm deny RULE [--always]    refuse, whatever else allows it
    perm revoke RULE             take a grant back
    perm trust DIR               let DIR/.aios/policy.toml count (until it changes)
    perm check TOOL [TARGET]     what a call would get: allow, deny or ask
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from commands.registry import ArgParser, CommandError, UsageError, command
from commands.results import Table, Text
from kernel.api import PermissionDenied

if TYPE_CHECKING:
    from aios_shell.shell import Shell

JSON_SHAPE = """\
perm / perm list: [{"user": str, "rule": str, "effect": "allow|deny", "scope": "policy|yes-for|session|always|…",
                    "by": str, "created_at": float|null}]
perm allow|deny: {"user": str, "rule": str, "effect": "allow|deny", "scope": "session|always"}
perm revoke: {"user": str, "revoked": str}; perm trust: {"trusted": str}
perm check: {"tool": str, "target": str, "effect": "allow|deny|ask", "source": str, "rule": str|null}"""


def _args(p: ArgParser) -> None:
    p.add_argument("action", nargs="?", default="list",
                   choices=["list", "allow", "deny", "revoke", "trust", "check"], help="what to do (default: list)")
    p.add_argument("rule", nargs="*", help="a rule such as 'shell(git status*)', a directory, or TOOL [TARGET]")
    p.add_argument("--always", action="store_true", help="keep the grant (per user) instead of for this session")
    p.add_argument("-u", "--user", help="whose grants (an admin may act for another user)")
    p.add_argument("--json", action="store_true", help="print JSON (shape below)")


@command("perm", "list, add and revoke permission grants", usage="perm [list|allow|deny|revoke|trust|check] …",
         args=_args, json_shape=JSON_SHAPE,
         examples=("perm", "perm allow 'shell(git status*)' --always", "perm revoke 'shell(git status*)'",
                   "perm check shell 'git status'", "perm trust ~/project"))
async def perm(sh: Shell, args: argparse.Namespace) -> Table | Text:
    api = sh.api  # only an admin may act on another user's grants: the API says so (PermissionDenied)
    user = args.user or sh.user
    text = " ".join(args.rule)
    if args.action == "list":
        rows = api.grants(user)
        return Table(["USER", "EFFECT", "RULE", "SCOPE", "BY"],
                     [[g.user, g.effect, g.rule, g.scope, g.by] for g in rows], records=[g.to_dict() for g in rows],
                     stderr=[f"perm: {api.policy_error}"] if api.policy_error else ())
    if not text:
        raise UsageError(f"perm {args.action}: expected an argument")
    if args.action in ("allow", "deny"):
        try:
            rule = api.grant(text, user=user, always=args.always, effect=args.action)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        scope = "always" if args.always else "session"
        return Text([f"{args.action} {rule} for {user} ({'always' if args.always else 'this session'})"],
                    records={"user": user, "rule": str(rule), "effect": args.action, "scope": scope})
    if args.action == "revoke":
        if not api.revoke(text, user=user):
            raise CommandError(f"no such grant for {user}: {text}")
        return Text([f"revoked {text} for {user}"], records={"user": user, "revoked": text})
    if args.action == "trust":
        path = sh.host_path(text)
        try:
            api.trust(path)
        except (OSError, ValueError, PermissionDenied) as exc:
            raise CommandError(str(exc)) from None
        return Text([f"trusted {path}"], records={"trusted": str(path)})
    tool, _, target = text.partition(" ")
    verdict = api.check(tool, target, user=user)
    return Text([f"{verdict.effect}" + (f" ({verdict.source}: {verdict.rule})" if verdict.rule else "")],
                records={"tool": tool, "target": target, "effect": verdict.effect, "source": verdict.source,
                         "rule": verdict.rule})
