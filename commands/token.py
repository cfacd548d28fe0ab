"""token [--new] [--json] — your token for the kernel's HTTP front, and where the front listens."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from commands.registry import ArgParser, CommandError, command
from commands.results import Text

if TYPE_CHECKING:
    from aios_shell.shell import Shell

JSON_SHAPE = """{"user": str, "token": str, "url": str, "ollama_host": str, "openai_base_url": str}"""


def _args(p: ArgParser) -> None:
    p.add_argument("--new", action="store_true", help="make a new token (the old one stops working)")
    p.add_argument("--json", action="store_true", help="print it as JSON")
    p.epilog = ("The front serves the Ollama API (/api/chat, /api/generate, …) and the OpenAI API "
                "(/v1/chat/completions, /v1/models) on 127.0.0.1; it starts here if it is not running (at "
                "AIOS_HTTP, else on a free port). A client's calls with your token are a `client` process of yours.")


@command("token", "your token for the kernel's HTTP front (the Ollama and OpenAI APIs), and its address",
         usage="token [--new] [--json]", args=_args, json_shape=JSON_SHAPE, examples=("token", "token --new"))
async def token(sh: Shell, args: argparse.Namespace) -> Text:
    try:
        info = await sh.api.http_token(new=args.new)
    except Exception as exc:  # the front cannot listen (a port in use): one line
        raise CommandError(str(exc)) from None
    lines = [f"token: {info['token']}", f"front: {info['url']}",
             f"ollama: OLLAMA_HOST={info['ollama_host']}",
             f"openai: OPENAI_BASE_URL={info['openai_base_url']} OPENAI_API_KEY={info['token']}"]
    return Text(lines, records=info)
