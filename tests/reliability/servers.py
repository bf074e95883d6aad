"""Processes for the load test and the soak: a streaming fake backend, and the proxy (its real
server settings, the QueryWordEngine double instead of the critic) - each in its own process so
that the load generator does not share an interpreter (and a GIL) with what it measures.

    python -m tests.reliability.servers backend --port P [--chunks 21] [--over-s 1.0]
    python -m tests.reliability.servers proxy --port P --backend URL [--redis URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def backend_app(chunks: int, over_s: float):
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
    from starlette.routing import Route

    async def stream(model: str):
        base = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": model}
        for i in range(chunks):
            delta = {"content": f"w{i} "}
            yield f"data: {json.dumps({**base, 'choices': [{'index': 0, 'delta': delta}]})}\n\n"
            await asyncio.sleep(over_s / chunks)
        yield "data: [DONE]\n\n"

    async def chat(request):
        body = await request.json()
        if body.get("stream"):
            return StreamingResponse(stream(body["model"]), media_type="text/event-stream")
        msg = {"role": "assistant", "content": "ok"}
        return JSONResponse({"id": "c", "object": "chat.completion", "model": body["model"],
                             "choices": [{"index": 0, "message": msg, "finish_reason": "stop"}]})  # fmt: skip

    async def health(request):
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ]
    )


def proxy_app(backend: str, redis_url: str | None, requests_path: str | None):
    sys.path.insert(0, str(ROOT / "tests" / "proxy"))
    from cprs_doubles import QueryWordEngine

    from proxy.app import create_app
    from proxy.config import config_from_dict

    cfg = {
        "models": [{"name": "gpt-4o", "model": "openai/gpt-4o", "api_base": backend + "/v1",
                    "api_key": "sk-backend-load"}],
        "tenants": [{"name": "load", "api_keys": ["sk-load"]}],
        "policies": {"default": {"threshold_tokens": 300}},
        "server": {"reload_interval_s": 0},
        "log": {"requests_path": requests_path, "level": "WARNING"},
    }  # fmt: skip
    if redis_url:
        cfg["cache"] = {"redis_url": redis_url, "key_prefix": "cprs-soak:"}
    config = config_from_dict(cfg)
    return config, create_app(config, engine=QueryWordEngine())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.reliability.servers")
    p.add_argument("what", choices=["backend", "proxy"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--chunks", type=int, default=21)
    p.add_argument("--over-s", type=float, default=1.0)
    p.add_argument("--backend")
    p.add_argument("--redis")
    p.add_argument("--requests-log")
    args = p.parse_args(argv)
    import uvicorn

    if args.what == "backend":
        # a long keep-alive: under saturation a 5 s idle timer races the proxy's next request
        app, extra = backend_app(args.chunks, args.over_s), {"timeout_keep_alive": 75}
    else:
        from proxy.http_limits import uvicorn_settings

        config, app = proxy_app(args.backend, args.redis, args.requests_log)
        extra = uvicorn_settings(config.server)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False,
                backlog=4096, **extra)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
