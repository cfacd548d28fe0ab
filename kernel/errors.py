"""Errors the kernel raises to user space; each message is one line fit to show."""


class KernelError(Exception):
    pass


class NoSuchProcess(KernelError):
    def __init__(self, pid: int) -> None:
        super().__init__(f"({pid}) - No such process")
        self.pid = pid


class PermissionDenied(KernelError):
    pass


class InvalidArgument(KernelError):
    pass


class ResourceLimit(KernelError):
    """An admission limit or quota refused the request (too many processes, a full queue)."""
