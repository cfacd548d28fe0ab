"""One backend made of several endpoints (Ollama servers, simulated ones) under ONE scheduler.

The pool's `slots` are the sum of its endpoints'; the dispatcher admits at most
`available_slots()` calls (the slots of the endpoints that are up) and the pool sends each call to
the endpoint that served the conversation's last turn when it has a free slot (its prompt cache holds the
conversation), else the endpoint with the most free slots. An endpoint that fails with a transient error (see
`kernel.llm.retry`) is marked down with that error and probed in the background with back-off
(`ping()` where the endpoint has one, else `list_models()`, else the cool-down alone); when it
answers again it is marked up and the dispatcher is woken (`wake`, set by the dispatcher) to use
its slots. The call that failed goes on at once on another endpoint with a free slot, continuing
after what it had produced; when there is none, the error goes to the dispatcher, which retries
the call after its back-off. While every endpoint is down, calls still go out (and fail, and are
retried, and in the end fail with one line), so no call waits for ever on a dead pool.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from kernel.llm.backend import Backend, BackendError, BackendUnavailable, Chunk, LLMRequest
from kernel.llm.retry import RetryPolicy, explain, is_transient
from kernel.llm.simulated import SimulatedBackend

log = logging.getLogger("aios.pool")

HOMES = 4096  # conversations whose endpoint the pool remembers (least recently served first out)


@dataclass(eq=False)
class Endpoint:
    """One member of a pool and what the pool knows about it."""

    backend: Backend
    name: str
    up: bool = True
    in_flight: int = 0
    calls: int = 0  # calls sent to it, retries included
    failures: int = 0
    error: str | None = None  # the last error it failed with
    down_since: float | None = None
    busy_s: float = 0.0  # slot-seconds spent serving calls
    last_used: float = 0.0
    probe: asyncio.Task[None] | None = None

    @property
    def free(self) -> int:
        return self.backend.slots - self.in_flight

    def describe(self) -> dict[str, Any]:
        return {"endpoint": self.name, "backend": self.backend.name, "model": self.backend.model,
                "state": "up" if self.up else "down", "slots": self.backend.slots, "in_flight": self.in_flight,
                "calls": self.calls, "failures": self.failures, "error": self.error,
                "down_since": self.down_since, "busy_s": round(self.busy_s, 3)}


class PoolBackend:
    name: ClassVar[str] = "pool"

    def __init__(self, endpoints: list[Backend], probe: RetryPolicy | None = None,
                 probe_timeout: float = 2.0) -> None:
        if not endpoints:
            raise BackendError("a pool needs at least one endpoint")
        self.endpoints = [Endpoint(b, getattr(b, "host", None) or f"{b.name}-{i}") for i, b in enumerate(endpoints)]
        self.probe = probe or RetryPolicy(base=0.5, cap=5.0)
        self.probe_timeout = probe_timeout
        self.wake: Callable[[], None] | None = None  # set by the dispatcher: capacity grew
        self.failovers = 0  # calls moved to another endpoint mid-way
        self._homes: OrderedDict[bytes, Endpoint] = OrderedDict()  # conversation -> the endpoint that last served it
        self.home_hits = 0  # calls sent back to the endpoint holding their conversation, so far

    @property
    def slots(self) -> int:
        return sum(ep.backend.slots for ep in self.endpoints)

    @property
    def model(self) -> str:
        up = [ep for ep in self.endpoints if ep.up] or self.endpoints
        return up[0].backend.model

    @property
    def context_window(self) -> int:
        return min(ep.backend.context_window for ep in self.endpoints)

    def available_slots(self) -> int:
        """Slots of the endpoints that are up; all of them while none is (calls go out, fail, are retried)."""
        return sum(ep.backend.slots for ep in self.endpoints if ep.up) or self.slots

    def count_tokens(self, text: str) -> int:
        return self.endpoints[0].backend.count_tokens(text)

    # -- routing -----------------------------------------------------------------------------
    @staticmethod
    def conversation(request: LLMRequest) -> bytes:
        """Who a request is, across its turns: its first two messages (an agent's system prompt and task)."""
        opening = [(m.get("role"), m.get("content")) for m in request.messages[:2]]
        return hashlib.blake2b(repr(opening).encode(), digest_size=16).digest()

    def _pick(self, tried: set[Endpoint], home: Endpoint | None = None) -> Endpoint | None:
        """The endpoint that served this conversation last if it is up with a free slot (its prompt cache holds
        the conversation: an agent's next turn reads only what is new there), else the least loaded endpoint not
        tried yet: up ones first, down ones only while none is up."""
        if home is not None and home not in tried and home.up and home.free > 0:
            return home
        fresh = [ep for ep in self.endpoints if ep not in tried]
        up = [ep for ep in fresh if ep.up]
        if any(ep.up for ep in self.endpoints):
            if tried:  # a failover only takes a free slot; else the dispatcher retries after its back-off
                up = [ep for ep in up if ep.free > 0]
            candidates = up
        else:
            candidates = fresh
        return max(candidates, key=lambda ep: (ep.free, -ep.last_used), default=None)

    async def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        partial, carried = request.partial, 0  # what failed endpoints produced for this call
        tried: set[Endpoint] = set()
        error: BaseException | None = None
        key = self.conversation(request)
        home = self._homes.get(key)
        while (ep := self._pick(tried, home)) is not None:
            tried.add(ep)
            ep.in_flight += 1
            ep.calls += 1
            ep.last_used = time.monotonic()
            started, produced = time.perf_counter(), 0
            inner = ep.backend.stream(replace(request, partial=partial))
            try:
                async for chunk in inner:
                    if chunk.done:
                        if not ep.up:
                            self._mark_up(ep)
                        self._homes[key] = ep
                        self._homes.move_to_end(key)
                        if len(self._homes) > HOMES:
                            self._homes.popitem(last=False)
                        if ep is home:
                            self.home_hits += 1
                        yield replace(chunk, completion_tokens=chunk.completion_tokens + carried)
                        return
                    if chunk.text:
                        partial += chunk.text
                        produced += 1
                    yield chunk
                return  # ended without a final chunk: the dispatcher says so
            except BackendError as exc:
                error = explain(exc, ep.backend.model)
                if not is_transient(error):
                    raise error from (None if error is exc else exc)
                carried += produced
                self._mark_down(ep, error)
            finally:
                ep.in_flight -= 1
                ep.busy_s += time.perf_counter() - started
                await inner.aclose()
            if (nxt := self._pick(tried)) is not None:
                self.failovers += 1
                log.info("pool: %s failed (%s); the call goes on at %s", ep.name, error, nxt.name)
        raise error or BackendUnavailable("no endpoint of the pool has a free slot")

    # -- health ------------------------------------------------------------------------------
    def _mark_down(self, ep: Endpoint, error: BaseException) -> None:
        ep.failures += 1
        ep.error = str(error)
        if ep.up:
            ep.up, ep.down_since = False, time.time()
            log.info("pool: endpoint %s is down: %s", ep.name, error)
        if ep.probe is None or ep.probe.done():
            ep.probe = asyncio.get_running_loop().create_task(self._revive(ep), name=f"pool-probe-{ep.name}")

    def _mark_up(self, ep: Endpoint) -> None:
        if ep.up:
            return
        ep.up, ep.down_since = True, None
        log.info("pool: endpoint %s is up again", ep.name)
        if self.wake is not None:
            self.wake()

    async def _revive(self, ep: Endpoint) -> None:
        """Probe a down endpoint with back-off until it answers."""
        attempt = 0
        while not ep.up:
            attempt += 1
            await asyncio.sleep(self.probe.delay(attempt))
            if not ep.up and await self._ping(ep) is None:
                self._mark_up(ep)

    async def _ping(self, ep: Endpoint) -> BackendError | None:
        """None when the endpoint answers, else why not."""
        ping = getattr(ep.backend, "ping", None) or getattr(ep.backend, "list_models", None)
        if ping is None:
            return None  # nothing to ask: the cool-down is the probe, the next call tells
        try:
            answer = await asyncio.wait_for(ping(), self.probe_timeout)
        except BackendError as exc:
            return exc
        except TimeoutError:
            return BackendUnavailable(f"{ep.name} did not answer in {self.probe_timeout:g}s")
        except Exception as exc:  # a probe never fails the pool
            return BackendUnavailable(f"{ep.name}: {type(exc).__name__}: {exc}")
        return BackendUnavailable(f"{ep.name} does not answer") if answer is False else None

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        started = await asyncio.gather(*(ep.backend.start() for ep in self.endpoints), return_exceptions=True)
        answers = await asyncio.gather(*(self._ping(ep) for ep in self.endpoints))
        for ep, failed, answer in zip(self.endpoints, started, answers, strict=True):
            if isinstance(failed, BaseException):
                self._mark_down(ep, failed if isinstance(failed, BackendError) else BackendUnavailable(str(failed)))
            elif answer is not None:
                self._mark_down(ep, answer)
        if not any(ep.up for ep in self.endpoints):
            await self.close()
            raise BackendUnavailable("no endpoint of the pool answers: " +
                                     "; ".join(f"{ep.name}: {ep.error}" for ep in self.endpoints))

    async def close(self) -> None:
        probes = [ep.probe for ep in self.endpoints if ep.probe is not None]
        for probe in probes:
            probe.cancel()
        await asyncio.gather(*probes, return_exceptions=True)
        await asyncio.gather(*(ep.backend.close() for ep in self.endpoints), return_exceptions=True)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model, "slots": self.slots,
                "available_slots": self.available_slots(), "context_window": self.context_window,
                "failovers": self.failovers, "home_hits": self.home_hits,
                "endpoints": [ep.describe() for ep in self.endpoints]}


class SimEndpoint(SimulatedBackend):
    """A simulated endpoint (`sim:N` in AIOS_POOL) that tests and benchmarks can bring down and up."""

    def __init__(self, host: str = "sim", **kw: Any) -> None:
        super().__init__(**kw)
        self.host = host
        self.down = False

    def fail(self) -> None:
        """From now on: new calls cannot connect, calls in flight lose their connection at the next token."""
        self.down = True

    def recover(self) -> None:
        self.down = False

    async def ping(self) -> bool:
        return not self.down

    async def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        if self.down:
            raise BackendUnavailable(f"cannot reach {self.host}")
        inner = super().stream(request)
        try:
            async for chunk in inner:
                if self.down:
                    raise BackendError(f"connection to {self.host} lost mid-stream")
                yield chunk
        finally:
            await inner.aclose()
