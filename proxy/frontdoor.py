"""The pipeline every non-chat front door shares, read as chat.py reads:
auth -> policy (+ per-request overrides) -> arm -> detect -> compress -> forward -> relay.

A front door (`proxy.responses`, `proxy.messages`) is a `Door`: it checks its body, shows it to
detection as chat messages (`proxy.views`), forwards the rewritten body and says how its errors
look. Everything else - the request context, metrics, request log, the streamed relay and its
bookkeeping - is chat.py's, reused as is, so the doors count and log exactly like chat.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Protocol

from starlette.requests import Request
from starlette.responses import Response

from proxy.chat import (
    Ctx,
    _relay,
    _RelayResponse,
    admit,
    arm_for,
    detect_and_compress,
    route_for,
    run_request,
)
from proxy.disconnect import DisconnectWatch
from proxy.errors import ProxyError
from proxy.metrics import Metrics
from proxy.rewrite import with_model
from proxy.routing import Backend
from proxy.state import AppState, StateHolder
from proxy.tokens import TokenCounter
from proxy.upstream import Upstream
from proxy.views import View, apply_view

log = logging.getLogger("proxy.requests")


class Door(Protocol):
    name: str  # the request log's `endpoint`

    def check(self, body: dict) -> None:
        """Raise InvalidRequest (naming the field) for what the proxy itself must read."""

    def view(self, body: dict) -> View: ...

    async def complete(
        self, upstream: Upstream, backend: Backend, body: dict, headers: Mapping[str, str]
    ) -> tuple[int, dict[str, str], bytes]: ...

    async def stream(
        self, upstream: Upstream, backend: Backend, body: dict, headers: Mapping[str, str]
    ) -> tuple[dict[str, str], AsyncIterator[bytes]]: ...

    def error_response(self, exc: ProxyError, headers: dict[str, str]) -> Response: ...

    def sse_error(self, exc: ProxyError) -> bytes: ...


async def handle_door(
    request: Request, holder: StateHolder, metrics: Metrics, upstream: Upstream, door: Door
) -> Response:
    return await run_request(
        request,
        holder,
        metrics,
        lambda state, ctx, watch: _serve(request, state, metrics, upstream, ctx, door, watch),
        door.error_response,
        endpoint=door.name,
    )


async def _serve(
    request: Request,
    state: AppState,
    metrics: Metrics,
    upstream: Upstream,
    ctx: Ctx,
    door: Door,
    watch: DisconnectWatch,
) -> Response:
    api_key, policy, overrides, body, raw = await admit(request, state, ctx, watch)
    door.check(body)
    ctx.stream = body.get("stream") is True
    model = body["model"]
    backend = route_for(state, policy, model, api_key, ctx)
    ctx.arm = arm_for(policy, overrides, api_key, body, request.headers)
    counter = TokenCounter(backend.model)

    view = door.view(body)
    comp = await detect_and_compress(
        state, metrics, ctx, view.messages, len(raw), policy=policy, model=model, counter=counter
    )
    if comp is not None:
        body = apply_view(body, view, comp.replacements, comp.excerpts)
    body = with_model(body, backend.model)

    t = time.perf_counter()
    if ctx.stream:
        kept, chunks = await door.stream(upstream, backend, body, request.headers)
        headers = {**kept, **ctx.headers(), "cache-control": "no-cache", "x-accel-buffering": "no"}
        headers.setdefault("content-type", "text/event-stream; charset=utf-8")
        relay = _relay(chunks, state, metrics, ctx, t, door.sse_error)
        return _RelayResponse(relay, chunks, state, metrics, ctx, headers)
    status, kept, content = await door.complete(upstream, backend, body, request.headers)
    ctx.upstream_s, ctx.status = time.perf_counter() - t, status
    return Response(content, status_code=status, headers={**kept, **ctx.headers()})
