"""Wait for a compression at most a request's budget; let the rest go on in the background.

    Background                       one per app, carried across config reloads
    ├── join(key) -> Flight          the compression for one single-flight cache key, and how
    │                                many requests wait on it
    ├── leave(flight, fill=)         a request stops waiting: the work goes on as a background
    │                                job (bounded queue, deduplicated by key; full -> dropped and
    │                                counted), or, with no fill wanted and nobody waiting, is
    │                                cancelled (the engine stops within one forward pass)
    └── close()                      shutdown: every job cancelled
    wait(...)                        a request's side: cache lookup, then at most `wait_s` for
                                     the compression, or not at all when the engine predicts
                                     it runs over the budget

The compression itself runs inside the cache's single-flight task (`CompressionCache.
get_or_compute`), so a job started by one request fills the same cache entry every later
request for that document asks for. While anyone waits on a flight its engine work runs at
foreground priority; once nobody does it drops to background priority (`Control.background`),
and rises again when a new request joins it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from cprs_engine.result import CompressionResult
from cprs_engine.scheduler import Control
from proxy.cache import CompressionCache
from proxy.metrics import Metrics

log = logging.getLogger(__name__)
LOOKUP_GRACE_S = 1.0  # a cache lookup is bounded by the store's own timeout; this is a backstop


@dataclass
class Flight:
    key: str
    control: Control = field(default_factory=Control)
    waiters: int = 0
    queued: bool = False  # adopted as a background job
    task: asyncio.Task | None = None  # the cache's single-flight task, once it computes
    started: asyncio.Event = field(default_factory=asyncio.Event)  # the lookup missed
    predicted_s: float | None = None
    t0: float = 0.0


@dataclass(frozen=True)
class Waited:
    """A request's view of one compression: the result, or why it went without."""

    result: CompressionResult | None
    cache: str  # hit | miss | pending
    skipped: str | None = None  # over_budget | timeout, when result is None


class Background:
    def __init__(self, metrics: Metrics, *, limit: int = 64, timeout_s: float = 600.0):
        self.metrics = metrics
        self.limit = limit
        self.timeout_s = timeout_s
        self._flights: dict[str, Flight] = {}

    def configure(self, *, limit: int, timeout_s: float) -> None:
        """New settings from a reload; jobs already queued keep running."""
        self.limit, self.timeout_s = limit, timeout_s

    @property
    def depth(self) -> int:
        return sum(f.queued for f in self._flights.values())

    def join(self, key: str) -> Flight:
        flight = self._flights.get(key)
        if flight is None or (flight.task is not None and flight.task.done()):
            flight = self._flights[key] = Flight(key)  # a finished one's result is in the cache
        flight.waiters += 1
        flight.control.background = False
        return flight

    def leave(self, flight: Flight, *, fill: bool) -> bool:
        """One waiter is gone. True when the compression goes on in the background."""
        flight.waiters -= 1
        running = flight.task is not None and not flight.task.done()
        if flight.waiters > 0:
            return running
        if not running:
            self._forget(flight)
            return False
        flight.control.background = True
        if flight.queued:
            return True
        if fill and self.depth < self.limit:
            flight.queued = True
            self._gauge()
            return True
        if fill:
            self.metrics.background_jobs.labels("dropped").inc()
        self._cancel(flight)
        return False

    def started(self, flight: Flight, predicted_s: float | None) -> None:
        """Called from inside the single-flight task when the lookup missed."""
        flight.task = asyncio.current_task()
        flight.predicted_s, flight.t0 = predicted_s, time.perf_counter()
        flight.started.set()
        assert flight.task is not None
        flight.task.add_done_callback(lambda t, f=flight: self._done(f, t))

    def _done(self, flight: Flight, task: asyncio.Task) -> None:
        if flight.queued:
            ok = not task.cancelled() and task.exception() is None
            self.metrics.background_jobs.labels("done" if ok else "failed").inc()
            if ok and flight.predicted_s is not None:
                actual = time.perf_counter() - flight.t0
                self.metrics.predicted_seconds.inc(flight.predicted_s)
                self.metrics.actual_seconds.inc(actual)
        flight.queued = False
        if flight.waiters == 0:
            self._forget(flight)
        self._gauge()

    def _cancel(self, flight: Flight) -> None:
        flight.control.cancel.set()
        if flight.task is not None:
            flight.task.cancel()

    def _forget(self, flight: Flight) -> None:
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]

    def _gauge(self) -> None:
        self.metrics.background_depth.set(self.depth)

    async def close(self) -> None:
        tasks = []
        for flight in list(self._flights.values()):
            self._cancel(flight)
            if flight.task is not None:
                tasks.append(flight.task)
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        self._flights.clear()
        self._gauge()


def _over(flight: Flight, wait_s: float) -> bool:
    """Whether the flight is predicted to end later than `wait_s` from now."""
    if wait_s <= 0:
        return True
    if flight.predicted_s is None:
        return False
    return flight.predicted_s - (time.perf_counter() - flight.t0) > wait_s


async def wait(
    background: Background,
    cache: CompressionCache,
    key: str,
    run: Callable[[Control], Awaitable[CompressionResult]],
    *,
    ttl: int,
    wait_s: float,
    fill: bool,
    cap_s: float,
    predict: Callable[[], float | None],
) -> Waited:
    """The cached result, or the compression's if it is done within `wait_s` of the miss.

    `run(control)` calls the engine; it runs under `background.timeout_s` when `fill`, else
    under `cap_s`. A prediction over `wait_s`, or a `wait_s` of 0, gives up at once (skipped:
    over_budget). Engine
    errors propagate to the caller, as from `get_or_compute`.
    """
    fill = fill and cache.enabled  # with no cache there is nothing to fill
    flight = background.join(key)

    async def compute() -> CompressionResult:
        predicted = predict()
        background.started(flight, predicted)
        if _over(flight, wait_s):
            flight.control.background = True  # its waiter leaves; a new one would raise it
            await asyncio.sleep(0)  # let the waiter leave (and the queue admit or drop) first
        async with asyncio.timeout(background.timeout_s if fill else cap_s):
            return await run(flight.control)

    waiter = asyncio.ensure_future(cache.get_or_compute(key, compute, ttl))
    left = False
    try:
        if not flight.started.is_set():
            missed = asyncio.ensure_future(flight.started.wait())
            await asyncio.wait(
                {waiter, missed}, timeout=LOOKUP_GRACE_S, return_when="FIRST_COMPLETED"
            )
            missed.cancel()
        over = not waiter.done() and _over(flight, wait_s)
        if not waiter.done() and not over:
            await asyncio.wait({waiter}, timeout=wait_s)
        if waiter.done():
            result, status = waiter.result()
            return Waited(result, status)
        waiter.cancel()
        reason = "over_budget" if over else "timeout"
        left = True
        pending = background.leave(flight, fill=fill)
        status = "pending" if pending else "miss" if cache.enabled else "off"
        return Waited(None, status, reason)
    finally:
        if not waiter.done():
            waiter.cancel()
        if not left:
            background.leave(flight, fill=fill)
