"""The proxy's exceptions, and the one function that turns any of them into OpenAI's error body.

    ProxyError                        base; `status`, `type`, `code`, `param`, `message`
    ├── InvalidRequest (400)          the client's fault; `param` names the field
    │   ├── InvalidJSON               the body is not JSON, or not a JSON object
    │   ├── MissingQuery              a document must be compressed but no question was found
    │   └── DocumentTooLong           the engine refused the document (failure_mode: closed)
    ├── PayloadTooLarge (413)         body over server.max_body_bytes
    ├── RequestTimeout (408)          body not received within server.body_timeout_s
    ├── AuthenticationFailed (401)    missing or unknown API key (tenants configured)
    ├── ModelNotFound (404)           no route for the model, or the policy does not allow it
    ├── CompressionFailed (503)       engine failed and the policy says failure_mode: closed
    │   └── CompressionTimeout (504)  engine too slow, failure_mode: closed
    └── UpstreamError (status kept)   the backend answered an error; `body` is its own error body
        ├── UpstreamTimeout (504)     no answer within server.upstream_timeout_s
        └── UpstreamUnreachable (502) connection refused, reset, DNS, TLS

Everything that leaves the proxy as an error goes through `error_body`, streamed ones too (as an
SSE `data:` event), so clients see one shape: `{"error": {"message","type","param","code"}}`.
Foreign exceptions (httpx, litellm) are converted at the boundary in `from_exception`.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse

from cprs_engine.wire import type_for_status  # one status -> type table for engine and proxy


class ProxyError(Exception):
    status = 500
    type = "server_error"
    code: str | None = "internal_error"
    param: str | None = None

    def __init__(
        self, message: str, *, param: str | None = None, code: str | None = None, status=None
    ):
        super().__init__(message)
        self.message = message
        if param is not None:
            self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = int(status)


class InvalidRequest(ProxyError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class InvalidJSON(InvalidRequest):
    code = "invalid_json"


class MissingQuery(InvalidRequest):
    code = "missing_query"
    param = "messages"


class DocumentTooLong(InvalidRequest):
    code = "context_length_exceeded"
    param = "messages"


class PayloadTooLarge(ProxyError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RequestTimeout(ProxyError):
    status = 408
    type = "invalid_request_error"
    code = "request_timeout"


class AuthenticationFailed(ProxyError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class ModelNotFound(ProxyError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"
    param = "model"


class CompressionFailed(ProxyError):
    status = 503
    type = "server_error"
    code = "compression_failed"


class CompressionTimeout(CompressionFailed):
    status = 504
    code = "compression_timeout"


class UpstreamError(ProxyError):
    """The backend's error. `body` is the backend's JSON error object when it sent one."""

    type = "api_error"
    code = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        status: int = 502,
        body: dict | None = None,
        headers: dict[str, str] | None = None,
        **kw: Any,
    ):
        super().__init__(message, status=status, **kw)
        self.body = body
        self.headers = headers or {}  # the backend's retry-after / rate-limit headers
        self.type = type_for_status(self.status) if self.status != 502 else "api_error"


class UpstreamTimeout(UpstreamError):
    code = "upstream_timeout"

    def __init__(self, message: str = "the backend did not answer in time", **kw: Any):
        super().__init__(message, status=504, **kw)
        self.type = "timeout_error"


class UpstreamUnreachable(UpstreamError):
    code = "upstream_unreachable"

    def __init__(self, message: str = "could not connect to the backend", **kw: Any):
        super().__init__(message, status=502, **kw)
        self.type = "api_error"


def error_body(
    message: str, type: str, param: str | None = None, code: str | int | None = None
) -> dict:
    """OpenAI's error body. The one place it is built (a lone surrogate in it becomes `\\udxxx`)."""
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def body_for(exc: ProxyError) -> dict:
    """The body for an exception: the backend's own OpenAI-format body when it sent one."""
    if isinstance(exc, UpstreamError) and _is_openai_error(exc.body):
        return exc.body  # type: ignore[return-value]
    return error_body(exc.message, exc.type, exc.param, exc.code)


def error_response(exc: ProxyError, headers: dict[str, str] | None = None) -> JSONResponse:
    kept = {k: v for k, v in getattr(exc, "headers", {}).items() if k.lower() != "content-type"}
    return JSONResponse(body_for(exc), status_code=exc.status, headers={**kept, **(headers or {})})


def sse_error(exc: ProxyError) -> bytes:
    """An error in the middle of a stream: one SSE event the OpenAI SDK raises as APIError."""
    return b"data: " + json.dumps(body_for(exc)).encode() + b"\n\n"


def _is_openai_error(body: Any) -> bool:
    return (
        isinstance(body, dict)
        and isinstance(body.get("error"), dict)
        and isinstance(body["error"].get("message"), str)
    )


def upstream_error_from_response(
    status: int, content: bytes, secrets: tuple[str, ...], headers: dict[str, str] | None = None
) -> UpstreamError:
    """A backend's non-2xx answer. Its OpenAI-format body is kept; anything else is wrapped."""
    text = redact(content.decode("utf-8", errors="replace"), secrets)
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if _is_openai_error(body):
        return UpstreamError(body["error"]["message"], status=status, body=body, headers=headers)
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        # e.g. vLLM/ollama's `{"error": "..."}`
        return UpstreamError(body["error"], status=status, headers=headers)
    snippet = text.strip()[:500] or f"HTTP {status}"
    return UpstreamError(f"backend error ({status}): {snippet}", status=status, headers=headers)


def from_exception(exc: BaseException, secrets: tuple[str, ...] = ()) -> ProxyError:
    """Convert httpx / litellm / anything into a ProxyError, keeping the upstream status."""
    if isinstance(exc, ProxyError):
        return exc
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout()
    if isinstance(exc, httpx.TransportError):
        return UpstreamUnreachable(f"could not reach the backend: {type(exc).__name__}")
    mod = type(exc).__module__ or ""
    if mod.startswith(("litellm", "openai")):
        return _from_litellm(exc, secrets)
    return ProxyError(f"internal error: {type(exc).__name__}")


def _from_litellm(exc: BaseException, secrets: tuple[str, ...]) -> ProxyError:
    name = type(exc).__name__
    # first line only: litellm appends tracebacks to some messages, which clients must not see
    raw = str(getattr(exc, "message", None) or exc).strip().splitlines()
    message = redact(raw[0] if raw else name, secrets)[:500]
    if name in ("Timeout", "APITimeoutError"):
        return UpstreamTimeout()
    if name in ("APIConnectionError", "ServiceUnavailableError") and not getattr(
        exc, "status_code", None
    ):
        return UpstreamUnreachable(f"could not reach the backend: {message[:300]}")
    status = getattr(exc, "status_code", None) or 502
    if name == "APIConnectionError":
        return UpstreamUnreachable(f"could not reach the backend: {message[:300]}")
    return UpstreamError(message, status=int(status))


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """Remove backend keys from any text that might be logged or echoed to a client."""
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, "[redacted]")
    return text
