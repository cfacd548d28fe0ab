"""`react [--max-steps N] [--tools a,b] TASK…` — a ReAct agent: ask the model, run the tools it calls, repeat.

Each step asks the model once, passing the tool schemas. A model with native tool calling (most Ollama
chat models) answers with `tool_calls`; results go back as `{"role": "tool", "name": …, "content": …}`
messages. The calls of one step run in parallel. A denied or failing call is an error result the model
sees (`error: permission denied: …`); the agent goes on. The loop ends at an answer, or after
`--max-steps` model calls (default 8) with exit status 1. Piped stdin is added to the task, as in `chat`.

Models without native tools (the embedded Gemma; an Ollama model that answers "does not support
tools", after which the tools are no longer passed) use a **text protocol**, described in the system
message with one line per tool (`calc(expression: string): Evaluate …`), followed by worked examples
as earlier turns (for `calc` and `fs.list`, when offered: a base model copies what it has seen):

    CALL {"tool": "calc", "args": {"expression": "6*7"}}     one line per call; several lines run in parallel
    ANSWER: 42                                                 the final answer (may go on over more lines)

Results come back in one user message, a line per call: `RESULT calc: 42` or `RESULT calc: error: …`.
Parsing is lenient: `CALL name {…}`, `"name"`/`"arguments"` for `"tool"`/`"args"`, and a fenced
```json block (or a bare reply) holding such an object or a list of them also count; text after a
`RESULT` line the model made up is ignored; a reply with neither calls nor `ANSWER:` is the answer.
A `CALL` whose JSON does not parse is answered with an error result saying so, and the loop goes on.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from typing import Any

from kernel.llm.backend import ToolsUnsupported
from kernel.redact import redact
from kernel.sanitize import strip_controls
from kernel.syscall import AgentContext
from kernel.tools.registry import ToolResult

USAGE = "usage: run react [--max-steps N] [--tools a,b] TASK…  (or: … | run react [TASK…])"
DEFAULT_MAX_STEPS = 8
RESULT_CHARS = 2000  # a tool result longer than this reaches the model cut
SHOWN_CHARS = 160  # how much of a call's arguments or result a step line shows
TEMPERATURE = 0.2  # calls need exact names and JSON more than they need variety

SYSTEM = (
    "You are an assistant that uses tools. Tools:\n{tools}\n"
    'To use a tool, reply with one line: CALL {{"tool": "name", "args": {{...}}}}\n'
    "You get back: RESULT name: output\n"
    "When you know the answer, reply: ANSWER: your answer"
)
# worked examples, as earlier turns of the conversation (a base model copies what it has seen);
# one is shown only when its tool is offered
EXAMPLES = (
    ("calc", "What is 12/4? use calc", {"expression": "12/4"}, "3", "3"),
    ("fs.list", "Which files are here?", {"path": "."}, "notes.txt", "There is one file, notes.txt."),
)
NOT_UNDERSTOOD = 'your call was not understood ({why}); write: CALL {{"tool": "name", "args": {{...}}}}'
NUDGE = "Reply with a CALL line, or with ANSWER: your answer."


@dataclass
class Call:
    name: str
    args: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None  # set when the call could not be understood; it is not run


@dataclass
class Parsed:
    calls: list[Call]
    answer: str | None


# -- the text protocol --------------------------------------------------------------------------------

_FENCE = re.compile(r"```[a-zA-Z]*\s*\n?(.*?)```", re.S)
_CALL = re.compile(r"^[\s*`>-]*CALL\b[\s:*`]*(.*)$")
_ANSWER = re.compile(r"^[\s*`>-]*(?i:answer)[\s*]*:[\s*]*(.*)$")
_RESULT = re.compile(r"^[\s*`>-]*RESULT\b")


def _call_from(obj: Any) -> Call | None:
    """{"tool"|"name": …, "args"|"arguments"|"parameters": {…}} as a Call; None when it is not one."""
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict):  # {"function": {"name", "arguments"}}, as OpenAI/Ollama
        obj = obj["function"]
    name = obj.get("tool", obj.get("name"))
    if not isinstance(name, str) or not name:
        return None
    args = next((obj[k] for k in ("args", "arguments", "parameters") if k in obj), {})
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except (ValueError, RecursionError):
            return Call(name, problem="its args are not a JSON object")
    if not isinstance(args, dict):
        return Call(name, problem="its args are not a JSON object")
    return Call(name, args)


def _calls_from_json(text: str) -> list[Call] | None:
    """The calls in a JSON object or list; None when the text is no such JSON."""
    try:
        obj, _ = json.JSONDecoder().raw_decode(text.strip())
    except (ValueError, RecursionError):  # a model can write `[[[[…` deeper than the parser goes
        return None
    items = obj if isinstance(obj, list) else [obj]
    calls = [_call_from(item) for item in items]
    return None if not calls or None in calls else calls  # type: ignore[return-value]


def _parse_call_line(rest: str) -> Call:
    rest = rest.strip().strip("`").strip()
    if rest.startswith("{"):
        try:
            obj, _ = json.JSONDecoder().raw_decode(rest)
        except (ValueError, RecursionError) as exc:
            return Call("?", problem=f"invalid JSON: {exc.args[0].split(':')[0]}")
        return _call_from(obj) or Call("?", problem='no "tool" name in it')
    match = re.match(r"([\w.\-]+)\s*(.*)$", rest)  # CALL name {…}
    if match is None:
        return Call("?", problem="no tool named")
    name, tail = match[1], match[2].strip()
    if not tail:
        return Call(name)
    try:
        args, _ = json.JSONDecoder().raw_decode(tail)
    except (ValueError, RecursionError) as exc:
        return Call(name, problem=f"invalid JSON: {exc.args[0].split(':')[0]}")
    return Call(name, args) if isinstance(args, dict) else Call(name, problem="its args are not a JSON object")


def parse_reply(text: str) -> Parsed:
    """The calls and/or the answer in a reply written in the text protocol."""
    calls: list[Call] = []
    for block in _FENCE.findall(text):
        found = _calls_from_json(block)
        if found:
            calls += found
        elif '"tool"' in block:
            calls.append(Call("?", problem="invalid JSON in the ```json block"))
    outside = _FENCE.sub("", text)
    lines = outside.splitlines()
    for i, line in enumerate(lines):
        if _RESULT.match(line):
            break  # the model went on to imagine the result: what follows is not its own
        if match := _CALL.match(line):
            calls.append(_parse_call_line(match[1]))
        elif (match := _ANSWER.match(line)) and not calls:
            answer_lines = [match[1]] + [ln for ln in lines[i + 1:] if not _RESULT.match(ln)]
            return Parsed([], "\n".join(answer_lines).strip())
    if calls:
        return Parsed(calls, None)
    bare = _calls_from_json(text) if text.lstrip().startswith(("{", "[")) else None
    if bare:
        return Parsed(bare, None)
    return Parsed([], text.strip())


def describe_tools(schemas: list[dict[str, Any]]) -> str:
    """One line a tool: `- name(arg: type, opt?: type): description`."""
    lines = []
    for schema in schemas:
        fn = schema.get("function", schema)
        params = fn.get("parameters") or {}
        required = set(params.get("required") or [])
        args = ", ".join(
            f"{name}{'' if name in required else '?'}: {spec.get('type', 'any')}"
            for name, spec in (params.get("properties") or {}).items()
        )
        lines.append(f"- {fn.get('name')}({args}): {fn.get('description', '')}".rstrip(": "))
    return "\n".join(lines)


def examples(allowed: set[str]) -> list[dict[str, Any]]:
    """The worked examples for the tools on offer, as user/assistant turns."""
    turns: list[dict[str, Any]] = []
    for name, question, args, output, answer in EXAMPLES:
        if name in allowed:
            turns += [{"role": "user", "content": question},
                      {"role": "assistant", "content": "CALL " + json.dumps({"tool": name, "args": args})},
                      {"role": "user", "content": f"RESULT {name}: {output}"},
                      {"role": "assistant", "content": f"ANSWER: {answer}"}]
    return turns


# -- the agent ----------------------------------------------------------------------------------------


def parse_args(argv: tuple[str, ...]) -> tuple[int, list[str] | None, str]:
    """(max_steps, tool names or None for all, task); raises ValueError with a usage line."""
    max_steps, names, args = DEFAULT_MAX_STEPS, None, list(argv)
    while args and args[0].startswith("--"):
        opt = args.pop(0)
        if opt == "--":
            break
        key, eq, value = opt.partition("=")
        if key not in ("--max-steps", "--tools"):
            raise ValueError(f"react: unknown option {key}")
        if not eq:
            if not args:
                raise ValueError(f"react: {key} needs a value")
            value = args.pop(0)
        if key == "--max-steps":
            if not value.isdigit() or int(value) < 1:
                raise ValueError("react: --max-steps needs a whole number of at least 1")
            max_steps = int(value)
        else:
            names = [n.strip() for n in value.split(",") if n.strip()]
    return max_steps, names, " ".join(args).strip()


def _first_line(text: str, limit: int = SHOWN_CHARS) -> str:
    line = strip_controls(text).strip().split("\n", 1)[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _for_model(result: ToolResult) -> str:
    text = result.text
    return text if len(text) <= RESULT_CHARS else text[:RESULT_CHARS] + f"… ({len(text) - RESULT_CHARS} more chars)"


async def _run_calls(ctx: AgentContext, calls: list[Call], allowed: set[str]) -> list[ToolResult]:
    """Run one step's calls in parallel; what could not be run becomes an error result."""
    for call in calls:
        shown = redact(json.dumps(call.args, ensure_ascii=False)) if call.problem is None else f"({call.problem})"
        await ctx.write(f"→ {call.name} {_first_line(shown)}\n")

    async def one(call: Call) -> ToolResult:
        if call.problem is not None:
            return ToolResult(False, error=NOT_UNDERSTOOD.format(why=call.problem))
        if call.name not in allowed:
            return ToolResult(False, error=f"no such tool: {call.name} (tools: {', '.join(sorted(allowed))})")
        try:
            return await ctx.tool(call.name, **call.args)
        except Exception as exc:  # whatever went wrong, the model hears of it and the agent goes on
            return ToolResult(False, error=f"{type(exc).__name__}: {exc}")

    results = await asyncio.gather(*(one(call) for call in calls))
    for result in results:
        await ctx.write(f"← ok: {_first_line(result.output)}\n" if result.ok and result.output.strip()
                        else "← ok\n" if result.ok else f"← error: {_first_line(str(result.error))}\n")
    return list(results)


