"""A fake OpenAI-compatible backend for the proxy benchmark: answers at once, same bytes every time.

    python -m benchmarks.fake_backend --port P [--host 127.0.0.1]

`POST /v1/chat/completions` returns one fixed small completion (or, with `"stream": true`, the
same text as three SSE chunks and `[DONE]`); `GET /health` answers `ok`. It never looks at the
prompt beyond `stream` and `model`, so its own cost is the same for every proxy in front of it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

ANSWER = "The special magic number is 7421983."


def completion(model: str) -> dict:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": ANSWER},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 9, "total_tokens": 19},
    }


def _chunks(model: str):
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0, "model": model}
    words = ANSWER.split(" ")
    parts = [" ".join(words[:2]), " " + " ".join(words[2:4]), " " + " ".join(words[4:])]
    for i, text in enumerate(parts):
        delta = {"role": "assistant", "content": text} if i == 0 else {"content": text}
        choice = {"index": 0, "delta": delta, "finish_reason": None}
        yield f"data: {json.dumps(base | {'choices': [choice]})}\n\n"
    done = {"index": 0, "delta": {}, "finish_reason": "stop"}
    yield f"data: {json.dumps(base | {'choices': [done]})}\n\n"
    yield "data: [DONE]\n\n"


async def chat(request: Request) -> Response:
    body = await request.json()
    model = str(body.get("model", "bench"))
    if body.get("stream"):
        return StreamingResponse(_chunks(model), media_type="text/event-stream")
    return JSONResponse(completion(model))


async def health(request: Request) -> Response:
    return PlainTextResponse("ok")


def create_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/chat/completions", chat, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.fake_backend")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    import uvicorn

    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
