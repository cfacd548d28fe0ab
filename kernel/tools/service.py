"""The tool syscall: access check, permission request, audit, then the call itself.

Every call is audited exactly once, with the decision and who made it, before the tool runs:
- a rule or grant decides → allow/deny by "policy", "grant:always", "grant:session", "yes-for", …;
- nothing decides → a permission request, answered by a person (`once`, `session`, `always`,
  `deny`); with no one to ask (`aios -c`, scripts, CI) or no answer in time → deny.
A denial reaches the agent as an error result ("permission denied: …"); the agent goes on.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kernel.events import Decision, EventBus, SyscallDone, ToolCallDecided, ToolCalled, WaitReason
from kernel.process import Process, State
from kernel.redact import redact, redact_value
from kernel.sanitize import strip_controls
from kernel.settings import number
from kernel.tools.registry import ToolContext, ToolError, ToolRegistry, ToolResult

if TYPE_CHECKING:
    from kernel.access import AccessControl
    from kernel.permissions import PermissionBroker

PERMISSION_TIMEOUT = 60.0  # seconds a permission question waits for an answer (AIOS_PERMISSION_TIMEOUT)


def permission_timeout() -> float:
    return number("AIOS_PERMISSION_TIMEOUT", PERMISSION_TIMEOUT, maximum=7 * 24 * 3600)


ARG_CAP = 4096  # characters of one argument the audit keeps (the rest: its size and sha256)
RESULT_CAP = 1 << 20  # characters of a tool's result the agent gets
OFF_LOOP = 64 * 1024  # texts longer than this are redacted in a worker thread


def cap_text(text: str, cap: int) -> str:
    """`text`, or its first `cap` characters and a note of what was cut (its size and sha256)."""
    if len(text) <= cap:
        return text
    data = text.encode("utf-8", "surrogatepass")
    return f"{text[:cap]}… [cut: {len(data)} bytes in all, sha256 {hashlib.sha256(data).hexdigest()}]"


def capped_args(args: dict[str, Any]) -> dict[str, Any]:
    """Arguments as the audit and the screen keep them: each long string cut to ARG_CAP (with size and hash)."""
    return {k: cap_text(v, ARG_CAP) if isinstance(v, str) else v for k, v in args.items()}


async def redact_text(text: str) -> str:
    """`redact`, in a worker thread for a long text (it is linear, but a megabyte still takes a while)."""
    return await asyncio.to_thread(redact, text) if len(text) > OFF_LOOP else redact(text)


class AuditFailed(Exception):
    """The audit row could not be written, so the call is refused: nothing runs unrecorded."""


@dataclass
class ToolService:
    registry: ToolRegistry
    access: AccessControl
    broker: PermissionBroker
    bus: EventBus
    set_state: Callable[[Process, State, str | None], None]
    services: dict[str, Any] = field(default_factory=dict)
    permission_timeout: float = field(default_factory=permission_timeout)

    async def call(self, proc: Process, sid: int, name: str, args: dict[str, Any], workspace: Path,
                   own: bool | None = None) -> ToolResult:
        """Run one tool call for `proc` in `workspace` (`own`: aios made it; default: unless chosen)."""
        started = time.time()
        cut = {str(k): str(v)[:ARG_CAP] for k, v in args.items()}
        shown = {k: strip_controls(str(v))[:500] for k, v in redact_value(cut).items()}
        self.bus.publish(ToolCalled(pid=proc.pid, sid=sid, tool=strip_controls(name), args=shown))
        try:
            result = await self._call(proc, sid, name, args, workspace,
                                      proc.workspace is None if own is None else own)
        except AuditFailed as exc:
            result = ToolResult(False, error=str(exc))
        finally:
            self.set_state(proc, State.RUNNING, None)
        self.bus.publish(SyscallDone(pid=proc.pid, sid=sid, call=f"tool:{strip_controls(name)}", ok=result.ok,
                                     service_s=result.duration_s, wait_s=max(0.0, time.time() - started
                                                                              - result.duration_s),
                                     error=result.error))
        return result

    def _audit(self, proc: Process, sid: int, name: str, args: dict[str, Any], decision: Decision, by: str,
               reason: str) -> None:
        """Write the audit row and say what was decided; raises AuditFailed when the row cannot be written (the
        call must not run then)."""
        self.bus.publish(ToolCallDecided(pid=proc.pid, sid=sid, tool=strip_controls(name), decision=decision, by=by,
                                         reason=strip_controls(redact(reason))))
        try:
            self.access.audit(user=proc.user, pid=proc.pid, program=proc.program, tool=name, args=capped_args(args),
                              decision=decision, by=by, reason=reason)
        except Exception as exc:  # a full disk, a locked database: fail closed
            raise AuditFailed(f"the audit log cannot be written ({exc}); {name} refused") from exc

    async def _call(self, proc: Process, sid: int, name: str, args: dict[str, Any], workspace: Path,
                    own: bool) -> ToolResult:
        tool = self.registry.get(name)
        if tool is None:
            self._audit(proc, sid, name, args, Decision.ERROR, "kernel", "no such tool")
            return ToolResult(False, error=f"no such tool: {name} (try: tools)")
        try:
            checked = tool.validate(args)
        except ToolError as exc:
            self._audit(proc, sid, name, args, Decision.ERROR, "kernel", str(exc))
            return ToolResult(False, error=str(exc))
        target = tool.rule_target(workspace, checked)
        if not self.access.project_cached(workspace):  # a stat here; reading the file stays off the loop
            await asyncio.to_thread(self.access.load_project, workspace)
        verdict = self.access.check(proc.user, name, target, workspace)
        decision, by, reason = verdict.effect, verdict.source, verdict.rule or ""
        if decision == "ask":
            decision, by, reason = await self._ask(proc, name, checked, target, workspace)
        self._audit(proc, sid, name, checked, Decision.DENY if decision == "deny" else Decision.ALLOW, by, reason)
        if decision == "deny":
            why = f" ({reason})" if reason else ""
            return ToolResult(False, error=redact(f"permission denied: {name}({target}){why}"))
        self.set_state(proc, State.WAITING, WaitReason.TOOL)
        ctx = ToolContext(pid=proc.pid, user=proc.user, workspace=workspace, program=proc.program,
                          services=self.services, own_workspace=own,
                          rules=lambda t, tgt: self.access.check(proc.user, t, tgt, workspace).effect == "allow")
        result = await self.registry.call(name, ctx, checked)
        # secrets never leave a tool: not to the agent, the model, the transcript or the screen
        output = await redact_text(cap_text(result.output, RESULT_CAP))
        error = await redact_text(cap_text(result.error, RESULT_CAP)) if result.error else None
        return ToolResult(result.ok, output, error, result.duration_s)

    async def _ask(self, proc: Process, name: str, args: dict[str, Any], target: str,
                   workspace: Path) -> tuple[str, str, str]:
        """No rule decided: ask a person, if one can be asked. Returns (decision, by, reason)."""
        from kernel.access import Rule

        if not self.broker.answerers:
            return "deny", "no terminal", "no rule allows it and there is no one to ask"
        self.set_state(proc, State.WAITING, WaitReason.PERMISSION)
        answer, by = await self.broker.decide(proc.pid, proc.user, proc.program, name,
                                              redact_value(capped_args(args)), timeout=self.permission_timeout,
                                              workspace=str(workspace), rule=redact(str(Rule.for_call(name, target))))
        if answer in ("session", "always"):
            # a call that carries a secret is never written down as a standing grant: for this session only
            scope = "session" if redact(target) != target else answer
            rule = self.access.grant(proc.user, Rule.for_call(name, target), scope=scope, by=proc.user)
            return "allow", f"{by}:{scope}", redact(str(rule))
        if answer == "once":
            return "allow", f"{by}:once", ""
        return "deny", by, "no answer in time" if by == "timeout" else "denied by the user"
