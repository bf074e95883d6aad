"""`POST /v1/chat/completions`: auth -> policy -> arm -> detect -> compress -> forward -> relay.

The state (config, engine, cache, routes) is taken once at the start, so a reload never changes
a request midway. Every exit path - success, OpenAI-format error, client gone mid-stream - ends in
`_finish`, which records metrics, the JSONL request log line and one log line (no text, no keys).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse

from cprs_engine.wire import read_limited
from policies.ab import assign_arm
from policies.schema import Policy
from proxy.compress import Compression, compress_documents
from proxy.detect import find_for_policy
from proxy.disconnect import DisconnectWatch
from proxy.errors import (
    ModelNotFound,
    PayloadTooLarge,
    ProxyError,
    RequestTimeout,
    error_response,
    sse_error,
)
from proxy.followups import insert_excerpts
from proxy.metrics import Metrics, model_label
from proxy.overrides import parse_overrides
from proxy.requestlog import RequestRecord
from proxy.rewrite import apply, with_model
from proxy.state import AppState, StateHolder
from proxy.tokens import TokenCounter
from proxy.upstream import Upstream
from proxy.validate import check_chat, parse_body

log = logging.getLogger("proxy.requests")
THREAD_OVER_CHARS = 50_000  # detection + counting of bigger requests runs off the event loop


@dataclass
class Ctx(RequestRecord):
    """The request as it runs: the record it logs (fields declared once, in RequestRecord)
    plus the stage timings that feed the metrics."""

    t0: float = 0.0
    detect_s: float | None = None
    compress_s: float | None = None
    engine_s: float | None = None
    cache_s: float | None = None
    upstream_s: float | None = None
    finished: bool = False  # metrics and log written

    def headers(self) -> dict[str, str]:
        out = {
            "x-cprs-request-id": self.request_id,
            "x-cprs-arm": self.arm,
            "x-cprs-compressed": "true" if self.compressed else "false",
            "x-cprs-original-tokens": str(self.original_tokens),
            "x-cprs-compressed-tokens": str(self.sent_tokens),
            "x-cprs-cache": self.cache,
        }
        if self.followup is not None:
            out["x-cprs-followup"] = self.followup
            out["x-cprs-followup-tokens"] = str(self.followup_tokens)
        if self.skipped:
            out["x-cprs-skipped"] = ",".join(self.skipped)
        return out


def client_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key") or request.headers.get("api-key") or None


async def read_body(request: Request, limit: int, timeout_s: float = 60.0) -> bytes:
    """The whole body, within `limit` bytes and `timeout_s` seconds (a half-sent body: 408)."""
    try:
        async with asyncio.timeout(timeout_s):
            return await read_limited(request, limit, PayloadTooLarge)
    except TimeoutError:
        raise RequestTimeout(
            f"The request body did not arrive within {timeout_s:g} seconds."
        ) from None


async def handle_chat(request: Request, holder: StateHolder, metrics: Metrics, upstream: Upstream):
    return await run_request(
        request,
        holder,
        metrics,
        lambda state, ctx, watch: _serve(request, state, metrics, upstream, ctx, watch),
        lambda exc, headers: error_response(exc, headers=headers),
    )


async def run_request(
    request: Request,
    holder: StateHolder,
    metrics: Metrics,
    serve: Callable[[AppState, Ctx, DisconnectWatch], Awaitable[Response]],
    on_error: Callable[[ProxyError, dict[str, str]], Response],
    *,
    endpoint: str = "chat",
) -> Response:
    """The frame every front door serves in: the state taken once, a request context, the
    disconnect watch, errors answered by `on_error` in the door's own format (a bug too, logged),
    and the metrics and log line when the request ends (for streams: when the stream ends)."""
    state = holder.current
    ctx = Ctx(request_id=uuid.uuid4().hex, t0=time.perf_counter(), endpoint=endpoint)
    metrics.in_flight.inc()
    streaming = False
    watch = DisconnectWatch(request.receive)
    try:
        response = await watch.run(serve(state, ctx, watch))
        streaming = isinstance(response, StreamingResponse)
        return response
    except ProxyError as exc:
        ctx.status, ctx.error_type = exc.status, exc.code or exc.type
        return on_error(exc, ctx.headers())
    except ClientDisconnect:
        ctx.status, ctx.error_type = 499, "client_disconnected"
        return Response(status_code=499)
    except Exception as exc:  # a bug must still answer in the door's format and be logged
        log.exception("unexpected error serving %s", ctx.request_id)
        ctx.status, ctx.error_type = 500, "internal_error"
        return on_error(ProxyError(f"internal error ({type(exc).__name__})"), ctx.headers())
    finally:
        if not streaming:
            _finish(state, metrics, ctx)


async def _serve(
    request: Request,
    state: AppState,
    metrics: Metrics,
    upstream: Upstream,
    ctx: Ctx,
    watch: DisconnectWatch,
):
    api_key, policy, overrides, body, raw = await admit(request, state, ctx, watch)
    check_chat(body)
    ctx.stream = body.get("stream") is True
    model = body["model"]
    backend = route_for(state, policy, model, api_key, ctx)
    ctx.arm = arm_for(policy, overrides, api_key, body, request.headers)
    counter = TokenCounter(backend.model)

    comp = await detect_and_compress(
        state, metrics, ctx, body["messages"], len(raw), policy=policy, model=model, counter=counter
    )
    if comp is not None:
        body = insert_excerpts(apply(body, comp.replacements), comp.excerpts)
    body = with_model(body, backend.model)

    t = time.perf_counter()
    if ctx.stream:
        kept, chunks = await upstream.stream(backend, body)
        headers = {**kept, **ctx.headers(), "cache-control": "no-cache", "x-accel-buffering": "no"}
        headers.setdefault("content-type", "text/event-stream; charset=utf-8")
        return _RelayResponse(
            _relay(chunks, state, metrics, ctx, t), chunks, state, metrics, ctx, headers
        )
    status, kept, content = await upstream.complete(backend, body)
    ctx.upstream_s, ctx.status = time.perf_counter() - t, status
    return Response(content, status_code=status, headers={**kept, **ctx.headers()})


async def admit(request: Request, state: AppState, ctx: Ctx, watch: DisconnectWatch):
    """What every front door reads first: the client's key -> tenant and policy, the body
    (bounded in size and time), and the per-request overrides, applied to the policy.
    Returns (api_key, policy, overrides, parsed body without the overrides, raw bytes)."""
    api_key = client_key(request)
    ctx.tenant, policy = state.authenticate(api_key)
    ctx.policy = policy.name
    server = state.config.server
    raw = await read_body(request, server.max_body_bytes, server.body_timeout_s)
    watch.body_read()  # from here on, a client that leaves cancels the work (499)
    overrides, body = parse_overrides(request.headers, parse_body(raw), policy)
    return api_key, overrides.apply(policy), overrides, body, raw


def route_for(state: AppState, policy: Policy, model: str, api_key: str | None, ctx: Ctx):
    """The backend for a client's model name (404 when no route or the policy forbids it)."""
    route = state.router.match(model)
    if route is None or not policy.allows_model(model):
        raise ModelNotFound(f"The model `{model}` does not exist or you do not have access to it.")
    ctx.model = model_label(model) if route.is_glob else route.name
    return state.router.resolve(route, model, api_key)


