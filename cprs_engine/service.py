"""The engine alone over HTTP: `cprs engine serve` (a starlette app run by uvicorn).

    POST /v1/compress   {"query", "context", "granularity"?, "instruction"?, "budget_tokens"?,
                         "prompt"?, "budget_unit"?, "doc_type"?, "elision"?, "background"?}
                         ->  CompressionResult.to_dict(),
                         the JSON of `cprs compress --json`; 429 + Retry-After when the queue is full
    GET  /healthz       liveness: the process answers
    GET  /readyz        readiness: the critic is loaded (200 with engine_version, the measured
                         throughput and the queue depth, else 503)

The request, the error body and the size-limited reader are the wire contract in
cprs_engine/wire.py, shared with the proxy's remote client.

Errors use OpenAI's body {"error": {"message", "type", "param", "code"}}. Every malformed
request is a 400 (bad JSON, wrong types, empty query/context, unknown granularity, prompt or
budget unit, bad budget) except sizes: a body over `max_body_bytes` or a context over `max_context_chars`
is a 413. Unknown fields are ignored. The critic is loaded once, at startup (lifespan); a
missing checkpoint does not kill the process: /readyz and /v1/compress answer 503 with the
instructions, so an orchestrator sees an unready replica rather than a crash loop.

Forward passes run in the engine scheduler's one thread (cprs_engine/scheduler.py, shared with
the proxy's in-process engine): concurrent requests are interleaved shortest first and batched,
`"background": true` ones after the rest, at most `max_queue` at once. Tokenizing and decoding
run in worker threads behind a capacity limiter, so the event loop keeps answering health
checks while a long document is scored.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cprs_engine import doctypes, prompts, units
from cprs_engine.errors import ContextTooLong, CPRSError, EngineFailure, InvalidInput
from cprs_engine.scheduler import Busy, Control, Scheduler, compress_async
from cprs_engine.wire import CompressRequest, error_body, invalid, read_limited

log = logging.getLogger("cprs.engine.service")


@dataclass(frozen=True)
class ServiceSettings:
    max_body_bytes: int = 64 << 20  # a 4M-token document is ~16 MB of UTF-8; JSON escapes add some
    max_context_chars: int = 16_000_000  # the engine's own token limit applies after this
    max_concurrency: int = 4  # threads tokenizing/decoding; forward passes run in the scheduler
    max_queue: int = 64  # compressions queued or running; more are answered 429


class BodyTooLarge(InvalidInput):
    status = 413
    code = "request_too_large"


class EngineNotReady(CPRSError):
    status = 503
    code = "engine_not_ready"


def error_response(exc: CPRSError):
    from starlette.responses import JSONResponse

    body = error_body(exc.status, exc.message, param=exc.param, code=exc.code)
    headers = {}
    if isinstance(exc, Busy):
        headers["retry-after"] = str(math.ceil(exc.retry_after_s))
    return JSONResponse(body, status_code=exc.status, headers=headers)


def parse_compress_request(body: Any, settings: ServiceSettings) -> CompressRequest:
    """Validate a decoded /v1/compress body: the wire contract, then this engine's own limits,
    and the granularity and prompt names, so a typo fails before the model runs."""
    request = CompressRequest.from_json(body)
    if len(request.context) > settings.max_context_chars:
        raise ContextTooLong(
            f"'context' has {len(request.context)} characters; this engine accepts at most "
            f"{settings.max_context_chars}"
        )
    prompts.resolve(request.granularity, prompt=request.prompt, instruction=request.instruction)
    units.check(request.budget_unit)
    doctypes.check_options(request.doc_type, request.elision)
    return request


class _Engine:
    """What the lifespan loads: the compressor, or why there is none; and the limiter."""

    def __init__(self) -> None:
        self.compressor: Any = None
        self.scheduler: Any = None
        self.load_error: CPRSError | None = None
        self.limiter: Any = None

    def ready(self):
        if self.compressor is None:
            raise self.load_error or EngineNotReady("the engine is still loading")
        return self.compressor


def create_app(compressor_factory: Callable[[], Any], settings: ServiceSettings | None = None):
    """The engine's ASGI app. `compressor_factory()` is called once, at startup, in a thread;
    it returns an object with `compress(...)` and `engine_version` (a `Compressor`)."""
    import anyio
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    settings = settings or ServiceSettings()
    engine = _Engine()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        engine.limiter = anyio.CapacityLimiter(settings.max_concurrency)
        try:
            compressor = await anyio.to_thread.run_sync(compressor_factory)
            engine.scheduler = Scheduler(compressor, max_jobs=settings.max_queue)
            engine.compressor = compressor
            log.info("engine ready: %s", engine.compressor.engine_version)
        except CPRSError as exc:  # CheckpointNotFound & co: serve 503s that say what to do
            engine.load_error = exc
            log.error("engine not loaded: %s", exc.message)
        yield
        if engine.scheduler is not None:
            engine.scheduler.close()

    async def compress(request: Request) -> JSONResponse:
        compressor = engine.ready()
        body = await read_json(request, settings.max_body_bytes)
        kwargs = parse_compress_request(body, settings).kwargs()
        control = Control(background=body.get("background") is True)
        try:
            result = await compress_async(
                engine.scheduler,
                lambda fn: anyio.to_thread.run_sync(fn, limiter=engine.limiter),
                control=control,
                **kwargs,
            )
        except CPRSError:
            raise
        except Exception as exc:
            log.exception("compression failed")
            raise EngineFailure(f"compression failed: {type(exc).__name__}: {exc}") from exc
        headers = {"x-cprs-engine-version": compressor.engine_version}
        return JSONResponse(result.to_dict(), headers=headers)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        compressor = engine.ready()
        body = {
            "status": "ready",
            "engine_version": compressor.engine_version,
            "throughput": engine.scheduler.throughput.as_dict(),
            "queue": engine.scheduler.depth,
        }
        return JSONResponse(body)

    async def on_cprs_error(request: Request, exc: Exception):
        assert isinstance(exc, CPRSError)
        return error_response(exc)

    async def on_http_error(request: Request, exc: Exception):
        assert isinstance(exc, HTTPException)
        body = error_body(exc.status_code, str(exc.detail), param=None, code=str(exc.status_code))
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    return Starlette(
        routes=[
            Route("/v1/compress", compress, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ],
        exception_handlers={CPRSError: on_cprs_error, HTTPException: on_http_error},
        lifespan=lifespan,
    )


async def read_json(request, max_bytes: int) -> Any:
    """The request body as JSON, refusing bodies over `max_bytes` before reading them whole."""
    raw = await read_limited(request, max_bytes, BodyTooLarge)
    try:
        return json.loads(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise invalid(f"request body is not valid JSON: {exc}", code="invalid_json") from exc


def compressor_factory(args: argparse.Namespace) -> Callable[[], Any]:
    """The production factory: `Compressor.load` with the command line's options."""

    from cprs_engine.commands.compress import load_compressor

    def load():
        return load_compressor(args)

    return load


