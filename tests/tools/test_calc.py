"""calc: arithmetic through `ast`, nothing else."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from kernel.tools.builtin.calc import calc, evaluate
from kernel.tools.registry import ToolContext, ToolError, ToolRegistry


@pytest.mark.parametrize(("expression", "value"), [
    ("1 + 2 * 3", 7),
    ("(1 + 2) * 3", 9),
    ("7 // 2", 3),
    ("7 % 4", 3),
    ("2 ** 10", 1024),
    ("-3 + +2", -1),
    ("1 / 4", 0.25),
    ("2 ** -2", 0.25),
    ("sqrt(16)", 4.0),
    ("abs(-5)", 5),
    ("round(2.567, 2)", 2.57),
    ("min(3, 1, 2) + max(3, 1, 2)", 4),
    ("log(e)", 1.0),
    ("log(8, 2)", 3.0),
    ("sin(0) + cos(0)", 1.0),
    ("2 ** 100", 2**100),
])
def test_arithmetic(expression: str, value: float) -> None:
    assert evaluate(expression) == pytest.approx(value)


def test_constants() -> None:
    assert evaluate("pi") == math.pi
    assert evaluate("2 * pi") == math.tau


async def test_tool_output(tmp_path: Path) -> None:
    registry = ToolRegistry([calc])
    ctx = ToolContext(pid=1, user="alice", workspace=tmp_path)
    assert (await registry.call("calc", ctx, {"expression": "0.1 + 0.2"})).text == "0.3"
    assert (await registry.call("calc", ctx, {"expression": "2 ** 64"})).text == "18446744073709551616"
    assert calc.target == "expression"


@pytest.mark.hostile
@pytest.mark.parametrize(("expression", "error"), [
    ("9 ** 9 ** 9", "too large"),
    ("10 ** 100000", "too large"),
    ("(10 ** 2000) * (10 ** 2000)", "too large"),
    ("10.0 ** 400", "too large"),
    ("exp(1000)", "too large"),
    ("round(1, -10 ** 9)", "out of range"),
    ("__import__('os').system('touch pwned')", "unknown function: __import__"),
    ("open('/etc/passwd')", "unknown function: open"),
    ("(1).__class__", "attributes are not allowed"),
    ("math.sqrt(4)", "unknown function: math.sqrt"),
    ("x + 1", "unknown name: x"),
    ("'a' * 10", "not a number"),
    ("[1, 2]", "not allowed"),
    ("lambda: 1", "not allowed"),
    ("1 if 1 else 2", "not allowed"),
    ("True + 1", "not a number"),
    ("1 << 100000", "not allowed"),
    ("sqrt(x=4)", "keyword arguments"),
    ("1 / 0", "division by zero"),
    ("log(-1)", "math domain error"),
    ("(-8) ** 0.5", "complex"),
    ("1 +", "not an expression"),
    ("1; 2", "not an expression"),
    ("1" + " + 1" * 600, "too long"),
])
def test_refused(expression: str, error: str) -> None:
    with pytest.raises(ToolError, match=re.escape(error)):
        evaluate(expression)
