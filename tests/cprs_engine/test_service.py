"""The engine's HTTP service: routes, validation, error bodies, readiness, one forward at a time.

Wiring and error paths use `ExtractiveDouble`, a test-only compressor that keeps the sentences
sharing a word with the query (never used by product code); one test runs the real
`Compressor` on a tiny random checkpoint end to end.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import threading
import time
import types

import anyio
import anyio.from_thread
import httpx
import pytest

from cprs_engine import prompts
from cprs_engine.errors import CheckpointNotFound, ContextTooLong
from cprs_engine.result import CompressionResult, Span
from cprs_engine.service import ServiceSettings, add_arguments, create_app, parse_compress_request
from cprs_engine.wire import CompressRequest, type_for_status


class ExtractiveDouble:
    """Test double with the engine scheduler's compressor interface: one window per document;
    its one "forward pass" sleeps `delay`, raises `fail`, and records concurrency; decoding keeps
    the sentences that share a word with the query. Records every call's options."""

    engine_version = "double.1"
    windows_per_pass = 1

    def __init__(self, delay: float = 0.0, fail: Exception | None = None):
        self.delay, self.fail = delay, fail
        self.active = self.max_active = 0
        self.calls: list[dict] = []
        self._lock = threading.Lock()

    def plan(self, query, context, *, granularity, instruction, prompt, doc_type, elision):
        control = prompts.resolve(granularity, prompt=prompt, instruction=instruction)
        options = dict(granularity=granularity, prompt=prompt, doc_type=doc_type, elision=elision)
        return types.SimpleNamespace(
            query=query, context=context, options=options,
            granularity=control.granularity, ids=[0], prefix=[hash(query)], tag=control.tag,
            windows=[[(0, 1)]], empty_outputs=lambda: None,
        )  # fmt: skip

    def score_pass(self, prefix, tag, rows):
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            time.sleep(self.delay)
            if self.fail:
                raise self.fail
        finally:
            with self._lock:
                self.active -= 1

    def scored(self, plan, outputs, model_s):
        return plan

    def decode(self, plan, *, budget_tokens, budget_unit=None):
        self.calls.append(dict(plan.options, budget_tokens=budget_tokens, budget_unit=budget_unit))
        words = set(re.findall(r"\w+", plan.query.lower()))
        spans = [
            Span(m.start(), m.end(), m.group(), 1.0)
            for m in re.finditer(r"[^.]+\.", plan.context)
            if words & set(re.findall(r"\w+", m.group().lower()))
        ]
        out = "\n".join(s.text for s in spans)
        n = len(plan.context)
        return CompressionResult(out, spans, n, len(out), n / max(len(out), 1), plan.granularity)


CONTEXT = "Cats purr. Dogs bark loudly. The capital of France is Paris. Birds sing."


class SyncClient:
    """httpx's AsyncClient on the app (lifespan run), driven from sync tests via a portal.
    (starlette's TestClient warns about httpx, and warnings are errors here.)"""

    def __init__(self, portal, client: httpx.AsyncClient):
        self.portal, self.client = portal, client

    def get(self, url: str, **kw) -> httpx.Response:
        return self.portal.call(functools.partial(self.client.get, url, **kw))

    def post(self, url: str, **kw) -> httpx.Response:
        return self.portal.call(functools.partial(self.client.post, url, **kw))


@contextlib.contextmanager
def serve(app):
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(app.router.lifespan_context(app)),
    ):
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://engine")
        try:
            yield SyncClient(portal, client)
        finally:
            portal.call(client.aclose)


def client_for(double, **settings):
    return serve(create_app(lambda: double, ServiceSettings(**settings)))


def assert_error(resp: httpx.Response, status: int, code: str, param: str | None = None):
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["code"] == code and err["param"] == param and err["message"]
    assert err["type"] == type_for_status(status)  # the table the proxy answers with too


def test_compress_returns_the_result_json():
    double = ExtractiveDouble()
    with client_for(double) as client:
        resp = client.post(
            "/v1/compress",
            json={"query": "capital of France?", "context": CONTEXT, "budget_tokens": 50},
        )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert resp.headers["x-cprs-engine-version"] == "double.1"
    result = CompressionResult.from_dict(body)
    assert result.compressed == " The capital of France is Paris."
    for s in result.spans:
        assert CONTEXT[s.start : s.end] == s.text
    assert set(body) >= {"compressed", "spans", "input_tokens", "output_tokens", "ratio"}
    assert double.calls == [
        dict(granularity=None, budget_tokens=50, prompt=None, budget_unit=None, doc_type=None,
             elision=None)
    ]  # fmt: skip