def _positive_int(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return n


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="engine_command", required=True)
    serve = sub.add_parser("serve", help="serve POST /v1/compress, /healthz and /readyz")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8081)
    serve.add_argument("--checkpoint", help="critic directory (default: the shipped critic)")
    serve.add_argument("--window-tokens", type=_positive_int, help="tokens per window (w)")
    serve.add_argument("--windows-per-pass", type=_positive_int, help="windows per forward (ρ)")
    serve.add_argument("--device", help="torch device, e.g. cpu or cuda:0 (default: best found)")
    serve.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        help="auto (default): bf16 autocast where the CPU has native bf16, else fp32",
    )
    serve.add_argument(
        "--max-body-bytes", type=_positive_int, default=ServiceSettings.max_body_bytes
    )
    serve.add_argument(
        "--max-context-chars", type=_positive_int, default=ServiceSettings.max_context_chars
    )
    serve.add_argument(
        "--max-concurrency",
        type=_positive_int,
        default=ServiceSettings.max_concurrency,
        help="threads tokenizing and decoding (forward passes run in the scheduler)",
    )
    serve.add_argument(
        "--max-queue",
        type=_positive_int,
        default=ServiceSettings.max_queue,
        help="compressions queued or running at once; more are answered 429 with Retry-After",
    )


def run(args: argparse.Namespace) -> int:
    import uvicorn

    settings = ServiceSettings(
        max_body_bytes=args.max_body_bytes,
        max_context_chars=args.max_context_chars,
        max_concurrency=args.max_concurrency,
        max_queue=args.max_queue,
    )
    app = create_app(compressor_factory(args), settings)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0
