"""Pick and build a backend from `--backend`/`AIOS_BACKEND` and `--model`/`AIOS_MODEL`.

`openai` is any engine serving the OpenAI API at `--base-url URL` (else `OPENAI_BASE_URL`).

`pool` takes its endpoints from `AIOS_POOL`, comma-separated: an Ollama `HOST:PORT`, an OpenAI-compatible
`openai:URL`, or `sim:N` (a simulated endpoint with N slots, for tests and benchmarks). `@N` after a host gives its
slots (what its OLLAMA_NUM_PARALLEL or `--parallel` is); the default is `--slots`, else OLLAMA_NUM_PARALLEL (for an
Ollama host), else 1.

More backends come from the `aios.backends` entry-point group, as agents and tools do: an entry point `NAME =
"pkg.module:make"` makes `--backend NAME` call `make(model=…, slots=…, seed=…)`, which returns a `Backend`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib.metadata import entry_points

from kernel.llm.backend import Backend, BackendError, BackendUnavailable
from kernel.llm.ollama import OllamaBackend, ollama_host, probe, probe_reason
from kernel.settings import whole

BACKENDS = ("auto", "ollama", "openai", "llamacpp", "simulated", "pool")  # built in
GROUP = "aios.backends"


def installed() -> dict[str, str]:
    """Backends from the `aios.backends` entry points: name → where it comes from (a built-in name wins)."""
    return {ep.name: ep.value for ep in entry_points(group=GROUP) if ep.name not in BACKENDS}


def names() -> tuple[str, ...]:
    """Every name `--backend` takes: the built-in ones, then the installed ones."""
    return (*BACKENDS, *sorted(installed()))


def _load(name: str) -> Callable[..., Backend]:
    for ep in entry_points(group=GROUP):
        if ep.name == name:
            try:
                return ep.load()
            except Exception as exc:  # a broken plug-in is one line, not a traceback
                raise BackendError(f"backend '{name}' ({ep.value}) could not be loaded: {exc}") from None
    raise BackendError(f"unknown backend '{name}' (choose from {', '.join(names())})")


def create_backend(
    kind: str = "auto",
    model: str | None = None,
    slots: int | None = None,
    seed: int = 0,
    host: str | None = None,
    pool: str | None = None,
    base_url: str | None = None,
) -> Backend:
    """Build the backend `kind`; `auto` means Ollama if it answers, else the embedded model.

    `ollama` asked for by name must answer now: else one line says so. `pool` reads `pool` or `AIOS_POOL`.
    """
    kind = (kind or "auto").lower()
    if kind not in BACKENDS:
        made = _load(kind)(model=model, slots=slots, seed=seed)
        if not isinstance(made, Backend):
            raise BackendError(f"backend '{kind}' made {type(made).__name__}, not a Backend")
        return made
    if kind == "auto":  # anything but a real Ollama there (nothing, or a server that is not one): embedded
        kind = "ollama" if probe(host or ollama_host()) else "llamacpp"
    elif kind == "ollama" and (why := probe_reason(host or ollama_host())) is not None:
        raise BackendUnavailable(f"{why} (start it with `ollama serve`, set OLLAMA_HOST, or use --backend llamacpp)")
    if kind == "ollama":
        return OllamaBackend(model=model, host=host, slots=slots)
    if kind == "openai":
        from kernel.llm.openai_compat import OpenAIBackend

        return OpenAIBackend(base_url=base_url, model=model, slots=slots)
    if kind == "pool":
        return create_pool(pool if pool is not None else os.environ.get("AIOS_POOL", ""), model, slots, seed)
    if kind == "simulated":
        from kernel.llm.simulated import SimulatedBackend

        return SimulatedBackend(model=model or "sim-1", slots=slots or 4, seed=seed)
    from kernel.llm.llamacpp import LlamaCppBackend

    return LlamaCppBackend(model=model, slots=slots or 4, seed=seed)


def create_pool(spec: str, model: str | None = None, slots: int | None = None, seed: int = 0) -> Backend:
    """A `PoolBackend` from `host:port[@N],openai:URL[@N],sim:N,…`."""
    from kernel.llm.pool import PoolBackend, SimEndpoint

    entries = [e.strip() for e in spec.split(",") if e.strip()]
    if not entries:
        raise BackendError("the pool backend needs its endpoints in AIOS_POOL, e.g. "
                           "AIOS_POOL=127.0.0.1:11434,127.0.0.1:11435")
    endpoints: list[Backend] = []
    for i, entry in enumerate(entries):
        simulated, compatible = entry.startswith("sim:"), entry.startswith("openai:")
        if simulated:
            where, count = f"sim-{i}", entry[4:]
        else:
            where, at, count = entry.removeprefix("openai:").rpartition("@")
            if not at or any(c in count for c in ":/"):  # no '@N', or the '@' of a URL's user:password@
                where, count = entry.removeprefix("openai:"), ""
        try:
            n = int(count) if count else slots or (1 if compatible else
                                                   whole("OLLAMA_NUM_PARALLEL", 1, minimum=1, maximum=1024))
        except ValueError:
            raise BackendError(f"AIOS_POOL entry '{entry}': slots must be a number") from None
        if n < 1:
            raise BackendError(f"AIOS_POOL entry '{entry}': slots must be at least 1")
        if simulated:
            endpoints.append(SimEndpoint(host=where, model=model or "sim-1", slots=n, seed=seed))
        elif compatible:
            from kernel.llm.openai_compat import OpenAIBackend

            if not where.strip():
                raise BackendError(f"AIOS_POOL entry '{entry}': an OpenAI-compatible endpoint needs its URL, "
                                   "e.g. openai:http://127.0.0.1:8080")

            endpoints.append(OpenAIBackend(base_url=where, model=model, slots=n))
        else:
            endpoints.append(OllamaBackend(model=model, host=where, slots=n))
    return PoolBackend(endpoints)