def test_health_and_ready():
    with client_for(ExtractiveDouble()) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["engine_version"] == "double.1"
        assert_error(client.get("/nope"), 404, "404")
        resp = client.get("/v1/compress")
        assert resp.status_code == 405 and resp.json()["error"]["code"] == "405"


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ({"context": CONTEXT}, 400, "empty_query", "query"),
        ({"query": "  ", "context": CONTEXT}, 400, "empty_query", "query"),
        ({"query": 3, "context": CONTEXT}, 400, "invalid_type", "query"),
        ({"query": "q"}, 400, "empty_context", "context"),
        ({"query": "q", "context": " \n"}, 400, "empty_context", "context"),
        ({"query": "q", "context": ["a"]}, 400, "invalid_type", "context"),
        (
            {"query": "q", "context": CONTEXT, "granularity": "word"},
            400,
            "unknown_granularity",
            "granularity",
        ),
        ({"query": "q", "context": CONTEXT, "granularity": 1}, 400, "invalid_type", "granularity"),
        (
            {"query": "q", "context": CONTEXT, "prompt": "nope"},
            400,
            "unknown_granularity",
            "prompt",
        ),
        (
            {"query": "q", "context": CONTEXT, "budget_tokens": 0},
            400,
            "invalid_budget",
            "budget_tokens",
        ),
        (
            {"query": "q", "context": CONTEXT, "budget_tokens": "9"},
            400,
            "invalid_budget",
            "budget_tokens",
        ),
        (
            {"query": "q", "context": CONTEXT, "budget_tokens": 2.5},
            400,
            "invalid_budget",
            "budget_tokens",
        ),
        (
            {"query": "q", "context": CONTEXT, "budget_tokens": True},
            400,
            "invalid_budget",
            "budget_tokens",
        ),
        (
            {"query": "q", "context": CONTEXT, "budget_tokens": 9, "budget_unit": "words"},
            400,
            "unknown_budget_unit",
            "budget_unit",
        ),
        (
            {"query": "q", "context": CONTEXT, "budget_unit": 5},
            400,
            "invalid_type",
            "budget_unit",
        ),
        ({"query": "q", "context": CONTEXT, "doc_type": "yaml"}, 400, "invalid_input", "doc_type"),
        ({"query": "q", "context": CONTEXT, "elision": "dots"}, 400, "invalid_input", "elision"),
        ({"query": "q", "context": CONTEXT, "elision": 1}, 400, "invalid_type", "elision"),
        (["query", "context"], 400, "invalid_type", None),
        ({"query": "q", "context": "x" * 101}, 413, "context_too_long", "context"),
    ],
)
def test_validation_errors(body, status, code, param):
    double = ExtractiveDouble()
    with client_for(double, max_context_chars=100) as client:
        assert_error(client.post("/v1/compress", json=body), status, code, param)
    assert double.calls == [], "an invalid request never reaches the model"


def test_malformed_json_and_oversized_body():
    with client_for(ExtractiveDouble(), max_body_bytes=200) as client:
        assert_error(client.post("/v1/compress", content=b'{"query": '), 400, "invalid_json")
        assert_error(client.post("/v1/compress", content=b"\xff\xfe"), 400, "invalid_json")
        big = json.dumps({"query": "q", "context": "x" * 300})
        assert_error(client.post("/v1/compress", content=big), 413, "request_too_large")

        async def chunks():  # no content-length: the limit holds while streaming
            yield b'{"query": "q", "context": "'
            for _ in range(10):
                yield b"x" * 50
            yield b'"}'

        assert_error(client.post("/v1/compress", content=chunks()), 413, "request_too_large")
        ok = client.post("/v1/compress", json={"query": "cats", "context": "Cats purr."})
        assert ok.status_code == 200


def test_engine_errors_map_to_their_status():
    with client_for(ExtractiveDouble(fail=ContextTooLong("too many tokens"))) as client:
        resp = client.post("/v1/compress", json={"query": "q", "context": CONTEXT})
        assert_error(resp, 413, "context_too_long", "context")
    with client_for(ExtractiveDouble(fail=RuntimeError("CUDA out of memory"))) as client:
        resp = client.post("/v1/compress", json={"query": "q", "context": CONTEXT})
        assert resp.status_code == 500
        err = resp.json()["error"]
        assert err["code"] == "engine_failure" and err["type"] == "server_error"
        assert "CUDA out of memory" in err["message"]
        assert client.get("/healthz").status_code == 200  # the process lives on