def _native_calls(raw: tuple[dict[str, Any], ...]) -> list[Call]:
    calls = []
    for item in raw:
        call = _call_from(item)
        calls.append(call if call is not None else Call("?", problem="a tool call without a name"))
    return calls


def carried_on(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The saved conversation as messages to continue: user, assistant and tool turns, in order."""
    return [{k: v for k, v in m.items() if k in ("role", "content", "name")} for m in history
            if m.get("role") in ("user", "assistant", "tool")]


async def main(ctx: AgentContext) -> int:
    try:
        max_steps, names, task = parse_args(ctx.argv)
    except ValueError as exc:
        await ctx.write(f"{exc}\n{USAGE}\n")
        return 2
    history = carried_on(ctx.history)  # a resumed process goes on with its predecessor's conversation
    piped = "" if history else (await ctx.stdin.read()).strip()
    if piped:
        task = f"{task}\n\n{piped}" if task else piped
    if not task and not history:
        await ctx.write(USAGE + "\n")
        return 2
    if history and history[-1]["role"] == "assistant":
        parsed = parse_reply(history[-1]["content"])
        if parsed.answer and not parsed.calls:  # it had answered; only its exit was lost
            await ctx.write(strip_controls(parsed.answer) + "\n")
            return 0
        history.pop()  # ask again for the step it was taking
    schemas = ctx.tools()
    known = {s.get("function", s).get("name") for s in schemas}
    if names is not None:
        unknown = [n for n in names if n not in known]
        if unknown:
            await ctx.write(f"react: no such tool: {', '.join(unknown)} (tools: {', '.join(sorted(known))})\n")
            return 2
        schemas = [s for s in schemas if s.get("function", s).get("name") in names]
    allowed = {s.get("function", s).get("name") for s in schemas}
    messages = [{"role": "system", "content": SYSTEM.format(tools=describe_tools(schemas) or "(none)")},
                *examples(allowed), *(history or [{"role": "user", "content": task}])]
    native = bool(schemas)  # pass the schemas until the model says it cannot take them
    for step in range(1, max_steps + 1):
        try:
            result = await ctx.llm(messages, tools=schemas if native else None, temperature=TEMPERATURE)
        except ToolsUnsupported:
            native = False
            result = await ctx.llm(messages, temperature=TEMPERATURE)
        if result.tool_calls:
            calls = _native_calls(result.tool_calls)
            if step == max_steps:
                break
            messages.append({"role": "assistant", "content": result.text,
                             "tool_calls": [{"name": c.name, "arguments": c.args} for c in calls]})
            outcomes = await _run_calls(ctx, calls, allowed)
            messages += [{"role": "tool", "name": c.name, "content": _for_model(r)}
                         for c, r in zip(calls, outcomes, strict=True)]
            continue
        parsed = parse_reply(result.text)
        if not parsed.calls and parsed.answer:
            await ctx.write(strip_controls(parsed.answer) + "\n")
            return 0
        if step == max_steps:
            break
        messages.append({"role": "assistant", "content": result.text})
        if not parsed.calls:  # an empty reply
            messages.append({"role": "user", "content": NUDGE})
            continue
        outcomes = await _run_calls(ctx, parsed.calls, allowed)
        lines = [f"RESULT {c.name}: {_for_model(r)}" for c, r in zip(parsed.calls, outcomes, strict=True)]
        messages.append({"role": "user", "content": "\n".join(lines)})
    await ctx.write(f"react: no answer after {max_steps} step{'s' if max_steps != 1 else ''}\n")
    return 1
