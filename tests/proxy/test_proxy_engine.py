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


def tiny_compressor(**kw):
    from cprs_engine.checkpoint import tiny_random
    from cprs_engine.compressor import Compressor

    model, tokenizer = tiny_random("qwen2", seed=1)
    return Compressor(model, tokenizer, window_tokens=64, windows_per_pass=2, **kw)


DOC = "Paris is the capital of France. The Eiffel Tower was finished in 1889. " * 40


def test_local_engine_loads_in_the_background_and_runs_off_the_loop(monkeypatch):
    seen = {}
    compressor = tiny_compressor(precision="fp32")

    def load(checkpoint, **opts):
        seen["load"] = (checkpoint, opts)
        return compressor

    monkeypatch.setitem(sys.modules, "cprs_engine.compressor", fake_compressor_module(load))

    async def go():
        eng = LocalEngine(EngineSettings(checkpoint="/ckpt", window_tokens=256))
        assert eng.ready()[0] is False and eng.predict_s(1000) is None
        await eng.start()
        await eng._load_task
        out = await eng.compress("Where is Paris?", DOC, granularity="paragraph", budget_tokens=10)
        predicted = eng.predict_s(len(DOC))
        await eng.close()
        return eng, out, predicted

    eng, out, predicted = asyncio.run(go())
    assert eng.ready() == (True, "loaded") and eng.engine_version == compressor.engine_version
    alone = compressor.compress("Where is Paris?", DOC, granularity="paragraph", budget_tokens=10)
    assert (out.compressed, out.spans, out.granularity) == (
        alone.compressed,
        alone.spans,
        "paragraph",
    )
    assert seen["load"] == ("/ckpt", {"window_tokens": 256, "precision": "auto"})
    assert predicted is not None and predicted > 0  # measured while it ran


def test_local_engine_passes_precision_and_compile_to_the_loader(monkeypatch):
    seen = {}

    def load(checkpoint, **opts):
        seen["load"] = (checkpoint, opts)
        return tiny_compressor(precision="fp32")

    monkeypatch.setitem(sys.modules, "cprs_engine.compressor", fake_compressor_module(load))

    async def go():
        eng = LocalEngine(EngineSettings(precision="int8", compile=True))
        await eng.start()
        await eng._load_task
        await eng.close()

    asyncio.run(go())
    assert seen["load"] == (None, {"precision": "int8", "compile": True})


def test_an_abandoned_local_compression_frees_the_engine_within_a_pass(monkeypatch):
    import threading
    import time

    from cprs_engine.compressor import Compressor

    passes: list[str] = []
    gate = threading.Event()

    class Slow(Compressor):
        def score_pass(self, prefix, tag, rows):
            passes.append(self.tokenizer.decode(prefix))
            if "slow" in passes[-1]:
                gate.set()
                time.sleep(0.05)
            return super().score_pass(prefix, tag, rows)

    base = tiny_compressor()
    slow = Slow(base.model, base.tokenizer, window_tokens=64, windows_per_pass=1)
    monkeypatch.setitem(
        sys.modules, "cprs_engine.compressor", fake_compressor_module(lambda c, **o: slow)
    )

    async def go():
        eng = LocalEngine(EngineSettings(workers=1))
        await eng.start()
        await eng._load_task
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await eng.compress("slow", DOC * 5)
        slow_passes = sum("slow" in p for p in passes)
        async with asyncio.timeout(20):
            out = await eng.compress("fast", "A short document about Paris.")
        await eng.close()
        return out, slow_passes

    out, slow_passes = asyncio.run(go())
    assert out.input_tokens > 0 and gate.is_set()
    # at most the pass running when it was abandoned ran after it: the rest never started
    assert sum("slow" in p for p in passes) <= slow_passes + 1
    assert sum("slow" in p for p in passes) < len(slow.plan("slow", DOC * 5).windows)


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


def test_a_busy_replica_passes_the_request_on_and_background_jobs_wait_their_turn():
    from cprs_engine.scheduler import Control
    from proxy.engine import EngineBusy

    seen: list[tuple[str, dict]] = []
    full = {"e1": True, "e2": True}

    def handler(request: httpx.Request):
        host = request.url.host
        if request.url.path == "/readyz":
            rate = {"tokens_per_s": 1000.0, "chars_per_token": 4.0} if host == "e2" else None
            return httpx.Response(200, json={"engine_version": "v", "throughput": rate})
        seen.append((host, json.loads(request.content)))
        if full[host]:
            full[host] = host == "e1"  # e1 stays full; e2 frees up after refusing once
            return httpx.Response(429, headers={"retry-after": "0.1"}, json={"error": {}})
        return httpx.Response(200, json=result_dict())

    async def go():
        eng = remote(handler)
        await eng.start()
        predicted = eng.predict_s(8000)
        with pytest.raises(EngineBusy):  # someone waits: no retry
            await eng.compress("q", "c", control=Control())
        seen.clear()
        full["e2"] = True
        out = await eng.compress("q", "c", control=Control(background=True))
        await eng.close()
        return predicted, out

    predicted, out = asyncio.run(go())
    assert predicted == pytest.approx(2.0)  # 8000 chars / 4 per token / 1000 tokens/s, from e2
    assert out.compressed == "kept."
    hosts = [h for h, _ in seen]
    # tried both, waited the Retry-After, tried again until e2 took it
    assert set(hosts[:2]) == {"e1", "e2"} and len(hosts) >= 3 and hosts[-1] == "e2"
    assert all(body["background"] is True for _, body in seen)


def test_remote_throughput_follows_each_answer():
    def handler(request: httpx.Request):
        if request.url.path == "/readyz":
            return httpx.Response(200, json={"engine_version": "v"})
        r = CompressionResult("k.", [], 2000, 1, 2000.0, "sentence", timings={"model": 0.5})
        return httpx.Response(200, json=r.to_dict())

    async def go():
        eng = remote(handler, urls=("http://e1",))
        await eng.start()
        before = eng.predict_s(8000)
        await eng.compress("q", "x" * 8000)
        after = eng.predict_s(8000)
        await eng.close()
        return before, after

    before, after = asyncio.run(go())
    assert before is None and after == pytest.approx(0.5)  # 4000 tokens/s; 4 chars a token
