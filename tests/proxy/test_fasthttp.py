"""proxy/fasthttp.py against a scripted loopback server: exact bytes in, httpx behaviour out."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest

from proxy.fasthttp import FastTransport

OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + await reader.readexactly(length)


class Server:
    """asyncio.start_server on a free port; counts connections and keeps what it received."""

    def __init__(self, answer: Handler):
        self.answer, self.connections, self.requests = answer, 0, []
        self.closed_by_client = asyncio.Event()

    async def __aenter__(self) -> Server:
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1/x"
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    async def _conn(self, reader, writer) -> None:
        self.connections += 1
        try:
            await self.answer(reader, writer)
            if await reader.read(1) == b"":
                self.closed_by_client.set()
        except (ConnectionError, asyncio.IncompleteReadError):
            self.closed_by_client.set()
        finally:
            writer.close()


def keep_answering(response: bytes, requests: list | None = None) -> Handler:
    async def answer(reader, writer):
        while True:
            try:
                req = await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            if requests is not None:
                requests.append(req)
            writer.write(response)
            await writer.drain()

    return answer


def post(url: str, *, read: float | None = 5.0, pool: float | None = 5.0, body=b'{"a":1}'):
    timeout = {"connect": 5.0, "read": read, "write": 5.0, "pool": pool}
    headers = [(b"content-type", b"application/json"), (b"authorization", b"Bearer sk-1")]
    return httpx.Request(
        "POST", url, headers=headers, content=body, extensions={"timeout": timeout}
    )


async def fetch(t: FastTransport, req: httpx.Request) -> httpx.Response:
    resp = await t.handle_async_request(req)
    try:
        await resp.aread()
    finally:
        await resp.aclose()
    return resp


def test_request_bytes_and_keep_alive_reuse():
    async def main():
        seen: list[bytes] = []
        async with Server(keep_answering(OK, seen)) as srv:
            t = FastTransport()
            for _ in range(3):
                resp = await fetch(t, post(srv.url + "?q=1"))
                assert (resp.status_code, resp.content) == (200, b"{}")
                assert resp.headers["content-type"] == "application/json"
            await t.aclose()
        assert srv.connections == 1  # one connection, reused
        head, _, body = seen[0].partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0] == b"POST /v1/x?q=1 HTTP/1.1"
        assert b"authorization: Bearer sk-1" in lines and b"Content-Length: 7" in lines
        assert body == b'{"a":1}'

    asyncio.run(main())


def test_expired_idle_connection_is_not_reused():
    async def main():
        async with Server(keep_answering(OK)) as srv:
            t = FastTransport(keepalive_expiry=0.05)
            await fetch(t, post(srv.url))
            await asyncio.sleep(0.1)
            await fetch(t, post(srv.url))
            await t.aclose()
        assert srv.connections == 2

    asyncio.run(main())


def test_connection_close_and_http10_are_not_reused():
    close = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}"
    http10 = b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n{}"

    async def main(answer):
        async with Server(keep_answering(answer)) as srv:
            t = FastTransport()
            for _ in range(2):
                assert (await fetch(t, post(srv.url))).content == b"{}"
            await t.aclose()
        return srv.connections

    assert asyncio.run(main(close)) == 2
    assert asyncio.run(main(http10)) == 2


def test_chunked_stream_arrives_in_pieces_and_decoded():
    async def answer(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n")
        writer.write(b"transfer-encoding: chunked\r\n\r\n")
        for part in (b"data: 1\n\n", b"data: [DONE]\n\n"):
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            await writer.drain()
            await asyncio.sleep(0.02)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def main():
        async with Server(answer) as srv:
            t = FastTransport()
            resp = await t.handle_async_request(post(srv.url))
            parts = [p async for p in resp.aiter_raw()]
            await resp.aclose()
            await t.aclose()
        assert b"".join(parts) == b"data: 1\n\ndata: [DONE]\n\n"
        assert len(parts) == 2  # relayed as they came, not buffered to the end

    asyncio.run(main())


def test_body_until_close_and_no_body_statuses():
    async def until_close(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it")
        await writer.drain()
        writer.close()

    async def main():
        async with Server(until_close) as srv:
            t = FastTransport()
            resp = await fetch(t, post(srv.url))
            await t.aclose()
        assert resp.content == b"all of it"
        async with Server(keep_answering(b"HTTP/1.1 204 No Content\r\n\r\n")) as srv:
            t = FastTransport()
            assert (await fetch(t, post(srv.url))).status_code == 204
            assert (await fetch(t, post(srv.url))).status_code == 204
            await t.aclose()
        assert srv.connections == 1

    asyncio.run(main())


@pytest.mark.parametrize(
    "reply, error",
    [
        (b"", httpx.RemoteProtocolError),  # closed without a response
        (b"garbage that is not http\r\n\r\n", httpx.RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort", httpx.RemoteProtocolError),
    ],
)
def test_broken_answers_raise_httpx_errors(reply, error):
    async def answer(reader, writer):
        await read_request(reader)
        writer.write(reply)
        await writer.drain()
        writer.close()

    async def main():
        async with Server(answer) as srv:
            t = FastTransport()
            with pytest.raises(error):
                await fetch(t, post(srv.url))
            assert t._open == 0  # the broken connection was let go
            await t.aclose()

    asyncio.run(main())


def test_read_timeout_and_connect_error():
    async def silent(reader, writer):
        await read_request(reader)  # and no answer: the server then waits for the client to go

    async def main():
        async with Server(silent) as srv:
            t = FastTransport()
            with pytest.raises(httpx.ReadTimeout):
                await fetch(t, post(srv.url, read=0.1))
            await asyncio.wait_for(srv.closed_by_client.wait(), 2)  # the call was closed
            await t.aclose()
        with pytest.raises(httpx.ConnectError):
            await fetch(FastTransport(), post(srv.url))  # nobody listens there any more

    asyncio.run(main())


def test_closing_a_stream_early_closes_the_connection():
    async def endless(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        while True:
            writer.write(b"8\r\ndata: x\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.01)

    async def main():
        async with Server(endless) as srv:
            t = FastTransport()
            resp = await t.handle_async_request(post(srv.url))
            async for _ in resp.aiter_raw():
                break
            await resp.aclose()
            await asyncio.wait_for(srv.closed_by_client.wait(), 2)
            assert t._open == 0
            await t.aclose()

    asyncio.run(main())


def test_pool_limit_waits_then_times_out():
    async def main():
        async with Server(keep_answering(OK)) as srv:
            t = FastTransport(max_connections=1)
            first = await t.handle_async_request(post(srv.url))  # holds the only connection
            with pytest.raises(httpx.PoolTimeout):
                await fetch(t, post(srv.url, pool=0.05))
            waiting = asyncio.create_task(fetch(t, post(srv.url)))
            await asyncio.sleep(0.05)
            await first.aread()
            await first.aclose()  # back to the pool: the waiter gets it
            assert (await asyncio.wait_for(waiting, 2)).status_code == 200
            await t.aclose()
        assert srv.connections == 1

    asyncio.run(main())


def test_header_injection_refused():
    async def main():
        async with Server(keep_answering(OK)) as srv:
            req = post(srv.url)
            req.headers["x-key"] = "a\r\nx-evil: 1"
            with pytest.raises(httpx.LocalProtocolError):
                await fetch(FastTransport(), req)
        assert srv.connections == 0

    asyncio.run(main())


def test_read_timeout_counts_silence_not_total_time():
    async def slow_then_stall(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(6):  # 0.3 s in all, never silent for 0.1 s
            writer.write(b"2\r\nok\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)
        await asyncio.sleep(5)  # then silence

    async def main():
        async with Server(slow_then_stall) as srv:
            t = FastTransport()
            resp = await t.handle_async_request(post(srv.url, read=0.15))
            got = b""
            with pytest.raises(httpx.ReadTimeout):
                async for chunk in resp.aiter_raw():
                    got += chunk
            await resp.aclose()
            await t.aclose()
        assert got == b"ok" * 6

    asyncio.run(main())


def test_connection_still_sending_its_body_is_not_reused():
    early = b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 2\r\n\r\n{}"

    async def answer_early(reader, writer):
        await reader.readuntil(b"\r\n\r\n")  # the head only: the body is never read
        writer.write(early)
        await writer.drain()
        await asyncio.sleep(1)

    async def main():
        async with Server(answer_early) as srv:
            t = FastTransport()
            resp = await fetch(
                t, post(srv.url, body=b"x" * (64 << 20))
            )  # more than fits in buffers
            assert resp.status_code == 413
            assert t._n_idle == 0  # the rest of the body would be read as the next request
            await t.aclose()

    asyncio.run(main())
