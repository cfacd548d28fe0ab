"""Numeric settings from the environment: a bad value is one clear line (SettingError), never a traceback
and never silently replaced. The CLI exits 2 on a SettingError."""

from __future__ import annotations

import math
import os

from kernel.errors import InvalidArgument


class SettingError(InvalidArgument):
    """An environment setting has a value aios cannot use."""


def number(name: str, default: float, *, whole: bool = False, minimum: float = 0.0,
           maximum: float | None = None) -> float:
    """The value of `name` (or `default` when unset or empty); SettingError for anything that is not a
    number in [minimum, maximum]. With `whole`, the value must be a whole number (returned as int)."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    text = raw.strip()
    kind = "a whole number" if whole else "a number"
    try:
        value: float = int(text) if whole else float(text)
    except ValueError:
        raise SettingError(f"{name}={raw!r}: expected {kind}") from None
    if not math.isfinite(value) or value < minimum or (maximum is not None and value > maximum):
        bound = f"{minimum:g} … {maximum:g}" if maximum is not None else f"at least {minimum:g}"
        raise SettingError(f"{name}={raw!r}: expected {kind}, {bound}")
    return value


def whole(name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    """`number` for settings that count things."""
    return int(number(name, default, whole=True, minimum=minimum, maximum=maximum))
