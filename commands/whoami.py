"""whoami — the aios user this shell acts as."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from commands.registry import command

if TYPE_CHECKING:
    from aios_shell.shell import Shell


@command("whoami", "print the aios user you act as (`--user`, AIOS_USER)", usage="whoami")
async def whoami(sh: Shell, args: argparse.Namespace) -> int:
    sh.print(sh.kernel.user)
    return 0
