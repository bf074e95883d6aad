"""Read deadlines and broken HTTP against the real server settings (`uvicorn_settings`)."""

from __future__ import annotations

import json
import socket
import time

import pytest
from cprs_doubles import QueryWordEngine, ServerThread
from proxy_int_helpers import proxy_config

from proxy.app import create_app
from proxy.config import config_from_dict
from proxy.http_limits import uvicorn_settings

pytestmark = pytest.mark.integration
LIMITS = {"header_timeout_s": 0.5, "keep_alive_s": 0.5, "body_timeout_s": 0.5}


@pytest.fixture(params=["httptools", "h11"])
def server(fake_backend, request):
    settings = {"reload_interval_s": 0, "http": request.param, **LIMITS}
    cfg = config_from_dict(proxy_config(fake_backend.url, server=settings))
    app = create_app(cfg, engine=QueryWordEngine())
    with ServerThread(app, **uvicorn_settings(cfg.server)) as s:
        yield s


def _read_all(sock: socket.socket, limit_s: float = 5.0) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took."""
    sock.settimeout(limit_s)
    t0, data = time.monotonic(), b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data, time.monotonic() - t0
        data += chunk


def _json_error(data: bytes) -> tuple[int, dict]:
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    assert b"application/json" in head.lower()
    return status, json.loads(body)["error"]


@pytest.mark.parametrize(
    "sent", [b"", b"POST /v1/chat/comp", b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"]
)
def test_a_slow_or_silent_request_head_gets_408_and_is_closed(server, sent):
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(sent)
        data, took = _read_all(s)
    status, err = _json_error(data)
    assert (status, err["code"]) == (408, "request_timeout")
    assert took < 3.0  # header_timeout_s is 0.5


def test_a_half_sent_body_gets_408(server):
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(head + b"authorization: Bearer sk-acme\r\n\r\n" + b'{"model":')
        data, took = _read_all(s)
    status, err = _json_error(data)
    assert (status, err["code"]) == (408, "request_timeout") and took < 3.0


def test_an_idle_keep_alive_connection_is_closed(server):
    req = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(req)
        data, took = _read_all(s)
    assert data.startswith(b"HTTP/1.1 200") and took < 3.0


@pytest.mark.parametrize(
    "raw",
    [
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Bad: a\rb\r\n\r\n",
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET / HTTP/1.1\r\n" + b"X-Long: " + b"a" * 100_000 + b"\r\n\r\n",
    ],
    ids=["content-length-abc", "bare-cr", "garbage-line", "huge-header"],
)
def test_malformed_http_gets_an_openai_shaped_400(server, raw):
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(raw)
        data, _ = _read_all(s)
    status, err = _json_error(data)
    assert (status, err["code"], err["type"]) == (400, "invalid_http", "invalid_request_error")
