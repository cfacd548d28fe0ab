"""The one-shot CLI and `-c`/script modes, through typer's runner: output, JSON, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aios_shell.cli import app

runner = CliRunner()


def aios(*args: str):  # noqa: ANN201 - click's Result
    return runner.invoke(app, ["--backend", "simulated", *args])


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("aios ")


def test_run_then_ps_json() -> None:
    result = aios("-c", "run chat hello; ps -a --json")
    assert result.exit_code == 0, result.stderr
    answer, _, rest = result.stdout.partition("\n[")
    assert answer.strip()
    rows = json.loads("[" + rest)
    assert rows[0]["status"] == "EXITED(0)" and rows[0]["completion_tokens"] > 0
    assert set(rows[0]) >= {"pid", "ppid", "user", "nice", "state", "status", "exit_code", "signal",
                            "prompt_tokens", "completion_tokens", "cmd"}


def test_ps_table_is_plain_when_not_a_terminal() -> None:
    result = aios("-c", "run chat short; ps -a")
    assert "\x1b[" not in result.stdout
    header = [line for line in result.stdout.splitlines() if line.startswith("PID")][0]
    assert header.split() == ["PID", "PPID", "USER", "PRI", "NI", "STATE", "%CTX", "TOKENS", "TIME", "CMD"]
    assert "EXITED(0)" in result.stdout


def test_one_shot_command_sees_earlier_runs() -> None:
    assert aios("-c", "run chat short").exit_code == 0
    result = aios("ps", "-a", "--json")
    assert result.exit_code == 0
    assert [row["pid"] for row in json.loads(result.stdout)] == [1]


@pytest.mark.parametrize(
    ("script", "code", "message"),
    [
        ("frobnicate", 127, "aios: frobnicate: command not found"),
        ("kill 42", 1, "kill: (42) - No such process"),
        ("kill -FOO 1", 2, "kill: invalid signal specification: FOO"),
        ("kill", 2, "kill: missing process id"),
        ("ps --bogus", 2, "ps: unrecognized arguments: --bogus"),
        ("renice x 1", 2, "renice: x: invalid priority"),
        ("run", 2, "run: the following arguments are required: agent"),
        ("run nosuch", 1, "run: no such agent: nosuch"),
        ('echo "open', 2, "aios: unexpected end of line"),
        ("true &&", 2, "aios: syntax error"),
        ("wait 99", 127, "wait: pid 99: no such process"),
    ],
)
def test_errors_are_one_line_with_the_right_status(script: str, code: int, message: str) -> None:
    result = aios("-c", script)
    assert result.exit_code == code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message)


def test_control_flow_and_status_variables() -> None:
    result = aios("-c", "false; echo $?; false || echo rescued; true && echo chained; true || echo never")
    assert result.stdout.split("\n")[:3] == ["1", "rescued", "chained"]
    assert result.exit_code == 0
    assert aios("-c", "true && false").exit_code == 1


def test_background_job_status_through_wait() -> None:
    result = aios("-c", 'run chat long &; kill -9 $!; wait $!; echo "status $?"')
    assert result.stdout.strip().endswith("status 137")
    assert aios("-c", "run chat short &; wait %1").exit_code == 0


def test_a_failed_command_does_not_stop_the_script() -> None:
    result = aios("-c", "kill 77; run chat short; echo after")
    assert result.exit_code == 0 and result.stdout.strip().endswith("after")


def test_script_file_and_exit(tmp_path: Path) -> None:
    script = tmp_path / "job.aios"
    script.write_text("# a script\nrun chat short\necho done\nexit 3\necho unreachable\n")
    result = aios(str(script))
    assert result.exit_code == 3
    assert "done" in result.stdout and "unreachable" not in result.stdout


def test_missing_script_file() -> None:
    result = aios("./no/such/file.aios")
    assert result.exit_code == 1 and "no/such/file.aios" in result.stderr


def test_bad_backend_is_a_usage_error() -> None:
    result = runner.invoke(app, ["--backend", "bogus", "ps"])
    assert result.exit_code == 2


def test_help_lists_every_command_and_documents_json() -> None:
    result = aios("help")
    for name in ("run", "ps", "kill", "renice", "wait", "help", "exit"):
        assert f"\n{name}" in "\n" + "\n".join(line.strip() for line in result.stdout.splitlines())
    ps_help = aios("help", "ps").stdout
    assert "--json output:" in ps_help and '"status"' in ps_help
    assert aios("kill", "-l").stdout.count("SIG") == 6


def test_renice_prints_old_and_new() -> None:
    result = aios("-c", "run chat long &; renice 5 $!; kill -9 $!")
    assert "1 (process ID) old priority 0, new priority 5" in result.stdout


def test_commands_on_standard_input() -> None:
    result = runner.invoke(app, ["--backend", "simulated"], input="echo from-stdin\nfalse\n")
    assert result.stdout.strip() == "from-stdin" and result.exit_code == 1


def test_one_shot_listing_commands_print_json() -> None:
    assert aios("-c", "run chat short").exit_code == 0
    for args, first_key in ((["ls", "/proc", "--json"], "name"), (["models", "--json"], "name"),
                            (["ps", "-a", "--forest", "--json"], "pid")):
        result = aios(*args)
        assert result.exit_code == 0, (args, result.stderr)
        assert first_key in json.loads(result.stdout)[0]
    assert json.loads(aios("jobs", "--json").stdout) == []


def test_one_shot_arguments_are_never_shell_syntax() -> None:
    result = aios("echo", "a;", "b", "|", "c", "$?")
    assert result.stdout == "a; b | c $?\n" and result.exit_code == 0


def test_pipes_and_redirects_in_scripts(tmp_path: Path) -> None:
    out = tmp_path / "answer.txt"
    result = aios("-c", f'run chat short | run chat "summarise short" > {out}; cat {out} | cat; cat /proc/2/log')
    assert result.exit_code == 0, result.stderr
    text = out.read_text()
    assert text.strip() and result.stdout == text + text


def test_kill_against_an_earlier_run_is_one_clear_line() -> None:
    assert aios("-c", "run chat short").exit_code == 0
    result = aios("kill", "1")
    assert result.exit_code == 1 and result.stderr.strip() == "kill: (1) - No such process"


@pytest.mark.parametrize("no_color", ["1", ""])
def test_no_color_means_no_escape_sequence_on_a_terminal(tmp_path: Path, no_color: str) -> None:
    """NO_COLOR set: neither colour nor bold nor a reset reaches the terminal (an empty NO_COLOR is unset)."""
    import pty

    env = {**os.environ, "AIOS_HOME": str(tmp_path / "h"), "NO_COLOR": no_color, "TERM": "xterm-256color"}
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "aios_shell.cli", "--backend", "simulated", "-c",
                             "ps -a; kill 999"], stdin=follower, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the other side closed
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert proc.wait(timeout=60) == 1
    assert b"PID" in out and b"No such process" in out
    assert (b"\x1b[" in out) is (not no_color), out
