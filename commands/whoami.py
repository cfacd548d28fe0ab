"""whoami — the aios user this shell acts as."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from commands.registry import command
from commands.results import Text

if TYPE_CHECKING:
    from aios_shell.shell import Shell


@command("whoami", "print the aios user you act as (`--user`, AIOS_USER)", usage="whoami")
async def whoami(sh: Shell, args: argparse.Namespace) -> Text:
    return Text([sh.user])