async def detect_and_compress(
    state: AppState,
    metrics: Metrics,
    ctx: Ctx,
    messages: list,
    raw_bytes: int,
    *,
    policy: Policy,
    model: str,
    counter: TokenCounter,
) -> Compression | None:
    """Detect the documents in chat-shaped `messages` and, on the compress arm, compress them;
    the counts, timings, cache status and skip reasons go into `ctx`. Every front door runs this
    step; each applies the returned Compression to its own body shape (None: nothing to apply)."""
    t = time.perf_counter()
    if raw_bytes > THREAD_OVER_CHARS:  # detection + counting of big requests off the event loop
        detection = await asyncio.to_thread(find_for_policy, messages, policy, counter.count)
    else:
        detection = find_for_policy(messages, policy, counter.count)
    ctx.original_tokens = ctx.sent_tokens = detection.tokens
    ctx.detect_s = time.perf_counter() - t
    if not detection.documents:
        return None
    if ctx.arm != "compress":
        ctx.skipped = ["control_arm"] * len(detection.documents)
        metrics.skipped.labels(ctx.tenant, "control_arm").inc(len(detection.documents))
        return None
    t = time.perf_counter()
    comp = await compress_documents(
        state, metrics, detection, tenant=ctx.tenant, policy=policy, model=model, counter=counter
    )
    ctx.compress_s, ctx.engine_s, ctx.cache_s = time.perf_counter() - t, comp.engine_s, comp.cache_s
    ctx.cache, ctx.compressed = comp.cache, bool(comp.replacements)
    ctx.followup, ctx.followup_tokens = comp.followup, comp.excerpt_tokens
    ctx.skipped = comp.skipped or None
    ctx.sent_tokens = ctx.original_tokens - comp.saved_tokens + comp.excerpt_tokens
    return comp


