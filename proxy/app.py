"""The ASGI app: `create_app(config)` wires state, metrics, upstream client and routes.

Tests inject an engine or a cache (anything with the same interface) and an httpx transport for
the backend; `cprs serve` passes only the config. Config reloads come from SIGHUP and from the
config file's mtime changing (polled every server.reload_interval_s); either swaps the whole
state at once, so requests in flight finish on the config they started with.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import threading
import time
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request

from proxy.cache import CompressionCache
from proxy.config import ProxyConfig
from proxy.engine import Engine
from proxy.errors import ProxyError, error_body, error_response, type_for_status
from proxy.metrics import Metrics
from proxy.routes import FALLBACK, ROUTES
from proxy.state import StateHolder, build_state
from proxy.tokens import configure_offline
from proxy.upstream import Upstream, close_litellm_clients

log = logging.getLogger(__name__)


def create_app(
    config: ProxyConfig,
    *,
    engine: Engine | None = None,
    cache: CompressionCache | None = None,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
) -> Starlette:
    configure_offline()
    metrics = Metrics()
    state = build_state(config, metrics, engine=engine, cache=cache)
    holder = StateHolder(state, metrics, owns_engine=engine is None, owns_cache=cache is None)
    upstream = Upstream(transport=upstream_transport)

    @asynccontextmanager
    async def lifespan(app: Starlette):
        await asyncio.to_thread(_warm, holder.current.config)
        start = getattr(holder.current.engine, "start", None)
        if start is not None:
            await start()
        _freeze("startup")
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(_watch(holder)), loop.create_task(_freeze_when_loaded(holder))]
        sighup = _install_sighup(holder)
        try:
            yield
        finally:
            for t in tasks:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            if sighup:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            await holder.close()
            await upstream.close()
            await close_litellm_clients()

    app = Starlette(
        routes=[*ROUTES, *FALLBACK],
        lifespan=lifespan,
        exception_handlers={ProxyError: _proxy_error, HTTPException: _http_error, 500: _internal},
    )
    app.state.holder = holder
    app.state.metrics = metrics
    app.state.upstream = upstream
    return app


def _warm(config: ProxyConfig) -> None:
    """Load litellm's provider table and the tiktoken encodings now, not on the first request."""
    from proxy.routing import warm_routes
    from proxy.tokens import TokenCounter

    TokenCounter("gpt-4o").count("warm")
    TokenCounter("").count("warm")
    warm_routes(config.models)


async def _freeze_when_loaded(holder: StateHolder, wait_s: float = 600.0) -> None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and not holder.current.engine.ready()[0]:
        await asyncio.sleep(1.0)
    _freeze("engine loaded")


_FROZEN: set[str] = set()  # process-wide, like the collector itself


def _freeze(stage: str) -> None:
    """Move what startup built (litellm's tables, tiktoken, the critic once loaded) out of the
    garbage collector's view, once per stage and process. Otherwise every full collection
    walks those hundreds of thousands of long-lived objects: a 320 ms pause every few thousand
    requests, and -22% CPU per request once they are frozen (in process, as in
    benchmarks/proxy_cpu.py). Garbage is collected first, so none is frozen; frozen objects
    are still freed when their last reference goes (only cycles among them would stay)."""
    if stage in _FROZEN:
        return
    _FROZEN.add(stage)
    gc.collect()
    gc.freeze()


async def _watch(holder: StateHolder) -> None:
    """Reload when the config file changes on disk (interval read anew: a reload may change it)."""
    while True:
        interval = holder.current.config.server.reload_interval_s
        await asyncio.sleep(interval if interval > 0 else 1.0)
        if interval > 0 and holder.changed_on_disk():
            await holder.reload()


def _install_sighup(holder: StateHolder) -> bool:
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGHUP"):
        return False
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(holder.reload()))
    except (NotImplementedError, RuntimeError):
        return False
    return True


async def _proxy_error(request: Request, exc: Exception):
    assert isinstance(exc, ProxyError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception):
    from starlette.responses import JSONResponse

    assert isinstance(exc, HTTPException)
    msg = {404: f"Unknown path: {request.url.path}", 405: f"Method {request.method} not allowed"}
    body = error_body(msg.get(exc.status_code, str(exc.detail)), type_for_status(exc.status_code))
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def _internal(request: Request, exc: Exception):
    log.exception("unhandled error on %s", request.url.path, exc_info=exc)
    return error_response(ProxyError("internal error"))
