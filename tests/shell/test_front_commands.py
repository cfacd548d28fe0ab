"""`token`, `tools` with MCP servers, `run ext` and `aios serve --http`, as a person types them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest
import typer

from aios_shell.cli import _serve_args
from tests.shell.helpers import session


async def test_token_starts_the_front_and_a_new_one_revokes_the_old(home: Path) -> None:
    async with session(home) as s:
        assert await s.run("token --json") == 0
        first = json.loads(s.take()[0])
        assert first["user"] == "alice" and first["token"].startswith("aios-")
        assert first["url"].startswith("http://127.0.0.1:") and first["ollama_host"].endswith(first["token"])
        headers = {"Authorization": f"Bearer {first['token']}"}
        async with httpx.AsyncClient(base_url=first["url"]) as http:
            assert (await http.get("/v1/models", headers=headers)).status_code == 200
            assert await s.run("token --new") == 0
            out = s.take()[0]
            assert out.startswith("token: aios-") and first["token"] not in out and "OLLAMA_HOST=" in out
            assert (await http.get("/v1/models", headers=headers)).status_code == 401
        assert oct((home / "http-tokens.json").stat().st_mode & 0o777) == "0o600"


async def test_tools_says_how_each_mcp_server_is(home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text('[mcp.servers.gone]\ncommand = ["no-such-mcp-server"]\n')
    async with session(home) as s:
        assert await s.run("tools") == 0
        out = s.take()[0]
        assert "mcp server gone (stdio): stopped" in out
        assert await s.run("dmesg") == 0
        assert "mcp server 'gone' crashed" in s.take()[0]


async def test_mcp_tools_are_in_the_tools_directory(home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text('[mcp.servers.time]\ncommand = ["mcp-server-time"]\n')
    async with session(home) as s:
        assert await s.run("ls /tools") == 0
        assert "time.get_current_time" in s.take()[0].split()
        assert await s.run("cat /tools/time.convert_time") == 0
        out = s.take()[0]
        assert out.startswith("name: time.convert_time\n") and '"source_timezone"' in out


async def test_run_ext_runs_in_the_shells_directory(home: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"  # beside AIOS_HOME: a directory holding it is no workspace
    project.mkdir()
    (project / "hello.py").write_text("print('hello from', __file__.rsplit('/', 1)[-1])\n")
    async with session(home) as s:
        s.shell.cwd = project
        assert await s.run(f"run ext -- {sys.executable} hello.py") == 0
        assert s.take()[0] == "hello from hello.py\n"
        assert await s.run("run ext") == 2
        assert "usage: ext" in s.take()[0]


@pytest.mark.parametrize("argv", [["--http", "0.0.0.0:11435"], ["--http", "127.0.0.1:x"], ["--http"]])
def test_serve_http_takes_an_address_on_this_machine(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(typer.Exit) as ended:
        _serve_args(argv)
    assert ended.value.exit_code == 2


def test_serve_http_sets_the_kernels_address(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setenv("AIOS_HTTP", "")  # put back as it was (unset) after the test
    assert _serve_args(["--http", "127.0.0.1:11435", "--detach"]) == "detach"
    assert os.environ["AIOS_HTTP"] == "127.0.0.1:11435"
