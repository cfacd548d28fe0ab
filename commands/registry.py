"""One registry of shell commands. Each command module declares itself with `@command`;
the REPL, `aios -c`, script files and one-shot `aios CMD` all look commands up here,
and `help` is generated from the same declarations.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aios_shell.shell import Shell
    from commands.results import Result


class UsageError(Exception):
    """Bad arguments: the shell prints one line and the status is 2."""


class CommandError(Exception):
    """The command failed: the shell prints one line and the status is 1 (or `status`)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


class HelpShown(Exception):
    """`-h/--help` printed the help; the status is 0."""


class ArgParser(argparse.ArgumentParser):
    """argparse that raises instead of printing and exiting."""

    signed: tuple[str, ...] = ()  # options whose value may start with `-` (`ps --sort -nice`, as procps takes it)

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
        if args is not None and self.signed:
            joined: list[str] = []
            words = iter(args)
            for word in words:
                value = next(words, None) if word in self.signed else None
                joined.append(word if value is None else f"{word}={value}")
            args = joined
        return super().parse_args(args, namespace)

    def error(self, message: str) -> Any:
        raise UsageError(message)

    def exit(self, status: int = 0, message: str | None = None) -> Any:
        raise HelpShown()

    def print_help(self, file: Any = None) -> None:
        self._help_requested = True


Handler = Callable[["Shell", argparse.Namespace], Awaitable["Result"]]


@dataclass
class Command:
    name: str
    summary: str
    handler: Handler
    parser: ArgParser
    aliases: tuple[str, ...] = ()
    json_shape: str | None = None  # documents the --json output, shown by `help`
    raw_args: bool = False  # the handler parses its own arguments (kill -9, renice -5)
    examples: list[str] = field(default_factory=list)
    # what Tab offers: for the arguments (COMPLETIONS), and for the value of an option (a kind, or the choices)
    complete: str | None = None
    complete_options: dict[str, str | tuple[str, ...]] = field(default_factory=dict)

    def parse(self, argv: list[str]) -> argparse.Namespace:
        if self.raw_args:
            if argv[:1] in (["-h"], ["--help"]):
                raise HelpShown()
            return argparse.Namespace(argv=argv)
        return self.parser.parse_args(argv)

    def help(self) -> str:
        text = self.parser.format_help().rstrip()
        if self.json_shape:
            text += "\n\n--json output:\n" + self.json_shape.strip("\n")
        if self.examples:
            text += "\n\nexamples:\n" + "\n".join("  " + e for e in self.examples)
        return text


REGISTRY: dict[str, Command] = {}
COMPLETIONS = ("pid", "path", "model", "command", "agent", "user")  # what a command's arguments may complete as


def command(
    name: str,
    summary: str,
    *,
    usage: str | None = None,
    args: Callable[[ArgParser], None] | None = None,
    aliases: tuple[str, ...] = (),
    json_shape: str | None = None,
    raw_args: bool = False,
    examples: tuple[str, ...] = (),
    complete: str | None = None,
    complete_options: dict[str, str | tuple[str, ...]] | None = None,
) -> Callable[[Handler], Handler]:
    """Declare a shell command: its name, one-line summary, arguments and handler, and what Tab completes:
    `complete` for its arguments, `complete_options` for an option's value (one of COMPLETIONS, or the choices)."""
    for kind in [complete, *(complete_options or {}).values()]:
        if isinstance(kind, str) and kind not in COMPLETIONS:
            raise ValueError(f"{name}: {kind!r} is not a completion (one of {', '.join(COMPLETIONS)})")

    def register(handler: Handler) -> Handler:
        escaped = usage.replace("%", "%%") if usage else None  # argparse %-formats the usage (`%N` job specs)
        parser = ArgParser(prog=name, usage=escaped, description=summary, add_help=True)
        if args is not None:
            args(parser)
        cmd = Command(name, summary, handler, parser, aliases, json_shape, raw_args, list(examples), complete,
                      dict(complete_options or {}))
        for key in (name, *aliases):
            REGISTRY[key] = cmd
        return handler

    return register


_loaded = False


def load_all() -> dict[str, Command]:
    """Import every module of the `commands` package so each registers itself."""
    global _loaded
    if not _loaded:
        import commands

        for info in pkgutil.iter_modules(commands.__path__):
            if info.name not in ("registry", "render", "results"):
                importlib.import_module(f"commands.{info.name}")
        _loaded = True
    return REGISTRY


def lookup(name: str) -> Command | None:
    return load_all().get(name)


def names() -> list[str]:
    return sorted({cmd.name for cmd in load_all().values()})
