"""Which model-call failures pass, and how long to wait before trying again.

A model call that fails with a *transient* error is retried, up to `AIOS_LLM_RETRIES` times
(default 3), after an exponential back-off: 0.5 s, 1 s, 2 s, … capped at 8 s, each ±20 %
at random so that calls which failed together do not come back together. During the back-off
the call holds no slot and its process shows `WAITING(llm)`; a call that was cut off mid-stream
keeps what it had produced and continues from there, as after a preemption. After the last retry
the syscall fails with the error's one line.

Transient: the server cannot be reached or did not answer in time (`BackendUnavailable`), the
connection was lost mid-stream, HTTP 408/429/500/502/503/504, out of memory, an error the server
reported in the middle of a stream (a crashed runner). Permanent, failing at once: model not found,
tools not supported, any other 4xx (a bad request), and anything else. A backend may decide for
itself by setting `transient = True/False` on the exception it raises.

`AIOS_LLM_BACKOFF` sets the first delay in seconds (default 0.5).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from kernel.llm.backend import BackendError, BackendUnavailable, ModelNotFound, ToolsUnsupported

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_STATUS = re.compile(r"\bfailed \((\d{3})\)")
_TRANSIENT_TEXT = ("lost mid-stream", "did not answer in time", "ended the stream without finishing",
                   "reported an error", "out of memory", "requires more system memory")
_OOM = re.compile(r"out of memory|requires more system memory", re.I)
_HOST = re.compile(r"\bOllama at (\S+?):?(?:\s|$)")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and after how long a transient failure is tried again."""

    retries: int = 3
    base: float = 0.5  # the first delay, seconds; each next one doubles
    cap: float = 8.0
    jitter: float = 0.2  # each delay is scaled by a random factor in [1 - jitter, 1 + jitter]

    @classmethod
    def from_env(cls) -> RetryPolicy:
        """`AIOS_LLM_RETRIES` and `AIOS_LLM_BACKOFF` (seconds), where set and valid."""
        from kernel.settings import number, whole

        return cls(retries=whole("AIOS_LLM_RETRIES", cls.retries, maximum=100),
                   base=number("AIOS_LLM_BACKOFF", cls.base, maximum=3600))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number `attempt` (1, 2, …)."""
        plain = min(self.cap, self.base * 2 ** max(0, attempt - 1))
        spread = (rng or random).uniform(1 - self.jitter, 1 + self.jitter) if self.jitter else 1.0
        return max(0.0, min(self.cap, plain * spread))


def is_transient(exc: BaseException) -> bool:
    """Whether a failed model call may succeed if asked again."""
    if isinstance(exc, (ModelNotFound, ToolsUnsupported)):
        return False
    marked = getattr(exc, "transient", None)
    if isinstance(marked, bool):
        return marked
    if isinstance(exc, BackendUnavailable):
        return True
    if not isinstance(exc, BackendError):
        return False
    text = str(exc)
    if status := _STATUS.search(text):
        return int(status.group(1)) in RETRYABLE_STATUS
    lowered = text.lower()
    return any(t in lowered for t in _TRANSIENT_TEXT)


def explain(exc: BaseException, model: str = "") -> BaseException:
    """The error as the one line a user sees: out of memory said plainly, the rest unchanged."""
    text = str(exc)
    if not isinstance(exc, BackendError) or not _OOM.search(text) or "is out of memory for model" in text:
        return exc
    host = _HOST.search(text)
    where = f"Ollama at {host.group(1)}" if host else "the model server"
    clear = type(exc)(f"{where} is out of memory for model {model or '(unknown)'}")
    clear.__cause__ = exc
    return clear
