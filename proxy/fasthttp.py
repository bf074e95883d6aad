"""A lean HTTP/1.1 transport for the backend calls of the hot path (chat, responses, messages).

Why: on a pass-through request, httpx's default transport (httpcore + anyio + h11) was a third of
the proxy's CPU (py-spy over `cprs serve` in front of an instant backend): anyio cancel scopes
and backend detection on every read, lock and event, a pure-Python parser, the request head and
body sent in two `send` calls. This transport keeps httpx's request and response types (so
`proxy/upstream.py` reads a response the same way whichever transport made it) and does the
rest on an asyncio protocol: uvicorn's C parser (httptools) reads the response, the request goes
out in one write, timeouts are timer callbacks.

Scope: plain `http://` POSTs with an in-memory body, built by `Upstream._request`. TLS backends,
proxies from the environment, streamed uploads and everything `proxy/passthrough.py` relays keep
httpx's own transport. Behaviour kept from it: the pool (at most `max_connections` open, idle
ones kept `keepalive_expiry` seconds, at most `max_keepalive` of them), httpx's timeouts
(connect, read = the longest silence between bytes, pool; a backend that never reads the body
times out reading the answer, as long as httpx's write timeout would), and its exceptions (ConnectError,
ConnectTimeout, ReadTimeout, ReadError, RemoteProtocolError, LocalProtocolError, PoolTimeout),
which `proxy.errors.from_exception` maps. Closing a response before its end closes the
connection, so a client that leaves closes the backend call. A connection goes back to the pool
only after a complete response that allows keep-alive.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import AsyncIterator

import httptools
import httpx

_HIGH_WATER = 256 * 1024  # buffered response bytes before the socket stops being read
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]|^[ \t]|[ \t]$")  # as h11 refuses
_NO_BODY = (204, 304)


class _Conn(asyncio.Protocol):
    """One connection: the protocol, the parser of the response being read, its buffer."""

    def __init__(self, key: tuple[str, int]):
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closed = False  # the socket is gone (or going): never reused
        self.lost: BaseException | None = None  # why it went, if it went with an error
        self.eof = False
        self.idle_since = 0.0
        self._loop = asyncio.get_running_loop()
        self._waiter: asyncio.Future | None = None
        self._wait_until = 0.0  # when the current wait times out
        self._timer: asyncio.TimerHandle | None = None  # one timer for all waits (see wait)
        self._timer_at = 0.0
        self._paused = False
        self._busy = False
        self._start(None)

    def _start(self, request: httpx.Request | None) -> None:
        self._busy = request is not None
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.error: Exception | None = None
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.to_close = False  # body runs until the connection closes (no length, not chunked)

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self._busy:  # bytes nobody asked for: this connection cannot be trusted again
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.error = httpx.RemoteProtocolError("the backend switched protocols")
        except httptools.HttpParserError as exc:
            self.error = httpx.RemoteProtocolError(f"malformed response from the backend: {exc}")
        if self.error is not None:
            self.close()
        elif self.buffered > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # asyncio closes the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = self.eof = True
        self.lost = exc
        self._wake()

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if 100 <= self.status < 200:  # an interim answer (100 Continue): the real one follows
            self.headers = []
            return
        self.headers_done = True
        names = {n.lower() for n, _ in self.headers}
        self.to_close = (
            b"content-length" not in names
            and b"transfer-encoding" not in names
            and self.status not in _NO_BODY
        )

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)

    def on_message_complete(self) -> None:
        if self.headers_done:
            self.complete = True
            self.keep_alive = self.parser.should_keep_alive()  # only valid inside the callback

    # waiting
    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def wait(self, timeout: float | None, request: httpx.Request) -> None:
        """Until something arrives (bytes, EOF, an error), at most `timeout` seconds of silence.

        A stream waits once per chunk: rather than a timer per wait, one timer stays armed and,
        when it fires before the current wait's deadline, re-arms itself for it."""
        loop = self._loop
        self._waiter = w = loop.create_future()
        if timeout is not None:
            self._wait_until = until = loop.time() + timeout
            if self._timer is None or until < self._timer_at:
                self._arm(until)
        try:
            await w
        except TimeoutError:
            raise httpx.ReadTimeout("timed out reading from the backend", request=request) from None
        finally:
            self._waiter = None

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = self._loop.call_at(when, self._timed_out), when

    def _timed_out(self) -> None:
        self._timer = None
        w = self._waiter
        if w is None or w.done():
            return  # nobody waits: the next wait arms a timer again
        if self._loop.time() >= self._wait_until:
            w.set_exception(TimeoutError())
        else:
            self._arm(self._wait_until)

    def stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def take(self) -> bytes:
        data = self.chunks.popleft()
        self.buffered -= len(data)
        if self._paused and self.buffered < _HIGH_WATER // 4 and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    def check(self, request: httpx.Request) -> None:
        """Raise what went wrong on the connection, if anything did (nothing left to read)."""
        if self.error is not None:
            raise self.error
        if self.eof:
            if self.to_close and self.headers_done:
                self.complete = True  # the body ran to the connection's end, as announced
                return
            if isinstance(self.lost, OSError):
                raise httpx.ReadError(str(self.lost) or "connection reset", request=request)
            what = "without a complete response body" if self.headers_done else "without a response"
            raise httpx.RemoteProtocolError(
                f"the backend closed the connection {what}", request=request
            )

    def reusable(self) -> bool:
        return (
            self.complete
            and not self.closed
            and not self.eof
            and not self.to_close
            and not self.chunks
            and self.keep_alive
            and self.transport is not None
            and not self.transport.get_write_buffer_size()  # all of the request went out
        )

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _Body(httpx.AsyncByteStream):
    def __init__(self, conn: _Conn, pool: FastTransport, request: httpx.Request, timeout):
        self._conn, self._pool, self._request, self._timeout = conn, pool, request, timeout
        self._done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        while True:
            if conn.chunks:
                yield conn.take()
            elif conn.complete:
                return
            else:
                conn.check(self._request)
                if conn.complete:
                    return
                await conn.wait(self._timeout, self._request)

    async def aclose(self) -> None:
        if self._done:
            return
        self._done = True
        conn = self._conn
        conn._busy = False
        if conn.reusable():
            self._pool.release(conn)
        else:
            self._pool.discard(conn)


