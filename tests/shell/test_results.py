"""Commands return results; one renderer draws them as a table, as text, or as JSON with --json."""

from __future__ import annotations

import io
import json
from pathlib import Path

from aios_shell.render import make_console, show
from commands.results import Records, Several, Table, Text
from tests.shell.helpers import session


def render(result: object, as_json: bool = False) -> tuple[str, str, int]:
    out, err = io.StringIO(), io.StringIO()
    status = show(make_console(out), make_console(err), result, as_json=as_json)
    return out.getvalue(), err.getvalue(), status


def test_a_table_is_columns_two_spaces_apart_and_its_records_are_the_json() -> None:
    result = Table(["PID", "CMD"], [[1, "chat hi"], [12, "react \x1b[2Jx"]], records=[{"pid": 1}, {"pid": 12}],
                   right=("PID",), stderr=["perm: policy.toml: broken"], status=3)
    out, err, status = render(result)
    assert out.splitlines() == ["PID  CMD", "  1  chat hi", " 12  react x"]  # the escape never reaches the screen
    assert err == "perm: policy.toml: broken\n" and status == 3
    out, err, _ = render(result, as_json=True)
    assert json.loads(out) == [{"pid": 1}, {"pid": 12}] and err  # stderr lines go to stderr whatever the format


def test_text_records_and_several_parts() -> None:
    assert render(Text(["a", "b"]))[0] == "a\nb\n"
    assert render(Records(["x", "y"]))[0] == "x\ny\n"
    both = Several([Table(["A"], [[1]], before=["head"]), Table(["B"], [[2]])], records={"a": 1})
    assert render(both)[0] == "head\nA\n1\n\nB\n2\n"
    assert json.loads(render(both, as_json=True)[0]) == {"a": 1}


def test_a_result_without_a_json_form_is_drawn_even_when_json_is_asked() -> None:
    assert render(Text(["plain"]), as_json=True)[0] == "plain\n"


async def test_converted_commands_give_the_same_json_through_the_renderer(home: Path) -> None:
    async with session(home) as s:
        await s.run("run chat short")
        s.take()
        for line in ("ps -a --json", "sched --json", "dmesg --json", "users --json", "audit --json", "perm --json"):
            assert await s.run(line) == 0, line
            out, err = s.take()
            assert isinstance(json.loads(out), (list, dict)), line
            assert err == "", line
