"""Model and tool output is untrusted: strip terminal control sequences before display."""

from __future__ import annotations

import re

# CSI, OSC (to BEL or ST), DCS/SOS/PM/APC strings, two-byte escapes, then lone C0/C1 controls
_ESCAPES = re.compile(
    r"""
    \x1b\[[0-?]*[ -/]*[@-~]            # CSI ... final byte
  | \x9b[0-?]*[ -/]*[@-~]              # 8-bit CSI
  | \x1b\][^\x07\x1b]*(?:\x07|\x1b\\)? # OSC ... BEL or ST
  | \x9d[^\x07\x1b]*(?:\x07|\x1b\\)?   # 8-bit OSC
  | \x1b[PX^_][^\x1b]*(?:\x1b\\)?      # DCS, SOS, PM, APC
  | \x1b[@-Z\\-_]                      # other two-byte escapes
  | \x1b                               # a lone ESC
    """,
    re.VERBOSE,
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# bidi overrides and isolates (U+202E turns "exe.txt" into "txt.exe" on screen), zero-width and BOM
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def strip_controls(text: str) -> str:
    """Remove escape sequences and control characters, keeping newlines and tabs."""
    text = _ESCAPES.sub("", text)
    text = text.replace("\r\n", "\n")
    return _INVISIBLE.sub("", _CONTROLS.sub("", text))


def one_line(text: object, limit: int = 200) -> str:
    """Untrusted text made safe to draw on one line, cut to `limit` characters."""
    line = strip_controls(str(text)).replace("\n", " ").replace("\t", " ")
    return line if len(line) <= limit else line[: limit - 1] + "…"


_SGR = re.compile(r"(\x1b\[[0-9;]*m)")


def keep_colour(text: str) -> str:
    """`strip_controls`, but colour and bold (SGR sequences) stay: for text our own renderer styled."""
    parts = _SGR.split(text)
    return "".join(part if i % 2 else strip_controls(part) for i, part in enumerate(parts))
