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
from dataclasses import dataclass

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse

from policies.ab import assign_arm
from proxy.compress import compress_documents
from proxy.detect import find_documents
from proxy.errors import ModelNotFound, PayloadTooLarge, ProxyError, error_response, sse_error
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
class Ctx:
    rid: str
    t0: float
    tenant: str = "-"
    policy: str = "-"
    model: str = "unknown"
    arm: str = "compress"
    compressed: bool = False
    cache: str = "off"
    original: int = 0
    sent: int = 0
    stream: bool = False
    status: int = 200
    error_type: str | None = None
    detect_s: float | None = None
    compress_s: float | None = None
    engine_s: float | None = None
    cache_s: float | None = None
    upstream_s: float | None = None
    followup: str | None = None  # appended | requeried | stable
    followup_tokens: int = 0
    finished: bool = False  # metrics and log written

    def headers(self) -> dict[str, str]:
        out = {
            "x-cprs-request-id": self.rid,
            "x-cprs-arm": self.arm,
            "x-cprs-compressed": "true" if self.compressed else "false",
            "x-cprs-original-tokens": str(self.original),
            "x-cprs-compressed-tokens": str(self.sent),
            "x-cprs-cache": self.cache,
        }
        if self.followup is not None:
            out["x-cprs-followup"] = self.followup
            out["x-cprs-followup-tokens"] = str(self.followup_tokens)
        return out


def client_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key") or request.headers.get("api-key") or None


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    too_big = PayloadTooLarge(f"Request body is larger than the limit of {limit} bytes.")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_big
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


async def handle_chat(request: Request, holder: StateHolder, metrics: Metrics, upstream: Upstream):
    state = holder.current
    ctx = Ctx(uuid.uuid4().hex, time.perf_counter())
    metrics.in_flight.inc()
    streaming = False
    try:
        response = await _serve(request, state, metrics, upstream, ctx)
        streaming = isinstance(response, StreamingResponse)
        return response
    except ProxyError as exc:
        ctx.status, ctx.error_type = exc.status, exc.code or exc.type
        return error_response(exc, headers=ctx.headers())
    except ClientDisconnect:
        ctx.status, ctx.error_type = 499, "client_disconnected"
        return Response(status_code=499)
    except Exception as exc:  # a bug must still answer in OpenAI's format and be logged
        log.exception("unexpected error serving %s", ctx.rid)
        ctx.status, ctx.error_type = 500, "internal_error"
        return error_response(ProxyError(f"internal error ({type(exc).__name__})"), ctx.headers())
    finally:
        if not streaming:
            _finish(state, metrics, ctx)


async def _serve(request: Request, state: AppState, metrics: Metrics, upstream: Upstream, ctx: Ctx):
    api_key = client_key(request)
    ctx.tenant, policy = state.authenticate(api_key)
    ctx.policy = policy.name
    raw = await read_body(request, state.config.server.max_body_bytes)
    overrides, body = parse_overrides(request.headers, parse_body(raw), policy)
    policy = overrides.apply(policy)
    check_chat(body)
    ctx.stream = body.get("stream") is True
    model = body["model"]
    route = state.router.match(model)
    if route is None or not policy.allows_model(model):
        raise ModelNotFound(f"The model `{model}` does not exist or you do not have access to it.")
    ctx.model = model_label(model) if route.is_glob else route.name
    backend = state.router.resolve(route, model, api_key)
    ctx.arm = arm_for(policy, overrides, api_key, body, request.headers)
    counter = TokenCounter(backend.model)

    def detect():
        return find_documents(
            body["messages"],
            markers=policy.markers,
            threshold_tokens=policy.threshold_tokens,
            system_min_tokens=policy.effective_system_min_tokens,
            compress_user_parts=policy.compress_user_parts,
            count=counter.count,
            tool_outputs=policy.compress_tool_outputs,
        )

    t = time.perf_counter()
    big = len(raw) > THREAD_OVER_CHARS
    detection = await asyncio.to_thread(detect) if big else detect()
    ctx.original = detection.tokens
    ctx.detect_s = time.perf_counter() - t
    ctx.sent = ctx.original
    if ctx.arm == "compress" and detection.documents:
        t = time.perf_counter()
        comp = await compress_documents(
            state,
            metrics,
            detection,
            tenant=ctx.tenant,
            policy=policy,
            model=model,
            counter=counter,
        )
        ctx.compress_s, ctx.engine_s, ctx.cache_s = (
            time.perf_counter() - t,
            comp.engine_s,
            comp.cache_s,
        )
        ctx.cache, ctx.compressed = comp.cache, bool(comp.replacements)
        ctx.followup, ctx.followup_tokens = comp.followup, comp.excerpt_tokens
        ctx.sent = ctx.original - comp.saved_tokens + comp.excerpt_tokens
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
    client is gone before the first chunk (then the relay generator never started)."""

    def __init__(self, content, chunks, state: AppState, metrics: Metrics, ctx: Ctx, headers):
        super().__init__(content, headers=headers)
        self._done = (chunks, state, metrics, ctx)

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
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
    metrics.requests.labels(*labels, str(ctx.status), str(ctx.compressed).lower()).inc()
    if ctx.status < 400 or ctx.error_type:
        metrics.tokens_in.labels(*labels).inc(ctx.original)
        metrics.tokens_out.labels(*labels).inc(ctx.sent)
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
            metrics.stage.labels(*labels, stage).observe(secs)
    record = RequestRecord(
        ts=time.time(), request_id=ctx.rid, tenant=ctx.tenant, policy=ctx.policy, model=ctx.model,
        arm=ctx.arm, compressed=ctx.compressed, cache=ctx.cache, original_tokens=ctx.original,
        sent_tokens=ctx.sent, latency_ms=ms(total), upstream_ms=ms(ctx.upstream_s),
        compress_ms=ms(ctx.compress_s), status=ctx.status, error_type=ctx.error_type, stream=ctx.stream,
        followup=ctx.followup, followup_tokens=ctx.followup_tokens,
    )  # fmt: skip
    state.request_log.write(record)
    log.info(
        "chat %s tenant=%s model=%s arm=%s status=%s compressed=%s cache=%s tokens=%d->%d %.0fms%s",
        ctx.rid, ctx.tenant, ctx.model, ctx.arm, ctx.status, ctx.compressed, ctx.cache,
        ctx.original, ctx.sent, total * 1000, f" error={ctx.error_type}" if ctx.error_type else "",
    )  # fmt: skip


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