def test_missing_checkpoint_serves_503_with_the_message():
    def factory():
        raise CheckpointNotFound("no critic at /nowhere; run `cprs train` first")

    with serve(create_app(factory)) as client:
        assert client.get("/healthz").status_code == 200
        for resp in (
            client.get("/readyz"),
            client.post("/v1/compress", json={"query": "q", "context": CONTEXT}),
        ):
            assert resp.status_code == 503
            err = resp.json()["error"]
            assert err["code"] == "checkpoint_not_found" and "cprs train" in err["message"]


def test_one_forward_at_a_time_and_health_stays_responsive():
    double = ExtractiveDouble(delay=0.2)
    app = create_app(lambda: double)

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://t") as client,
        ):
            statuses: list[int] = []

            async def one():
                r = await client.post("/v1/compress", json={"query": "cats", "context": CONTEXT})
                statuses.append(r.status_code)

            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(one)
                await anyio.sleep(0.05)
                t0 = time.perf_counter()
                health = await client.get("/healthz")
                health_s = time.perf_counter() - t0
            return statuses, health.status_code, health_s

    statuses, health, health_s = anyio.run(main)
    assert statuses == [200] * 4
    assert double.max_active == 1, "the model must run one request at a time"
    assert health == 200 and health_s < 0.5, "health checks do not queue behind the model (0.8 s)"


def test_cli_parser_has_nested_serve():
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["serve", "--port", "9999", "--window-tokens", "256"])
    assert args.engine_command == "serve" and args.port == 9999 and args.window_tokens == 256
    assert args.checkpoint is None and args.host == "127.0.0.1"
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--windows-per-pass", "0"])
    with pytest.raises(SystemExit):
        parser.parse_args([])


def test_parse_compress_request_passes_options_through():
    body = {"query": "q", "context": "c", "granularity": "keyword", "budget_tokens": 7, "x": 1}
    request = parse_compress_request(body, ServiceSettings())
    assert request == CompressRequest("q", "c", granularity="keyword", budget_tokens=7)
    assert request.kwargs() == {
        "query": "q",
        "context": "c",
        "granularity": "keyword",
        "instruction": None,
        "prompt": None,
        "budget_tokens": 7,
        "budget_unit": None,
        "doc_type": None,
        "elision": None,
    }
    del body["x"]
    assert request.to_json() == body  # what the proxy's client sends is what the engine parses


def test_real_compressor_on_a_tiny_random_checkpoint(tmp_path):
    """End to end through HTTP with the real Compressor: spans are exact substrings."""
    from cprs_engine.checkpoint import save_tiny_random
    from cprs_engine.compressor import Compressor

    save_tiny_random(tmp_path / "tiny")
    app = create_app(lambda: Compressor.load(str(tmp_path / "tiny"), window_tokens=32))
    context = " ".join(
        f"Sentence {i} mentions item {i * 7} in passing. 第{i}句话。" for i in range(40)
    )
    with serve(app) as client:
        assert client.get("/readyz").status_code == 200
        for granularity in ("keyword", "sentence", "paragraph"):
            resp = client.post(
                "/v1/compress",
                json={"query": "Which item?", "context": context, "granularity": granularity},
            )
            assert resp.status_code == 200, resp.text
            result = CompressionResult.from_dict(resp.json())
            assert result.granularity == granularity
            assert result.input_tokens > 0 and result.ratio > 0
            for s in result.spans:
                assert context[s.start : s.end] == s.text
            assert [s.start for s in result.spans] == sorted(s.start for s in result.spans)
        resp = client.post(
            "/v1/compress", json={"query": "Which item?", "context": context, "budget_tokens": 20}
        )
        assert resp.status_code == 200 and resp.json()["output_tokens"] <= 20


def test_a_full_queue_answers_429_with_retry_after_and_ready_reports_throughput():
    double = ExtractiveDouble(delay=0.3)
    app = create_app(lambda: double, ServiceSettings(max_queue=1))

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://t") as client,
        ):
            got: list[httpx.Response] = []

            async def one():
                body = {"query": "cats", "context": CONTEXT, "background": True}
                got.append(await client.post("/v1/compress", json=body))

            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(one)
            return got, await client.get("/readyz")

    got, ready = anyio.run(main)
    statuses = sorted(r.status_code for r in got)
    assert statuses == [200, 429, 429]
    busy = next(r for r in got if r.status_code == 429)
    assert int(busy.headers["retry-after"]) >= 1
    err = busy.json()["error"]
    assert (err["code"], err["type"]) == ("engine_busy", "rate_limit_error") and err["message"]
    info = ready.json()
    assert info["queue"] == 0 and info["throughput"]["tokens_per_s"] > 0
