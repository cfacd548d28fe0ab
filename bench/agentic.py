"""The agents workload: tool-using agents over growing contexts, interactive ones among batch ones.

Each agent belongs to one of `FAMILIES` programs, whose system prompt and tool schemas (300–1500 tokens, drawn
once per program) every agent of it sends first; then its task, then steps of an answer and a tool's result
(20–2000 tokens) that stay in the conversation, with the tool's wait (10 ms–5 s) between. Every call asks for
at most `CAP` tokens, as real agents do: the answer's length is the model's, and the kernel is never told it.

- interactive agents (`short`, 40%): 1–3 steps, answers of ~80 tokens, small tool results, waits under 0.5 s;
- batch agents (`long`): 2–40 steps with a heavy tail (2 × Pareto(1.1), capped at 40: a median of about four,
  a few of dozens), answers of ~120 tokens, tool results of ~300;
- answer and result lengths are lognormal (heavy-tailed, as output lengths in public chat logs such as
  LMSYS-Chat-1M are), clipped to their ranges; tool waits are log-uniform.

These shapes follow what published agent traces describe rather than a fitted trace: many steps with a long
tail (SWE-agent's trajectories, Autellix's program traces), contexts dominated by the system prompt, tool
schemas and tool outputs, so that most of each call's input repeats the previous call's.

Arrivals are Poisson at `load` × the server's capacity at its best: the agents' answers at the profile's batched
decode rate with P busy, plus the prompt tokens new to the server at its prefill rate, as if every call found its
conversation in a slot's cache. A server that does not keep them there (more agents than slots, each call in the
first free slot) reads far more, and at load 0.9 falls behind: what a cache saves is the scheduler's to win.
"""

from __future__ import annotations

import math
import random
import statistics

from bench.workload import AgentSpec
from kernel.llm.servermodel import Profile

FAMILIES = 4
CAP = 1024  # every call's max_tokens
INTERACTIVE = 0.4


def _lognormal(rng: random.Random, median: float, sigma: float, low: int, high: int) -> int:
    return int(min(high, max(low, round(median * math.exp(rng.gauss(0.0, sigma))))))


def _log_uniform(rng: random.Random, low: float, high: float) -> float:
    return round(math.exp(rng.uniform(math.log(low), math.log(high))), 4)


def plan(rng: random.Random, index: int, user: str, families: list[int]) -> AgentSpec:
    """One agent's steps, before its arrival time is known."""
    family = rng.randrange(len(families))
    if rng.random() < INTERACTIVE:
        kind, n = "short", rng.randint(1, 3)
        answers = [_lognormal(rng, 80, 0.7, 8, 512) for _ in range(n)]
        results = [_lognormal(rng, 60, 0.8, 20, 400) for _ in range(n)]
        waits = [_log_uniform(rng, 0.01, 0.5) for _ in range(n)]
    else:
        kind, n = "long", min(40, max(2, round(2 * rng.paretovariate(1.1))))
        answers = [_lognormal(rng, 120, 1.0, 8, CAP) for _ in range(n)]
        results = [_lognormal(rng, 300, 1.0, 20, 2000) for _ in range(n)]
        waits = [_log_uniform(rng, 0.01, 5.0) for _ in range(n)]
    results[-1], waits[-1] = 0, 0.0  # the last answer is the agent's: no tool after it
    return AgentSpec(index, user, kind, 0.0, tuple(zip(answers, waits, strict=True)), tuple(results),
                     system=families[family], family=family, cap=CAP)


def work_seconds(spec: AgentSpec, profile: Profile, slots: int) -> float:
    """What one agent asks of the server at best: its answers decoded in a full batch, and only the prompt tokens
    new to the server read (its program's system prompt once, its task, its tools' results)."""
    decode = spec.tokens / profile.total(slots)
    prefill = (spec.system + 10 + sum(spec.results)) / profile.prefill_tps
    return decode + prefill


def generate(n: int, *, seed: int = 0, slots: int = 8, profile: Profile, load: float = 0.9,
             arrivals: str = "poisson", users: int = 4) -> list[AgentSpec]:
    """The agents, in arrival order."""
    rng = random.Random(seed)
    families = [rng.randint(300, 1500) for _ in range(FAMILIES)]
    names = [f"user{u}" for u in range(users)]
    weights = [3.0] + [1.0] * (users - 1)  # user0 runs as many agents as the next three together
    plans = [plan(rng, i, rng.choices(names, weights)[0], families) for i in range(n)]
    rate = max(load, 1e-9) / statistics.fmean(work_seconds(p, profile, slots) for p in plans)  # agents a second
    t = 0.0
    agents = []
    for i, p in enumerate(plans):
        if arrivals == "poisson" and i:
            t += rng.expovariate(rate)
        agents.append(AgentSpec(p.index, p.user, p.kind, round(t, 6), p.steps, p.results, p.system, p.family,
                                p.cap))
    return agents
