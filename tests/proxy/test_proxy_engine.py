"""Engine placement: the local engine's lazy load, remote replicas' health, spread and retry."""

from __future__ import annotations

import asyncio
import json
import sys
import types

import httpx
import pytest

from cprs_engine.errors import CheckpointNotFound, ContextTooLong, EngineFailure
from cprs_engine.result import CompressionResult, Span
from proxy.config import EngineSettings
from proxy.engine import LocalEngine, RemoteEngines


def result_dict(text: str = "kept.") -> dict:
    return CompressionResult(
        text, [Span(0, len(text), text, 0.9)], 100, 2, 50.0, "sentence"
    ).to_dict()


def fake_compressor_module(load):
    mod = types.ModuleType("cprs_engine.compressor")
    mod.Compressor = types.SimpleNamespace(load=load)  # type: ignore[attr-defined]
    return mod


def test_local_engine_loads_in_the_background_and_runs_off_the_loop(monkeypatch):
    seen = {}

    class Fake:
        engine_version = "critic-v9"

        def compress(self, query, context, **kw):
            seen.update(kw, query=query)
            return CompressionResult.from_dict(result_dict(context[:5]))

    def load(checkpoint, **opts):
        seen["load"] = (checkpoint, opts)
        return Fake()

    monkeypatch.setitem(sys.modules, "cprs_engine.compressor", fake_compressor_module(load))

    async def go():
        eng = LocalEngine(EngineSettings(checkpoint="/ckpt", window_tokens=256))
        assert eng.ready()[0] is False
        await eng.start()
        await eng._load_task
        out = await eng.compress("q", "hello world", granularity="sentence", budget_tokens=10)
        await eng.close()
        return eng, out

    eng, out = asyncio.run(go())
    assert eng.ready() == (True, "loaded") and eng.engine_version == "critic-v9"
    assert out.compressed == "hello"
    assert seen["load"] == ("/ckpt", {"window_tokens": 256, "precision": "auto"})
    assert (
        seen["budget_tokens"] == 10 and seen["granularity"] == "sentence" and seen["query"] == "q"
    )


def test_an_abandoned_local_compression_frees_its_worker(monkeypatch):
    import threading

    stopped = threading.Event()

    class Slow:
        engine_version = "slow-1"

        def compress(self, query, context, *, cancel, **kw):
            if query == "fast":
                return CompressionResult.from_dict(result_dict())
            assert cancel.wait(10), "the engine never told the work to stop"
            stopped.set()
            raise EngineFailure("stopped")

    monkeypatch.setitem(
        sys.modules, "cprs_engine.compressor", fake_compressor_module(lambda c, **o: Slow())
    )

    async def go():
        eng = LocalEngine(EngineSettings(workers=1))
        await eng.start()
        await eng._load_task
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await eng.compress("slow", "doc")
        # the single worker is free again: the next compression is not stuck behind it
        async with asyncio.timeout(5):
            out = await eng.compress("fast", "doc")
        await eng.close()
        return out

    assert asyncio.run(go()).compressed == "kept."
    assert stopped.is_set()


def test_local_engine_without_checkpoint_reports_why(monkeypatch):
    def load(checkpoint, **opts):
        raise CheckpointNotFound("no critic at cprs_engine/weights/default; run `make train`")

    monkeypatch.setitem(sys.modules, "cprs_engine.compressor", fake_compressor_module(load))

    async def go():
        eng = LocalEngine(EngineSettings())
        await eng.start()
        await eng._load_task
        with pytest.raises(CheckpointNotFound):
            await eng.compress("q", "c")
        await eng.close()
        return eng

    ok, reason = asyncio.run(go()).ready()
    assert not ok and "make train" in reason


def remote(handler, urls=("http://e1", "http://e2")):
    return RemoteEngines(
        EngineSettings(mode="remote", urls=list(urls)), transport=httpx.MockTransport(handler)
    )


def test_remote_engines_skip_down_replicas_and_use_the_version_they_report():
    calls = []

    def handler(request: httpx.Request):
        host = request.url.host
        if request.url.path == "/readyz":
            if host == "e1":
                return httpx.Response(503, json={"status": "loading"})
            return httpx.Response(200, json={"status": "ready", "engine_version": "critic-v3"})
        calls.append((host, json.loads(request.content)))
        return httpx.Response(200, json=result_dict())

    async def go():
        eng = remote(handler)
        await eng.start()
        outs = [
            await eng.compress("q", "ctx", granularity="keyword", budget_tokens=5) for _ in range(3)
        ]
        await eng.close()
        return eng, outs

    eng, outs = asyncio.run(go())
    assert (
        eng.ready() == (True, "1/2 engine replicas healthy") and eng.engine_version == "critic-v3"
    )
    assert {h for h, _ in calls} == {"e2"} and outs[0].compressed == "kept."
    assert calls[0][1] == {
        "query": "q",
        "context": "ctx",
        "granularity": "keyword",
        "budget_tokens": 5,
    }


def test_remote_engines_spread_load_and_retry_on_connection_failure():
    hosts = []

    def handler(request: httpx.Request):
        if request.url.path == "/readyz":
            return httpx.Response(200, json={"engine_version": "v"})
        hosts.append(request.url.host)
        if request.url.host == "e1":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json=result_dict())

    async def go():
        eng = remote(handler)
        await eng.start()
        for _ in range(2):
            await eng.compress("q", "c")
        healthy = [r.healthy for r in eng.replicas]
        await eng.close()
        return healthy

    healthy = asyncio.run(go())
    assert "e1" in hosts and hosts.count("e2") == 2  # the failed call went on to e2
    assert healthy == [False, True]


def test_remote_engine_errors_map_to_engine_exceptions():
    def handler(request: httpx.Request):
        if request.url.path == "/readyz":
            return httpx.Response(200, json={})
        body = json.loads(request.content)
        if body["query"] == "long":
            return httpx.Response(
                413,
                json={
                    "error": {
                        "message": "too long",
                        "type": "x",
                        "param": None,
                        "code": "context_too_long",
                    }
                },
            )
        return httpx.Response(500, text="kaput")

    async def go():
        eng = remote(handler, urls=("http://e1",))
        await eng.start()
        try:
            with pytest.raises(ContextTooLong):
                await eng.compress("long", "c")
            with pytest.raises(EngineFailure):
                await eng.compress("q", "c")
        finally:
            await eng.close()

    asyncio.run(go())
