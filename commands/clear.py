"""clear — clear the terminal screen."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from commands.registry import command
from commands.results import Stream

if TYPE_CHECKING:
    from aios_shell.shell import Shell


@command("clear", "clear the terminal screen", usage="clear")
async def clear(sh: Shell, args: argparse.Namespace) -> Stream:
    if sh.clear_screen is not None and not sh.captured:
        sh.clear_screen()
    elif sh.out.is_terminal:
        sh.out.clear()
    return Stream()
