"""Recording fake backends for the front doors beyond chat: OpenAI's Responses API, embeddings and
files beside chat completions (`FakeOpenAI`), as real HTTP servers (run with ServerThread).
Every request is recorded with its raw bytes, so a test can compare what the SDK sent with what
the backend received. (Anthropic's Messages API: `cprs_doubles.FakeAnthropic`.)"""

from __future__ import annotations

import json
from dataclasses import dataclass

from cprs_doubles import FakeBackend
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


def response_object(body: dict, text: str) -> dict:
    return {
        "id": "resp_1", "object": "response", "created_at": 1700000000, "model": body["model"],
        "status": "completed", "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
        "output": [{"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}],
        "usage": {"input_tokens": 11, "output_tokens": 2, "total_tokens": 13,
                  "input_tokens_details": {"cached_tokens": 0},
                  "output_tokens_details": {"reasoning_tokens": 0}},
        "vendor_extra": {"kept": True},
    }  # fmt: skip


def response_events(body: dict) -> list[tuple[str, dict]]:
    done = response_object(body, "Hello there")
    started = {**done, "status": "in_progress", "output": []}
    return [
        ("response.created", {"type": "response.created", "sequence_number": 0, "response": started}),
        ("response.output_text.delta", {"type": "response.output_text.delta", "sequence_number": 1,
         "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "Hello", "logprobs": []}),
        ("response.output_text.delta", {"type": "response.output_text.delta", "sequence_number": 2,
         "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": " there", "logprobs": []}),
        ("response.completed", {"type": "response.completed", "sequence_number": 3, "response": done}),
    ]  # fmt: skip


def sse(events: list[tuple[str, dict]]) -> bytes:
    return b"".join(f"event: {n}\ndata: {json.dumps(d)}\n\n".encode() for n, d in events)


@dataclass
class FakeOpenAI(FakeBackend):
    """FakeBackend (chat completions) plus responses, embeddings and files."""

    def app(self) -> Starlette:
        chat = super().app().routes
        return Starlette(
            routes=[
                *chat,
                Route("/v1/responses", self._responses, methods=["POST"]),
                Route("/v1/embeddings", self._embeddings, methods=["POST"]),
                Route("/v1/files", self._files, methods=["POST"]),
            ]
        )

    async def _record(self, request: Request) -> bytes:
        raw = await request.body()
        ctype = request.headers.get("content-type", "")
        body = json.loads(raw) if ctype.startswith("application/json") else None
        self.received.append(
            {"path": request.url.path, "body": body, "headers": dict(request.headers), "raw": raw}
        )
        return raw

    async def _responses(self, request: Request) -> Response:
        await self._record(request)
        body = self.received[-1]["body"]
        if body.get("stream"):
            return StreamingResponse(
                iter([sse(response_events(body))]), media_type="text/event-stream"
            )
        return JSONResponse(response_object(body, f"echo {len(json.dumps(body['input']))}"))

    async def _embeddings(self, request: Request) -> Response:
        await self._record(request)
        body = self.received[-1]["body"]
        n = len(body["input"]) if isinstance(body["input"], list) else 1
        data = [{"object": "embedding", "index": i, "embedding": [0.5, -0.25]} for i in range(n)]
        return JSONResponse({"object": "list", "data": data, "model": body["model"],
                             "usage": {"prompt_tokens": 3, "total_tokens": 3}})  # fmt: skip

    async def _files(self, request: Request) -> Response:
        raw = await self._record(request)
        return JSONResponse({"id": "file-1", "object": "file", "bytes": len(raw), "created_at": 1,
                             "filename": "data.jsonl", "purpose": "batch", "status": "uploaded"})  # fmt: skip