async def _relay(chunks, state: AppState, metrics: Metrics, ctx: Ctx, t0: float, encode=sse_error):
    """Pass the backend's SSE bytes through as they come; a failure becomes an SSE error event
    (`encode`: the front door's error event)."""
    tail = b""
    try:
        async for chunk in chunks:
            if ctx.upstream_s is None:
                ctx.upstream_s = time.perf_counter() - t0  # time to first byte
            tail = (tail + chunk)[-2:]
            yield chunk
    except ProxyError as exc:
        ctx.error_type = exc.code or exc.type
        if tail and tail != b"\n\n":
            yield b"\n\n"  # end the backend's half-sent event before ours
        yield encode(exc)
    except (asyncio.CancelledError, GeneratorExit):
        ctx.status, ctx.error_type = 499, "client_disconnected"
        raise
    finally:
        await chunks.aclose()  # closes the backend connection: a gone client cancels upstream
        _finish(state, metrics, ctx)


class _RelayResponse(StreamingResponse):
    """A StreamingResponse that closes the backend stream and records the request even when the
    client is gone before the first chunk (then the relay generator never started).

    The client leaving is watched by a DisconnectWatch (one task), not by starlette's anyio task
    group per stream, which was a tenth of a streamed request's CPU. When the client goes, the
    stream is cancelled where it waits (the relay logs 499 and closes the backend call)."""

    def __init__(self, content, chunks, state: AppState, metrics: Metrics, ctx: Ctx, headers):
        super().__init__(content, headers=headers)
        self._done = (chunks, state, metrics, ctx)

    async def __call__(self, scope, receive, send) -> None:
        watch = DisconnectWatch(receive, body_read=True)
        try:
            await watch.run(self.stream_response(send))
        except ClientDisconnect:
            pass  # cancelled where it waited; nobody is left to answer
        finally:
            chunks, state, metrics, ctx = self._done
            if not ctx.finished:
                ctx.status, ctx.error_type = 499, "client_disconnected"
                await chunks.aclose()
                _finish(state, metrics, ctx)


def arm_for(policy, overrides, api_key: str | None, body: dict, headers) -> str:
    """`x-cprs-compress: off` is the control arm; otherwise the policy's A/B split decides."""
    if overrides.compress_off:
        return "control"
    return assign_arm(policy, api_key=api_key, user=body.get("user"), headers=headers)


def _finish(state: AppState, metrics: Metrics, ctx: Ctx) -> None:
    if ctx.finished:
        return
    ctx.finished = True
    total = time.perf_counter() - ctx.t0
    labels = (ctx.tenant, ctx.model, ctx.arm)
    metrics.in_flight.dec()
    child = metrics.child
    child(metrics.requests, *labels, str(ctx.status), "true" if ctx.compressed else "false").inc()
    if ctx.status < 400 or ctx.error_type:
        child(metrics.tokens_in, *labels).inc(ctx.original_tokens)
        child(metrics.tokens_out, *labels).inc(ctx.sent_tokens)
    if (ctx.error_type or "").startswith("upstream") or ctx.status >= 500:
        metrics.upstream_errors.labels(ctx.tenant, ctx.model, str(ctx.status)).inc()
    for stage, secs in (
        ("detect", ctx.detect_s),
        ("cache", ctx.cache_s),
        ("engine", ctx.engine_s),
        ("upstream", ctx.upstream_s),
        ("total", total),
    ):
        if secs is not None:
            child(metrics.stage, *labels, stage).observe(secs)
    ctx.ts, ctx.latency_ms = time.time(), ms(total)
    ctx.upstream_ms, ctx.compress_ms = ms(ctx.upstream_s), ms(ctx.compress_s)
    state.request_log.write(ctx)
    log.info(
        "%s %s tenant=%s model=%s arm=%s status=%s compressed=%s cache=%s tokens=%d->%d %.0fms%s%s",
        ctx.endpoint, ctx.request_id, ctx.tenant, ctx.model, ctx.arm, ctx.status, ctx.compressed, ctx.cache,
        ctx.original_tokens, ctx.sent_tokens, total * 1000,
        f" error={ctx.error_type}" if ctx.error_type else "",
        f" skipped={','.join(ctx.skipped)}" if ctx.skipped else "",
    )  # fmt: skip


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
