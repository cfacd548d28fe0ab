"""Pick and build a backend from `--backend`/`AIOS_BACKEND` and `--model`/`AIOS_MODEL`."""

from __future__ import annotations

from kernel.llm.backend import Backend, BackendError
from kernel.llm.ollama import OllamaBackend, ollama_host, probe

BACKENDS = ("auto", "ollama", "llamacpp", "simulated")


def create_backend(
    kind: str = "auto",
    model: str | None = None,
    slots: int | None = None,
    seed: int = 0,
    host: str | None = None,
) -> Backend:
    """Build the backend `kind`; `auto` means Ollama if it answers, else the embedded model."""
    kind = (kind or "auto").lower()
    if kind not in BACKENDS:
        raise BackendError(f"unknown backend '{kind}' (choose from {', '.join(BACKENDS)})")
    if kind == "auto":
        kind = "ollama" if probe(host or ollama_host()) else "llamacpp"
    if kind == "ollama":
        return OllamaBackend(model=model, host=host, slots=slots)
    if kind == "simulated":
        from kernel.llm.simulated import SimulatedBackend

        return SimulatedBackend(model=model or "sim-1", slots=slots or 4, seed=seed)
    from kernel.llm.llamacpp import LlamaCppBackend

    return LlamaCppBackend(model=model, slots=slots or 1, seed=seed)
