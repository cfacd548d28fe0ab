"""The calculator: arithmetic parsed with `ast` and evaluated by walking the tree — never `eval`.

Numbers, + - * / // % **, unary + and -, parentheses, the constants pi, e, tau, and the functions in
`FUNCTIONS`. Anything else (names, attributes, subscripts, keywords, strings) is refused. Integers are
kept below `MAX_BITS` bits, checked before a power or product is computed, so `9**9**9` is refused
instead of hanging the worker thread.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from kernel.tools.registry import ToolContext, ToolError, tool

MAX_LENGTH = 1000
MAX_BITS = 10_000  # about 3000 decimal digits

Number = int | float

CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt, "log": math.log, "log10": math.log10, "log2": math.log2, "exp": math.exp,
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "asin": math.asin, "acos": math.acos, "atan": math.atan,
    "atan2": math.atan2, "hypot": math.hypot, "degrees": math.degrees, "radians": math.radians,
    "floor": math.floor, "ceil": math.ceil, "abs": abs, "round": round, "min": min, "max": max,
}
_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def _too_large() -> ToolError:
    return ToolError(f"result too large (limit about {int(MAX_BITS * math.log10(2))} digits)")


def _checked(value: Any) -> Number:
    if isinstance(value, complex):
        raise ToolError("the result is a complex number; not supported")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ToolError(f"not a number: {value!r}")
    if isinstance(value, int) and value.bit_length() > MAX_BITS:
        raise _too_large()
    return value


def _guard(op: type[ast.operator], a: Number, b: Number) -> None:
    """Refuse an integer power or product whose result would pass MAX_BITS, before computing it."""
    if not (isinstance(a, int) and isinstance(b, int)):
        return
    if op is ast.Pow and b > 0 and abs(a) > 1 and b * math.log2(abs(a)) > MAX_BITS:
        raise _too_large()
    if op is ast.Mult and a.bit_length() + b.bit_length() > MAX_BITS + 1:
        raise _too_large()


def _eval(node: ast.AST) -> Number:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant):
        return _checked(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        a, b = _eval(node.left), _eval(node.right)
        _guard(type(node.op), a, b)
        return _checked(_BINARY[type(node.op)](a, b))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _checked(_UNARY[type(node.op)](_eval(node.operand)))
    if isinstance(node, ast.Name):
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        raise ToolError(f"unknown name: {node.id} (constants: {', '.join(CONSTANTS)})")
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            shown = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            raise ToolError(f"unknown function: {shown} (functions: {', '.join(FUNCTIONS)})")
        if node.keywords:
            raise ToolError("keyword arguments are not allowed")
        args = [_eval(a) for a in node.args]
        if node.func.id == "round" and len(args) > 1 and abs(args[1]) > 1000:
            raise ToolError("round: ndigits out of range")  # round(n, -10**9) would compute 10**10**9
        return _checked(FUNCTIONS[node.func.id](*args))
    if isinstance(node, ast.Attribute):
        raise ToolError("attributes are not allowed")
    raise ToolError(f"not allowed in an expression: {type(node).__name__}")


def evaluate(expression: str) -> Number:
    """The value of an arithmetic expression; ToolError for anything else."""
    if len(expression) > MAX_LENGTH:
        raise ToolError(f"expression too long (limit {MAX_LENGTH} characters)")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"not an expression: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError):
        raise ToolError("not an expression") from None
    try:
        return _eval(tree)
    except ZeroDivisionError:
        raise ToolError("division by zero") from None
    except OverflowError:
        raise _too_large() from None
    except RecursionError:
        raise ToolError("expression nested too deeply") from None
    except (ValueError, TypeError) as exc:  # math domain error, wrong argument count, …
        raise ToolError(str(exc)) from None


def _show(value: Number) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return str(value) if isinstance(value, int) else f"{value:.15g}"


@tool("calc", timeout=2, target="expression")
def calc(ctx: ToolContext, expression: str) -> str:
    """Evaluate arithmetic: + - * / // % **, parentheses, sqrt, log, sin, cos, pi, e, abs, round, min, max, …"""
    return _show(evaluate(expression))
