"""The Kernel: boots the subsystems and is the only entry point user space uses.

`boot()` is the one factory, used by the CLI, the shell and the tests alike.
"""

from __future__ import annotations

import asyncio
import getpass
import itertools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kernel import clock
from kernel.access import AccessControl
from kernel.context import ContextManager
from kernel.errors import InvalidArgument, KernelError, NoSuchProcess, PermissionDenied, ResourceLimit
from kernel.events import (
    Event,
    EventBus,
    MessageLogged,
    ProcessExited,
    ProcessOutput,
    ProcessReniced,
    ProcessSpawned,
    ProcessStateChanged,
    SignalDelivered,
    SyscallDone,
    WaitReason,
)
from kernel.files import FileVersions
from kernel.home import process_running
from kernel.kmsg import KernelLog
from kernel.llm import Backend, LLMRequest, create_backend
from kernel.llm.backend import BackendError
from kernel.memory import Memory
from kernel.permissions import PermissionBroker
from kernel.process import Process, ProcessTable, Signal, State
from kernel.programs import NoSuchProgram, Program, load
from kernel.quota import Quotas
from kernel.scheduler import DEFAULT_POLICY, POLICIES, Dispatcher, make_policy
from kernel.settings import SettingError, whole
from kernel.storage import Storage, StorageError, default_home
from kernel.syscall import AgentContext, LLMCall, LLMResult
from kernel.tools import ToolResult, default_registry
from kernel.tools.mcp import START_WAIT as MCP_START_WAIT
from kernel.tools.mcp import McpServers
from kernel.tools.registry import ToolError
from kernel.tools.sandbox import Limits, Sandbox
from kernel.tools.service import ToolService, permission_timeout

if TYPE_CHECKING:
    from kernel.http.front import Front

NICE_MIN, NICE_MAX = -20, 19
OUTPUT_KEEP = 2000  # output pieces kept in memory per process


def current_user() -> str:
    try:
        return os.environ.get("AIOS_USER") or getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "user"


# errors whose message says what went wrong by itself (an agent that ends on one exits with that message);
# any other exception also names its type ("KeyError: 'x'")
SAYS_ITSELF = (KernelError, BackendError, NoSuchProgram, StorageError, ToolError)

@dataclass
class KernelConfig:
    home: Path = field(default_factory=default_home)
    backend: str = field(default_factory=lambda: os.environ.get("AIOS_BACKEND", "auto"))
    model: str | None = field(default_factory=lambda: os.environ.get("AIOS_MODEL") or None)
    slots: int | None = None
    base_url: str | None = None  # the openai backend's server (`--base-url`; else OPENAI_BASE_URL)
    user: str = field(default_factory=current_user)
    admins: frozenset[str] = frozenset({"root"})
    seed: int = 0
    term_grace: float = 2.0
    policy: str = field(default_factory=lambda: os.environ.get("AIOS_POLICY") or DEFAULT_POLICY)
    slice: int | None = None  # tokens per slice for rr and fair
    yes_for: tuple[str, ...] = ()  # rules allowed without asking for this session (`--yes-for RULE`)
    # the HTTP front's address (`aios serve --http`, AIOS_HTTP); None: started on a free port when first needed
    http: str | None = field(default_factory=lambda: os.environ.get("AIOS_HTTP") or None)


