"""A clairvoyant reference for the agents workload: what a scheduler that knew everything would get.

    python -m bench.bound [--agents N] [--load L] [--slots P] [--seed S] [--profile embedded|gpu]

The same agents on the same server model (`kernel.llm.servermodel`: one loop, batched decode, prompts read in
chunks at the prefill rate), scheduled with what no real scheduler has, and with costs a real one pays waived:

- every agent's remaining work is known exactly (its answers' lengths, its steps, its tools' results) and the
  agent with the least left goes first (shortest remaining processing time, at the level of the agent);
- preemption is free: at every step of the loop the P agents with least left hold the slots, and a call that
  loses its slot keeps all it had, prompt included;
- every prefix is cached: a call reads only what is new since its agent's last one (its tool's result), and a
  program's system prompt is read once in the whole run.

Its mean turnaround is the bound `aios bench --workload agents` prints under its table. It is a reference, not a
proof: shortest-remaining-first is optimal on one server with free preemption, and this server is P slots whose
speed depends on how many are busy, so a cleverer clairvoyant order could do a little better still.
"""

from __future__ import annotations

import argparse
import heapq
import statistics
from dataclasses import dataclass, field

from bench import agentic
from bench.metrics import pct
from bench.workload import AgentSpec
from kernel.llm.servermodel import CHUNK, PROFILES, Profile


@dataclass
class _Agent:
    spec: AgentSpec
    step: int = 0
    to_read: int = 0  # prompt tokens the current call must still read
    made: int = 0  # tokens of the current answer made so far
    ready_at: float = 0.0
    ended: float | None = None
    reads: list[int] = field(default_factory=list)  # what each call reads

    def left(self, profile: Profile, slots: int) -> float:
        """Seconds of the server's work this agent still needs, at best (full batch, prefix cached)."""
        tokens = sum(t for t, _ in self.spec.steps[self.step:]) - self.made
        reads = self.to_read + sum(self.reads[self.step + 1:])
        return tokens / profile.total(slots) + reads / profile.prefill_tps


def simulate(specs: list[AgentSpec], profile: Profile, slots: int, tick: int = 4,
             system_once: bool = True) -> list[float]:
    """Each agent's turnaround under the clairvoyant schedule; without `system_once`, every agent reads its
    program's system prompt at its first call (as on a server whose slots share no cache)."""
    seen_systems: set[int] = set()
    agents = []
    for spec in specs:
        first = 10 + (spec.system if spec.family not in seen_systems or not system_once else 0)
        seen_systems.add(spec.family)
        reads = [first, *spec.results[:-1]]
        agents.append(_Agent(spec, to_read=reads[0], ready_at=spec.arrival, reads=reads))
    waiting = [(a.ready_at, i) for i, a in enumerate(agents)]  # agents not ready yet, by when they will be
    heapq.heapify(waiting)
    ready: list[_Agent] = []
    now = 0.0
    while waiting or ready:
        while waiting and waiting[0][0] <= now:
            ready.append(agents[heapq.heappop(waiting)[1]])
        if not ready:
            now = waiting[0][0]
            continue
        ready.sort(key=lambda a: a.left(profile, slots))
        running = ready[:slots]
        decoders = [a for a in running if a.to_read == 0]
        budget, read = CHUNK * tick, 0
        for a in running:
            if a.to_read and budget:
                take = min(budget, a.to_read)
                a.to_read -= take
                budget -= take
                read += take
        cost = (tick / profile.per_sequence(len(decoders)) if decoders else 0.0) + read / profile.prefill_tps
        now += cost
        for a in decoders:
            want = a.spec.steps[a.step][0]
            a.made = min(want, a.made + tick)
            if a.made < want:
                continue
            ready.remove(a)
            wait = a.spec.steps[a.step][1]
            a.step, a.made = a.step + 1, 0
            if a.step == len(a.spec.steps):
                a.ended = now
                continue
            a.to_read = a.reads[a.step]
            heapq.heappush(waiting, (now + wait, agents.index(a)))
    return [a.ended - a.spec.arrival for a in agents if a.ended is not None]


def bound(specs: list[AgentSpec], profile: Profile, slots: int, system_once: bool = True) -> dict[str, float]:
    """The clairvoyant schedule's figures, keyed as `aios bench`'s rows are."""
    turnaround = simulate(specs, profile, slots, system_once=system_once)
    short = [t for t, s in zip(turnaround, specs, strict=True) if s.kind == "short"]
    return {"turnaround_mean_s": round(statistics.fmean(turnaround), 3),
            "turnaround_p95_short_s": round(pct(short, 95), 3),
            "makespan_s": round(max(s.arrival + t for s, t in zip(specs, turnaround, strict=True))
                                - min(s.arrival for s in specs), 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bound", description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, default=200)
    p.add_argument("--load", type=float, default=0.9)
    p.add_argument("--slots", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", choices=tuple(PROFILES), default="embedded")
    p.add_argument("--system-per-agent", action="store_true",
                   help="every agent reads its program's system prompt (what the bound otherwise waives)")
    args = p.parse_args(argv)
    profile = PROFILES[args.profile]
    specs = agentic.generate(args.agents, seed=args.seed, slots=args.slots, profile=profile, load=args.load)
    for key, value in bound(specs, profile, args.slots, system_once=not args.system_per_agent).items():
        print(f"{key:<24} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
