"""The engine's scheduler: one worker thread runs the critic's forward passes for every request.

    Scheduler(compressor, max_jobs=64, order="srf")
    ├── plan(query, context, ...) -> Job     caller's thread: checks, tokens, windows
    ├── submit(job) -> Future                queue it; `Busy` (429) when max_jobs are queued
    ├── finish(job) -> CompressionResult     caller's thread: tags to text (decoding)
    ├── compress(...)                        the three in a row, for blocking callers
    ├── predict_s(chars)                     seconds until a new document of `chars` is done
    └── close()                              every queued job fails with Cancelled

Each pass the worker picks the job to serve: background jobs (`Control.background`: nobody
waits for them) after every waited-on one, then shortest remaining first (`order="srf"`), so
a small request arriving while a 128K-token document compresses waits for one pass, not the
whole document; `order="fifo"` runs jobs whole in arrival order (the benchmark's baseline).
It takes up to rho windows from that job, and fills the pass with windows of other jobs
that have the same prompt+query prefix and tag word (the model computes a shared prefix once
per pass, so only those can share one). Every window keeps its own padding-masked row: a
window's tags do not depend on what it is batched with (tests/cprs_engine/test_scheduler.py
checks that on the shipped critic). A job whose `Control.cancel` is set leaves before the next
pass. Every pass feeds `throughput` (context tokens/s), which is what `predict_s` divides by.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any

from cprs_engine import units
from cprs_engine.errors import Cancelled, CPRSError

ORDERS = ("srf", "fifo")


class Busy(CPRSError):
    """The scheduler's queue is full: try again later (HTTP 429 with Retry-After)."""

    status = 429
    code = "engine_busy"

    def __init__(self, message: str, *, retry_after_s: float = 1.0):
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass
class Control:
    """How a caller steers one compression while it runs: cancel it, or lower its priority."""

    cancel: threading.Event = field(default_factory=threading.Event)
    background: bool = False  # nobody waits for it: runs after every waited-on request


class Throughput:
    """Context tokens/s and chars/token of an engine, as exponential moving averages.

    Fed as work happens - each forward pass in the scheduler, each response from a remote
    replica - so a prediction follows the machine's current speed. `predict_s(chars)`: seconds
    to score a context of `chars` characters, None until something was measured.
    """

    def __init__(self, alpha: float = 0.2):
        self.alpha = alpha
        self.tokens_per_s: float | None = None
        self.chars_per_token: float | None = None
        self._lock = threading.Lock()

    def record(self, tokens: int, seconds: float) -> None:
        if tokens > 0 and seconds > 0:
            with self._lock:
                self.tokens_per_s = self._mix(self.tokens_per_s, tokens / seconds)

    def record_chars(self, chars: int, tokens: int) -> None:
        if chars > 0 and tokens > 0:
            with self._lock:
                self.chars_per_token = self._mix(self.chars_per_token, chars / tokens)

    def set(self, tokens_per_s: Any, chars_per_token: Any) -> None:
        """Take an engine's own figures (a replica's /readyz); bad values are ignored."""
        with self._lock:
            for name, value in (
                ("tokens_per_s", tokens_per_s),
                ("chars_per_token", chars_per_token),
            ):
                if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
                    setattr(self, name, float(value))

    def _mix(self, old: float | None, new: float) -> float:
        return new if old is None else old + self.alpha * (new - old)

    def predict_s(self, chars: int, backlog_tokens: int = 0) -> float | None:
        if not self.tokens_per_s or not self.chars_per_token:
            return None
        return (chars / self.chars_per_token + backlog_tokens) / self.tokens_per_s

    def as_dict(self) -> dict[str, float | None]:
        return {"tokens_per_s": self.tokens_per_s, "chars_per_token": self.chars_per_token}


@dataclass(eq=False)
class Job:
    plan: Any  # compressor.Plan
    control: Control
    budget_tokens: int | None
    seq: int
    budget_unit: str | None = None  # what budget_tokens counts (cprs_engine/units.py)
    outputs: Any = None  # compressor.Outputs
    next: int = 0  # windows[next:] are still to run
    future: Future = field(default_factory=Future)
    model_s: float = 0.0
    left_tokens: int = 0

    @property
    def key(self) -> tuple:
        return (tuple(self.plan.prefix), self.plan.tag)


