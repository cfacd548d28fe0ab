"""Prompt formats for models that have no chat template.

The embedded Gemma-3-270M is a *base* model: Gemma's turn tokens make it babble,
but a plain `User:`/`Assistant:` transcript that opens with one worked example
gives short, usable answers. Generation stops at the next speaker's label.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

DEFAULT_SYSTEM = (
    "This is a conversation between a User and a helpful Assistant. "
    "The Assistant answers correctly, clearly and briefly, in plain sentences."
)
EXAMPLE = (
    ("Write one sentence about the sea.", "The sea covers most of our planet and is home to countless creatures."),
)
LABELS = {"user": "User", "assistant": "Assistant", "tool": "Tool", "system": "System"}
STOP = ("\nUser:", "\nAssistant:", "\nTool:", "\nSystem:", "\n\n")


def render_transcript(messages: Sequence[dict[str, Any]], partial: str = "") -> str:
    """Render chat messages as a plain transcript that ends where the assistant speaks.

    `partial` is assistant text already produced for this turn (after a preemption);
    it is appended as is, so the model continues exactly where it stopped.
    """
    system = [str(m.get("content", "")).strip() for m in messages if m.get("role") == "system"]
    lines = [" ".join(system) if system else DEFAULT_SYSTEM, ""]
    for question, answer in EXAMPLE:
        lines += [f"User: {question}", f"Assistant: {answer}", ""]
    for message in messages:
        role = str(message.get("role", "user"))
        if role == "system":
            continue
        label = LABELS.get(role, role.capitalize())
        content = " ".join(str(message.get("content", "")).split())
        lines.append(f"{label}: {content}")
    return "\n".join(lines) + "\nAssistant:" + partial
