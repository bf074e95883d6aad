"""`POST /v1/messages` (Anthropic's Messages API, for the `anthropic` SDK): the shared front door
(proxy.frontdoor) with the body shown to detection by `proxy.views.messages_view`.

Auth: `x-api-key` or a bearer token, both mapping to the same tenants. Errors, streamed ones too,
use Anthropic's shape `{"type": "error", "error": {"type", "message"}}`.

Forwarding: routes to `anthropic/*` get the body natively at `{api_base}/v1/messages` (the
client's `anthropic-version` / `anthropic-beta` headers go along) with only document text
changed, and the backend's bytes come back as they are, streamed events included. Every other
route goes through litellm's Anthropic-Messages interface (`litellm.anthropic_interface`), which
translates to the route's API (OpenAI chat completions for OpenAI-format routes) and back.

`cache_control` breakpoints are never moved or dropped: compression only swaps text inside a
block, it is deterministic and cached, and a follow-up excerpt goes into the message of the turn
that asks it, so every byte up to a breakpoint is the same turn after turn.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.responses import JSONResponse, Response

from proxy import translated
from proxy.errors import InvalidRequest, ProxyError, UpstreamError
from proxy.routing import Backend
from proxy.upstream import Upstream, _litellm
from proxy.validate import _kind, check_model, check_stream
from proxy.views import View, messages_view

DEFAULT_BASE = "https://api.anthropic.com"
DEFAULT_VERSION = "2023-06-01"
_FORWARDED = ("anthropic-version", "anthropic-beta")
# Anthropic's error `type` for an HTTP status
_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
    504: "timeout_error", 529: "overloaded_error",
}  # fmt: skip


def anthropic_error(exc: ProxyError) -> dict:
    """Anthropic's error body: the backend's own when it sent one in that shape."""
    body = exc.body if isinstance(exc, UpstreamError) else None
    if (
        isinstance(body, dict)
        and body.get("type") == "error"
        and isinstance(body.get("error"), dict)
    ):
        return body
    kind = _TYPES.get(exc.status, "api_error" if exc.status >= 500 else "invalid_request_error")
    message = exc.message if exc.param is None else f"{exc.param}: {exc.message}"
    return {"type": "error", "error": {"type": kind, "message": message}}


class MessagesDoor:
    name = "messages"

    def check(self, body: dict) -> None:
        check_model(body)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InvalidRequest(
                f"messages must be a non-empty array, got {_kind(messages)}",
                param="messages", code="invalid_type",
            )  # fmt: skip
        for i, msg in enumerate(messages):
            if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
                raise InvalidRequest(
                    f"messages.{i} must be an object with a string `role`",
                    param=f"messages.{i}", code="invalid_type",
                )  # fmt: skip
            if not isinstance(msg.get("content"), str | list):
                raise InvalidRequest(
                    f"messages.{i}.content must be a string or an array of blocks",
                    param=f"messages.{i}.content", code="invalid_type",
                )  # fmt: skip
        system = body.get("system")
        if system is not None and not isinstance(system, str | list):
            raise InvalidRequest(
                "system must be a string or an array of blocks", param="system",
                code="invalid_type",
            )  # fmt: skip
        check_stream(body)

    def view(self, body: dict) -> View:
        return messages_view(body)

    async def complete(
        self, upstream: Upstream, backend: Backend, body: dict, headers: Mapping[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        if backend.provider == "anthropic":
            return await upstream.complete(backend, body, _url(backend), _auth(backend, headers))
        resp = await _litellm_messages(backend, body)
        return 200, {"content-type": "application/json"}, translated.dump(resp).encode()

    async def stream(
        self, upstream: Upstream, backend: Backend, body: dict, headers: Mapping[str, str]
    ) -> tuple[dict[str, str], AsyncIterator[bytes]]:
        if backend.provider == "anthropic":
            return await upstream.stream(backend, body, _url(backend), _auth(backend, headers))
        resp = await _litellm_messages(backend, body)
        return {}, translated.events(resp, backend)

    def error_response(self, exc: ProxyError, headers: dict[str, str]) -> Response:
        kept = {k: v for k, v in getattr(exc, "headers", {}).items() if k.lower() != "content-type"}
        return JSONResponse(
            anthropic_error(exc), status_code=exc.status, headers={**kept, **headers}
        )

    def sse_error(self, exc: ProxyError) -> bytes:
        return b"event: error\ndata: " + json.dumps(anthropic_error(exc)).encode() + b"\n\n"


def _url(backend: Backend) -> str:
    base = (backend.api_base or DEFAULT_BASE).rstrip("/")
    if base.endswith("/v1/messages"):
        return base
    return base + ("/messages" if base.endswith("/v1") else "/v1/messages")


def _auth(backend: Backend, headers: Mapping[str, str]) -> dict[str, str]:
    out = {k: headers[k] for k in _FORWARDED if k in headers}
    out.setdefault("anthropic-version", DEFAULT_VERSION)
    if backend.api_key:
        out["x-api-key"] = backend.api_key
    return out


async def _litellm_messages(backend: Backend, body: dict) -> Any:
    litellm, _ = _litellm()
    from litellm.anthropic_interface import messages

    # OpenAI-format routes are chat-completions backends (vLLM, DeepSeek...): litellm would
    # otherwise send OpenAI models to the Responses API, which many of them do not serve.
    litellm.use_chat_completions_url_for_anthropic_messages = True
    return await translated.call(messages.acreate, backend, body)
