"""bench — run the scheduling benchmark (`aios bench --help` for its options)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from commands.registry import CommandError, command
from commands.results import Stream

if TYPE_CHECKING:
    from aios_shell.shell import Shell


@command("bench", "compare aios's scheduling with baselines on one workload (table, JSON, plot)",
         usage="bench [--workload agents|simple] [--backend simulated|llamacpp] [--agents N] [--load L] [--slots P] "
               "[--seed S] [--json FILE]",
         raw_args=True, examples=("bench --agents 100", "bench --systems B1,srpt,srpt:keep=0 --json bench.json",
                                  "bench --workload simple --agents 1000 --slots 8"))
async def bench(sh: Shell, args: argparse.Namespace) -> Stream:
    from bench.report import plot, table
    from bench.run import parser, run

    p = parser()
    try:
        options = p.parse_args(args.argv)
    except SystemExit as exc:  # argparse printed its message or the help
        return Stream(int(exc.code or 0))
    sh.print(f"running {options.agents} agents through {options.systems.count(',') + 1} systems…")
    try:
        rows = await run(options, echo=sh.print)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    table(rows, sh.out)
    plot(rows, sh.out)
    if options.json:
        sh.print(f"rows written to {options.json}")
    return Stream()
