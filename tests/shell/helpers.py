"""Helpers for shell tests: a shell on the simulated model with captured output, and JSON shapes."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aios_shell.render import make_console
from aios_shell.shell import Shell
from kernel.kernel import Kernel, boot
from kernel.llm.simulated import SimulatedBackend
from tests.conftest import make_config


@dataclass
class Session:
    kernel: Kernel
    shell: Shell
    out: io.StringIO
    err: io.StringIO

    async def run(self, text: str) -> int:
        return await self.shell.run_line(text)

    def take(self) -> tuple[str, str]:
        """Output and errors so far, then start afresh."""
        out, err = self.out.getvalue(), self.err.getvalue()
        for buf in (self.out, self.err):
            buf.seek(0)
            buf.truncate()
        return out, err


@asynccontextmanager
async def session(home: Path, sim: SimulatedBackend | None = None, interactive: bool = False,
                  **config: Any) -> AsyncIterator[Session]:
    kernel = await boot(make_config(home, **config), backend=sim or SimulatedBackend(decode_tps=500))
    out, err = io.StringIO(), io.StringIO()
    shell = Shell(kernel, out=make_console(out), err=make_console(err), interactive=interactive, cwd=home)
    try:
        yield Session(kernel, shell, out, err)
    finally:
        await kernel.shutdown()


def add_agent(home: Path, name: str, source: str) -> None:
    """Install a user agent as $AIOS_HOME/agents/NAME.py."""
    (home / "agents").mkdir(parents=True, exist_ok=True)
    (home / "agents" / f"{name}.py").write_text(source)


def check_shape(value: Any, shape: Any, where: str = "$") -> None:
    """Assert `value` has `shape`: a type, a tuple of choices (None for null), [shape] or {key: shape}."""
    if isinstance(shape, list):
        assert isinstance(value, list), f"{where}: expected a list, got {value!r}"
        for i, item in enumerate(value):
            check_shape(item, shape[0], f"{where}[{i}]")
    elif isinstance(shape, dict):
        assert isinstance(value, dict), f"{where}: expected an object, got {value!r}"
        assert set(value) == set(shape), f"{where}: keys {sorted(value)} != {sorted(shape)}"
        for key, sub in shape.items():
            check_shape(value[key], sub, f"{where}.{key}")
    elif isinstance(shape, tuple):
        errors = []
        for choice in shape:
            try:
                check_shape(value, choice, where)
                return
            except AssertionError as exc:
                errors.append(str(exc))
        raise AssertionError(f"{where}: {value!r} matches none of {shape}")
    elif shape is None:
        assert value is None, f"{where}: expected null, got {value!r}"
    elif shape is float:
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{where}: {value!r} is not a number"
    elif shape is int:
        assert isinstance(value, int) and not isinstance(value, bool), f"{where}: {value!r} is not an int"
    else:
        assert isinstance(value, shape), f"{where}: {value!r} is not {shape.__name__}"
