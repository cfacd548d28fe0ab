"""Tab completion for the REPL: commands, flags, pids and job specs, agents, users, models, /proc paths.

What a command's arguments complete as is declared with the command (`@command(complete=…,
complete_options=…)`); this module only knows how to list each kind."""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from commands.namespace import PROC_FILES, ROOTS, tools, users
from commands.registry import lookup, names

if TYPE_CHECKING:
    from aios_shell.shell import Shell


def _words(text: str) -> tuple[list[str], str]:
    """The words of the current command before the cursor, and the word being typed."""
    for sep in ("&&", "||", ";", "|", "&"):
        text = text.rsplit(sep, 1)[-1]
    try:
        words = shlex.split(text)
    except ValueError:  # an open quote: complete from its start
        words = text.split()
    if text and not text[-1].isspace() and words:
        return words[:-1], words[-1]
    return words, ""


class ShellCompleter(Completer):
    def __init__(self, shell: Shell, models: Iterable[str] = ()) -> None:
        self.shell = shell
        self.models = list(models)  # refreshed by the REPL (listing them may need the network)

    async def load_models(self) -> None:
        """What the backend serves, for `/models/` and `--model` (a server that does not answer: unchanged)."""
        from commands.namespace import models

        try:
            self.models = await models(self.shell)
        except Exception:  # completion only: never in the user's way
            pass

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterator[Completion]:
        before, word = _words(document.text_before_cursor)
        for candidate in sorted(set(self.candidates(before, word))):
            if candidate.startswith(word) and candidate != word:
                yield Completion(candidate, start_position=-len(word))

    def candidates(self, before: list[str], word: str) -> Iterable[str]:
        if not before:
            yield from names()
            yield from (f"%{n}" for n in self.shell.jobs)
            return
        name = before[0]
        if name == "nice" and "run" in before:
            before = before[before.index("run"):]
            name = "run"
        prev = before[-1]
        if word.startswith("-"):
            yield from self.flags(name)
            return
        spec = lookup(name)
        if spec is None:
            return
        option = spec.complete_options.get(prev)
        if option is not None:
            yield from option if isinstance(option, tuple) else self.kind(option, word)
        elif name == "nice" and prev != "-n":
            yield "run"
        elif spec.complete == "agent":  # the first argument (after -n NICE); what follows is the agent's own
            if len(before) == 1 or (len(before) == 3 and before[1] in ("-n", "--nice")):
                yield from self.kind("agent", word)
        elif spec.complete is not None:
            yield from self.kind(spec.complete, word)

    def kind(self, kind: str, word: str) -> Iterable[str]:
        """The candidates of one kind of argument (`commands.registry.COMPLETIONS`)."""
        if kind == "pid":
            yield from self.pids()
        elif kind == "path":
            yield from self.paths(word)
        elif kind == "model":
            yield from self.models
        elif kind == "command":
            yield from names()
        elif kind == "agent":
            yield from self.shell.api.agents()
        elif kind == "user":
            yield from users(self.shell)

    def flags(self, name: str) -> Iterable[str]:
        spec = lookup(name)
        if spec is None:
            return
        if name == "kill":
            from kernel.api import Signal

            yield from (f"-{s.name}" for s in Signal)
            yield "-l"
        for action in spec.parser._actions:
            yield from action.option_strings

    def pids(self) -> Iterable[str]:
        yield from (str(p.pid) for p in self.shell.api.ps())
        yield from (f"%{n}" for n in self.shell.jobs)

    def paths(self, word: str) -> Iterable[str]:
        yield "/"
        yield from (f"/{r}" for r in ROOTS)
        shell = self.shell
        if word.startswith("/proc/"):
            pids = [str(p.pid) for p in shell.api.ps(all=True)]
            yield from (f"/proc/{pid}" for pid in pids)
            parts = word.split("/")
            if len(parts) >= 3 and parts[2] in pids:
                yield from (f"/proc/{parts[2]}/{f}" for f in PROC_FILES)
        elif word.startswith("/agents/"):
            yield from (f"/agents/{a}" for a in shell.api.agents())
        elif word.startswith("/users/"):
            yield from (f"/users/{u}" for u in users(shell))
        elif word.startswith("/tools/"):
            yield from (f"/tools/{t}" for t in tools(shell))
        elif word.startswith("/models/"):
            yield from (f"/models/{m}" for m in self.models)
