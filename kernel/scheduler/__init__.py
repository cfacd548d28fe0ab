"""Who gets the model next: scheduling policies and the dispatcher that applies them."""

from __future__ import annotations

from typing import Any

from kernel.scheduler.fair import FairPolicy
from kernel.scheduler.fifo import FifoPolicy
from kernel.scheduler.las import LeastAttainedPolicy
from kernel.scheduler.policy import Policy
from kernel.scheduler.priority import PriorityPolicy
from kernel.scheduler.rr import RoundRobinPolicy
from kernel.scheduler.srpt import ShortestRemainingPolicy

POLICIES: dict[str, type[Policy]] = {
    cls.name: cls for cls in (FifoPolicy, RoundRobinPolicy, PriorityPolicy, FairPolicy, LeastAttainedPolicy,
                                 ShortestRemainingPolicy)
}
DEFAULT_POLICY = "srpt"  # `aios bench`: the lowest mean turnaround, with makespan as direct calls


def make_policy(name: str, **params: Any) -> Policy:
    """A policy by name; unknown names and parameters raise ValueError with one readable line."""
    cls = POLICIES.get(name)
    if cls is None:
        raise ValueError(f"unknown policy '{name}' (choose from {', '.join(POLICIES)})")
    return cls(**{k: v for k, v in params.items() if v is not None})


from kernel.scheduler.dispatch import Dispatcher  # noqa: E402 - the dispatcher needs the names above

__all__ = ["DEFAULT_POLICY", "POLICIES", "Dispatcher", "Policy", "make_policy"]
