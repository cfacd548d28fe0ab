"""Stop sequences for streamed text."""

from __future__ import annotations


class StopScanner:
    """Cuts generated text at the first stop sequence, holding back only what could start one."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.buffer = ""

    def _held(self) -> int:
        """Length of the longest tail of the buffer that is a proper prefix of some stop."""
        best = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(self.buffer)), best, -1):
                if self.buffer.endswith(stop[:k]):
                    best = k
                    break
        return best

    def feed(self, text: str) -> tuple[str, bool]:
        """Return (text safe to emit, whether a stop sequence was hit)."""
        self.buffer += text
        hits = [self.buffer.find(s) for s in self.stops if s in self.buffer]
        if hits:
            out, self.buffer = self.buffer[: min(hits)], ""
            return out, True
        cut = len(self.buffer) - self._held()
        out, self.buffer = self.buffer[:cut], self.buffer[cut:]
        return out, False

    def flush(self) -> str:
        out, self.buffer = self.buffer, ""
        return out
