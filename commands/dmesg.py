"""dmesg [--json] — the kernel's own messages, as /proc/kmsg has them."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from commands.namespace import fmt_ts
from commands.registry import ArgParser, command
from commands.results import Text

if TYPE_CHECKING:
    from aios_shell.shell import Shell

JSON_SHAPE = '[{"ts": float, "level": "error|warning|info", "text": str}]  (oldest first)'


def _args(p: ArgParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON (shape below)")


@command("dmesg", "print the kernel's own messages (a failing event handler, say); its owner and admins only",
         usage="dmesg [--json]", args=_args, json_shape=JSON_SHAPE, examples=("dmesg", "dmesg --json"))
async def dmesg(sh: Shell, args: argparse.Namespace) -> Text:
    messages = sh.api.kmsg()
    return Text([f"{fmt_ts(m.ts)} {m.level}: {m.text}" for m in messages], records=[m.to_dict() for m in messages])
