"""Monitor themes, loaded by name: `dark` (default), `light`, `high-contrast`.

Each theme is a colour set in `NAME.toml` (Textual theme fields plus `[variables]`); the
app-wide layout and styles are in `monitor.tcss`, written against the theme's variables.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Any

DEFAULT = "dark"


def names() -> list[str]:
    """The themes shipped here, the default first."""
    found = sorted(p.name.removesuffix(".toml") for p in resources.files(__name__).iterdir()
                   if p.name.endswith(".toml"))
    return sorted(found, key=lambda n: (n != DEFAULT, n))


def load(name: str) -> dict[str, Any]:
    """The colour set of theme `name`; raises KeyError for an unknown theme."""
    if name not in names():
        raise KeyError(f"no theme {name!r} (themes: {', '.join(names())})")
    data = tomllib.loads(resources.files(__name__).joinpath(f"{name}.toml").read_text())
    data["name"] = name
    return data


def stylesheet() -> str:
    """Path of the app-wide stylesheet."""
    return str(resources.files(__name__).joinpath("monitor.tcss"))