class FastTransport(httpx.AsyncBaseTransport):
    """The pool of connections to plain-HTTP backends, with httpx's limits and timeouts."""

    def __init__(
        self, *, max_connections: int = 1000, max_keepalive: int = 100, keepalive_expiry=4.0
    ):
        self.max_connections = max_connections
        self.max_keepalive = max_keepalive
        self.keepalive_expiry = keepalive_expiry
        self._idle: dict[tuple[str, int], list[_Conn]] = {}
        self._n_idle = 0
        self._open = 0  # connections open or opening, idle ones included
        self._waiters: deque[asyncio.Future] = deque()
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme != "http":
            raise httpx.UnsupportedProtocol("FastTransport serves http:// only", request=request)
        timeout = request.extensions.get("timeout", {})
        head = _head(request)
        conn = await self._acquire((url.host, url.port or 80), timeout, request)
        try:
            conn._start(request)
            assert conn.transport is not None
            conn.transport.write(head + request.content)
            read_s = timeout.get("read")
            while not conn.headers_done:
                conn.check(request)
                if conn.headers_done:
                    break
                await conn.wait(read_s, request)
        except BaseException:
            conn._busy = False
            self.discard(conn)
            raise
        return httpx.Response(
            conn.status,
            headers=conn.headers,
            stream=_Body(conn, self, request, read_s),
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def _acquire(self, key: tuple[str, int], timeout: dict, request) -> _Conn:
        """An idle connection to `key`, else a new one once the pool has room (pool timeout)."""
        deadline = None
        while True:
            idle = self._idle.get(key)
            now = time.monotonic()
            while idle:
                conn = idle.pop()
                self._n_idle -= 1
                if conn.closed or conn.eof or now - conn.idle_since > self.keepalive_expiry:
                    self.discard(conn)
                    continue
                return conn
            if self._open < self.max_connections or self._close_one_idle():
                break
            pool_s = timeout.get("pool")
            if deadline is None and pool_s is not None:
                deadline = now + pool_s
            await self._wait_for_room(None if deadline is None else deadline - now, request)
        self._open += 1
        try:
            return await self._connect(key, timeout.get("connect"), request)
        except BaseException:
            self._open -= 1
            self._notify()
            raise

    async def _connect(self, key: tuple[str, int], timeout: float | None, request) -> _Conn:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(lambda: _Conn(key), key[0], key[1])
        except TimeoutError:
            raise httpx.ConnectTimeout(
                "timed out connecting to the backend", request=request
            ) from None
        except OSError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        return conn

    async def _wait_for_room(self, timeout: float | None, request) -> None:
        w = asyncio.get_running_loop().create_future()
        self._waiters.append(w)
        try:
            async with asyncio.timeout(max(timeout, 0) if timeout is not None else None):
                await w
        except TimeoutError:
            raise httpx.PoolTimeout("no backend connection free in time", request=request) from None
        finally:
            if w in self._waiters:
                self._waiters.remove(w)

    def _close_one_idle(self) -> bool:
        for conns in self._idle.values():
            if conns:
                self._n_idle -= 1
                self.discard(conns.pop(0))
                return True
        return False

    def _notify(self) -> None:
        while self._waiters:
            w = self._waiters.popleft()
            if not w.done():
                w.set_result(None)
                return

    def release(self, conn: _Conn) -> None:
        """A connection whose response was read to its end goes back to the pool."""
        conn.stop_timer()
        if self._closed or self._n_idle >= self.max_keepalive:
            self.discard(conn)
            return
        conn.idle_since = time.monotonic()
        self._idle.setdefault(conn.key, []).append(conn)
        self._n_idle += 1
        self._notify()

    def discard(self, conn: _Conn) -> None:
        conn.stop_timer()
        conn.close()
        self._open -= 1
        self._notify()

    async def aclose(self) -> None:
        self._closed = True
        for conns in self._idle.values():
            for conn in conns:
                self.discard(conn)
        self._idle.clear()
        self._n_idle = 0


def _head(request: httpx.Request) -> bytes:
    """The request line and headers, refusing values that would break the head (as h11 does)."""
    lines = [b"%s %s HTTP/1.1\r\n" % (request.method.encode(), request.url.raw_path)]
    for name, value in request.headers.raw:
        if _BAD_VALUE.search(value) or b":" in name or _BAD_VALUE.search(name):
            raise httpx.LocalProtocolError("Illegal header value", request=request)
        lines.append(b"%s: %s\r\n" % (name, value))
    lines.append(b"\r\n")
    return b"".join(lines)
