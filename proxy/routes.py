"""HTTP routes. Thin: each one hands off to the module that does the work."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from proxy.chat import client_key, handle_chat


def _parts(request: Request):
    s = request.app.state
    return s.holder, s.metrics, s.upstream


async def chat_completions(request: Request) -> Response:
    holder, metrics, upstream = _parts(request)
    return await handle_chat(request, holder, metrics, upstream)


async def models(request: Request) -> Response:
    """The configured model names this client's policy allows (glob routes are not listed)."""
    state = request.app.state.holder.current
    _, policy = state.authenticate(client_key(request))
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": "cprs-proxy"}
        for name in state.router.listed()
        if policy.allows_model(name)
    ]
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
    Route("/v1/models", models, methods=["GET"]),
    Route("/models", models, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
