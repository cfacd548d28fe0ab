"""Turn the colour sets in `themes/` into Textual themes."""

from __future__ import annotations

from typing import Any

from textual.app import App
from textual.theme import Theme

import themes

FIELDS = ("primary", "secondary", "warning", "error", "success", "accent", "foreground", "background",
          "surface", "panel", "boost", "dark", "luminosity_spread", "text_alpha", "variables")


def to_theme(data: dict[str, Any]) -> Theme:
    return Theme(name=data["name"], **{k: v for k, v in data.items() if k in FIELDS})


def register_themes(app: App[Any]) -> list[str]:
    """Register every theme of `themes/` with `app`; returns their names."""
    names = themes.names()
    for name in names:
        app.register_theme(to_theme(themes.load(name)))
    return names
