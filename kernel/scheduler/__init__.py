"""Who gets the model next: scheduling policies and the dispatcher that applies them."""

from kernel.scheduler.dispatch import Dispatcher
from kernel.scheduler.fifo import FifoPolicy
from kernel.scheduler.policy import Policy

__all__ = ["Dispatcher", "FifoPolicy", "Policy"]
