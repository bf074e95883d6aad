"""Where compression runs: in this process (`LocalEngine`) or on `cprs engine serve` replicas
(`RemoteEngines`). Both offer the same small async interface, so the request path does not care.

    engine_version: str               part of every cache key: a new critic never serves old spans
    ready() -> (bool, reason)         for /readyz
    async start() / close()
    async compress(query, context, *, granularity, prompt, instruction, budget_tokens,
                   budget_unit) -> CompressionResult   raises cprs_engine.errors.CPRSError

The local engine loads the critic in a background thread at startup (the server answers at once;
until the model is ready, compressions fail, which fail-open policies turn into pass-through) and
runs each compression in a small thread pool so the event loop never blocks on torch.
Remote engines are probed in the background; requests go to the healthy replica with the fewest
compressions in flight, and move to another replica on a connection failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
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
    ) -> CompressionResult: ...


class LocalEngine:
    """`cprs_engine.Compressor` in this process, loaded lazily, run in worker threads."""

    def __init__(self, settings: EngineSettings):
        self.settings = settings
        self.engine_version = "local-loading"
        self._compressor: Any = None
        self._error: str | None = None
        self._pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="cprs-engine")
        self._load_task: asyncio.Future | None = None

    def ready(self) -> tuple[bool, str]:
        if self._compressor is not None:
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
        self._compressor = compressor
        log.info("compression engine ready (%s)", self.engine_version)

    async def compress(self, query, context, **options):
        """`options`: the Engine protocol's, checked by CompressRequest (a typo is a TypeError)."""
        request = CompressRequest(query, context, **options)
        if self._compressor is None:
            raise (CheckpointNotFound if self._error else EngineFailure)(
                self._error or "the compression engine is still loading"
            )
        loop = asyncio.get_running_loop()
        fn = self._compressor.compress
        stop = threading.Event()  # set when this call is abandoned: the worker stops early

        def work() -> CompressionResult:
            try:
                return fn(**request.kwargs(), cancel=stop)
            except CPRSError:
                raise
            except Exception as exc:  # torch/runtime errors become the engine's own
                raise EngineFailure(f"{type(exc).__name__}: {exc}") from exc

        try:
            return await loop.run_in_executor(self._pool, work)
        finally:  # a timeout or a client disconnect cancels the await, not the thread
            stop.set()

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class _Replica:
    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.healthy = False
        self.in_flight = 0
        self.version: str | None = None


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

    def _order(self) -> list[_Replica]:
        healthy = [r for r in self.replicas if r.healthy] or list(self.replicas)
        self._rr += 1
        n = len(healthy)
        rotated = healthy[self._rr % n :] + healthy[: self._rr % n]
        return sorted(rotated, key=lambda r: r.in_flight)  # stable: ties keep round-robin order

    async def compress(self, query, context, **options):
        """`options`: the Engine protocol's, sent as the engine service's CompressRequest."""
        import httpx

        payload = CompressRequest(query, context, **options).to_json()
        last: Exception | None = None
        for r in self._order():
            r.in_flight += 1
            try:
                resp = await self._client.post(f"{r.url}/v1/compress", json=payload)
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
                r.healthy, last = False, exc
                continue  # this replica is gone: try the next
            finally:
                r.in_flight -= 1
            return _result_from(resp)
        raise EngineFailure(
            f"no engine replica reachable ({type(last).__name__ if last else 'none'})"
        )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._client.aclose()


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
