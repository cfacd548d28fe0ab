"""The shell language: quoting, operators, comments, expansion; never a traceback on any input."""

from __future__ import annotations

import asyncio
import io
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aios_shell.lang import ParseError, parse, tokenize
from aios_shell.render import make_console
from aios_shell.shell import Shell
from kernel.kernel import boot
from kernel.llm.simulated import SimulatedBackend
from tests.conftest import make_config
from tests.shell.helpers import session


def words(line: str) -> list[list[str]]:
    return [[w.expand({"?": "0", "!": ""}) for w in item.first[0].words] for item in parse(line)]


def test_quotes_and_escapes() -> None:
    assert words("""run chat "a; b" 'c && d' e\\ f""") == [["run", "chat", "a; b", "c && d", "e f"]]
    assert words('echo "say \\"hi\\""') == [["echo", 'say "hi"']]


def test_operators_and_background() -> None:
    items = parse('run chat "long" &; run chat "short" &; kill -9 1; wait')
    assert [i.background for i in items] == [True, True, False, False]
    chain = parse("false || echo no && echo yes")[0]
    assert [op for op, _ in chain.rest] == ["||", "&&"]


def test_comments_and_newlines() -> None:
    assert words("echo a # not this\necho b") == [["echo", "a"], ["echo", "b"]]
    assert words("echo a#b") == [["echo", "a#b"]]


def test_expansion_respects_single_quotes() -> None:
    item = parse("""echo $? "$?" '$?' $!""")[0]
    assert [w.expand({"?": "3", "!": "7"}) for w in item.first[0].words] == ["echo", "3", "3", "$?", "7"]


@pytest.mark.parametrize("line", ["&& x", "x ||", "| a", "a |", "a >", "; &", 'echo "open', "echo 'open", "&"])
def test_syntax_errors(line: str) -> None:
    with pytest.raises(ParseError):
        parse(line)


def test_tokenize_keeps_operator_text() -> None:
    assert [getattr(t, "text", None) for t in tokenize("a&&b||c;d&e|f>g")] == [
        None, "&&", None, "||", None, ";", None, "&", None, "|", None, ">", None]


def test_pipes_and_redirections() -> None:
    item = parse('run chat "x" | run chat sum > out.txt')[0]
    assert [len(c.words) for c in item.first] == [3, 3]
    assert item.first[1].redirect is not None and item.first[1].redirect.raw == "out.txt"
    assert not item.first[1].append
    assert parse("echo a >> log")[0].first[0].append
    assert [getattr(t, "text", None) for t in tokenize("a>>b")] == [None, ">>", None]


@pytest.mark.parametrize("line", ["echo a > b > c", "echo >> ", "a | | b", "> x", "a >> | b"])
def test_redirection_syntax_errors(line: str) -> None:
    with pytest.raises(ParseError):
        parse(line)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(list("ab -9&|;>#'\"\\$?!%\n") + [
    "ps ", "kill ", "run ", "renice ", "help ", "--json", "-a", " 1", "chat", "echo ", " | ", " > ", " >> ", "%1",
    "jobs ", "fg ", "bg ", "ls ", "cat ", "/proc", "/proc/1/", "status", "logs ", "nice -n 5 ", "source ", "whoami",
    "history ", "models", "--forest", "--sort=", "-l", "short", "-STOP ", "-CONT ", "$!"]),
                max_size=16).map("".join))
def test_any_line_gives_a_status_never_a_traceback(tmp_path_factory: pytest.TempPathFactory, line: str) -> None:
    home = tmp_path_factory.mktemp("h")

    async def go() -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        sim = SimulatedBackend(decode_tps=0, prefill_tps=0)
        async with await boot(make_config(Path(home)), backend=sim) as kernel:
            shell = Shell(kernel, out=make_console(out), err=make_console(err), cwd=Path(home))
            status = await asyncio.wait_for(shell.run_line(line.replace("wait", "true")), 10)
            return status, out.getvalue(), err.getvalue()

    status, out, err = asyncio.run(go())
    assert "Traceback" not in out + err and "internal error" not in err
    # 0, 1, 2; or 128+N when a job the line itself signalled is brought back (`run chat &; kill -9 1; fg`)
    assert status in (0, 1, 2, 127) or (status > 128 and "kill" in line), (status, line)
    for message in err.splitlines():  # each error is one line that names who complains
        assert re.match(r"^[a-z]+(\[\d+\])?: \S", message), message


@pytest.mark.parametrize("line", ["%&%", "% &", "%1 &"])
async def test_a_job_spec_in_the_background_is_bg_and_never_waits_on_itself(home: Path, line: str) -> None:
    """`%1 &` is `bg %1`, as in bash; it was a background `fg` of the current job, which waited on itself."""
    async with session(home) as s:
        status = await asyncio.wait_for(s.run(line), 10)
        assert status == 1 and "no such job" in s.take()[1]
