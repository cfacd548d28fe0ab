"""Find agent programs: the `aios.agents` entry-point group, then `$AIOS_HOME/agents/*.py`.

An agent program is `async def main(ctx: AgentContext) -> int | None`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Awaitable, Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

Program = Callable[[Any], Awaitable[int | None]]


class NoSuchProgram(LookupError):
    pass


_installed: dict[str, Program] = {}  # entry points already loaded: scanning them costs ~10 ms a spawn


def _user_dir(home: Path) -> Path:
    return Path(home) / "agents"


def available(home: Path) -> dict[str, str]:
    """Program name → where it comes from."""
    found = {ep.name: f"{ep.value}" for ep in entry_points(group="aios.agents")}
    user_dir = _user_dir(home)
    if user_dir.is_dir():
        for path in sorted(user_dir.glob("*.py")):
            found.setdefault(path.stem, str(path))
    return dict(sorted(found.items()))


def load(name: str, home: Path) -> Program:
    if name in _installed:
        return _installed[name]
    for ep in entry_points(group="aios.agents"):
        if ep.name == name:
            _installed[name] = ep.load()
            return _installed[name]
    path = _user_dir(home) / f"{name}.py"
    if name.isidentifier() and path.is_file():
        spec = importlib.util.spec_from_file_location(f"aios_user_agent_{name}", path)
        if spec and spec.loader:
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            main = getattr(module, "main", None)
            if callable(main):
                return main
    names = ", ".join(available(home)) or "none"
    raise NoSuchProgram(f"no such agent: {name} (agents: {names})")
