"""tools, perm, audit, users, su and quota as a person types them."""

from __future__ import annotations

import json
from pathlib import Path

from kernel.llm.simulated import SimulatedBackend
from tests.shell.helpers import session


async def test_tools_lists_schemas_and_ls_tools(home: Path) -> None:
    async with session(home) as s:
        assert await s.run("tools") == 0
        out, _ = s.take()
        assert "shell" in out and "command: string" in out and "fs.write" in out
        assert await s.run("tools calc --json") == 0
        (schema,) = json.loads(s.take()[0])
        assert schema["function"]["name"] == "calc"
        assert schema["function"]["parameters"]["required"] == ["expression"]
        assert await s.run("ls /tools; cat /tools/shell") == 0
        out, _ = s.take()
        assert "memory.search" in out and "name: shell" in out and '"command"' in out
        assert await s.run("tools nope") == 1
        assert "no such tool: nope" in s.take()[1]


async def test_perm_allow_check_revoke_and_bad_rules(home: Path) -> None:
    async with session(home) as s:
        assert await s.run("perm check shell 'git status'") == 0
        assert s.take()[0].strip() == "ask"
        assert await s.run("perm allow 'shell(git status*)' --always") == 0
        assert "for alice (always)" in s.take()[0]
        assert await s.run("perm check shell 'git status -s'") == 0
        assert s.take()[0].startswith("allow (grant:always: shell(git status*))")
        assert await s.run("perm check shell 'git status; rm -rf x'") == 0
        assert s.take()[0].strip() == "ask"  # a compound command never matches a narrow allow
        assert await s.run("perm deny 'shell(git status --porcelain*)'") == 0
        s.take()
        assert await s.run("perm check shell 'git status --porcelain'") == 0
        assert s.take()[0].startswith("deny")  # deny beats allow
        assert await s.run("perm --json") == 0
        rows = json.loads(s.take()[0])
        assert {"user": "alice", "rule": "shell(git status*)", "effect": "allow", "scope": "always"}.items() <= \
            next(r for r in rows if r["rule"] == "shell(git status*)").items()
        assert await s.run("perm revoke 'shell(git status*)'") == 0
        assert await s.run("perm revoke 'shell(git status*)'") == 1
        assert "no such grant" in s.take()[1]
        assert await s.run("perm allow 'shell(oops'") == 2
        assert "bad rule" in s.take()[1]
        assert await s.run("perm -u bob") == 1
        assert "only an admin" in s.take()[1]


async def test_audit_lists_and_verifies(home: Path) -> None:
    sim = SimulatedBackend(decode_tps=0, prefill_tps=0)
    async with session(home, sim=sim) as s:
        assert await s.run('run react "use calc: 2+2"; run react "use shell: ls"') == 0
        s.take()
        assert await s.run("audit") == 0
        out, _ = s.take()
        assert "calc" in out and "allow" in out and "deny" in out and "no terminal" in out
        assert await s.run("audit --json -n 1") == 0
        (row,) = json.loads(s.take()[0])
        assert row["tool"] == "shell" and row["decision"] == "deny" and len(row["hash"]) == 64
        assert await s.run("cat /audit") == 0
        assert "pid=1 react calc" in s.take()[0]
        assert await s.run("audit verify") == 0
        assert "audit log intact: 2 rows" in s.take()[0]


async def test_users_su_and_quota(home: Path) -> None:
    async with session(home, user="root") as s:
        assert await s.run("users add bob -g dev; users") == 0
        out, _ = s.take()
        assert "bob" in out and "dev" in out
        assert await s.run("su bob; whoami") == 0
        assert s.take()[0].strip().endswith("bob")
        assert await s.run("users add eve") == 1  # bob is no admin
        assert await s.run("su root; whoami") == 0  # back to who logged in
        assert s.take()[0].strip().endswith("root")
        assert await s.run("quota set bob 100; quota --json") == 0
        out = s.take()[0]
        data = json.loads(out[out.index("{"):])
        assert next(u for u in data["users"] if u["user"] == "bob")["limit"] == 100
    async with session(home) as s:  # alice is no admin
        assert await s.run("su root") == 1
        assert "only an admin" in s.take()[1]
        assert await s.run("quota set alice 0") == 1
