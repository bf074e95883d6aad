"""Every other `/v1/` path (embeddings, files, audio, images, batches, moderations,
`models/{id}`, legacy completions, ...): relayed to the route's backend byte for byte.

auth -> model (a JSON body's `model`, or the id in `models/{id}`) -> route + allowed_models ->
relay. A JSON body is read (up to server.max_body_bytes) to find its model and sent on as the
same bytes; any other body (multipart uploads, audio) streams to the backend as it arrives, and
the answer streams back as it comes, content-encoding and all. With no model named, the request
goes to the first route whose backend takes it (a glob route, such as the embedded catch-all).

OpenAI-format backends get `{api_base}/{path}`; `anthropic/*` routes get
`{api_base}/v1/{path}` (e.g. `messages/count_tokens`). The client's headers go along except its
key (replaced by the route's), hop-by-hop headers and `x-cprs-*`; no `x-cprs-*` header comes
back, since the proxy did not look at the request.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import httpx
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Match

from proxy.chat import client_key, read_body
from proxy.errors import InvalidRequest, ModelNotFound, ProxyError, error_response, from_exception
from proxy.metrics import model_label
from proxy.overrides import HEADER_PREFIX
from proxy.routing import Backend
from proxy.state import AppState
from proxy.upstream import Upstream

log = logging.getLogger(__name__)
_HOP = frozenset(
    {"host", "connection", "keep-alive", "proxy-authorization", "proxy-connection", "te",
     "trailer", "transfer-encoding", "upgrade", "authorization", "x-api-key", "api-key"}
)  # fmt: skip
_NO_BODY = ("GET", "HEAD", "DELETE", "OPTIONS")


async def handle_passthrough(request: Request) -> Response:
    if _reserved(request):
        raise HTTPException(405)  # a path the proxy serves itself, with another method
    s = request.app.state
    state: AppState = s.holder.current
    path = request.path_params["path"]
    status, model = 500, "-"
    try:
        response, model = await _relay(request, state, s.upstream, path)
        status = response.status_code
        return response
    except ProxyError as exc:
        status = exc.status
        return error_response(exc)
    finally:
        log.info("passthrough %s /v1/%s model=%s status=%s", request.method, path, model, status)


async def _relay(request: Request, state: AppState, upstream: Upstream, path: str):
    api_key = client_key(request)
    tenant, policy = state.authenticate(api_key)
    content: bytes | AsyncIterator[bytes] | None = None
    model = _path_model(path)
    ctype = request.headers.get("content-type", "")
    if request.method not in _NO_BODY:
        if ctype.startswith("application/json"):
            content = await read_body(request, state.config.server.max_body_bytes)
            model = model or _body_model(content)
        else:
            content = request.stream()
    backend = _backend(state, model, api_key, policy)
    url = _url(backend, path)
    headers = _headers(request, backend)
    timeout = httpx.Timeout(backend.timeout_s, connect=backend.connect_timeout_s)
    req = upstream.client.build_request(
        request.method, url, params=request.query_params, headers=headers, content=content,
        timeout=timeout,
    )  # fmt: skip
    try:
        resp = await upstream.client.send(req, stream=True)
    except Exception as exc:
        raise from_exception(exc) from exc
    out = {k: v for k, v in resp.headers.items() if k.lower() not in _HOP}
    label = model_label(model) if model else "-"
    return (
        StreamingResponse(
            _bytes(resp), status_code=resp.status_code, headers=out,
            background=BackgroundTask(resp.aclose),
        ),
        label,
    )  # fmt: skip


async def _bytes(resp: httpx.Response) -> AsyncIterator[bytes]:
    try:
        if resp.is_stream_consumed:  # a transport that answered with a body already read
            yield resp.content
            return
        async for chunk in resp.aiter_raw():
            yield chunk
    finally:
        await resp.aclose()


def _reserved(request: Request) -> bool:
    return any(
        r.matches(request.scope)[0] == Match.PARTIAL for r in request.app.routes if r is not None
    )


def _path_model(path: str) -> str | None:
    head, _, rest = path.partition("/")
    return rest if head == "models" and rest else None


def _body_model(raw: bytes) -> str | None:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None  # the backend answers a bad body in its own words
    model = body.get("model") if isinstance(body, dict) else None
    if model is not None and not isinstance(model, str):
        raise InvalidRequest("model must be a string", param="model", code="invalid_type")
    return model


def _backend(state: AppState, model: str | None, api_key: str | None, policy) -> Backend:
    if model is not None:
        route = state.router.match(model)
        if route is None or not policy.allows_model(model):
            raise ModelNotFound(
                f"The model `{model}` does not exist or you do not have access to it."
            )
        return state.router.resolve(route, model, api_key)
    for route in state.router.routes:
        name = route.name if not route.is_glob else "default"
        backend = state.router.resolve(route, name, api_key)
        if backend.passthrough or backend.provider == "anthropic":
            return backend
    raise ModelNotFound("No configured route can take a request that names no model.")


def _url(backend: Backend, path: str) -> str:
    if backend.provider == "anthropic":
        from proxy.messages import DEFAULT_BASE

        base = (backend.api_base or DEFAULT_BASE).rstrip("/")
        return (base if base.endswith("/v1") else base + "/v1") + "/" + path
    if not backend.passthrough or not backend.api_base:
        raise InvalidRequest(
            f"/v1/{path} is relayed only to OpenAI-format or Anthropic routes; route "
            f"{backend.route!r} is {backend.provider}",
            param="model",
            code="unsupported_route",
        )
    return backend.api_base.rstrip("/") + "/" + path


def _headers(request: Request, backend: Backend) -> dict[str, str]:
    out = {
        k: v
        for k, v in request.headers.items()
        if k.lower() not in _HOP and not k.lower().startswith(HEADER_PREFIX)
    }
    if backend.api_key:
        if backend.provider == "anthropic":
            out["x-api-key"] = backend.api_key
        else:
            out["authorization"] = f"Bearer {backend.api_key}"
    return out
