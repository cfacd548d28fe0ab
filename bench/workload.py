"""One seeded workload generator for every system the benchmark compares.

N agents, a mix of short and long ones (default 70/30), each a few steps of one
model call followed by a tool wait; several users, one of them heavier than the
rest; arrivals all at once (`burst`) or Poisson at `load` × the backend's capacity.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class AgentSpec:
    index: int
    user: str
    kind: str  # "short" | "long" (in the agents workload: interactive | batch)
    arrival: float  # seconds after the start
    steps: tuple[tuple[int, float], ...]  # (tokens to generate, tool wait after it)
    results: tuple[int, ...] = ()  # tokens of each step's tool result (the agents workload)
    system: int = 0  # tokens of its system prompt and tool schemas (0: the simple workload's bare prompt)
    family: int = 0  # which program it is: agents of one family share their system prompt
    cap: int = 0  # every call's max_tokens (0: the answer's exact length, the simple workload's oracle)

    @property
    def tokens(self) -> int:
        return sum(t for t, _ in self.steps)

    @property
    def tool_wait(self) -> float:
        return sum(w for _, w in self.steps)

    def argv(self) -> list[str]:
        """The `workload` agent's arguments for this plan."""
        shape = ["--system", str(self.system), "--family", str(self.family), "--task", str(self.index),
                 "--cap", str(self.cap)] if self.system else []
        results = self.results or (0,) * len(self.steps)
        return [*shape, *(f"{tokens}:{wait:.4f}" + (f":{r}" if r else "")
                          for (tokens, wait), r in zip(self.steps, results, strict=True))]


@dataclass(frozen=True)
class Shape:
    short_tokens: tuple[int, int] = (8, 24)
    long_tokens: tuple[int, int] = (96, 192)
    short_steps: tuple[int, int] = (1, 2)
    long_steps: tuple[int, int] = (2, 3)
    tool_wait: tuple[float, float] = (0.01, 0.05)


def mean_tokens(shape: Shape, short_frac: float) -> float:
    def mean(r: tuple[int, int]) -> float:
        return (r[0] + r[1]) / 2

    short = mean(shape.short_tokens) * mean(shape.short_steps)
    long = mean(shape.long_tokens) * mean(shape.long_steps)
    return short_frac * short + (1 - short_frac) * long


def generate(
    n: int,
    *,
    seed: int = 0,
    slots: int = 4,
    decode_tps: float = 50.0,
    load: float = 0.9,
    arrivals: str = "poisson",
    short_frac: float = 0.7,
    users: int = 4,
    shape: Shape | None = None,
) -> list[AgentSpec]:
    """The agents, in arrival order. Capacity is `slots × decode_tps` tokens per second."""
    shape = shape or Shape()
    rng = random.Random(seed)
    capacity = slots * decode_tps / mean_tokens(shape, short_frac)  # agents per second
    rate = max(load, 1e-9) * capacity
    names = [f"user{u}" for u in range(users)]
    weights = [3.0] + [1.0] * (users - 1)  # user0 runs as many agents as the next three together
    t = 0.0
    agents = []
    for i in range(n):
        if arrivals == "poisson" and i:
            t += rng.expovariate(rate)
        kind = "short" if rng.random() < short_frac else "long"
        tokens, steps = (shape.short_tokens, shape.short_steps) if kind == "short" else (
            shape.long_tokens, shape.long_steps)
        plan = tuple(
            (rng.randint(*tokens), round(rng.uniform(*shape.tool_wait), 4))
            for _ in range(rng.randint(*steps))
        )
        agents.append(AgentSpec(i, rng.choices(names, weights)[0], kind, t, plan))
    return agents
