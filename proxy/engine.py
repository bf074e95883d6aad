"""Where compression runs: in this process (`LocalEngine`) or on `cprs engine serve` replicas
(`RemoteEngines`). Both offer the same small async interface, so the request path does not care.

    engine_version: str               part of every cache key: a new critic never serves old spans
    ready() -> (bool, reason)         for /readyz
    async start() / close()
    async compress(query, context, *, granularity, prompt, instruction, budget_tokens,
                   budget_unit, elision?) -> CompressionResult   raises cprs_engine.errors.CPRSError

The local engine loads the critic in a background thread at startup (the server answers at once;
until the model is ready, compressions fail, which fail-open policies turn into pass-through).
Its forward passes run in the engine scheduler's thread (cprs_engine/scheduler.py: waited-on
requests before background ones, shortest first, windows batched), tokenizing and decoding in a
small thread pool, so the event loop never blocks on torch.
Remote engines are probed in the background; requests go to the healthy replica with the fewest
compressions in flight, and move to another replica on a connection failure or a full queue
(429). When every replica is full, a waited-on request fails (open: it goes as sent) and a
background job waits the replicas' Retry-After and tries again, within its own time cap.
Each replica's throughput comes from its /readyz and from every answer's own timings, so
`predict_s` follows what the replicas measure.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from cprs_engine.errors import (
    CheckpointNotFound,
    ContextTooLong,
    CPRSError,
    EngineFailure,
    InvalidInput,
)
from cprs_engine.result import CompressionResult
from cprs_engine.scheduler import Control, Scheduler, Throughput, compress_async
from cprs_engine.wire import CompressRequest
from proxy.config import EngineSettings

log = logging.getLogger(__name__)


class Engine(Protocol):
    engine_version: str

    def ready(self) -> tuple[bool, str]: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def compress(
        self,
        query: str,
        context: str,
        *,
        granularity: str | None = None,
        prompt: str | None = None,
        instruction: str | None = None,
        budget_tokens: int | None = None,
        budget_unit: str | None = None,
        control: Control | None = None,
        elision: str | None = None,
    ) -> CompressionResult: ...

    # Optional: seconds this engine expects to need for a context of `chars` characters, now
    # (None: no estimate yet). Requests skip waiting for what is predicted over their budget.
    # def predict_s(self, chars: int) -> float | None: ...


class LocalEngine:
    """`cprs_engine.Compressor` in this process, loaded lazily, run in worker threads."""

    def __init__(self, settings: EngineSettings):
        self.settings = settings
        self.engine_version = "local-loading"
        self._scheduler: Scheduler | None = None
        self._error: str | None = None
        self._pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="cprs-engine")
        self._load_task: asyncio.Future | None = None

    def ready(self) -> tuple[bool, str]:
        if self._scheduler is not None:
            return True, "loaded"
        return False, self._error or "loading the critic"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._load_task = loop.run_in_executor(self._pool, self._load)

    def _load(self) -> None:
        try:
            from cprs_engine import Compressor

            opts = {
                k: v
                for k, v in (
                    ("window_tokens", self.settings.window_tokens),
                    ("windows_per_pass", self.settings.windows_per_pass),
                    ("precision", self.settings.precision),
                )
                if v is not None
            }
            compressor = Compressor.load(self.settings.checkpoint, **opts)
        except CPRSError as exc:
            self._error = exc.message
            log.error("compression engine unavailable: %s", exc.message)
            return
        except Exception as exc:  # noqa: BLE001 - reported on /readyz; requests fail open
            self._error = f"{type(exc).__name__}: {exc}"
            log.exception("compression engine failed to load")
            return
        self.engine_version = str(getattr(compressor, "engine_version", "local"))
        self._scheduler = Scheduler(
            compressor, max_jobs=self.settings.scheduler_queue, order=self.settings.scheduler
        )
        log.info("compression engine ready (%s)", self.engine_version)

    def predict_s(self, chars: int) -> float | None:
        return None if self._scheduler is None else self._scheduler.predict_s(chars)

    async def compress(self, query, context, *, control: Control | None = None, **options):
        """`options`: the Engine protocol's, checked by CompressRequest (a typo is a TypeError)."""
        request = CompressRequest(query, context, **options)
        scheduler = self._scheduler
        if scheduler is None:
            raise (CheckpointNotFound if self._error else EngineFailure)(
                self._error or "the compression engine is still loading"
            )
        loop = asyncio.get_running_loop()
        try:
            return await compress_async(
                scheduler,
                lambda fn: loop.run_in_executor(self._pool, fn),
                control=control,
                **request.kwargs(),
            )
        except CPRSError:
            raise
        except Exception as exc:  # torch/runtime errors become the engine's own
            raise EngineFailure(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        if self._scheduler is not None:
            self._scheduler.close()
        self._pool.shutdown(wait=False, cancel_futures=True)


class _Replica:
    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.healthy = False
        self.in_flight = 0
        self.version: str | None = None
        self.throughput = Throughput()  # its /readyz figures, then each answer's own timing


class RemoteEngines:
    """`cprs engine serve` replicas by URL: health checks, least-in-flight, retry elsewhere."""

    def __init__(self, settings: EngineSettings, *, transport: Any = None):
        import httpx

        self.settings = settings
        self.replicas = [_Replica(u) for u in settings.urls]
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.timeout_s, connect=min(5.0, settings.timeout_s)),
            transport=transport,
        )
        self._task: asyncio.Task | None = None
        self._rr = 0
        self._fallback_version = (
            "remote-"
            + hashlib.sha256(",".join(sorted(r.url for r in self.replicas)).encode()).hexdigest()[
                :12
            ]
        )

    @property
    def engine_version(self) -> str:
        versions = sorted({r.version for r in self.replicas if r.healthy and r.version})
        return versions[0] if len(versions) == 1 else self._fallback_version

    def ready(self) -> tuple[bool, str]:
        up = sum(r.healthy for r in self.replicas)
        return up > 0, f"{up}/{len(self.replicas)} engine replicas healthy"

    async def start(self) -> None:
        await self.check_all()
        self._task = asyncio.get_running_loop().create_task(self._health_loop())

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.health_interval_s)
            await self.check_all()

    async def check_all(self) -> None:
        await asyncio.gather(*(self._check(r) for r in self.replicas))

    async def _check(self, r: _Replica) -> None:
        try:
            resp = await self._client.get(f"{r.url}/readyz", timeout=2.0)
            ok = resp.status_code == 200
            data = resp.json() if ok else {}
        except Exception:  # noqa: BLE001 - any failure marks it down
            ok, data = False, {}
        if ok != r.healthy:
            log.warning("engine replica %s is %s", r.url, "up" if ok else "down")
        r.healthy = ok
        if ok and isinstance(data, dict) and isinstance(data.get("engine_version"), str):
            r.version = data["engine_version"]
        rate = data.get("throughput") if isinstance(data, dict) else None
        if isinstance(rate, dict):
            r.throughput.set(rate.get("tokens_per_s"), rate.get("chars_per_token"))

    def predict_s(self, chars: int) -> float | None:
        """The fastest healthy replica's estimate (requests go to the least busy one)."""
        guesses = [
            p for r in self.replicas if r.healthy
            if (p := r.throughput.predict_s(chars)) is not None
        ]  # fmt: skip
        return min(guesses) if guesses else None

    def _order(self) -> list[_Replica]:
        healthy = [r for r in self.replicas if r.healthy] or list(self.replicas)
        self._rr += 1
        n = len(healthy)
        rotated = healthy[self._rr % n :] + healthy[: self._rr % n]
        return sorted(rotated, key=lambda r: r.in_flight)  # stable: ties keep round-robin order

    async def compress(self, query, context, *, control: Control | None = None, **options):
        """`options`: the Engine protocol's, sent as the engine service's CompressRequest."""
        import httpx

        payload: dict[str, Any] = CompressRequest(query, context, **options).to_json()
        while True:
            if control is not None:
                payload["background"] = control.background
            busy, last = 0.0, None
            for r in self._order():
                r.in_flight += 1
                try:
                    resp = await self._client.post(f"{r.url}/v1/compress", json=payload)
                except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
                    r.healthy, last = False, exc
                    continue  # this replica is gone: try the next
                finally:
                    r.in_flight -= 1
                if resp.status_code == 429:  # its queue is full: try the next
                    busy = max(busy, _retry_after(resp))
                    continue
                result = _result_from(resp)
                _measure(r.throughput, result, len(context))
                return result
            if not busy:
                raise EngineFailure(
                    f"no engine replica reachable ({type(last).__name__ if last else 'none'})"
                )
            if control is None or not control.background:
                raise EngineBusy("every engine replica is busy (429)")
            await asyncio.sleep(busy)  # a background job waits its turn; its cap bounds this

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._client.aclose()


