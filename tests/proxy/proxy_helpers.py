"""Unit-level helpers: the app in process (httpx ASGITransport), the backend as a MockTransport."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
from cprs_doubles import completion

BACKEND_KEY = "sk-backend-SECRET-123456"


class Backend:
    """Records what reaches the backend; `respond(request, body)` may return a custom response."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.headers: list[httpx.Headers] = []
        self.respond: Callable[[httpx.Request, dict], Any] | None = None
        self.models: list[str] | None = None  # GET /models answers these ids; None: 404
        self.model_requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path.endswith("/models"):
            self.model_requests.append(request)
            if self.models is None:
                return httpx.Response(404, json={"error": {"message": "no such route"}})
            data = [
                {"id": m, "object": "model", "created": 7, "owned_by": "b"} for m in self.models
            ]
            return httpx.Response(200, json={"object": "list", "data": data})
        body = json.loads(request.content)
        self.bodies.append(body)
        self.headers.append(request.headers)
        if self.respond is not None:
            out = self.respond(request, body)
            if asyncio.iscoroutine(out):
                out = await out
            if out is not None:
                return out
        return httpx.Response(200, json=completion(body))


def base_config(**sections: Any) -> dict:
    cfg: dict[str, Any] = {
        "models": [
            {
                "name": "gpt-4o",
                "model": "openai/gpt-4o",
                "api_base": "http://backend.test/v1",
                "api_key": BACKEND_KEY,
            }
        ],
        "policies": {"default": {"threshold_tokens": 300}},
    }
    cfg.update(sections)
    return cfg


def call(app, method: str, path: str, **kw: Any) -> httpx.Response:
    """One request through the app (no lifespan needed: the engine is injected)."""

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as c:
            return await c.request(method, path, **kw)

    return asyncio.run(go())
