"""Model backends behind one small protocol, and the factory that picks one.

The embedded model computes on OpenMP, whose threads spin about 300,000 times waiting for each other at every
step. Beside other busy processes that spinning starves the very thread being waited for: with two decoding
threads on two cores, 39 tokens/s on an idle machine fell to 8.8 beside two CPU-bound processes. A short spin
keeps most of the idle speed and gives the cores back when the machine is busy (36 and 19 tokens/s). libgomp
reads GOMP_SPINCOUNT once, when llama_cpp loads it (after this package), so it is set here; a value already in
the environment wins.
"""

import os

os.environ.setdefault("GOMP_SPINCOUNT", "2000")

from kernel.llm.backend import (  # noqa: E402 - after the OpenMP setting
    Backend,
    BackendError,
    BackendUnavailable,
    Chunk,
    LLMRequest,
    ModelNotFound,
)
from kernel.llm.factory import create_backend  # noqa: E402

__all__ = [
    "Backend",
    "BackendError",
    "BackendUnavailable",
    "Chunk",
    "LLMRequest",
    "ModelNotFound",
    "create_backend",
]
