"""HTTP routes. Thin: each one hands off to the module that does the work."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from proxy.chat import client_key, handle_chat
from proxy.frontdoor import handle_door
from proxy.messages import MessagesDoor
from proxy.passthrough import handle_passthrough
from proxy.prefetch import handle_compress
from proxy.responses import ResponsesDoor

log = logging.getLogger(__name__)


def _parts(request: Request):
    s = request.app.state
    return s.holder, s.metrics, s.upstream


async def chat_completions(request: Request) -> Response:
    holder, metrics, upstream = _parts(request)
    return await handle_chat(request, holder, metrics, upstream)


async def compress(request: Request) -> Response:
    holder, metrics, _ = _parts(request)
    return await handle_compress(request, holder, metrics)


async def responses(request: Request) -> Response:
    return await handle_door(request, *_parts(request), ResponsesDoor())


async def messages(request: Request) -> Response:
    return await handle_door(request, *_parts(request), MessagesDoor())


async def models(request: Request) -> Response:
    """The model names this client may send: configured names, then, for each glob route to an
    OpenAI-format backend (the embedded catch-all included), the backend's own models that the
    glob routes there, as the backend describes them. All filtered by the client's policy; a
    backend that cannot list its models is left out (logged), never an error for the client."""
    state = request.app.state.holder.current
    key = client_key(request)
    _, policy = state.authenticate(key)
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": "cprs-proxy"}
        for name in state.router.listed()
        if policy.allows_model(name)
    ]
    seen = {m["id"] for m in data}
    for route in state.router.routes:
        if not route.is_glob:
            continue
        try:
            backend = state.router.resolve(route, "models", key)
            if not backend.passthrough:
                continue
            listed = await request.app.state.upstream.list_models(backend)
        except Exception as exc:  # noqa: BLE001 - a listing failure must not fail the call
            log.warning("route %r: the backend's model list is unavailable: %s", route.name, exc)
            continue
        for m in listed:
            name = m["id"]
            if name in seen or state.router.match(name) is not route:
                continue
            if policy.allows_model(name):
                seen.add(name)
                data.append(m)
    return JSONResponse({"object": "list", "data": data})


async def healthz(request: Request) -> Response:
    """Liveness: the process serves HTTP."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Readiness: the engine can compress. The cache is not required (it fails open)."""
    state = request.app.state.holder.current
    ok, reason = state.engine.ready()
    body = {
        "status": "ready" if ok else "not ready",
        "engine": reason,
        "engine_version": state.engine.engine_version,
        "cache": state.cache.backend,
    }
    return JSONResponse(body, status_code=200 if ok else 503)


async def metrics(request: Request) -> Response:
    m = request.app.state.metrics
    return Response(m.render(), media_type=m.content_type)


ROUTES = [
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/compress", compress, methods=["POST"]),
    Route("/v1/responses", responses, methods=["POST"]),
    Route("/responses", responses, methods=["POST"]),
    Route("/v1/messages", messages, methods=["POST"]),
    Route("/v1/models", models, methods=["GET"]),
    Route("/models", models, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]

# Every other /v1/ path goes to the backend as is. The app puts it after ROUTES, so every
# specific route (added to ROUTES, in any order) wins over it.
FALLBACK = [
    Route(
        "/v1/{path:path}",
        handle_passthrough,
        methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
    )
]
