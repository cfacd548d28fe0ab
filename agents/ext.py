"""`ext [--] CMD ARGS…` — run an outside agent program as this process: `run ext -- python my_agent.py`.

The program gets `OLLAMA_HOST`, `OPENAI_BASE_URL`, `OPENAI_API_KEY` and `AIOS_TOKEN` pointing at the kernel's
HTTP front, so the `ollama` and `openai` client libraries call the model through aios as this process: its calls
pass the scheduler and show in `sched`, `kill -STOP` pauses its stream (and the program), `kill` ends it with an
error its library raises. It runs in the tool sandbox (the host's network, to reach the front); what it writes is
this process's output; its exit status is this process's.
"""

from __future__ import annotations

from kernel.syscall import AgentContext

USAGE = "usage: ext [--] CMD ARGS…  (e.g. run ext -- python examples/ollama_agent.py)"


async def main(ctx: AgentContext) -> int:
    argv = list(ctx.argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        await ctx.write(USAGE + "\n")
        return 0 if argv else 2
    try:
        return await ctx.exec(argv, await ctx.client_env())
    except FileNotFoundError:
        await ctx.write(f"ext: {argv[0]}: command not found\n")
        return 127
