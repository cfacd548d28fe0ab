"""fifo — first come, first served; never preempts.

A call that was held (its process stopped) and requeued keeps its original place.
"""

from __future__ import annotations

from kernel.scheduler.policy import Policy


class FifoPolicy(Policy):
    name = "fifo"
