"""How long a client may take to send a request, and OpenAI-shaped errors for broken HTTP.

uvicorn has no deadline for request headers: a connection that sends half a request line, or
nothing at all, stays open until the client goes (slowloris). `GuardedH11Protocol` is uvicorn's
h11 protocol with one timer added: from the moment a connection opens (or a keep-alive
connection starts a new request) the complete request head must arrive within
`server.header_timeout_s`, else the proxy answers 408 and closes. Idle keep-alive connections
between requests are closed after `server.keep_alive_s` (uvicorn's own `timeout_keep_alive`).
The body's deadline (`server.body_timeout_s`) is kept in the app, where the body is read
(`read_body` in proxy/chat.py raises RequestTimeout).

Malformed HTTP (a bare CR in a header, `Content-Length: abc`, a broken request line) is refused
by h11 before any ASGI app sees it; uvicorn would answer a plain-text 400. Here that answer is
OpenAI's JSON error body instead (`invalid_http`). What the server cannot answer at all: a
connection that closes mid-request, or bytes that are not HTTP after the connection dropped.

`uvicorn_settings(server)` is what `cprs serve` (and the reliability suite) hands to uvicorn.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from proxy.config import ServerSettings
from proxy.errors import error_body


def _json_error(status: int, reason: bytes, message: str, type_: str, code: str) -> list[bytes]:
    body = json.dumps(error_body(message, type_, None, code)).encode()
    return [
        b"HTTP/1.1 %d %s\r\n" % (status, reason),
        b"content-type: application/json\r\n",
        b"content-length: %d\r\n" % len(body),
        b"connection: close\r\n\r\n",
        body,
    ]


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-head deadline and JSON 400s for broken HTTP."""

    header_timeout_s: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = None
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:  # (part of) a request head, not complete yet
            self._arm_head_timer()
        else:
            self._disarm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()  # arms uvicorn's keep-alive timer for the idle wait
        self._disarm_head_timer()

    def _arm_head_timer(self) -> None:
        if self._head_timer is None and self.timeout_keep_alive_task is None:
            self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered: its own deadlines apply
        msg = f"The request head did not arrive within {self.header_timeout_s:g} seconds."
        self._write_and_close(
            _json_error(408, b"Request Timeout", msg, "invalid_request_error", "request_timeout")
        )

    def send_400_response(self, msg: str) -> None:
        self._disarm_head_timer()
        text = "Invalid HTTP request received (the request line or headers are malformed)."
        self._write_and_close(
            _json_error(400, b"Bad Request", text, "invalid_request_error", "invalid_http")
        )

    def _write_and_close(self, parts: list[bytes]) -> None:
        self.logger.warning("closing a connection: %s", parts[0].decode().strip())
        self.transport.write(b"".join(parts))
        self.transport.close()


def guarded_protocol(header_timeout_s: float) -> type[GuardedH11Protocol]:
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"header_timeout_s": header_timeout_s})


def uvicorn_settings(server: ServerSettings) -> dict[str, Any]:
    """uvicorn.run / uvicorn.Config keyword arguments for the proxy's read deadlines."""
    return {
        "http": guarded_protocol(server.header_timeout_s),
        "timeout_keep_alive": server.keep_alive_s,
        "h11_max_incomplete_event_size": 64 * 1024,  # request line + headers; larger -> 400
    }
