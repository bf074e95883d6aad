"""Fault injection through real servers: a failing backend, Redis killed / frozen / restarted
(a private redis-server), engine errors, timeouts and a crashed remote replica, and clients that
leave at every stage. The proxy must answer each with a documented status in OpenAI's format,
lose no request that would have succeeded uncompressed, and keep serving afterwards."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time

import httpx
import pytest
from cprs_doubles import (
    QUESTION,
    QueryWordEngine,
    ServerThread,
    ServiceCompressor,
    free_port,
    haystack,
)
from proxy_int_helpers import proxy_config
from rel_helpers import FROM_CONFIG, served_proxy
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from cprs_engine.errors import EngineFailure
from cprs_engine.service import create_app as create_engine_app

pytestmark = pytest.mark.reliability
KEY = "sk-acme"
H = {"authorization": f"Bearer {KEY}"}


def chunk(text: str) -> bytes:
    c = {
        "id": "c",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": text}}],
    }
    return f"data: {json.dumps(c)}\n\n".encode()


class FaultyBackend:
    """Chooses its fault from the model name the proxy forwards (`fault-<kind>`)."""

    def __init__(self) -> None:
        self.cancelled: list[str] = []

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"])])

    async def chat(self, request: Request) -> Response:
        body = json.loads(await request.body())
        kind = body["model"].removeprefix("fault-").removeprefix("patient-")
        if kind == "429-text":
            return Response("slow down", status_code=429, headers={"retry-after": "7"})
        if kind == "500-html":
            return Response("<html>boom</html>", status_code=500, media_type="text/html")
        if kind == "503-empty":
            return Response(b"", status_code=503)
        if kind == "200-garbage":
            return Response(b"\x89PNG\r\n\x1a\n\x00\xff", media_type="application/json")
        if kind in ("hang", "slow-headers"):
            for _ in range(600):  # up to 60 s, noticing when the proxy hangs up
                if await request.is_disconnected():
                    self.cancelled.append(kind)
                    return Response(status_code=499)
                await asyncio.sleep(0.1)
        if kind == "ok" and not body.get("stream"):
            return JSONResponse(
                {
                    "id": "c",
                    "object": "chat.completion",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "fine"},
                            "finish_reason": "stop",
                        }
                    ],
                }
            )
        return StreamingResponse(self.stream(kind), media_type="text/event-stream")

    async def stream(self, kind: str):
        if kind == "garbage-stream":
            yield b"\x00\x01 not sse at all"
            return
        try:
            for i in range(40 if kind == "slow-stream" else 4):
                yield chunk(f"w{i} ")
                if kind == "stall" and i == 1:
                    await asyncio.sleep(60)
                if kind == "cut" and i == 1:
                    raise RuntimeError("backend died mid-stream")
                if kind == "slow-stream":
                    await asyncio.sleep(0.1)
            yield b"data: [DONE]\n\n"
        except asyncio.CancelledError:
            self.cancelled.append(kind)
            raise


@pytest.fixture(scope="module")
def faulty():
    backend = FaultyBackend()
    with ServerThread(backend.app()) as server:
        backend.url = server.url  # type: ignore[attr-defined]
        yield backend


def fault_config(url: str, **sections) -> dict:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    cfg = proxy_config(url, **sections)
    cfg["models"] = [
        {"name": "refused", "model": "openai/refused", "api_base": dead, "api_key": "sk-b"},
        {"name": "fault-*", "model": "openai/*", "api_base": url + "/v1", "api_key": "sk-b", "timeout_s": 0.5},
        {"name": "patient-*", "model": "openai/*", "api_base": url + "/v1", "api_key": "sk-b", "timeout_s": 30},
        {"name": "gpt-4o", "model": "openai/fault-ok", "api_base": url + "/v1", "api_key": "sk-b", "timeout_s": 5},
    ]  # fmt: skip
    return cfg


def post(url: str, model: str, *, stream: bool = False, content: str = "hi", timeout: float = 10):
    body = {"model": model, "messages": [{"role": "user", "content": content}], "stream": stream}
    return httpx.post(url + "/v1/chat/completions", json=body, headers=H, timeout=timeout)


def sse_events(text: str) -> list:
    out = []
    for block in text.split("\n\n"):
        if block.startswith("data: ") and block[6:] != "[DONE]":
            out.append(json.loads(block[6:]))
    return out


BACKEND_FAULTS = [
    ("429 with a text body", "fault-429-text", False, 429, "rate_limit_error"),
    ("500 with an HTML body", "fault-500-html", False, 500, "server_error"),
    ("503 with an empty body", "fault-503-empty", False, 503, "server_error"),
    ("429 before a stream", "fault-429-text", True, 429, "rate_limit_error"),
    ("connection refused", "refused", False, 502, "api_error"),
    ("connection refused, stream", "refused", True, 502, "api_error"),
    ("backend hangs", "fault-hang", False, 504, "timeout_error"),
    ("backend never sends headers", "fault-slow-headers", True, 504, "timeout_error"),
    ("200 with garbage", "fault-200-garbage", False, 502, "api_error"),
    ("200 stream that is not SSE", "fault-garbage-stream", True, 502, "api_error"),
]


@pytest.mark.parametrize(
    "kind,model,stream,status,type_", BACKEND_FAULTS, ids=[f[0] for f in BACKEND_FAULTS]
)
def test_backend_fault_gets_its_status_in_openai_format(
    faulty, figures, kind, model, stream, status, type_
):
    with served_proxy(fault_config(faulty.url)) as (url, _):
        r = post(url, model, stream=stream)
        assert r.status_code == status, r.text[:300]
        err = r.json()["error"]
        assert err["type"] == type_ and isinstance(err["message"], str)
        if "429" in kind:
            assert r.headers["retry-after"] == "7"
        assert post(url, "gpt-4o").status_code == 200  # and it still serves
    figures.setdefault("faults_survived", {})[kind] = status


@pytest.mark.parametrize("kind", ["stall", "cut"])
def test_a_stalled_or_cut_stream_ends_with_an_sse_error_event(faulty, figures, kind):
    with served_proxy(fault_config(faulty.url)) as (url, _):
        r = post(url, f"fault-{kind}", stream=True)
        assert r.status_code == 200
        events = sse_events(r.text)
        assert "error" in events[-1], r.text[-300:]
        assert [e["choices"][0]["delta"]["content"] for e in events[:-1]] == ["w0 ", "w1 "]
        assert post(url, "gpt-4o", stream=True).status_code == 200
    figures.setdefault("faults_survived", {})[f"{kind} stream"] = "sse error event"


def _doc_request(i: int) -> str:
    return f"<document>{haystack(400, seed=i)}</document>\n{QUESTION}"


def test_redis_killed_frozen_and_restarted_loses_no_request(faulty, private_redis, figures):
    cache = {"redis_url": private_redis.url, "timeout_s": 0.05}
    results: list[tuple[str, int, str, str, float]] = []

    def burst(phase: str, url: str, n: int = 6) -> None:
        for i in range(n):
            t = time.perf_counter()
            r = post(url, "gpt-4o", content=_doc_request(i % 3))
            results.append(
                (
                    phase,
                    r.status_code,
                    r.headers.get("x-cprs-compressed", ""),
                    r.headers.get("x-cprs-cache", ""),
                    time.perf_counter() - t,
                )
            )

    with served_proxy(fault_config(faulty.url, cache=cache)) as (url, _):
        burst("up", url)
        private_redis.kill()
        burst("killed", url)
        private_redis.start()
        time.sleep(5.5)  # the breaker's cooldown: the next call probes Redis again
        burst("restarted", url)
        os.kill(private_redis.proc.pid, signal.SIGSTOP)
        try:
            burst("frozen", url)
        finally:
            os.kill(private_redis.proc.pid, signal.SIGCONT)
    assert all(status == 200 and comp == "true" for _, status, comp, _, _ in results), results
    # documents seen before the outage still come from memory while Redis is gone
    assert all(
        cache_ == "hit" for phase, _, _, cache_, _ in results if phase in ("killed", "frozen")
    )
    slowest = max(secs for *_, secs in results)
    figures["redis_faults"] = {
        "requests": len(results),
        "failed": 0,
        "slowest_s": round(slowest, 3),
    }


@pytest.mark.parametrize(
    "engine,kind",
    [
        (QueryWordEngine(fail=EngineFailure("boom")), "engine error"),
        (QueryWordEngine(delay_s=3.0), "engine timeout"),
    ],
)
def test_engine_faults_fail_open(faulty, figures, engine, kind):
    cfg = fault_config(faulty.url, engine={"timeout_s": 0.5})
    with served_proxy(cfg, engine=engine) as (url, _):
        t = time.perf_counter()
        r = post(url, "gpt-4o", content=_doc_request(0))
        took = time.perf_counter() - t
    assert r.status_code == 200 and r.headers["x-cprs-compressed"] == "false"
    assert took < 2.5
    figures.setdefault("faults_survived", {})[kind] = 200


def test_a_remote_engine_replica_that_crashes_or_hangs(faulty, figures):
    hanging = ServiceCompressor(delay_s=5.0, version="rel-remote-1")
    with (
        ServerThread(create_engine_app(lambda: ServiceCompressor(version="rel-remote-1"))) as good,
        ServerThread(create_engine_app(lambda: hanging)) as slow,
    ):
        cfg = fault_config(
            faulty.url,
            engine={
                "mode": "remote",
                "urls": [good.url],
                "timeout_s": 1.0,
                "health_interval_s": 0.3,
            },
        )
        with served_proxy(cfg, engine=FROM_CONFIG) as (url, _):
            r = post(url, "gpt-4o", content=_doc_request(0))
            assert r.status_code == 200 and r.headers["x-cprs-compressed"] == "true"
            good.server.should_exit = True  # the only replica crashes
            good.thread.join(5)
            r = post(url, "gpt-4o", content=_doc_request(1))
            assert r.status_code == 200 and r.headers["x-cprs-compressed"] == "false"
        cfg["engine"]["urls"] = [slow.url]
        with served_proxy(cfg, engine=FROM_CONFIG) as (url, _):
            t = time.perf_counter()
            r = post(url, "gpt-4o", content=_doc_request(2))
            assert r.status_code == 200 and r.headers["x-cprs-compressed"] == "false"
            assert time.perf_counter() - t < 3.0
    figures.setdefault("faults_survived", {})["remote replica crashed"] = 200
    figures["faults_survived"]["remote replica hangs"] = 200


def _leave(port: int, data: bytes, after_s: float) -> None:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(data)
        time.sleep(after_s)


def _request_bytes(body: dict, *, cut: int | None = None) -> bytes:
    raw = json.dumps(body).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\n\r\n"
    ).encode()
    return head + (raw if cut is None else raw[:cut])


def test_clients_leaving_at_every_stage(faulty, tmp_path, figures):
    log = tmp_path / "requests.jsonl"
    cfg = fault_config(faulty.url, log={"requests_path": str(log)})
    engine = QueryWordEngine(delay_s=0.8)
    stages = {
        "during the body": (_request_bytes({"model": "gpt-4o", "messages": []}, cut=10), 0.3),
        "while compressing": (_request_bytes({"model": "gpt-4o", "messages": [{"role": "user", "content": _doc_request(5)}]}), 0.3),
        "waiting for the backend": (_request_bytes({"model": "patient-slow-headers", "messages": [{"role": "user", "content": "x"}]}), 0.2),
        "mid-stream": (_request_bytes({"model": "patient-slow-stream", "stream": True, "messages": [{"role": "user", "content": "x"}]}), 0.5),
    }  # fmt: skip
    faulty.cancelled.clear()
    with served_proxy(cfg, engine=engine) as (url, app):
        port = int(url.rsplit(":", 1)[1])
        for data, after in stages.values():
            _leave(port, data, after)
        time.sleep(1.5)
        assert post(url, "gpt-4o").status_code == 200
        in_flight = httpx.get(url + "/metrics").text
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [x["status"] for x in lines[:-1]] == [499] * len(stages), lines
    assert sorted(faulty.cancelled) == ["slow-headers", "slow-stream"]
    assert "cprs_requests_in_flight 0.0" in in_flight
    figures["client_disconnects"] = {stage: "survived" for stage in stages}
