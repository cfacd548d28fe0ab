"""sched [POLICY] [--slice N] [--slots P] [--json] — show or switch the scheduler, live."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from commands.registry import ArgParser, command
from kernel import clock
from kernel.scheduler import POLICIES

if TYPE_CHECKING:
    from aios_shell.shell import Shell

JSON_SHAPE = """\
{"policy": str, "params": {str: number}, "slots": int, "preemptions": int,
 "running": [{"slot": int, "pid": int, "user": str, "cmd": str, "tokens": int}],
 "queue": [{"pos": int, "pid": int, "user": str, "nice": int, "wait_s": float, "reason": str}]}"""


def _args(p: ArgParser) -> None:
    p.add_argument("policy", nargs="?", choices=sorted(POLICIES), help="switch to this policy")
    p.add_argument("--slice", type=int, metavar="N", help="tokens per turn for rr and fair")
    p.add_argument("--slots", type=int, metavar="P", help="model calls served at once")
    p.add_argument("--json", action="store_true", help="print JSON (shape below)")
    p.epilog = ("policies: fifo (arrival order), rr (turns of --slice tokens), priority (nice, with aging), "
                "fair (fair share of tokens across users, then processes), las (least attained service first), "
                "srpt (fewest tokens left first, waiting counts; the default)")


def snapshot(sh: Shell) -> dict[str, Any]:
    d = sh.kernel.dispatcher
    now = clock.now()
    described = d.policy.describe()
    return {
        "policy": described.pop("policy"),
        "params": described,
        "slots": d.slots,
        "preemptions": d.preemptions,
        "running": [
            {"slot": slot, "pid": c.pid, "user": c.proc.user, "cmd": c.proc.cmdline, "tokens": c.chunks}
            for slot, c in sorted(d.running.items())
        ],
        "queue": [
            {"pos": i + 1, "pid": c.pid, "user": c.proc.user, "nice": c.proc.nice,
             "wait_s": round(now - c.queued_at, 3), "reason": d.policy.reason(c)}
            for i, c in enumerate(d.queue())
        ],
    }


@command("sched", "show the scheduler (policy, slots, ready queue) or switch it live",
         usage="sched [POLICY] [--slice N] [--slots P] [--json]", args=_args, json_shape=JSON_SHAPE,
         examples=("sched", "sched fair --slice 16", "sched --slots 4", "sched --json"))
async def sched(sh: Shell, args: argparse.Namespace) -> int:
    if args.policy or args.slice is not None or args.slots is not None:
        sh.kernel.sched(args.policy, slice=args.slice, slots=args.slots)
    snap = snapshot(sh)
    if args.json:
        sh.json(snap)
        return 0
    params = " ".join(f"{k}={v}" for k, v in snap["params"].items())
    sh.print(f"policy {snap['policy']}{f' ({params})' if params else ''}")
    sh.print(f"{snap['slots']} slots: {len(snap['running'])} running, {len(snap['queue'])} queued, "
             f"{snap['preemptions']} preemptions")
    slots = {r["slot"]: r for r in snap["running"]}
    rows = []
    for slot in range(snap["slots"]):
        r = slots.get(slot)
        rows.append([slot, r["pid"], r["user"], r["tokens"], r["cmd"]] if r else [slot, "-", "-", "-", "(idle)"])
    sh.table(["SLOT", "PID", "USER", "TOKENS", "CMD"], rows, right=("SLOT", "PID", "TOKENS"))
    if snap["queue"]:
        sh.print("")
        rows = [[q["pos"], q["pid"], q["user"], q["nice"], f"{q['wait_s']:.1f}s", q["reason"]] for q in snap["queue"]]
        sh.table(["POS", "PID", "USER", "NI", "WAIT", "REASON"], rows, right=("POS", "PID", "NI", "WAIT"))
    return 0