class Kernel:
    def __init__(self, config: KernelConfig, backend: Backend | None = None) -> None:
        self.config = config
        self.quotas = Quotas()  # admission limits and tokens per minute per user (a bad setting stops boot here)
        asking = permission_timeout()
        versions_quota = whole("AIOS_VERSIONS_QUOTA_MB", 256, maximum=1 << 30) << 20
        self.kmsg = KernelLog()
        self.bus = EventBus(report=self.kmsg.handler_failed)
        self.procs = ProcessTable()
        self.storage = Storage(config.home)
        self._real_home = Path(os.path.realpath(config.home))  # made by Storage; resolved once, not per call
        self.bus.on(self.storage.record)
        try:
            self.backend: Backend = backend or create_backend(
                config.backend, config.model, config.slots, seed=config.seed, base_url=config.base_url
            )
        except BaseException:
            self.storage.close()
            raise
        try:
            policy = make_policy(config.policy, **self._policy_params(config.policy, config.slice))
        except ValueError as exc:
            self.storage.close()
            raise InvalidArgument(str(exc)) from None
        self.dispatcher = Dispatcher(self, self.backend, policy)
        self.context = ContextManager(self.backend, self.bus)  # token accounting, compaction, switch costs
        self.permissions = PermissionBroker(self.bus)  # tool calls wait here for a person's answer
        try:
            self.access = AccessControl(self.storage, config.home, admins=config.admins, yes_for=config.yes_for)
        except ValueError as exc:  # a bad --yes-for rule
            self.storage.close()
            raise InvalidArgument(str(exc)) from None
        self.memory = Memory(self.storage)
        self.files = FileVersions(self.storage, quota=versions_quota)
        try:
            self.sandbox = Sandbox(config.home, others=self._others_workspaces)
        except (ValueError, SettingError) as exc:  # a bad AIOS_SANDBOX or AIOS_SANDBOX_UID_BASE
            self.storage.close()
            raise SettingError(str(exc)) from None
        self.tools = default_registry()
        self.toolsvc = ToolService(self.tools, self.access, self.permissions, self.bus, self.set_state,
                                   services={"memory": self.memory, "files": self.files, "limits": Limits(),
                                             "sandbox": self.sandbox}, permission_timeout=asking)
        self.front: Front | None = None  # the Ollama/OpenAI HTTP API (`kernel.http`), once started
        self.mcp = McpServers(config.home, self.tools, self.kmsg.write, wrap=self._confine)  # config.toml's
        self.boot_time = clock.now()
        self.lost_at_boot: list[int] = []
        self._sids = itertools.count(1)
        self._started = False

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> Kernel:
        if self._started:
            return self
        me = os.getpid()
        self.lost_at_boot = self.storage.mark_lost(lambda pid: pid != me and process_running(pid))
        await self.backend.start()
        await asyncio.to_thread(self.sandbox.status)  # probed once, here: `tools` and the monitor show it
        self._started = True
        if self.config.http:
            await self.http_front()
        return self

    async def http_front(self) -> Front:
        """The HTTP front, started now if it is not running (at `config.http`, else on a free port of
        127.0.0.1); InvalidArgument (one line) for an address it cannot take."""
        from kernel.http.front import Front, parse_address  # starlette and uvicorn: only for a kernel that serves

        if self.front is None:
            self.front = Front(self)
        if self.front.address is None:
            try:
                host, port = parse_address(self.config.http) if self.config.http else ("127.0.0.1", 0)
                await self.front.start(host, port)
            except (ValueError, OSError) as exc:
                raise InvalidArgument(str(exc)) from None
        return self.front

    async def shutdown(self) -> None:
        """Hang up every live process (SIGHUP, then SIGKILL after the grace period) and close."""
        for proc in self.procs.alive():
            self.signal(proc.pid, Signal.HUP, sender=proc.user)
        alive = [p.exited.wait() for p in self.procs.alive()]
        if alive:
            await asyncio.wait([asyncio.ensure_future(a) for a in alive], timeout=self.config.term_grace)
        for proc in self.procs.alive():
            self.signal(proc.pid, Signal.KILL, sender=proc.user)
        await self.dispatcher.drain()
        if self.front is not None:
            await self.front.stop()
        await self.mcp.close()
        await self.backend.close()
        self.close_storage()

    def _confine(self, argv: list[str], workspace: Path, user: str, own: bool,
                 net: bool) -> tuple[list[str], dict[str, str]]:
        confined = self.sandbox.confine(argv, workspace, user=user, own=own, net=net)
        return confined.argv, confined.env

    def close_storage(self) -> None:
        self.access.close()
        self.memory.close()
        self.files.close()
        self.storage.close()

    async def __aenter__(self) -> Kernel:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    # -- users ----------------------------------------------------------------------------------------
    @property
    def user(self) -> str:
        return self.config.user

    def is_admin(self, user: str) -> bool:
        return self.access.is_admin(user)

    def may_manage(self, user: str, owner: str) -> bool:
        """Whether `user` may act on what `owner` owns (their processes, files, grants): themselves or an admin."""
        return user == owner or self.is_admin(user)

    def check_reader(self, proc: Process, reader: str) -> None:
        """PermissionDenied unless `reader` may read `proc`'s conversation, output and tool calls."""
        if not self.may_manage(reader, proc.user):
            raise PermissionDenied(f"({proc.pid}) - Permission denied: {reader} may not read {proc.user}'s process")

    def shown(self, proc: Process, viewer: str) -> dict[str, Any]:
        """`proc.to_dict()` as `viewer` may see it: another user's task text (its arguments) is hidden."""
        fields = proc.to_dict()
        if not self.may_manage(viewer, proc.user):
            fields["argv"] = []
            fields["cmd"] = proc.hidden_cmdline
            fields["workspace"] = None
        return fields

    def check_owner(self, proc: Process, sender: str, what: str) -> None:
        """PermissionDenied unless `sender` may `what` (signal, renice, resume…) `proc`."""
        if not self.may_manage(sender, proc.user):
            raise PermissionDenied(
                f"({proc.pid}) - Operation not permitted: {sender} may not {what} {proc.user}'s process"
            )

    # -- processes ------------------------------------------------------------------------------------
    def spawn(
        self,
        program: str,
        argv: tuple[str, ...] | list[str] = (),
        *,
        nice: int = 0,
        user: str | None = None,
        ppid: int = 0,
        stdin: Any = None,
        workspace: str | Path | None = None,
        history: list[dict[str, Any]] | None = None,
    ) -> Process:
        """Start agent `program` with `argv`; returns at once with the new process.

        Its tools work in `workspace` (default: a directory of its own, `$AIOS_HOME/workspaces/PID`).
        `history` is a conversation it carries on (`resume` passes the old process's), as `ctx.history`.
        """
        main = load(program, self.config.home)
        user = user or self.user
        nice = self._check_nice(nice)
        if nice < 0 and not self.is_admin(user):
            raise PermissionDenied(f"cannot set nice {nice}: only an admin may raise priority")
        live = self.procs.live(user)
        if live >= self.quotas.max_procs:
            raise ResourceLimit(f"{user} already runs {live} processes (the limit, AIOS_MAX_PROCS); "
                                "wait for some to finish")
        proc = Process(
            pid=self.storage.allocate_pid(), ppid=ppid, user=user, program=program,
            argv=tuple(argv), nice=nice, kernel_pid=os.getpid(), stdin=stdin,
        )
        if workspace is not None:
            proc.workspace = self._check_workspace(Path(workspace).expanduser().resolve(), user)
        proc.history = list(history or [])
        self.procs.add(proc)
        self.storage.save_process(proc)
        self.bus.publish(ProcessSpawned(pid=proc.pid, ppid=ppid, user=user, program=program,
                                        argv=proc.argv, nice=nice))
        for m in proc.history:  # its transcript starts with what it carries on, so it can be resumed again
            if m.get("role") in ("user", "assistant", "tool"):
                self._log(proc, m["role"], str(m.get("content", "")))
        proc.task = asyncio.get_running_loop().create_task(self._run(proc, main), name=f"pid-{proc.pid}")
        proc.task.add_done_callback(lambda _task: self._reap(proc))
        return proc

    def _reap(self, proc: Process) -> None:
        """The task ended without the process exiting: cancelled before it ever ran."""
        if proc.alive:
            self._exit(proc, signal=proc.pending_signal or Signal.KILL)

    def workspace(self, pid: int | Process) -> Path:
        """The directory a process's tools work in."""
        proc = pid if isinstance(pid, Process) else self.lookup(pid)
        if proc.workspace:
            return Path(proc.workspace)
        return self.config.home / "workspaces" / str(proc.pid)

    def _check_workspace(self, ws: Path, user: str) -> str:
        """A workspace `user` may choose (`run -w`, `resume`); InvalidArgument/PermissionDenied otherwise.

        Refused: one that contains AIOS_HOME (its tools could rewrite the policy or the database), one inside
        AIOS_HOME but the workspace aios made for a process of `user`'s, and one that holds or lies inside the
        workspace of another user's live process."""
        home = self._real_home
        if ws == home or home.is_relative_to(ws):
            raise InvalidArgument(f"workspace {ws}: it contains AIOS_HOME ({home}); choose a directory beside it")
        if ws.is_relative_to(home):
            made = home / "workspaces"
            rel = ws.relative_to(made).parts if ws.is_relative_to(made) else ()
            if not (len(rel) == 1 and rel[0].isdigit() and self._owner_of(int(rel[0])) == user):
                raise PermissionDenied(f"workspace {ws}: inside AIOS_HOME, and not a workspace of {user}'s")
        for other in self.procs.alive():
            if other.user == user:
                continue
            theirs = Path(os.path.realpath(self.workspace(other)))
            if ws == theirs or ws.is_relative_to(theirs) or theirs.is_relative_to(ws):
                raise PermissionDenied(f"workspace {ws}: {other.user}'s process {other.pid} works there")
        return str(ws)

    def _owner_of(self, pid: int) -> str | None:
        try:
            return self.lookup(pid).user
        except NoSuchProcess:
            return None

    def made_workspace(self, proc: Process) -> bool:
        """Whether aios made `proc`'s workspace (its own, or an earlier process's it resumed)."""
        ws = Path(self.workspace(proc))
        return proc.workspace is None or ws.parent == self._real_home / "workspaces"

    def _others_workspaces(self, user: str) -> list[Path]:
        """Workspaces of other users' live processes (a sandboxed run of `user` must not see them)."""
        return [self.workspace(p) for p in self.procs.alive() if p.user != user]

    def get(self, pid: int) -> Process:
        proc = self.procs.get(pid)
        if proc is None:
            raise NoSuchProcess(pid)
        return proc

    def lookup(self, pid: int) -> Process:
        """A process of this kernel or, failing that, of an earlier run (from the database)."""
        if proc := self.procs.get(pid):
            return proc
        rows = self.storage.process_rows([pid])
        if not rows:
            raise NoSuchProcess(pid)
        return Process.from_record(rows[0])

    def ps(self, all: bool = False) -> list[Process]:
        """Live processes of this kernel; with `all`, every process this AIOS_HOME has seen."""
        if not all:
            return self.procs.alive()
        mine = {p.pid: p for p in self.procs}
        history = [Process.from_record(r) for r in self.storage.process_rows() if r["pid"] not in mine]
        return sorted([*history, *mine.values()], key=lambda p: p.pid)

    async def wait(self, pid: int) -> Process:
        proc = self.get(pid)
        await proc.exited.wait()
        return proc

    async def _run(self, proc: Process, main: Program) -> None:
        try:
            await proc.resumed.wait()  # stopped before it started
            proc.started_at = clock.now()
            self.set_state(proc, State.RUNNING)
            await self.mcp.ensure(proc.user, wait=MCP_START_WAIT)  # its MCP servers' tools, before it asks
            code = await main(AgentContext(self, proc))
            self._exit(proc, code=int(code or 0))
        except asyncio.CancelledError:
            self._exit(proc, signal=proc.pending_signal or Signal.KILL)
        except Exception as exc:  # the agent failed; the kernel and the others go on
            error = str(exc) if isinstance(exc, SAYS_ITSELF) else f"{type(exc).__name__}: {exc}"
            self._exit(proc, code=1, error=error)

    def _exit(self, proc: Process, code: int = 0, signal: Signal | None = None, error: str | None = None) -> None:
        if not proc.alive:
            return
        self.dispatcher.exited(proc.pid)
        old = proc.status
        proc.state, proc.waiting_on = State.EXITED, None
        proc.term_signal = int(signal) if signal is not None else None
        proc.exit_code = 128 + int(signal) if signal is not None else code
        proc.error = error
        proc.ended_at = clock.now()
        proc.resumed.set()
        self.storage.save_process(proc)
        self.bus.publish(ProcessStateChanged(pid=proc.pid, old=old, new=proc.status))
        self.bus.publish(ProcessExited(pid=proc.pid, status=proc.status, exit_code=proc.exit_code,
                                       signal=proc.term_signal, error=error))
        proc.exited.set()
        self.procs.exited(proc)

    def set_state(self, proc: Process, state: State, waiting_on: str | None = None) -> None:
        """Move a process to `state`; a stopped process only remembers where to go on CONT."""
        if not proc.alive:
            return
        if proc.state is State.STOPPED and state is not State.STOPPED:
            proc.state_before_stop, proc.waiting_before_stop = state, waiting_on
            return
        self._transition(proc, state, waiting_on)

    def _transition(self, proc: Process, state: State, waiting_on: str | None = None) -> None:
        old = proc.status
        proc.state, proc.waiting_on = state, waiting_on if state is State.WAITING else None
        if proc.status != old:
            self.storage.save_process(proc)
            self.bus.publish(ProcessStateChanged(pid=proc.pid, old=old, new=proc.status))

    # -- signals ----------------------------------------------------------------------------------
    def signal(self, pid: int, sig: Signal, sender: str | None = None) -> Process:
        proc = self.get(pid)
        if not proc.alive:
            raise NoSuchProcess(pid)
        sender = sender or self.user
        self.check_owner(proc, sender, "signal")
        self.bus.publish(SignalDelivered(pid=pid, signal=int(sig), name=sig.signame, sender=sender))
        if sig is Signal.KILL:
            proc.pending_signal = sig
            self._exit(proc, signal=sig)  # at once: no token of this process after this line
            if proc.task is not None:
                proc.task.cancel()
        elif sig is Signal.STOP:
            if proc.state is not State.STOPPED:
                proc.state_before_stop, proc.waiting_before_stop = proc.state, proc.waiting_on
                proc.resumed.clear()
                self._transition(proc, State.STOPPED)
                self.dispatcher.hold(pid)
        elif sig is Signal.CONT:
            self._continue(proc)
        elif proc.pending_signal is not None:
            pass  # already ending (its cleanup runs): a second TERM must not cancel that; KILL still comes
        else:  # TERM, HUP, INT: cancel now, KILL after the grace period
            proc.pending_signal = sig
            self.dispatcher.cancel_pid(pid)
            if proc.state is State.STOPPED:
                self._continue(proc)
            if proc.task is not None:
                proc.task.cancel()
            asyncio.get_running_loop().call_later(self.config.term_grace, self._force_kill, proc)
        return proc

    def _continue(self, proc: Process) -> None:
        if proc.state is not State.STOPPED:
            return
        state = proc.state_before_stop or State.READY
        self._transition(proc, state, proc.waiting_before_stop)
        proc.state_before_stop = proc.waiting_before_stop = None
        proc.resumed.set()
        self.dispatcher.release(proc.pid)

    def _force_kill(self, proc: Process) -> None:
        if proc.alive:
            self.signal(proc.pid, Signal.KILL, sender=proc.user)

    @staticmethod
    def _policy_params(name: str, slice: int | None) -> dict[str, Any]:
        """`slice` for the policies that declare it (rr, fair); the others have no use for it."""
        takes_slice = "slice" in getattr(POLICIES.get(name), "params", ())
        return {"slice": slice} if slice is not None and takes_slice else {}

    def sched(self, policy: str | None = None, slice: int | None = None, slots: int | None = None,
              sender: str | None = None) -> dict[str, Any]:
        """Switch the scheduling policy and/or P live; queued calls are kept."""
        sender = sender or self.user
        if (policy or slice is not None or slots is not None) and sender != self.user and not self.is_admin(sender):
            raise PermissionDenied("only the kernel's owner or an admin may change the scheduler")
        if slice is not None and slice < 1:
            raise InvalidArgument("the slice must be at least 1 token")
        if policy or slice is not None:
            name = policy or self.dispatcher.policy_name
            try:
                new = make_policy(name, **self._policy_params(name, slice))
            except ValueError as exc:
                raise InvalidArgument(str(exc)) from None
            self.dispatcher.set_policy(new)
        if slots is not None:
            try:
                self.dispatcher.set_slots(slots)
            except ValueError as exc:
                raise InvalidArgument(str(exc)) from None
        return self.dispatcher.describe()

    @staticmethod
    def _check_nice(nice: Any) -> int:
        try:
            value = int(nice)
        except (TypeError, ValueError):
            raise InvalidArgument(f"{nice}: invalid priority (an integer from -20 to 19)") from None
        return max(NICE_MIN, min(NICE_MAX, value))

    def renice(self, pid: int, nice: int, sender: str | None = None) -> Process:
        proc = self.get(pid)
        if not proc.alive:
            raise NoSuchProcess(pid)
        sender = sender or self.user
        self.check_owner(proc, sender, "renice")
        new = self._check_nice(nice)
        if new < proc.nice and not self.is_admin(sender):
            raise PermissionDenied(f"({pid}) - Permission denied: only an admin may lower nice ({proc.nice} → {new})")
        old, proc.nice = proc.nice, new
        self.dispatcher.requeue_pid(pid)
        self.storage.save_process(proc)
        self.bus.publish(ProcessReniced(pid=pid, old=old, new=new))
        return proc

    # -- syscalls -----------------------------------------------------------------------------------
    async def _gate(self, proc: Process) -> None:
        """Every syscall starts here: a stopped process waits, a dead one goes no further."""
        await proc.resumed.wait()
        if not proc.alive:
            raise asyncio.CancelledError

    async def syscall_llm(self, proc: Process, request: LLMRequest, echo: bool = False,
                          on_text: Callable[[str], None] | None = None) -> LLMResult:
        await self._gate(proc)
        if self.quotas.over(proc.user):  # over its tokens per minute: wait outside the queue
            self.set_state(proc, State.WAITING, WaitReason.QUOTA)
            try:
                await self.quotas.admit(proc.user)
            finally:
                self.set_state(proc, State.RUNNING)
            await self._gate(proc)
        if self.dispatcher.queued >= self.quotas.max_queued:
            raise ResourceLimit(f"the model queue is full ({self.quotas.max_queued} calls waiting, "
                                "AIOS_MAX_QUEUED); try again later")
        proc.syscalls += 1
        call = LLMCall(sid=next(self._sids), proc=proc, request=self.context.fit(proc, request), echo=echo,
                       on_text=on_text)
        self._log_turn(proc, request.messages)  # the conversation as the agent has it, not as compacted
        self.context.track(call)
        proc.inflight.append(call)
        self.dispatcher.submit(call)
        try:
            return await call.future
        except asyncio.CancelledError:
            self.dispatcher.cancel(call)
            raise
        finally:
            self._settle(call)
            self.context.done(call)
            self.set_state(proc, State.RUNNING)

    @staticmethod
    def _settle(call: LLMCall) -> None:
        """`call`'s use moves from its process's calls in flight to its counters (once)."""
        if call in call.proc.inflight:
            call.proc.inflight.remove(call)

    def _log_turn(self, proc: Process, messages: list[Any]) -> None:
        """Keep the new user/tool turn of a conversation: the messages after the last assistant one."""
        tail: list[Any] = []
        for m in reversed(messages):
            if m.get("role") not in ("user", "tool"):
                break
            tail.append(m)
        tail.reverse()
        if not tail or (tail[-1].get("role"), str(tail[-1].get("content", ""))) == proc.last_logged:
            return  # nothing new (a resumed process asking again about what it carried over)
        for m in tail:
            self._log(proc, m["role"], str(m.get("content", "")))

    def _log(self, proc: Process, role: str, content: str) -> None:
        proc.last_logged = (role, content)
        self.bus.publish(MessageLogged(pid=proc.pid, role=role, content=content))

    def finish_llm(self, call: LLMCall, result: LLMResult | None = None, error: BaseException | None = None) -> None:
        """The dispatcher hands back a finished call: account for it and wake the process."""
        proc = call.proc
        call.done_at = clock.now()
        self._settle(call)
        self._charge(call, *((result.prompt_tokens, result.completion_tokens) if result is not None else (0, 0)))
        if result is not None:
            self.context.account(proc, call, result)
            calls = "".join(f"\nCALL {json.dumps({'tool': c.get('name'), 'args': c.get('arguments')})}"
                            for c in result.tool_calls)
            self._log(proc, "assistant", (result.text + calls).strip())
        self.bus.publish(SyscallDone(
            pid=proc.pid, sid=call.sid, call="llm", ok=error is None,
            prompt_tokens=result.prompt_tokens if result else 0,
            completion_tokens=result.completion_tokens if result else 0,
            wait_s=call.wait_s, service_s=call.service_s, error=str(error) if error else None,
            overhead_s=call.overhead_s,
        ))
        self.storage.save_process(proc)
        if call.future.done():
            return
        if error is not None:
            call.future.set_exception(error)
        else:
            call.future.set_result(result)

    def account_cancelled(self, call: LLMCall) -> None:
        """Count what a call used before it was cancelled (a killed call still cost tokens)."""
        if call.cancelled:
            return
        self._settle(call)
        prompt = 0
        if call.chunks:  # the prompt as it was shown while the call ran, so the count does not drop at its end
            prompt = call.prompt_estimate or sum(self.backend.count_tokens(str(m.get("content", "")))
                                                 for m in call.request.messages)
        self._charge(call, prompt, call.chunks)

    def _charge(self, call: LLMCall, prompt: int, completion: int) -> None:
        """The one place a call's use is added to its process and its user's quota (finished or cancelled)."""
        proc = call.proc
        proc.llm_time += call.service_s
        proc.queue_wait += call.wait_s
        proc.prompt_tokens += prompt
        proc.completion_tokens += completion
        if prompt or completion:
            self.quotas.charge(proc.user, prompt + completion)

    async def syscall_tool(self, proc: Process, name: str, args: dict[str, Any]) -> ToolResult:
        """Call a tool for `proc`: access control (maybe a person's answer), audit, then the tool."""
        await self._gate(proc)
        proc.syscalls += 1
        proc.tool_calls += 1
        if self.tools.get(name) is None and self.mcp.serves(name):  # an MCP server's tool: start it first
            await self.mcp.ensure(proc.user)
        workspace = self.workspace(proc)
        try:
            workspace.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a workspace that went away or cannot be made: the call fails, the agent goes on
            return ToolResult(False, error=f"workspace {workspace}: {exc.strerror or exc}")
        try:
            return await self.toolsvc.call(proc, next(self._sids), name, args, workspace,
                                           own=self.made_workspace(proc))
        finally:
            self.storage.save_process(proc)

    async def syscall_write(self, proc: Process, text: str) -> None:
        await self._gate(proc)
        self.emit_output(proc, text)

    def publish(self, event: Event) -> None:
        """Put `event` on the bus (the dispatcher's way to say what it did)."""
        self.bus.publish(event)

    def emit_output(self, proc: Process, text: str) -> None:
        if not proc.alive or not text:
            return
        proc.output.append(text)
        if len(proc.output) > OUTPUT_KEEP:
            del proc.output[: len(proc.output) - OUTPUT_KEEP]
        self.bus.publish(ProcessOutput(pid=proc.pid, text=text))

    # -- introspection ----------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "home": str(self.config.home),
            **self.backend.describe(),
            "policy": self.dispatcher.policy_name,
            "running": len(self.dispatcher.running),
            "queued": self.dispatcher.queued,
        }


async def boot(config: KernelConfig | None = None, backend: Backend | None = None) -> Kernel:
    """Build and start a kernel: the one factory for the CLI, the shell and the tests."""
    kernel = Kernel(config or KernelConfig(), backend=backend)
    try:
        await kernel.start()
    except BaseException:
        kernel.close_storage()
        raise
    return kernel
