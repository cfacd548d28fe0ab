"""`aios bench`: the same workload through the baselines and through each policy.

    aios bench [--workload agents|simple] [--backend simulated|llamacpp] [--profile embedded|gpu] [--agents N]
               [--load L] [--slots P] [--seed S] [--arrivals poisson|burst] [--systems B0,B1,…] [--json FILE]
               [--realtime]

`--workload agents` (the default) is tool-using agents over growing contexts with a fixed cap on every call
(`bench.agentic`), on a simulated server with the embedded model's batching curve and a prompt cache per slot
(`kernel.llm.servermodel`), with the clairvoyant bound (`bench.bound`) under the table; `--workload simple` is
a few short calls, each told its length.

The simulated model runs on a virtual clock (`kernel.clock`): its waits pass at once, so a
thousand agents take seconds and a seed always gives the same figures. The kernel's own
overhead is measured in real time all the same.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import agentic
from bench.baselines import BatchedFifo, TimeSliceRR, run_aios_fifo, run_aios_rr, run_direct
from bench.bound import bound
from bench.metrics import summarize
from bench.workload import AgentSpec, generate
from kernel import clock
from kernel.events import ContextSwitched, SyscallDone, SyscallPreempted
from kernel.kernel import KernelConfig, boot
from kernel.llm.backend import Backend
from kernel.llm.servermodel import EMBEDDED, PROFILES
from kernel.scheduler import DEFAULT_POLICY, POLICIES, make_policy

SYSTEMS = ["B0", "B1", "B2-fifo", "B2-rr", "B2-fifo-kernel", "B2-rr-kernel", *POLICIES]
DIRECT = ("B1", "B2-fifo", "B2-rr")  # agents calling the backend with no kernel between
GENTLE = ("B0", "B2-fifo-kernel", "B2-rr-kernel")  # kernel runs of baselines: FIFO underneath, no affinity


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aios bench", description="compare aios's scheduling with baselines")
    p.add_argument("--workload", choices=("agents", "simple"), default="agents")
    p.add_argument("--backend", choices=("simulated", "llamacpp"), default="simulated")
    p.add_argument("--profile", choices=tuple(PROFILES), default="embedded",
                   help="the simulated server's timings, for --workload agents")
    p.add_argument("--agents", type=int, default=200, metavar="N")
    p.add_argument("--load", type=float, default=0.9, metavar="L", help="arrival rate as a share of capacity")
    p.add_argument("--slots", type=int, default=None, metavar="P", help="8 for agents, 4 for simple")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--arrivals", choices=("poisson", "burst"), default="poisson")
    p.add_argument("--decode-tps", type=float, default=500.0, help="simulated tokens/s per slot (simple)")
    p.add_argument("--systems", default=",".join(SYSTEMS), type=lambda s: s.replace(";", ","),
                   help="subset of " + ",".join(SYSTEMS) + ", comma-separated; a policy may take parameters "
                   "after a colon, separated by ';' (las:scope=call;base=16), and the kernel's levers be turned "
                   "off: affinity=0, keep=0, swap=0 (srpt:keep=0;swap=0)")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the rows as JSON")
    p.add_argument("--realtime", action="store_true",
                   help="run the simulated model in real time (by default its time is virtual: no waiting)")
    return p


def _number(text: str) -> object:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def make_backend(args: argparse.Namespace) -> Callable[[], Backend]:
    if args.backend == "llamacpp":
        from kernel.llm.llamacpp import LlamaCppBackend

        shared = LlamaCppBackend(slots=args.slots, seed=args.seed)
        return lambda: shared
    from kernel.llm.simulated import SimulatedBackend

    tick = 4 if args.agents > 200 else 2
    if args.workload == "agents":
        profile = PROFILES[args.profile]
        # a 32k window (gemma3's): most agents' conversations fit without the kernel compacting them
        return lambda: SimulatedBackend(slots=args.slots, profile=profile, seed=args.seed, tick=tick,
                                        context_window=32768)
    return lambda: SimulatedBackend(slots=args.slots, decode_tps=args.decode_tps, prefill_tps=args.decode_tps * 20,
                                    seed=args.seed, tick=tick)


async def run_kernel(system: str, specs: list[AgentSpec], backend: Backend, slots: int) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="aios-bench-"))
    name, _, spec = system.partition(":")  # "las:scope=call,base=16" sets a policy's parameters
    params = {k: _number(v) for k, _, v in (p.partition("=") for p in spec.split(",") if p)}
    affinity = bool(params.pop("affinity", 1))  # `srpt:affinity=0`: no queued call goes first for a cached prompt
    keep = bool(params.pop("keep", 1))  # `srpt:keep=0`: no slot kept across an agent's tool call
    swap = bool(params.pop("swap", 1))  # `srpt:swap=0`: no slot's state saved and restored
    policy = "fifo" if system in GENTLE else name
    config = KernelConfig(home=home, backend=backend.name, user="bench", admins=frozenset({"bench"}), policy=policy)
    kernel = await boot(config, backend=backend)
    kernel.dispatcher.affinity = affinity and system not in GENTLE  # (not theirs)
    kernel.dispatcher.keep_slots = keep and system not in GENTLE
    if kernel.dispatcher.keeper is not None:
        kernel.dispatcher.keeper.swap = swap and system not in GENTLE and kernel.dispatcher.keeper.swaps is not None
    if system == "B0":
        kernel.sched(slots=1)
    elif system == "B2-fifo-kernel":
        kernel.dispatcher.set_policy(BatchedFifo())
    elif system == "B2-rr-kernel":
        kernel.dispatcher.set_policy(TimeSliceRR())
    elif params:
        kernel.dispatcher.set_policy(make_policy(name, **params))
    calls: list[dict[str, Any]] = []
    switches = {"n": 0, "cost_s": 0.0}
    kernel.bus.on(lambda e: calls.append({"wait_s": e.wait_s, "service_s": e.service_s,
                                          "overhead_s": e.overhead_s}), SyscallDone)

    def count_switch(e: SyscallPreempted) -> None:
        if not e.reason.startswith("retry"):
            switches["n"] += 1

    def cost(e: ContextSwitched) -> None:  # measured by the context manager: the resumed call's first token late
        switches["cost_s"] += e.cost_s

    kernel.bus.on(count_switch, SyscallPreempted)
    kernel.bus.on(cost, ContextSwitched)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    wall0 = clock.now()
    procs = {}
    held: dict[int, float] = {}  # B0: how long an agent waited for the one before it to finish
    try:
        if system == "B0":
            for spec in specs:
                await asyncio.sleep(max(0.0, t0 + spec.arrival - loop.time()))
                held[spec.index] = max(0.0, loop.time() - t0 - spec.arrival)
                proc = kernel.spawn("workload", spec.argv(), user=spec.user)
                procs[spec.index] = proc
                await kernel.wait(proc.pid)
        else:
            async def start(spec: AgentSpec) -> None:
                await asyncio.sleep(max(0.0, t0 + spec.arrival - loop.time()))
                procs[spec.index] = kernel.spawn("workload", spec.argv(), user=spec.user)
                await kernel.wait(procs[spec.index].pid)

            await asyncio.gather(*(start(s) for s in specs))
    finally:
        await kernel.shutdown()
        shutil.rmtree(home, ignore_errors=True)
    failed = [p for p in procs.values() if p.exit_code != 0]
    if failed:
        raise RuntimeError(f"{system}: {len(failed)} agents failed, e.g. {failed[0].status} {failed[0].error}")
    # an agent arrives at its planned time (B0 may only start it later: that is part of its turnaround)
    agents = [{"spec": s, "arrived": s.arrival, "ended": procs[s.index].ended_at - wall0,
               "wait": procs[s.index].queue_wait + held.get(s.index, 0.0)} for s in specs]
    return {"agents": agents, "calls": calls, "switches": switches["n"], "switch_cost_s": switches["cost_s"]}


async def run_system(system: str, specs: list[AgentSpec], new_backend: Callable[[], Backend],
                     slots: int) -> dict[str, Any]:
    backend = new_backend()
    direct = {"B1": lambda: run_direct(backend, specs, slots), "B2-fifo": lambda: run_aios_fifo(backend, specs, slots),
              "B2-rr": lambda: run_aios_rr(backend, specs)}
    if system in direct:
        agents = await direct[system]()
        return {"agents": agents, "calls": agents[0]["calls"] if agents else [], "switches": 0, "switch_cost_s": 0.0}
    return await run_kernel(system, specs, backend, slots)


async def run(args: argparse.Namespace, echo: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Every system in turn. On the simulated model each runs on a virtual clock of its own, from 0."""
    systems = [s.strip() for s in re.split(r",(?![^:,]*=)", args.systems) if s.strip()]
    unknown = [s for s in systems if s.partition(":")[0] not in SYSTEMS]
    if unknown:
        raise ValueError(f"unknown system {unknown[0]!r} (choose from {', '.join(SYSTEMS)})")
    if args.slots is None:
        args.slots = 8 if args.workload == "agents" else 4
    new_backend = make_backend(args)
    decode_tps, prefill_tps = args.decode_tps, 0.0
    if args.workload == "agents":
        profile = PROFILES[args.profile] if args.backend == "simulated" else EMBEDDED
        decode_tps, prefill_tps = profile.decode_tps, profile.prefill_tps
        specs = agentic.generate(args.agents, seed=args.seed, slots=args.slots, profile=profile, load=args.load,
                                 arrivals=args.arrivals)
    else:
        if args.backend == "llamacpp":
            decode_tps = 35.0  # only scales the ideal time in `slowdown`
        specs = generate(args.agents, seed=args.seed, slots=args.slots, decode_tps=decode_tps, load=args.load,
                         arrivals=args.arrivals)
    virtual = args.backend == "simulated" and not getattr(args, "realtime", False)
    rows = []
    width = max(9, *(len(s) for s in systems))  # the progress lines' names, in one column
    for system in systems:
        t, cpu = time.perf_counter(), time.process_time()
        one = run_system(system, specs, new_backend, args.slots)
        result = await (clock.in_virtual_thread(one, start=0.0) if virtual else one)  # same stamps every run
        cpu = time.process_time() - cpu
        slots = 1 if system == "B0" else args.slots
        row = summarize(system, result["agents"], result["calls"], slots=slots, decode_tps=decode_tps,
                        switches=result["switches"], switch_cost_s=result["switch_cost_s"], prefill_tps=prefill_tps)
        if system == DEFAULT_POLICY:
            row["default"] = True
        row.update(workload=args.workload, backend=args.backend, load=args.load, arrivals=args.arrivals,
                   slots=args.slots, seed=args.seed, run_s=round(time.perf_counter() - t, 2))
        row["cpu_s"] = round(cpu, 3)  # this process's CPU for the whole run: kernel, agents, simulated model
        rows.append(row)
        echo(f"  {system:<{width}} makespan {row['makespan_s']:>8.2f}s  turnaround {row['turnaround_mean_s']:>7.3f}s  "
             f"wait {row['wait_mean_s']:>7.3f}s  ({row['run_s']}s)")
    whole_cpu(rows)
    if args.workload == "agents" and args.backend == "simulated":
        figures = bound(specs, PROFILES[args.profile], args.slots)
        each_reads = bound(specs, PROFILES[args.profile], args.slots, system_once=False)["turnaround_mean_s"]
        for row in rows:
            row.update({f"bound_{k}": v for k, v in figures.items()})
            row["bound_system_per_agent_turnaround_mean_s"] = each_reads
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return rows


def whole_cpu(rows: list[dict[str, Any]]) -> None:
    """The kernel's whole CPU per call and per token: each row's process CPU beyond B1's (the same agents on the
    same backend, with no kernel), against `overhead_*_us`, which counts only submitting and dispatching."""
    base = next((r for r in rows if r["system"] == "B1"), None)
    for row in rows:
        if base is None or row["system"] in DIRECT or not row["syscalls"]:
            continue
        extra = row["cpu_s"] - base["cpu_s"]
        row["kernel_cpu_per_call_us"] = round(extra / row["syscalls"] * 1e6, 1)
        tokens = row["tokens_per_s"] * row["makespan_s"]
        row["kernel_cpu_per_token_us"] = round(extra / tokens * 1e6, 2) if tokens else 0.0


__all__ = ["SYSTEMS", "make_policy", "parser", "run"]