class EngineBusy(EngineFailure):
    code = "engine_busy"


def _retry_after(resp: Any) -> float:
    try:
        return min(max(float(resp.headers.get("retry-after", "1")), 0.1), 60.0)
    except ValueError:
        return 1.0


def _measure(throughput: Throughput, result: CompressionResult, chars: int) -> None:
    model_s = (result.timings or {}).get("model")
    if model_s:
        throughput.record(result.input_tokens, model_s)
    throughput.record_chars(chars, result.input_tokens)


def _result_from(resp: Any) -> CompressionResult:
    try:
        data = resp.json()
    except ValueError:
        data = None
    if resp.status_code == 200 and isinstance(data, dict):
        try:
            return CompressionResult.from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise EngineFailure(f"engine answered an unreadable result: {exc}") from exc
    err = data.get("error") if isinstance(data, dict) else None
    msg = (
        err.get("message") if isinstance(err, dict) else f"engine answered HTTP {resp.status_code}"
    )
    if resp.status_code == 413 or (isinstance(err, dict) and err.get("code") == "context_too_long"):
        raise ContextTooLong(str(msg))
    if 400 <= resp.status_code < 500:
        raise InvalidInput(str(msg))
    raise EngineFailure(str(msg))


def build_engine(settings: EngineSettings) -> Engine:
    return RemoteEngines(settings) if settings.mode == "remote" else LocalEngine(settings)
