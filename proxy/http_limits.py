"""How long a client may take to send a request, and OpenAI-shaped errors for broken HTTP.

uvicorn has no deadline for request headers: a connection that sends half a request line, or
nothing at all, stays open until the client goes (slowloris). The guarded protocols are uvicorn's
own (httptools when it is installed, as it is with the proxy's dependencies; else h11) with one
timer added: from the moment a connection opens (or a keep-alive
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
import errno
import functools
import json
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from proxy.config import ServerSettings
from proxy.errors import error_body

MAX_HEAD_BYTES = 64 * 1024  # request line + headers


def _json_error(status: int, reason: bytes, message: str, type_: str, code: str) -> list[bytes]:
    body = json.dumps(error_body(message, type_, None, code)).encode()
    return [
        b"HTTP/1.1 %d %s\r\n" % (status, reason),
        b"content-type: application/json\r\n",
        b"content-length: %d\r\n" % len(body),
        b"connection: close\r\n\r\n",
        body,
    ]


class _CoalescedWrites:
    """A connection's transport whose writes within one event-loop turn go out in one `send`.

    uvicorn writes a response's head and its body separately, one system call each (and, on
    loopback, each one wakes the reader): a tenth of a pass-through request's CPU. Buffered
    writes are flushed at the next turn of the loop, or before the connection closes."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport, self._loop = transport, loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _HeadDeadline:
    """The request-head deadline and the JSON 400, shared by both of uvicorn's HTTP protocols.
    Subclasses say when the connection is waiting for (the rest of) a request head."""

    header_timeout_s: float = 10.0
    _head_timer: asyncio.TimerHandle | None = None

    def _waiting_for_head(self) -> bool:
        raise NotImplementedError

    def _arm_head_timer(self) -> None:
        if self._head_timer is None and self.timeout_keep_alive_task is None:  # type: ignore[attr-defined]
            self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)  # type: ignore[attr-defined]

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _update_head_timer(self) -> None:
        if self._waiting_for_head():
            self._arm_head_timer()
        else:
            self._disarm_head_timer()

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._waiting_for_head():  # type: ignore[attr-defined]
            return
        cycle = self.cycle  # type: ignore[attr-defined]
        if cycle is not None and not cycle.response_complete:
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
        self.logger.warning("closing a connection: %s", parts[0].decode().strip())  # type: ignore[attr-defined]
        self.transport.write(b"".join(parts))  # type: ignore[attr-defined]
        self.transport.close()  # type: ignore[attr-defined]


class GuardedH11Protocol(_HeadDeadline, H11Protocol):
    """uvicorn's h11 protocol with a request-head deadline and JSON 400s for broken HTTP."""

    def _waiting_for_head(self) -> bool:
        return self.conn.their_state is h11.IDLE  # (part of) a request head, not complete yet

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_CoalescedWrites(transport, self.loop))  # type: ignore[arg-type]
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._update_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()  # arms uvicorn's keep-alive timer for the idle wait
        self._disarm_head_timer()


def _httptools_protocol() -> type | None:
    """The same guard over uvicorn's httptools protocol (a C parser: ~20% less added latency
    than h11 in BENCHMARKS.md), or None when httptools is not installed."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return None

    class GuardedHttpToolsProtocol(_HeadDeadline, HttpToolsProtocol):
        _head_done = False

        def _waiting_for_head(self) -> bool:
            return not self._head_done

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(_CoalescedWrites(transport, self.loop))  # type: ignore[arg-type]
            self._arm_head_timer()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if not self.transport.is_closing():
                self._update_head_timer()

        # h11 caps the head's size; httptools does not. A callback that raises makes the parser
        # raise HttpParserError, which uvicorn answers with send_400_response.
        def on_url(self, url: bytes) -> None:
            self._grow_head(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._grow_head(len(name) + len(value) + 4)
            super().on_header(name, value)

        def _grow_head(self, n: int) -> None:
            self._head_bytes = getattr(self, "_head_bytes", 0) + n
            if self._head_bytes > MAX_HEAD_BYTES:
                raise ValueError("request head too large")

        def on_message_begin(self) -> None:
            self._head_done, self._head_bytes = False, 0
            super().on_message_begin()

        def on_headers_complete(self) -> None:
            self._head_done = True
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_head_timer()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._disarm_head_timer()

    return GuardedHttpToolsProtocol


def guarded_protocol(header_timeout_s: float, http: str = "auto") -> type:
    """The guarded protocol class with this deadline: httptools when installed ("auto"), or h11."""
    base = _httptools_protocol() if http in ("auto", "httptools") else None
    if base is None:
        if http == "httptools":
            raise RuntimeError("httptools is not installed")
        base = GuardedH11Protocol
    return type(base.__name__, (base,), {"header_timeout_s": header_timeout_s})


def loop_setting(loop: str) -> str:
    """uvicorn's `loop` for `server.loop`: uvloop (a dependency of the proxy; -12% CPU per
    pass-through request in BENCHMARKS.md) through `new_event_loop` below, or asyncio's."""
    if loop == "asyncio" or (loop == "auto" and _uvloop_class() is None):
        return "asyncio"
    if _uvloop_class() is None:
        raise RuntimeError("server.loop is uvloop, and uvloop is not installed")
    return "proxy.http_limits:new_event_loop"


def new_event_loop() -> asyncio.AbstractEventLoop:
    cls = _uvloop_class()
    assert cls is not None
    return cls()


@functools.cache
def _uvloop_class() -> type | None:
    """uvloop's loop, except that closing it with handles still open (a library's idle
    keep-alive connection at shutdown, say) logs a warning where uvloop raises EBUSY: asyncio's
    own loop closes without complaint there, and an exiting server has nothing left to do."""
    try:
        import uvloop
    except ImportError:
        return None

    class Loop(uvloop.Loop):  # type: ignore[misc, name-defined]
        def close(self) -> None:
            try:
                super().close()
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise
                logging.getLogger(__name__).warning("event loop closed with handles open")

    return Loop


def uvicorn_settings(server: ServerSettings) -> dict[str, Any]:
    """uvicorn.run / uvicorn.Config keyword arguments for the proxy's read deadlines."""
    return {
        "http": guarded_protocol(server.header_timeout_s, server.http),
        "loop": loop_setting(server.loop),
        "timeout_keep_alive": server.keep_alive_s,
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,  # request line + headers; larger: 400
    }
