"""The kernel's API for user space: the operations, for one caller.

The shell, its commands and the monitor reach the kernel through `KernelAPI`, which acts for one caller;
every owner/admin decision user space needs is made here, once. What it returns are the read models of
`kernel.api.models` (frozen, typed, `to_dict`/`from_dict`), so a view can cross a socket as it is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kernel import clock
from kernel.api.models import (
    AuditEntry,
    Grant,
    KernelMessage,
    Message,
    ModelInfo,
    ProcInfo,
    QueueEntry,
    SchedInfo,
    SizeEstimate,
    SlotInfo,
    ToolInfo,
    UserInfo,
)
from kernel.errors import InvalidArgument, KernelError, PermissionDenied
from kernel.events import Event, PermissionRequested
from kernel.llm.backend import ListsModels, PullsModels
from kernel.programs import available
from kernel.recovery import resume as resume_process

if TYPE_CHECKING:
    from kernel.access import AuditCheck, Verdict
    from kernel.kernel import Kernel
    from kernel.permissions import Answerer
    from kernel.process import Process, Signal
    from kernel.syscall import LLMCall


class KernelAPI:
    """What `caller` may see and do in `kernel`: every owner/admin decision for user space is made here."""

    def __init__(self, kernel: Kernel, caller: str | None = None) -> None:
        self._kernel = kernel
        self._caller = caller

    @property
    def caller(self) -> str:
        """Who asks: as given, or else whoever the kernel's user is now (`su` changes it)."""
        return self._caller or self._kernel.user

    def ps(self, all: bool = False, user: str | None = None) -> list[ProcInfo]:
        """Live processes, by pid; with `all`, every process this AIOS_HOME has seen; only `user`'s if given."""
        return [self.proc_info(p) for p in self._kernel.ps(all=all) if user is None or p.user == user]

    def spawn(self, program: str, argv: list[str] | tuple[str, ...] = (), *, nice: int = 0, stdin: Any = None,
              workspace: str | Path | None = None) -> Process:
        """Start agent `program` as the caller (a negative nice needs an admin; another user's workspace is not
        the caller's to work in)."""
        return self._kernel.spawn(program, argv, nice=nice, user=self.caller, stdin=stdin, workspace=workspace)

    def signal(self, pid: int, sig: Signal) -> Process:
        """Send `sig` to process `pid` (its owner and admins only)."""
        return self._kernel.signal(pid, sig, sender=self.caller)

    def renice(self, pid: int, nice: int) -> Process:
        """Change a process's niceness (its owner and admins; lowering it: admins only)."""
        return self._kernel.renice(pid, nice, sender=self.caller)

    def proc_info(self, proc: Process) -> ProcInfo:
        return ProcInfo.of_fields(self._kernel.shown(proc, self.caller))

    def table(self) -> list[ProcInfo]:
        """This boot's process table, live processes and the ones that exited lately, by pid (the monitor's)."""
        return [self.proc_info(p) for p in self._kernel.procs]

    def table_pids(self) -> list[int]:
        """The pids `table()` has now."""
        return [p.pid for p in self._kernel.procs]

    def table_rows(self, pids: Collection[int] | None = None) -> list[dict[str, Any]]:
        """`table()` as rows for the wire (`ProcInfo.from_dict` reads them), or only those of `pids`, each with
        what makes its time counters grow until the next event: `as_of` (when it was read) and `accruing` (calls
        on a slot, calls queued), so that a client draws them on without asking again."""
        now = clock.now()
        rows = []
        procs = self._kernel.procs
        for proc in procs if pids is None else filter(None, map(procs.get, sorted(pids))):
            row = self._kernel.shown(proc, self.caller)
            row["as_of"], row["accruing"] = now, list(proc.accruing())
            rows.append(row)
        return rows

    async def http_token(self, new: bool = False) -> dict[str, str]:
        """The caller's token for the HTTP front (`new`: another, the old one revoked), and the front's address
        (started if it is not running)."""
        front = await self._kernel.http_front()
        token = front.user_token(self.caller, new=new)
        return {"user": self.caller, "token": token, "url": front.url, "ollama_host": f"{front.url}/t/{token}",
                "openai_base_url": f"{front.url}/v1"}

    async def load_tools(self) -> list[dict[str, Any]]:
        """Start the caller's MCP servers that are not up yet, so their tools are listed; each server's state
        (`name`, `transport`, `state` up|stopped|disabled, `users`, `error`, `crashes`)."""
        await self._kernel.mcp.ensure(self.caller)
        return self._kernel.mcp.state()

    def describe(self) -> dict[str, Any]:
        """The backend as it describes itself, the sandbox's state, and when the kernel booted (the monitor's
        system pane)."""
        sandbox = self._kernel.sandbox.status()
        return {"backend": self._kernel.backend.describe(), "boot_time": self._kernel.boot_time,
                "sandbox": {"mode": sandbox.mode, "ok": sandbox.ok, "detail": sandbox.detail}}

    def sandbox_status(self) -> str:
        """The tool sandbox in one line, as `tools` prints it."""
        return str(self._kernel.sandbox.status())

    def tools(self, names: Iterable[str] | None = None) -> list[ToolInfo]:
        """The tools agents may call, by name, or those of `names` that exist, in that order (MCP servers' only
        once `load_tools` started them)."""
        registry = self._kernel.tools
        wanted = list(registry) if names is None else [t for n in names if (t := registry.get(n))]
        return [ToolInfo(t.name, t.description, t.timeout, t.schema) for t in wanted]

    def context_window(self) -> int:
        """The tokens a process's context may hold when it does not say (the backend's window, or the set one)."""
        return int(self._kernel.context.window())

    def agents(self) -> dict[str, str]:
        """The agent programs one may run, each with where it comes from."""
        return dict(available(self._kernel.config.home))

    @property
    def home(self) -> Path:
        """The kernel's data directory (AIOS_HOME)."""
        return Path(self._kernel.config.home)

    async def list_models(self) -> list[str]:
        """The models the backend has, the one in use among them; a server that does not answer still has that."""
        backend = self._kernel.backend
        found: list[str] = []
        if isinstance(backend, ListsModels):
            try:
                found = list(await backend.list_models())
            except Exception:  # a server that does not answer still has the model in use
                found = []
        return sorted({*found, backend.model} if backend.model else set(found))

    def pull(self, model: str) -> AsyncIterator[dict[str, Any]]:
        """Download `model` into the backend, as its progress parts; InvalidArgument where it has no models to
        pull."""
        backend = self._kernel.backend
        if not isinstance(backend, PullsModels):
            raise InvalidArgument(f"the {backend.name} backend has no models to pull (pull needs --backend ollama)")
        return backend.pull(model)

    def proc(self, pid: int) -> ProcInfo:
        """Process `pid`, live or exited, as the caller may see it (as `ps -a` shows it)."""
        return self.proc_info(self._kernel.lookup(pid))

    def model(self) -> ModelInfo:
        backend = self._kernel.backend
        return ModelInfo(backend=backend.name, model=backend.model, slots=self._kernel.dispatcher.slots,
                         context_window=int(backend.context_window or 0))

    def kmsg(self) -> list[KernelMessage]:
        """The kernel's own messages, oldest first: for the kernel's owner and admins (as Linux restricts dmesg)."""
        if self.caller != self._kernel.user and not self._kernel.is_admin(self.caller):
            raise PermissionDenied(f"{self.caller} may not read the kernel's messages (its owner and admins may)")
        return self._kernel.kmsg.messages()

    def sched(self, queue_limit: int | None = None) -> SchedInfo:
        """The scheduler now; the queue's first `queue_limit` entries (all when None), `queued` counts them all."""
        d = self._kernel.dispatcher
        now = clock.now()
        params = d.policy.describe()
        policy = str(params.pop("policy", d.policy.name))
        calls = d.queue()
        taken = calls if queue_limit is None else calls[:max(0, queue_limit)]
        running = dict(d.running)
        cmdline = self.cmdlines()
        kept = {s: k.pid for s, k in d.keeper.kept.items()} if d.keeper is not None else {}
        return SchedInfo(
            policy=policy, params=params, preemptions=d.preemptions, queued=len(calls),
            slots=tuple(_slot(slot, running.get(slot), cmdline, kept.get(slot)) for slot in range(d.slots)),
            queue=tuple(_entry(i + 1, call, now, d.policy, cmdline) for i, call in enumerate(taken)),
            estimates=tuple(SizeEstimate(**e) for e in d.sizes.describe()),
            swap=d.keeper.swap_info() if d.keeper is not None else None,
        )

    def set_sched(self, policy: str | None = None, slice: int | None = None, slots: int | None = None) -> SchedInfo:
        """Switch the policy, its slice or P, live (the kernel's owner or an admin only); the scheduler after."""
        self._kernel.sched(policy, slice=slice, slots=slots, sender=self.caller)
        return self.sched()

    # -- checks -------------------------------------------------------------------------------------
    def _may_manage(self, user: str) -> bool:
        return self._kernel.may_manage(self.caller, user)

    def is_admin(self, user: str | None = None) -> bool:
        """Whether `user` (the caller if not given) is an admin."""
        return self._kernel.is_admin(user or self.caller)

    def may_manage(self, owner: str) -> bool:
        """Whether the caller may act on what `owner` owns (their processes, files, grants)."""
        return self._may_manage(owner)

    def may_see(self, pid: int) -> bool:
        """Whether the caller may follow what process `pid` does (its owner, an admin); False for no such pid."""
        try:
            return self._may_manage(self._kernel.lookup(pid).user)
        except KernelError:
            return False

    def cmdlines(self) -> Callable[[Process], str]:
        """A process's command line as the caller may see it (another user's arguments hidden, as in `ps`);
        for views that draw many processes at once (each user is checked once)."""
        may: dict[str, bool] = {}

        def cmdline(proc: Process) -> str:
            if proc.user not in may:
                may[proc.user] = self._may_manage(proc.user)
            return proc.cmdline if may[proc.user] else proc.hidden_cmdline

        return cmdline

    def _owned(self, pid: int) -> Process:
        """The process, if the caller may read what it said and did (its owner, an admin)."""
        proc = self._kernel.lookup(pid)
        self._kernel.check_reader(proc, self.caller)
        return proc

    # -- a process itself ---------------------------------------------------------------------------
    def process(self, pid: int, *, read: bool = False) -> Process:
        """Process `pid`, of this kernel or an earlier run's (NoSuchProcess); with `read`, only if the caller may
        read what it said and did (PermissionDenied). Waiting on its `exited` is how a front end waits for it."""
        return self._owned(pid) if read else self._kernel.lookup(pid)

    def running(self, pid: int) -> Process | None:
        """Process `pid` if this kernel runs it now (not an earlier run's record), else None."""
        proc = self._kernel.procs.get(pid)
        return proc if proc is not None and proc.alive else None

    def status(self, proc: Process) -> dict[str, Any]:
        """`proc`'s fields as the caller may see them (another user's arguments and workspace hidden)."""
        return self._kernel.shown(proc, self.caller)

    # -- what a process said and did ----------------------------------------------------------------
    def model_holds(self, pid: int) -> str | None:
        """Where the model holds process `pid`'s conversation for its next call (its owner and admins only):
        a slot kept for it, a slot's prompt cache, a saved KV state; None when the backend cannot say."""
        self._owned(pid)
        return self._kernel.dispatcher.holds(pid)

    def transcript(self, pid: int) -> list[Message]:
        """The conversation of process `pid`, oldest first (its owner and admins only)."""
        self._owned(pid)
        return [Message.from_dict(m) for m in self._kernel.storage.messages(pid)]

    def events(self, pid: int | None = None, types: tuple[type[Event], ...] = (), since: float | None = None,
               last: int | None = None) -> list[Event]:
        """Stored events, oldest first: of `pid` (its owner and admins only) or of every process the caller may
        manage; of these `types`; from `since` on; only the `last` N. An event stored by another version of aios
        that this one cannot read is left out."""
        if pid is not None:
            self._owned(pid)
        rows = self._kernel.storage.events(pid=pid, types=tuple(t.__name__ for t in types), since=since, last=last)
        owners: dict[int, bool] = {}
        out = []
        for row in rows:
            event = Event.from_dict(row["data"])
            if event is None:
                continue
            of = row.get("pid")
            if pid is None and of is not None:
                if of not in owners:
                    try:
                        owners[of] = self._may_manage(self._kernel.lookup(of).user)
                    except KernelError:
                        owners[of] = False
                if not owners[of]:
                    continue
            out.append(event)
        return out

    def resume(self, pid: int) -> Process:
        """Start process `pid` again from its saved conversation, as a new process (its owner and admins only)."""
        return resume_process(self._kernel, pid, sender=self.caller)

    # -- quotas -------------------------------------------------------------------------------------------
    def quotas(self) -> dict[str, Any]:
        """Tokens per minute per user (used, limit; 0: none), live processes, and the admission limits."""
        q, procs = self._kernel.quotas, self._kernel.procs
        users = sorted({p.user for p in procs} | set(q.per_user) | {self.caller})
        rows = [{"user": u, "used": q.used(u), "limit": q.limit(u),
                 "processes": sum(1 for p in procs.alive() if p.user == u)} for u in users]
        return {"users": rows, "max_procs": q.max_procs, "max_queued": q.max_queued}

    def quota_use(self, user: str) -> str:
        """`used/limit` tokens in the last minute, as `ps -l` shows it."""
        return self._kernel.quotas.describe(user)

    def set_quota(self, user: str, tokens: int) -> None:
        """Tokens per minute for `user` (`*`: everyone without their own); admins only."""
        if not self._kernel.is_admin(self.caller):
            raise PermissionDenied("only an admin may change quotas")
        if tokens < 0:
            raise InvalidArgument("tokens per minute must be 0 or more")
        if user == "*":
            self._kernel.quotas.tokens_per_minute = tokens
        else:
            self._kernel.quotas.per_user[user] = tokens

    # -- memory: the caller's own notes ---------------------------------------------------------------
    def remember(self, text: str, tags: str = "") -> int:
        """Keep a note (secrets are masked); its id."""
        return self._kernel.memory.add(self.caller, text, tags=tags)

    def recall(self, query: str, limit: int = 5) -> list[dict[str, Any]]:
        """The caller's notes that match `query`, best first (each with its bm25 `score`)."""
        return self._kernel.memory.search(self.caller, query, limit=limit)

    def notes(self, limit: int = 50) -> list[dict[str, Any]]:
        """The caller's notes, newest first."""
        return self._kernel.memory.list(self.caller, limit=limit)

    def forget(self, note: int) -> bool:
        """Remove one of the caller's notes; False when there is no such note of theirs."""
        return self._kernel.memory.remove(self.caller, note)

    # -- file versions: what a process's tools wrote (its owner and admins only) ------------------------
    def _files_of(self, pid: int) -> int:
        proc = self._kernel.lookup(pid)
        if not self._may_manage(proc.user):
            raise PermissionDenied(f"({pid}) - Permission denied: {self.caller} may not read {proc.user}'s files")
        return pid

    def files(self, pid: int) -> list[dict[str, Any]]:
        """The files process `pid`'s tools wrote, each with its number of versions."""
        return self._kernel.files.files(self._files_of(pid))

    def file_log(self, pid: int, path: str) -> list[dict[str, Any]]:
        """Every version kept of `path`, oldest first."""
        return self._kernel.files.log(self._files_of(pid), path)

    def file_version(self, pid: int, path: str, version: int) -> bytes:
        return self._kernel.files.get(self._files_of(pid), path, version)

    def restore_file(self, pid: int, path: str, version: int) -> int:
        """Write version `version` of `path` back into the process's workspace; the new version's number."""
        pid = self._files_of(pid)
        return self._kernel.files.restore(pid, path, version, self._kernel.workspace(pid))

    # -- users ----------------------------------------------------------------------------------------
    def users(self) -> list[UserInfo]:
        """Everyone known: the policy file, the admins, the users table."""
        return [UserInfo.from_dict(u) for u in self._kernel.access.users()]

    def user_names(self) -> list[str]:
        """Every user this AIOS_HOME has seen: this kernel's, the admins, and whoever ran a process."""
        seen = {self._kernel.user, *self._kernel.config.admins}
        seen.update(row["user"] for row in self._kernel.storage.process_rows())
        return sorted(seen)

    def add_user(self, name: str, groups: tuple[str, ...] | list[str] = (), admin: bool = False) -> None:
        """Add (or update) a user (admins only)."""
        self._kernel.access.add_user(name, list(groups), admin=admin, by=self.caller)

    # -- access control ---------------------------------------------------------------------------------
    def _for(self, user: str | None) -> str:
        user = user or self.caller
        if not self._may_manage(user):
            raise PermissionDenied(f"only an admin may act on {user}'s grants")
        return user

    @property
    def policy_error(self) -> str | None:
        """What is wrong with the policy file, if anything (its rules are not in force meanwhile)."""
        return self._kernel.access.policy_error

    def grants(self, user: str | None = None) -> list[Grant]:
        """The rules in force for `user` (default: the caller; another user's: admins only)."""
        return [Grant.from_dict(g) for g in self._kernel.access.grants(self._for(user))]

    def grant(self, rule: str, user: str | None = None, always: bool = False, effect: str = "allow") -> str:
        """Allow (or deny) `rule` for `user`, for this session or always; the rule as saved."""
        scope = "always" if always else "session"
        return str(self._kernel.access.grant(self._for(user), rule, scope=scope, effect=effect, by=self.caller))

    def revoke(self, rule: str, user: str | None = None) -> bool:
        """Take a grant back; False when there was none."""
        return bool(self._kernel.access.revoke(self._for(user), rule))

    def trust(self, path: Path) -> None:
        """Let `path`'s `.aios/policy.toml` count, as it is now."""
        self._kernel.access.trust(path, self.caller)

    def check(self, tool: str, target: str = "", user: str | None = None) -> Verdict:
        """What a call of `tool` on `target` would get: allow, deny or ask, and the rule that says so."""
        return self._kernel.access.check(self._for(user), tool, target)

    def audit(self, limit: int | None = None, pid: int | None = None) -> list[AuditEntry]:
        """The audit log, oldest first (with `limit`, the newest `limit` rows): an admin's has every user's
        calls, anyone else's their own."""
        user = None if self._kernel.is_admin(self.caller) else self.caller
        return [AuditEntry.from_dict(r) for r in self._kernel.access.audit_rows(limit=limit, user=user, pid=pid)]

    def verify_audit(self) -> AuditCheck:
        """Recompute the audit log's hash chain."""
        return self._kernel.access.verify()

    # -- permission requests ----------------------------------------------------------------------------
    def attach_answerer(self, exclusive: bool = False) -> Answerer:
        """This front end can ask a person now (`exclusive`: it asks in place of the others while attached)."""
        return self._kernel.permissions.attach(exclusive=exclusive)

    def may_answer(self, request: PermissionRequested) -> bool:
        """A request is for its process's owner to answer (or an admin)."""
        return self._may_manage(request.user)

    def pending_permissions(self) -> list[PermissionRequested]:
        """Requests still waiting for an answer, oldest first: the caller's processes' (an admin's: all)."""
        return [r for r in self._kernel.permissions.pending() if self.may_answer(r)]

    def answer_permission(self, request_id: int, decision: str) -> bool:
        """Answer an open request (once, session, always, deny); False when it is no longer open. A request of
        another user's process is theirs to answer (or an admin's)."""
        request = next((r for r in self._kernel.permissions.pending() if r.request_id == request_id), None)
        if request is None:
            return False
        if not self.may_answer(request):
            raise PermissionDenied(f"{self.caller} may not answer {request.user}'s permission request")
        return self._kernel.permissions.answer(request_id, decision)

    async def permissions_changed(self) -> None:
        """Return at the next change: a front end came or went, or a request was decided."""
        await self._kernel.permissions.changed()

    def now(self) -> float:
        """The kernel's clock, on which request deadlines are set."""
        return self._kernel.permissions.clock()



def _slot(slot: int, call: LLMCall | None, cmdline: Callable[[Process], str], kept_for: int | None = None
          ) -> SlotInfo:
    if call is None:
        return SlotInfo(slot, kept_for=kept_for)
    return SlotInfo(slot, pid=call.pid, user=call.proc.user, cmd=cmdline(call.proc), tokens=call.chunks)


def _entry(pos: int, call: LLMCall, now: float, policy: Any, cmdline: Callable[[Process], str]) -> QueueEntry:
    try:
        reason = str(policy.reason(call))
    except Exception as exc:  # a policy bug must not take a view of the scheduler down
        reason = f"? ({type(exc).__name__})"
    return QueueEntry(pos=pos, pid=call.pid, user=call.proc.user, nice=call.proc.nice, cmd=cmdline(call.proc),
                      wait_s=round(now - call.queued_at, 3), reason=reason)
