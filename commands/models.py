"""models [--json] — the models the backend can run; the one in use is marked."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from commands.namespace import models as list_models
from commands.registry import ArgParser, command
from commands.results import Table

if TYPE_CHECKING:
    from aios_shell.shell import Shell

SHAPE = [{"name": str, "backend": str, "current": bool}]
JSON_SHAPE = """\
the models, by name:
  [{"name": str, "backend": "ollama|llamacpp|simulated|…", "current": bool  (the one new agents use)}]"""


def _args(p: ArgParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON (shape below)")


@command("models", "list the models the backend has (Ollama: the server's; `pull` gets more)",
         usage="models [--json]", args=_args, json_shape=JSON_SHAPE, complete="model")
async def models(sh: Shell, args: argparse.Namespace) -> Table:
    model = sh.api.model()
    rows = [{"name": name, "backend": model.backend, "current": name == model.model}
            for name in await list_models(sh)]
    return Table(["NAME", "BACKEND", "IN USE"], [[r["name"], r["backend"], "*" if r["current"] else ""] for r in rows],
                 records=rows)
