"""The aios kernel: processes, scheduling, backends and storage in one asyncio process."""

from kernel.kernel import Kernel, KernelConfig, boot

__all__ = ["Kernel", "KernelConfig", "boot"]
