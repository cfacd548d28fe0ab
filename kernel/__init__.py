"""The aios kernel: processes, scheduling, backends and storage in one asyncio process.

`Kernel`, `KernelConfig` and `boot` load on first use, so a client that only attaches to a running kernel
(`aios ps` in a second terminal) does not import the backends, the scheduler and the tools."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kernel.kernel import Kernel, KernelConfig, boot

__all__ = ["Kernel", "KernelConfig", "boot"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from kernel import kernel

        return getattr(kernel, name)
    raise AttributeError(f"module 'kernel' has no attribute {name!r}")
