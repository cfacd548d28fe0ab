"""The outside world in a real terminal (tmux): an `ollama`-client program run with `run ext`, stopped, continued
and killed from the shell, and an MCP server's tools listed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.shell.test_tmux import screen, start_shell, tmux, wait_for_prompt

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
REPO = Path(__file__).parents[2]
LONG = '"Tell a long story."'


def typed(name: str, line: str, count: int) -> str:
    tmux("send-keys", "-t", name, "-l", line)
    tmux("send-keys", "-t", name, "Enter")
    return wait_for_prompt(name, count, timeout=60)


def test_an_outside_agent_is_a_process_you_can_stop_and_kill(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text('[mcp.servers.time]\ncommand = ["mcp-server-time"]\n')
    name = start_shell(REPO, home, 160, 40)
    try:
        tmux("set-option", "-t", name, "history-limit", "5000")
        wait_for_prompt(name, 1)
        typed(name, "run ext -- python examples/ollama_agent.py " + " ".join([LONG] * 20) + " &", 2)  # ~30 s
        n = 2
        for n in range(3, 200):  # until its first answer streams (Python starts, imports the client, asks)
            if "> Tell a long story.\n" in typed(name, "logs 1", n).split("logs 1")[-1]:
                break
        shown = typed(name, "ps", n + 1)
        assert "ext python examples/ollama_agent" in shown, shown.strip()
        typed(name, "kill -STOP %1", n + 2)
        shown = typed(name, "ps", n + 3)
        assert "STOPPED" in shown.split("kill -STOP %1")[-1]
        typed(name, "kill -CONT %1", n + 4)
        typed(name, "kill %1; wait", n + 5)
        everything = typed(name, "logs 1", n + 6)
        assert "ollama_agent: the model call failed: aios process 1 was ended" in everything, everything
        everything = typed(name, "tools time.get_current_time", n + 7)
        assert "time.get_current_time  timezone: string" in everything
        assert "mcp server time (stdio): up" in everything
        everything = screen(name, history=True)
        tmux("send-keys", "-t", name, "exit", "Enter")
    finally:
        tmux("kill-session", "-t", name)
    assert "Traceback" not in everything and "Unhandled exception" not in everything
