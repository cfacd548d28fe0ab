"""The `mem` and `files` commands: notes per user, versions of an agent's files, who may see them,
and every `--json` output against the shape `help` documents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from commands import files as files_cmd
from commands import mem as mem_cmd
from commands.registry import lookup
from kernel.llm.simulated import SimulatedBackend
from tests.shell.helpers import Session, check_shape, session


def quick() -> SimulatedBackend:
    sim = SimulatedBackend(decode_tps=0, prefill_tps=0)
    sim.enqueue("Done.")
    return sim


async def test_mem_add_search_ls_rm(home: Path) -> None:
    async with session(home) as s:
        assert await s.run("mem add python packaging uses pyproject.toml --tags python") == 0
        assert s.take() == ("#1\n", "")
        await s.run("mem add 'the cat sleeps on the laptop'; mem add deploy with OPENAI_API_KEY=sk-abc123")
        assert s.take()[0] == "#2\n#3\n"
        assert await s.run("mem search cats") == 0
        out = s.take()[0].splitlines()
        assert out[0].split() == ["ID", "WHEN", "TAGS", "TEXT"]
        assert out[1].startswith("#2 ") and out[1].endswith("the cat sleeps on the laptop") and len(out) == 2
        await s.run("mem ls")
        lines = s.take()[0].splitlines()
        assert [line.split()[0] for line in lines[1:]] == ["#3", "#2", "#1"]
        assert "sk-abc123" not in lines[1] and "[REDACTED]" in lines[1]
        assert await s.run("mem rm '#2'") == 0
        assert await s.run("mem search cat") == 1  # nothing matches, as grep says
        assert s.take() == ("", "")
        assert await s.run("mem rm 2") == 1
        assert s.take()[1] == "mem: #2: no such note of yours\n"


async def test_mem_is_per_user_and_survives_a_restart(home: Path) -> None:
    async with session(home) as s:
        await s.run("mem add alice keeps the release checklist in docs")
    async with session(home, user="bob") as s:
        assert await s.run("mem search release checklist") == 1
        assert await s.run("mem ls --json") == 0
        assert json.loads(s.take()[0]) == []
        assert await s.run("mem rm 1") == 1
    async with session(home) as s:
        assert await s.run("mem search release checklist --json") == 0
        [hit] = json.loads(s.take()[0])
        assert hit["id"] == 1 and hit["user"] == "alice"


@pytest.mark.hostile
@pytest.mark.parametrize("query", ["'NEAR(\"x*'", "-- -cat", "'text:cat'", "'(' ')'", "'\"'", "'*'"])
async def test_mem_search_takes_fts_syntax_as_plain_text(home: Path, query: str) -> None:
    async with session(home) as s:
        await s.run("mem add the cat naps")
        s.take()
        status = await s.run(f"mem search {query}")
        out, err = s.take()
        assert err == "" and status in (0, 1)
        assert ("the cat naps" in out) == ("cat" in query)


@pytest.mark.parametrize(("line", "message"), [
    ("mem", "mem: the following arguments are required: add|search|rm|ls (see: help mem)"),
    ("mem add '   '", "mem: nothing to remember: the text is empty (see: help mem)"),
    ("mem rm x", "mem: x: not a note id (a number, as `mem ls` shows it) (see: help mem)"),
    ("mem search x -n 0", "mem: -n 0: expected a positive number (see: help mem)"),
    ("files log 1", "files: the following arguments are required: path (see: help files)"),
    ("files restore 1 notes.txt", "files: notes.txt: expected PATH@N, e.g. notes.txt@2 (see: help files)"),
    ("files restore 1 notes.txt@x", "files: notes.txt@x: the version after @ must be a number (see: help files)"),
    ("files ls 99", "files: (99) - No such process"),
    ("files log 1 nothing.txt", "files: nothing.txt: no versions kept for process 1"),
    ("files log 1 ../../etc/passwd", "files: ../../etc/passwd: the path may not leave the workspace (..)"),
    ("files restore 1 notes.txt@9", "files: notes.txt@9: no such version of a file of process 1"),
])
async def test_errors_are_one_line(home: Path, line: str, message: str) -> None:
    async with session(home, quick()) as s:
        await s.run("run chat hi")
        s.take()
        assert await s.run(line) != 0
        assert s.take()[1].splitlines() == [message]


async def write_versions(s: Session) -> Path:
    """Process 1 (alice's) with two versions of notes.txt, as fs.write keeps them; returns its workspace."""
    await s.run("run chat hi")
    s.take()
    workspace = s.kernel.workspace(1)
    workspace.mkdir(parents=True, exist_ok=True)
    for text in (b"first draft\n", b"second, longer draft\n"):
        (workspace / "notes.txt").write_bytes(text)
        s.kernel.files.record(1, "alice", "notes.txt", text)
    s.kernel.files.record(1, "alice", "src/main.py", b"print('hi')\n")
    return workspace


async def test_files_ls_log_restore(home: Path) -> None:
    async with session(home, quick()) as s:
        workspace = await write_versions(s)
        assert await s.run("files ls 1") == 0
        rows = [line.split()[:3] for line in s.take()[0].splitlines()]
        assert rows == [["PATH", "VERSIONS", "SIZE"], ["notes.txt", "2", "21"], ["src/main.py", "1", "12"]]
        assert await s.run("files log 1 ./notes.txt") == 0
        rows = [line.split()[:2] for line in s.take()[0].splitlines()]
        assert rows == [["VERSION", "SIZE"], ["1", "12"], ["2", "21"]]
        assert await s.run("files restore 1 notes.txt@1") == 0
        assert s.take() == ("notes.txt: restored version 1 as version 3\n", "")
        assert (workspace / "notes.txt").read_bytes() == b"first draft\n"
        await s.run("files log 1 notes.txt --json")
        assert [r["version"] for r in json.loads(s.take()[0])] == [1, 2, 3]


async def test_only_the_owner_or_an_admin_sees_the_files(home: Path) -> None:
    async with session(home, quick()) as s:
        await write_versions(s)
    async with session(home, user="bob") as s:
        for line in ("files ls 1", "files log 1 notes.txt", "files restore 1 notes.txt@1"):
            assert await s.run(line) == 1
            assert s.take()[1] == "files: (1) - Permission denied: bob may not read alice's files\n"
    async with session(home, user="root") as s:  # an admin, and process 1 is from an earlier run
        assert await s.run("files restore 1 notes.txt@1") == 0
        assert (s.kernel.workspace(1) / "notes.txt").read_bytes() == b"first draft\n"


@pytest.mark.hostile
async def test_restore_refuses_a_symlink_planted_in_the_workspace(home: Path, tmp_path: Path) -> None:
    outside = tmp_path / "precious.txt"
    outside.write_bytes(b"keep me")
    async with session(home, quick()) as s:
        workspace = await write_versions(s)
        (workspace / "notes.txt").unlink()
        (workspace / "notes.txt").symlink_to(outside)
        assert await s.run("files restore 1 notes.txt@1") == 1
        assert s.take()[1] == "files: notes.txt: is a symbolic link; refusing to write through it\n"
    assert outside.read_bytes() == b"keep me"


async def test_json_outputs_match_their_documented_shapes(home: Path) -> None:
    async with session(home, quick()) as s:
        await write_versions(s)
        await s.run("mem add a note about shapes --tags json")
        s.take()
        for line, shape in [("mem ls --json", mem_cmd.SHAPE), ("mem search shapes --json", mem_cmd.SEARCH_SHAPE),
                            ("files ls 1 --json", files_cmd.LS_SHAPE), ("files log 1 notes.txt --json",
                                                                         files_cmd.LOG_SHAPE)]:
            assert await s.run(line) == 0, line
            value = json.loads(s.take()[0])
            assert value, line
            check_shape(value, shape, line)
            documented = lookup(line.split()[0]).help()
            for key in shape[0]:
                assert f'"{key}"' in documented, (line, key)


ACTION_SHAPES = [
    ("mem add remember this --json", {"id": int}, "mem add"),
    ("mem rm 1 --json", {"removed": int}, "mem rm"),
    ("files restore 1 notes.txt@1 --json", {"path": str, "restored": int, "version": int}, "files restore"),
    ("perm allow 'fs.read(/tmp/**)' --json", {"user": str, "rule": str, "effect": str, "scope": str}, "perm allow"),
    ("perm revoke 'fs.read(/tmp/**)' --json", {"user": str, "revoked": str}, "perm revoke"),
    ("perm check fs.read /tmp/x --json",
     {"tool": str, "target": str, "effect": str, "source": str, "rule": (str, None)}, "perm check"),
    ("quota set alice 100 --json", {"user": str, "tokens_per_minute": int}, "quota set"),
    ("users add carol -g dev --json", {"added": str, "groups": [str], "admin": bool}, "users add"),
]


async def test_action_commands_json_is_their_documented_record(home: Path) -> None:
    async with session(home, quick(), user="root") as s:
        await write_versions(s)
        for line, shape, documented_as in ACTION_SHAPES:
            assert await s.run(line) == 0, (line, s.take())
            out, err = s.take()
            check_shape(json.loads(out), shape, line)
            assert err == "", line
            documented = lookup(line.split()[0]).help()
            assert documented_as + ":" in documented or documented_as + "|" in documented, (line, documented)
            for key in shape:
                assert f'"{key}"' in documented, (line, key)
