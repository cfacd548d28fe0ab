"""Model backends behind one small protocol, and the factory that picks one."""

from kernel.llm.backend import (
    Backend,
    BackendError,
    BackendUnavailable,
    Chunk,
    LLMRequest,
    ModelNotFound,
)
from kernel.llm.factory import create_backend

__all__ = [
    "Backend",
    "BackendError",
    "BackendUnavailable",
    "Chunk",
    "LLMRequest",
    "ModelNotFound",
    "create_backend",
]
