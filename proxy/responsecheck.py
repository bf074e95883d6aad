"""What the proxy does with a backend's 2xx answer that is not what a chat completion can be.

A transparent proxy relays the backend's bytes. A 2xx body that is not JSON (or a stream that is
not SSE), though, is not an answer any client can read: the OpenAI SDK fails on it with a
decoding error that names neither the backend nor the proxy. The choice made here: such an
answer becomes a 502 `upstream_invalid_response` in OpenAI's error format, logged as a warning
and counted in `cprs_upstream_errors_total`, so the client's error names the real culprit and
the operator sees it. Valid JSON and SSE are never touched, whatever their content (unknown
fields, vendor extras, a JSON error object sent with status 200 - that one is the backend's
answer, and a client can read it).

Checked: a non-streamed body must be UTF-8 JSON; a stream's first chunk must start like SSE
(`data:`, `event:`, `id:`, `retry:`, a `:` comment or a blank line). Later stream chunks are
relayed unchecked: by then the status and headers have gone out, and a break in the middle of a
stream is the backend's own to report.
"""

from __future__ import annotations

import logging

from proxy.errors import UpstreamError
from proxy.jsonsafe import is_json

log = logging.getLogger(__name__)
_SSE_STARTS = (b"data:", b"event:", b"id:", b"retry:", b":", b"\n", b"\r")


class InvalidUpstreamResponse(UpstreamError):
    code = "upstream_invalid_response"

    def __init__(self, message: str, **kw):
        super().__init__(message, status=502, **kw)


def require_json(content: bytes, content_type: str | None) -> None:
    if not is_json(content):
        raise _invalid("a body that is not JSON", content_type)


def require_sse(first_chunk: bytes, content_type: str | None) -> None:
    head = first_chunk.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t")
    if not head.startswith(_SSE_STARTS):
        raise _invalid("a stream that is not server-sent events", content_type)


def _invalid(what: str, content_type: str | None) -> InvalidUpstreamResponse:
    kind = f"content-type {content_type!r}" if content_type else "no content-type"
    log.warning("backend answered 2xx with %s (%s); returning 502 to the client", what, kind)
    return InvalidUpstreamResponse(
        f"The backend answered with {what} ({kind}); the proxy cannot relay it as a chat "
        "completion."
    )