class Scheduler:
    def __init__(self, compressor, *, max_jobs: int = 64, order: str = "srf", start: bool = True):
        """`start=False`: the worker waits for `start()` (tests queue jobs first)."""
        assert order in ORDERS, f"order must be one of {ORDERS}"
        self.compressor = compressor
        self.max_jobs = max_jobs
        self.order = order
        self.throughput = Throughput()
        self._jobs: list[Job] = []
        self._seq = itertools.count()
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="cprs-scheduler", daemon=True)
        if start:
            self.start()

    def start(self) -> None:
        self._thread.start()

    @property
    def engine_version(self) -> str:
        return self.compressor.engine_version

    @property
    def depth(self) -> int:
        with self._cv:
            return len(self._jobs)

    def plan(self, query, context, *, granularity=None, instruction=None, prompt=None,
             budget_tokens=None, budget_unit=None, control: Control | None = None,
             doc_type=None, elision=None) -> Job:  # fmt: skip
        units.check_budget(budget_tokens, budget_unit)
        plan = self.compressor.plan(
            query, context, granularity=granularity, instruction=instruction, prompt=prompt,
            doc_type=doc_type, elision=elision,
        )  # fmt: skip
        self.throughput.record_chars(len(context), len(plan.ids))
        job = Job(plan, control or Control(), budget_tokens, next(self._seq), budget_unit)
        job.outputs = plan.empty_outputs()
        job.left_tokens = len(plan.ids)
        return job

    def submit(self, job: Job) -> Future:
        with self._cv:
            if self._closed:
                raise Cancelled("the engine is shutting down")
            if len(self._jobs) >= self.max_jobs:
                backlog = sum(j.left_tokens for j in self._jobs)
                wait = self.throughput.predict_s(0, backlog)
                raise Busy(
                    f"the engine has {len(self._jobs)} compressions queued; try again later",
                    retry_after_s=max(1.0, min(wait or 1.0, 600.0)),
                )
            self._jobs.append(job)
            self._cv.notify()
        return job.future

    def finish(self, job: Job):
        scored = self.compressor.scored(job.plan, job.outputs, job.model_s)
        return self.compressor.decode(
            scored, budget_tokens=job.budget_tokens, budget_unit=job.budget_unit
        )

    def compress(self, query, context, *, granularity=None, instruction=None,
                 budget_tokens=None, budget_unit=None, prompt=None,
                 control: Control | None = None, doc_type=None, elision=None):  # fmt: skip
        job = self.plan(
            query, context, granularity=granularity, instruction=instruction, prompt=prompt,
            budget_tokens=budget_tokens, budget_unit=budget_unit, control=control,
            doc_type=doc_type, elision=elision,
        )  # fmt: skip
        self.submit(job).result()
        return self.finish(job)

    def predict_s(self, chars: int) -> float | None:
        """Seconds a new waited-on document of `chars` characters takes: its own tokens plus
        the waited-on work that runs before it (shorter jobs, under shortest-remaining-first)."""
        cpt = self.throughput.chars_per_token
        if cpt is None:
            return None
        mine = chars / cpt
        with self._cv:
            ahead = [j for j in self._jobs if not j.control.background]
            if self.order == "srf":
                ahead = [j for j in ahead if j.left_tokens <= mine]
            backlog = sum(j.left_tokens for j in ahead)
        return self.throughput.predict_s(chars, backlog)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            jobs, self._jobs = self._jobs, []
            self._cv.notify_all()
        for job in jobs:
            _fail(job, Cancelled("the engine is shutting down"))

    # the worker thread

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._jobs and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                rows, served = self._pick()
            if not rows:
                continue
            head = served[0]
            t = time.perf_counter()
            try:
                self.compressor.score_pass(head.plan.prefix, head.plan.tag, rows)
            except Exception as exc:  # noqa: BLE001 - every job in the pass gets the error
                with self._cv:
                    for job in served:
                        self._drop(job)
                for job in served:
                    _fail(job, exc)
                continue
            secs = time.perf_counter() - t
            tokens = sum(e - s for _, w, _ in rows for s, e in w)
            self.throughput.record(tokens, secs)
            done = []
            with self._cv:
                for job in served:
                    n = sum(e - s for _, w, out in rows if out is job.outputs for s, e in w)
                    job.model_s += secs * n / max(tokens, 1)
                    if job.next >= len(job.plan.windows):
                        self._drop(job)
                        done.append(job)
            for job in done:
                _succeed(job)

    def _pick(self) -> tuple[list[tuple], list[Job]]:
        """Under the lock: the rows of the next pass and the jobs they belong to (head first)."""
        for job in [j for j in self._jobs if j.control.cancel.is_set() or j.future.done()]:
            self._drop(job)
            done = job.next
            _fail(
                job,
                Cancelled(f"compression cancelled after {done} of {len(job.plan.windows)} windows"),
            )
        if not self._jobs:
            return [], []
        if self.order == "srf":
            head = min(self._jobs, key=lambda j: (j.control.background, j.left_tokens, j.seq))
        else:
            head = min(self._jobs, key=lambda j: (j.control.background, j.seq))
        rho = self.compressor.windows_per_pass
        rows: list[tuple] = []
        served: list[Job] = []
        candidates = [head] + sorted(
            (j for j in self._jobs if j is not head and j.key == head.key),
            key=lambda j: (
                j.control.background,
                j.left_tokens if self.order == "srf" else 0,
                j.seq,
            ),
        )
        for job in candidates:
            if len(rows) >= rho:
                break
            take = job.plan.windows[job.next : job.next + rho - len(rows)]
            if not take:
                continue
            job.next += len(take)
            job.left_tokens -= sum(e - s for w in take for s, e in w)
            rows.extend((job.plan.ids, w, job.outputs) for w in take)
            served.append(job)
        return rows, served

    def _drop(self, job: Job) -> None:
        if job in self._jobs:
            self._jobs.remove(job)


def _fail(job: Job, exc: BaseException) -> None:
    with contextlib.suppress(InvalidStateError):  # its caller cancelled the future meanwhile
        job.future.set_exception(exc)


def _succeed(job: Job) -> None:
    with contextlib.suppress(InvalidStateError):
        job.future.set_result(job)


async def compress_async(
    scheduler: Scheduler,
    to_thread: Callable[[Callable[[], Any]], Awaitable[Any]],
    query: str,
    context: str,
    *,
    control: Control | None = None,
    **opts: Any,
):
    """`Scheduler.compress` for an event loop: tokenizing and decoding in `to_thread`, the wait
    for the passes in no thread at all. A cancelled await cancels the job before its next pass."""
    import asyncio

    control = control or Control()
    job = await to_thread(
        functools.partial(scheduler.plan, query, context, control=control, **opts)
    )
    future = scheduler.submit(job)
    try:
        await asyncio.wrap_future(future)
    except BaseException:
        control.cancel.set()
        raise
    return await to_thread(functools.partial(scheduler.finish, job))
