"""Call sizes learned from the answers seen, never from `max_tokens`, which agents set to a cap.

Each answered call teaches the kernel how long answers are for its program at that step (a process's first call,
its second, …, its eighth and later together), and how many calls a run of that program makes. A call is
estimated when it joins the queue:

- its own process's average answer once that process has answered twice (an agent's answers are alike);
- else the average at its program's step, once three answers were seen there; else at its program, all steps;
- else nothing (the caller falls back to `max_tokens`) — and nothing either for a program whose answers mostly run
  to their `max_tokens`: there the cap is the answer's size, and the caller's best figure.

The estimate is kept on the call, so when the answer comes its error is counted: `sched` shows each program's
estimate per step and the mean absolute error of the estimates made so far. For agent-level priority the same
figures give the work an agent still has: the calls a run of its program still makes after this many, on average
over the runs that went this far (runs that ended: exits), times the answer size at its program.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kernel.process import Process
    from kernel.syscall import LLMCall

STEPS = 8  # steps told apart; later ones share the last bucket
MIN_SEEN = 3  # answers at a step before its average is trusted
MIN_OWN = 2  # a process's own answers before its average is used
MIN_RUNS = 3  # finished runs of a program before its run length is trusted


@dataclass
class Stat:
    n: int = 0
    total: float = 0.0
    cut: int = 0  # answers that reached their max_tokens (the cap was their length)
    errors: int = 0  # answers whose estimate was known
    abs_error: float = 0.0  # their |estimate - answer|, summed

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0

    def add(self, value: float, estimate: float | None, cut: bool = False) -> None:
        self.n += 1
        self.total += value
        self.cut += cut
        if estimate is not None:
            self.errors += 1
            self.abs_error += abs(estimate - value)


class CallSizes:
    """What the kernel has learned of answer sizes and run lengths, per program (and step)."""

    def __init__(self) -> None:
        self.steps: dict[tuple[str, int], Stat] = {}  # (program, step bucket) -> answers there
        self.programs: dict[str, Stat] = {}  # program -> all its answers
        self.own: dict[int, tuple[int, int, str]] = {}  # live pid -> (calls answered, tokens in them, program)
        self.runs: dict[str, list[int]] = {}  # program -> calls made by each run that ended (the latest 500)

    @staticmethod
    def step_of(calls: int) -> int:
        return min(calls, STEPS - 1)

    def estimate(self, proc: Process) -> float | None:
        """Tokens the next answer of `proc` will have, as learned; None if nothing is known yet."""
        calls, tokens, _ = self.own.get(proc.pid, (0, 0, ""))
        program = self.programs.get(proc.program)
        if program is not None and program.n >= MIN_SEEN and program.cut * 2 >= program.n:
            return None  # its answers run to their max_tokens: that is their size, as the caller knows
        if calls >= MIN_OWN:
            return tokens / calls
        step = self.steps.get((proc.program, self.step_of(calls)))
        if step is not None and step.n >= MIN_SEEN:
            return step.mean
        if program is not None and program.n >= MIN_SEEN:
            return program.mean
        return None

    def queued(self, call: LLMCall) -> None:
        """Fix `call`'s estimate as it joins the queue (a resumed call keeps the one it had)."""
        if call.estimate is None:
            call.estimate = self.estimate(call.proc)

    def answered(self, call: LLMCall) -> None:
        proc = call.proc
        calls, tokens, _ = self.own.get(proc.pid, (0, 0, ""))
        key = (proc.program, self.step_of(calls))
        cut = call.chunks >= call.request.max_tokens
        self.steps.setdefault(key, Stat()).add(call.chunks, call.estimate, cut)
        self.programs.setdefault(proc.program, Stat()).add(call.chunks, call.estimate, cut)
        self.own[proc.pid] = (calls + 1, tokens + call.chunks, proc.program)

    def exited(self, pid: int) -> None:
        calls, _, program = self.own.pop(pid, (0, 0, ""))
        if calls:
            runs = self.runs.setdefault(program, [])
            runs.append(calls)
            del runs[:-500]

    def calls_left(self, proc: Process) -> float:
        """Calls a run of `proc`'s program still makes after the ones it has made, on average over the runs that
        went this far (0 while fewer than MIN_RUNS have)."""
        done = self.own.get(proc.pid, (0, 0, ""))[0]
        longer = [r - done for r in self.runs.get(proc.program, ()) if r > done]
        return sum(longer) / len(longer) if len(longer) >= MIN_RUNS else 0.0

    def work_left(self, proc: Process) -> float:
        """Tokens `proc`'s later calls will ask of the model, as learned (beyond the one it is making)."""
        program = self.programs.get(proc.program)
        size = program.mean if program is not None and program.n >= MIN_SEEN else 0.0
        return max(0.0, self.calls_left(proc) - 1) * size

    def describe(self) -> list[dict[str, Any]]:
        """Each program's estimate per step, with the mean absolute error of the estimates made so far."""
        rows = []
        for (program, step), stat in sorted(self.steps.items()):
            rows.append({"program": program, "step": f"{step + 1}+" if step == STEPS - 1 else str(step + 1),
                         "answers": stat.n, "estimate": round(stat.mean, 1),
                         "error": round(stat.abs_error / stat.errors, 1) if stat.errors else None})
        return rows
