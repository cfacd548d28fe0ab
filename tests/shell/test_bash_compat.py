"""The same script shape through bash and through aios: the same control flow and the same `$?`.

Agents stand where bash has programs: a failing agent for `sh -c 'exit 3'`, a long answer for
`sleep 30`, a short one for `true`. Everything the scripts print comes from `echo`, so the two
outputs must be equal line for line, and so must the exit status.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aios_shell.cli import app
from tests.shell.helpers import add_agent

SCRIPT = """\
# control flow and $? as bash has them
true && echo and-ok || echo and-bad
false && echo never || echo or-rescued
false; echo "after false $?"
kill 2147480000; echo "kill missing $?"
true | false; echo "pipe $?"
false | true; echo "pipe again $?"
{fail} &
wait $!; echo "background failure $?"
{long} &
kill -9 $!
wait $!; echo "killed $?"
{ok} &
{fail} &
wait; echo "wait for all $?"
true && false || echo "chain $?"
echo "# not a comment" 'single $? kept' "double $?"   # a comment
{quiet} && echo ok-then || echo ok-else
{fail} || echo "fail-else $?"
false
{exit}
echo unreachable
"""

BASH = {"fail": "sh -c 'exit 3'", "long": "sleep 30", "ok": "true", "quiet": "true > /dev/null"}
AIOS = {"fail": "run fail", "long": "run chat long", "ok": "run chat short > /dev/null",
        "quiet": "run chat short > /dev/null"}
FAIL_AGENT = "async def main(ctx):\n    return 3\n"


def _aios_script(home: Path, text: str) -> tuple[str, int]:
    add_agent(home, "fail", FAIL_AGENT)
    path = home / "script.aios"
    path.write_text(text)
    result = CliRunner().invoke(app, ["--backend", "simulated", str(path)])
    return result.stdout, result.exit_code


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("exit_line", ["exit", "exit 5", "true"])
def test_same_control_flow_and_status_as_bash(home: Path, tmp_path: Path, exit_line: str) -> None:
    bash_script = tmp_path / "script.sh"
    bash_script.write_text(SCRIPT.format(exit=exit_line, **BASH))
    bash = subprocess.run(["bash", str(bash_script)], capture_output=True, text=True, timeout=60)
    home.mkdir(parents=True, exist_ok=True)
    out, code = _aios_script(home, SCRIPT.format(exit=exit_line, **AIOS))
    assert out.splitlines() == bash.stdout.splitlines()
    assert code == bash.returncode
    assert "killed 137" in out and "background failure 3" in out  # the shape really was exercised
