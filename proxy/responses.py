"""`POST /v1/responses` (OpenAI's Responses API): the shared front door (proxy.frontdoor) with
the Responses body shown to detection by `proxy.views.responses_view`.

Forwarding: on OpenAI-format routes the body goes to `{api_base}/responses` with only document
text changed, and the backend's bytes (JSON, or SSE events) come back as they are, so
`previous_response_id`, `store` and every other field work as the backend implements them. Other
routes go through litellm's Responses support (`litellm.aresponses`), which translates to the
provider's own API; its answer is serialized back as Responses JSON / SSE events.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.responses import Response

from proxy import translated
from proxy.errors import InvalidRequest, ProxyError, error_response, sse_error
from proxy.routing import Backend
from proxy.upstream import Upstream, _litellm
from proxy.validate import _kind, check_model, check_stream
from proxy.views import View, responses_view

log = logging.getLogger(__name__)


class ResponsesDoor:
    name = "responses"

    def check(self, body: dict) -> None:
        check_model(body)
        items = body.get("input")
        if items is None:
            raise InvalidRequest(
                "Missing required parameter: 'input'.", param="input",
                code="missing_required_parameter",
            )  # fmt: skip
        if not isinstance(items, str | list):
            raise InvalidRequest(
                f"input must be a string or an array of items, got {_kind(items)}",
                param="input",
                code="invalid_type",
            )
        for i, item in enumerate(items if isinstance(items, list) else []):
            if not isinstance(item, dict):
                raise InvalidRequest(
                    f"input[{i}] must be an object", param=f"input[{i}]", code="invalid_type"
                )
        instructions = body.get("instructions")
        if instructions is not None and not isinstance(instructions, str):
            raise InvalidRequest(
                "instructions must be a string", param="instructions", code="invalid_type"
            )
        check_stream(body)

    def view(self, body: dict) -> View:
        return responses_view(body)

    async def complete(
        self, upstream: Upstream, backend: Backend, body: dict, headers: Mapping[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        if backend.passthrough:
            return await upstream.complete(backend, body, url=_url(backend))
        resp = await _litellm_responses(backend, body)
        return 200, {"content-type": "application/json"}, translated.dump(resp).encode()

    async def stream(
        self, upstream: Upstream, backend: Backend, body: dict, headers: Mapping[str, str]
    ) -> tuple[dict[str, str], AsyncIterator[bytes]]:
        if backend.passthrough:
            return await upstream.stream(backend, body, url=_url(backend))
        resp = await _litellm_responses(backend, body)
        return {}, translated.events(resp, backend)

    def error_response(self, exc: ProxyError, headers: dict[str, str]) -> Response:
        return error_response(exc, headers)

    def sse_error(self, exc: ProxyError) -> bytes:
        return b"event: error\n" + sse_error(exc)


def _url(backend: Backend) -> str:
    return backend.api_base.rstrip("/") + "/responses"  # type: ignore[union-attr]


async def _litellm_responses(backend: Backend, body: dict) -> Any:
    litellm, _ = _litellm()
    return await translated.call(litellm.aresponses, backend, body, num_retries=0)
