"""sched [POLICY] [--slice N] [--slots P] [--json] — show or switch the scheduler, live."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from commands.registry import ArgParser, command
from commands.results import Several, Table, Text
from kernel.api import POLICY_NAMES

if TYPE_CHECKING:
    from aios_shell.shell import Shell

JSON_SHAPE = """\
{"policy": str, "params": {str: number}, "slots": int, "preemptions": int, "queued": int,
 "running": [{"slot": int, "pid": int, "user": str, "cmd": str, "tokens": int}],
 "kept": {str: int},
 "queue": [{"pos": int, "pid": int, "user": str, "nice": int, "cmd": str, "wait_s": float, "reason": str}],
 "estimates": [{"program": str, "step": str, "answers": int, "estimate": float, "error": float | null}],
 "swap": {"states": int, "bytes": int, "budget": int, "saves": int, "restores": int} | null}"""


def _args(p: ArgParser) -> None:
    p.add_argument("policy", nargs="?", choices=POLICY_NAMES, help="switch to this policy")
    p.add_argument("--slice", type=int, metavar="N", help="tokens per turn for rr and fair")
    p.add_argument("--slots", type=int, metavar="P", help="model calls served at once")
    p.add_argument("--json", action="store_true", help="print JSON (shape below)")
    p.epilog = ("policies: fifo (arrival order), rr (turns of --slice tokens), priority (nice, with aging), "
                "fair (fair share of tokens across users, then processes), las (least attained service first), "
                "srpt (fewest tokens left first, waiting counts; the default)")


def _mib(n: int) -> str:
    return f"{n / (1 << 20):,.0f} MiB"


@command("sched", "show the scheduler (policy, slots, ready queue) or switch it live",
         usage="sched [POLICY] [--slice N] [--slots P] [--json]", args=_args, json_shape=JSON_SHAPE,
         examples=("sched", "sched fair --slice 16", "sched --slots 4", "sched --json"))
async def sched(sh: Shell, args: argparse.Namespace) -> Several:
    api = sh.api
    if args.policy or args.slice is not None or args.slots is not None:
        info = api.set_sched(args.policy, slice=args.slice, slots=args.slots)
    else:
        info = api.sched()
    params = " ".join(f"{k}={v}" for k, v in info.params.items())
    head = [f"policy {info.policy}{f' ({params})' if params else ''}",
            f"{len(info.slots)} slots: {info.busy} running, {info.queued} queued, {info.preemptions} preemptions"]
    if (swap := info.swap) is not None:
        head.append(f"states saved on the server: {swap.states} ({_mib(swap.bytes)} of {_mib(swap.budget)}), "
                    f"{swap.saves} saves, {swap.restores} restores")
    slots = Table(["SLOT", "PID", "USER", "TOKENS", "CMD"],
                  [[s.slot, s.pid, s.user, s.tokens, s.cmd] if not s.idle else
                   [s.slot, "-", "-", "-", "(idle)" if s.kept_for is None else f"(kept for {s.kept_for}: in a tool)"]
                   for s in info.slots], right=("SLOT", "PID", "TOKENS"), before=head)
    parts: list[Table | Text] = [slots]
    if info.queue:
        parts.append(Table(["POS", "PID", "USER", "NI", "WAIT", "REASON"],
                           [[q.pos, q.pid, q.user, q.nice, f"{q.wait_s:.1f}s", q.reason] for q in info.queue],
                           right=("POS", "PID", "NI", "WAIT")))
    if info.estimates:
        parts.append(Table(["PROGRAM", "STEP", "ANSWERS", "ESTIMATE", "ERROR"],
                           [[e.program, e.step, e.answers, f"{e.estimate:g}",
                             "-" if e.error is None else f"±{e.error:g}"] for e in info.estimates],
                           right=("STEP", "ANSWERS", "ESTIMATE", "ERROR"),
                           before=["answer sizes learned (tokens; error: mean |estimate − answer| so far)"]))
    return Several(parts, records=info.to_dict())
