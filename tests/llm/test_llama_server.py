"""The openai backend and a pool of them against real engines: `python -m llama_cpp.server` on the embedded
Gemma, started here on 127.0.0.1 (llama-cpp-python's `[server]` extra)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench.engines import ALIAS, llama_server, llama_servers
from kernel.kernel import boot
from kernel.llm.factory import create_pool
from kernel.llm.pool import PoolBackend
from tests.conftest import make_config, until

pytestmark = pytest.mark.llamacpp


async def test_an_agent_streams_from_a_real_engine(home: Path) -> None:
    with llama_server() as url:
        async with await boot(make_config(home, backend="openai", base_url=url)) as kernel:
            assert kernel.backend.model == ALIAS  # what the server lists
            proc = kernel.spawn("workload", ["12:0"])
            await asyncio.wait_for(kernel.wait(proc.pid), 60)
            assert proc.status == "EXITED(0)", proc.error
            assert proc.completion_tokens == 12 and proc.prompt_tokens > 0  # the engine's own usage counts


async def test_a_pool_of_two_engines_finishes_every_agent_with_one_killed_halfway(home: Path) -> None:
    with llama_servers(2) as servers:
        pool = create_pool(",".join(f"openai:{s.url}" for s in servers))
        assert isinstance(pool, PoolBackend)
        async with await boot(make_config(home, backend="pool"), backend=pool) as kernel:
            procs = [kernel.spawn("workload", ["--cap", "24", "24:0", "24:0", "24:0"]) for _ in range(8)]
            victim = pool.endpoints[0]
            await until(lambda: victim.calls >= 3 and victim.in_flight > 0, timeout=60)
            servers[0].kill()  # mid-answer
            for proc in procs:
                await asyncio.wait_for(kernel.wait(proc.pid), 120)
            assert [p.status for p in procs] == ["EXITED(0)"] * 8, [p.error for p in procs]
            assert not victim.up and victim.failures >= 1
            assert any(why in (victim.error or "") for why in ("lost mid-stream", "cannot reach"))
            assert pool.endpoints[1].calls >= 12  # the survivor served the rest
