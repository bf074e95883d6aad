"""The engine's HTTP contract, written once for both ends: `cprs engine serve` parses requests
with it (cprs_engine/service.py) and the proxy's remote client builds them with it
(proxy/engine.py `RemoteEngines`).

    POST /v1/compress   CompressRequest.to_json()  ->  CompressionResult.to_dict() (result.py)
    errors              OpenAI's {"error": {"message", "type", "param", "code"}}, the `type`
                        of a status from `type_for_status` (the proxy answers with the same table)
    bodies              `read_limited`: a request body, refused past a size before it is read whole

Plain data and the engine's own errors; no torch, no starlette at import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from cprs_engine.errors import EmptyContext, EmptyQuery, InvalidInput

# OpenAI's `type` for an HTTP status, used where an error names none (the engine's and the proxy's)
_TYPE_FOR_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def type_for_status(status: int) -> str:
    if status in _TYPE_FOR_STATUS:
        return _TYPE_FOR_STATUS[status]
    return "server_error" if status >= 500 else "invalid_request_error"


def invalid(message: str, *, param: str | None = None, code: str = "invalid_input") -> InvalidInput:
    exc = InvalidInput(message, param=param)
    exc.code = code
    return exc


@dataclass(frozen=True)
class CompressRequest:
    """The body of `POST /v1/compress`: `Compressor.compress`'s arguments, on the wire."""

    query: str
    context: str
    granularity: str | None = None
    prompt: str | None = None
    instruction: str | None = None
    budget_tokens: int | None = None
    budget_unit: str | None = None  # what budget_tokens counts (cprs_engine/units.py)
    doc_type: str | None = None  # cprs_engine/doctypes.py; None: detected
    elision: str | None = None  # doctypes.ELISIONS; None: the type's default

    def to_json(self) -> dict[str, Any]:
        """The body to send; options left unset are left out."""
        return {f.name: v for f in fields(self) if (v := getattr(self, f.name)) is not None}

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `Compressor.compress`."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, body: Any) -> CompressRequest:
        """Validate a decoded body (unknown fields are ignored); raises the engine's InvalidInput
        errors (400), each naming its field."""
        if not isinstance(body, dict):
            raise invalid("request body must be a JSON object", code="invalid_type")
        texts = {}
        for name, empty in (("query", EmptyQuery), ("context", EmptyContext)):
            value = body.get(name)
            if value is None:
                raise empty(f"'{name}' is required")
            if not isinstance(value, str):
                raise invalid(f"'{name}' must be a string", param=name, code="invalid_type")
            if not value.strip():
                raise empty(f"'{name}' must not be empty")
            texts[name] = value
        opts: dict[str, Any] = {}
        for name in ("granularity", "prompt", "instruction", "budget_unit", "doc_type", "elision"):
            value = body.get(name)
            if value is not None and not isinstance(value, str):
                raise invalid(f"'{name}' must be a string or null", param=name, code="invalid_type")
            opts[name] = value
        budget = body.get("budget_tokens")
        if budget is not None and (
            isinstance(budget, bool) or not isinstance(budget, int) or budget < 1
        ):
            raise invalid(
                "'budget_tokens' must be a positive integer or null",
                param="budget_tokens",
                code="invalid_budget",
            )
        return cls(**texts, **opts, budget_tokens=budget)


def error_body(status: int, message: str, *, param: str | None, code: str | None) -> dict:
    """The engine's one error body: OpenAI's shape, typed by `type_for_status`."""
    return {
        "error": {"message": message, "type": type_for_status(status), "param": param, "code": code}
    }


async def read_limited(request: Any, limit: int, too_large: Callable[[str], Exception]) -> bytes:
    """A starlette request's body, refused with `too_large(message)` once it passes `limit`
    bytes: at once when Content-Length says so, else as soon as the stream does."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(f"request body is {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
