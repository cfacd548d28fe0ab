"""Secrets never reach the database, the audit log or a transcript: `redact` masks them.

It knows the shapes of common keys and tokens (OpenAI/Anthropic `sk-…`, GitHub, AWS, Slack, Google, JWTs,
private-key blocks, `Bearer` headers) and `name=value` pairs whose name says it is a secret.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "[REDACTED]"

_PATTERNS = [
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.S),
    re.compile(r"(?<![A-Za-z0-9_\-])sk-[A-Za-z0-9_\-]{16,}"),  # a start only where a run of key characters starts
    re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr|github_pat)_[A-Za-z0-9_]{20,}"),
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    re.compile(r"(?<![A-Za-z0-9_\-])xox[abprs]-[A-Za-z0-9\-]{10,}"),
    re.compile(r"\bAIza[0-9A-Za-z_\-]{35}\b"),
    re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
    re.compile(r"(?i)\bBearer\s+[A-Za-z0-9._~+/\-]{8,}=*"),
]
# `name = value` pairs: the name is matched as a whole word (a start only where a word starts, so the engine never
# retries inside one) and its keyword checked apart, which keeps the whole scan linear in the text's length
_NAME = re.compile(r"(?<![/\\.\w-])([A-Za-z0-9_]+)\s*[=:]\s*")
_VALUE = re.compile(r"\"[^\"]*\"|'[^']*'|\S+")  # read only after a secret's name: each character once
_SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with every secret it recognises replaced by [REDACTED] (linear time in the text's length)."""
    if not text:
        return text
    for pattern in _PATTERNS:
        text = pattern.sub(MASK, text)
    if not _SECRET_NAME.search(text):  # no secret's name anywhere: no pair to look at
        return text
    out, pos = [], 0
    while (m := _NAME.search(text, pos)) is not None:
        value = _VALUE.match(text, m.end()) if _SECRET_NAME.search(m.group(1)) else None
        if value is not None:
            out.append(text[pos:m.end()] + MASK)
            pos = value.end()
        else:  # not a secret's name: what follows may hold a pair of its own (`a=TOKEN=x`)
            out.append(text[pos:m.end()])
            pos = m.end()
    out.append(text[pos:])
    return "".join(out)


def redact_value(value: Any) -> Any:
    """`redact` applied to every string inside dicts, lists and tuples."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v) for v in value]
    return value
