"""The latency budget: max_wait_ms, prediction, background fill, its queue, shutdown, reload, and
the x-cprs-cache / x-cprs-skipped headers. Slow, predictable engine doubles; no timed asserts:
each test checks what the engine had done when the response came back."""

from __future__ import annotations

import asyncio
import json

import httpx
import yaml
from cprs_doubles import NEEDLE, QUESTION, QueryWordEngine, SlowEngine, haystack
from proxy_helpers import base_config

from cprs_engine.errors import EngineFailure
from proxy.app import create_app
from proxy.config import config_from_dict, load_config

DOC = haystack(300)


def body(doc: str = DOC, question: str = QUESTION, **extra) -> dict:
    return {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": f"<document>{doc}</document>\n{question}"}],
        **extra,
    }


def config(policy: dict | None = None, engine: dict | None = None, **sections) -> dict:
    return base_config(
        policies={"default": {"threshold_tokens": 300, **(policy or {})}},
        engine={"timeout_s": 5, **(engine or {})},
        **sections,
    )


def run(app, scenario):
    """Run `scenario(client)` in one event loop (background jobs live on), then shut down."""

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as c:
            try:
                return await scenario(c)
            finally:
                await app.state.holder.close()

    return asyncio.run(go())


async def post(c, payload):
    return await c.post("/v1/chat/completions", json=payload)


async def until(cond, limit_s: float = 5.0) -> None:
    for _ in range(int(limit_s / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


def sent_user(backend, i: int = -1) -> str:
    return backend.bodies[i]["messages"][0]["content"]


def test_a_miss_done_within_the_budget_is_waited_for(make_app, backend):
    app, engine = make_app(config({"max_wait_ms": 5000}), engine=SlowEngine(steps=3))

    async def scenario(c):
        r = await post(c, body())
        assert engine.finished == 1
        assert (r.headers["x-cprs-cache"], r.headers["x-cprs-compressed"]) == ("miss", "true")
        assert "x-cprs-skipped" not in r.headers
        assert sent_user(backend) == f"<document>{NEEDLE}</document>\n{QUESTION}"
        assert engine.priorities[0] and not any(engine.priorities[0])  # foreground throughout

    run(app, scenario)


def test_over_the_wait_the_request_goes_as_sent_and_the_cache_fills_behind_it(make_app, backend):
    app, engine = make_app(config({"max_wait_ms": 50}), engine=SlowEngine(steps=20))

    async def scenario(c):
        first = await post(c, body())
        assert engine.finished == 0  # answered while the compression still ran
        assert first.headers["x-cprs-cache"] == "pending"
        assert first.headers["x-cprs-skipped"] == "timeout"
        assert first.headers["x-cprs-compressed"] == "false"
        assert sent_user(backend) == body()["messages"][0]["content"]
        await until(lambda: engine.finished == 1)
        seen = engine.priorities[0]
        assert seen[0] is False and seen[-1] is True  # dropped to background once left alone
        second = await post(c, body())
        assert (second.headers["x-cprs-cache"], second.headers["x-cprs-compressed"]) == (
            "hit",
            "true",
        )
        assert sent_user(backend) == f"<document>{NEEDLE}</document>\n{QUESTION}"
        assert len(engine.calls) == 1
        metrics = (await c.get("/metrics")).text
        assert 'cprs_background_jobs_total{result="done"} 1.0' in metrics
        assert 'cprs_documents_skipped_total{reason="timeout",tenant="default"} 1.0' in metrics

    run(app, scenario)


def test_a_prediction_over_the_budget_is_not_waited_for(make_app, backend):
    engine = SlowEngine(steps=20, predicted=60.0)
    app, _ = make_app(config({"max_wait_ms": 10000}), engine=engine)

    async def scenario(c):
        r = await post(c, body())
        assert engine.predict_calls == [len(DOC)]
        assert (r.headers["x-cprs-cache"], r.headers["x-cprs-skipped"]) == (
            "pending",
            "over_budget",
        )
        await until(lambda: engine.finished == 1)
        assert engine.priorities[0] and all(engine.priorities[0])  # background from the start
        r = await post(c, body())
        assert r.headers["x-cprs-cache"] == "hit"

    run(app, scenario)


def test_a_prediction_within_the_budget_is_waited_for(make_app):
    engine = SlowEngine(steps=3, predicted=0.5)
    app, _ = make_app(config({"max_wait_ms": 10000}), engine=engine)

    async def scenario(c):
        r = await post(c, body())
        assert engine.finished == 1 and r.headers["x-cprs-cache"] == "miss"

    run(app, scenario)


def test_max_wait_zero_never_waits_but_still_serves_hits(make_app):
    engine = SlowEngine(steps=3)
    app, _ = make_app(config({"max_wait_ms": 0}), engine=engine)

    async def scenario(c):
        r = await post(c, body())
        assert engine.finished == 0
        assert (r.headers["x-cprs-cache"], r.headers["x-cprs-skipped"]) == (
            "pending",
            "over_budget",
        )
        await until(lambda: engine.finished == 1)
        r = await post(c, body())
        assert (r.headers["x-cprs-cache"], r.headers["x-cprs-compressed"]) == ("hit", "true")

    run(app, scenario)


def test_max_wait_null_waits_up_to_the_engine_timeout(make_app):
    engine = SlowEngine(steps=10, step_s=0.03, predicted=100.0)
    app, _ = make_app(config({"max_wait_ms": None}, {"timeout_s": 0.1}), engine=engine)

    async def scenario(c):
        r = await post(c, body())  # prediction over budget: not waited for
        assert r.headers["x-cprs-skipped"] == "over_budget"
        engine.predicted = None
        other = body(haystack(300, seed=1))
        r = await post(c, other)  # no prediction: waits timeout_s, then goes as sent
        assert (r.headers["x-cprs-cache"], r.headers["x-cprs-skipped"]) == ("pending", "timeout")

    run(app, scenario)
    app, engine = make_app(
        config({"max_wait_ms": None}, {"timeout_s": 5}), engine=SlowEngine(steps=5)
    )

    async def waited(c):
        r = await post(c, body())
        assert engine.finished == 1 and r.headers["x-cprs-cache"] == "miss"

    run(app, waited)


def test_without_background_fill_an_abandoned_compression_stops(make_app):
    engine = SlowEngine(steps=50)
    app, _ = make_app(config({"max_wait_ms": 50, "background_fill": False}), engine=engine)

    async def scenario(c):
        r = await post(c, body())
        # the cache was consulted (a miss), not "off"; nothing is pending
        assert (r.headers["x-cprs-cache"], r.headers["x-cprs-skipped"]) == ("miss", "timeout")
        await until(lambda: engine.cancelled == 1)
        assert engine.finished == 0
        assert app.state.holder.current.background.depth == 0

    run(app, scenario)


def test_concurrent_requests_for_one_document_share_one_job(make_app):
    engine = SlowEngine(steps=10)
    app, _ = make_app(config({"max_wait_ms": 20}), engine=engine)

    async def scenario(c):
        rs = await asyncio.gather(*(post(c, body()) for _ in range(3)))
        assert [r.headers["x-cprs-cache"] for r in rs] == ["pending"] * 3
        assert app.state.holder.current.background.depth == 1
        await until(lambda: engine.finished == 1)
        assert len(engine.calls) == 1

    run(app, scenario)


def test_a_new_waiter_raises_a_background_job_to_foreground(make_app):
    engine = SlowEngine(steps=30, step_s=0.02)
    app, _ = make_app(config({"max_wait_ms": 0}), engine=engine)

    async def scenario(c):
        await post(c, body())  # starts a background job
        await until(lambda: len(engine.priorities[0]) >= 2)
        policy = app.state.holder.current.config.policies["default"]
        object.__setattr__(policy, "max_wait_ms", 10000)  # the next request waits
        r = await post(c, body())
        assert r.headers["x-cprs-cache"] == "miss"  # it joined the running job
        seen = engine.priorities[0]
        assert seen[0] is True and False in seen  # raised while someone waited
        assert len(engine.calls) == 1

    run(app, scenario)


def test_a_full_queue_drops_the_job_and_counts_it(make_app):
    engine = SlowEngine(steps=40, predicted=60.0)
    app, _ = make_app(config(engine={"background_queue": 1}), engine=engine)

    async def scenario(c):
        a = await post(c, body())
        b = await post(c, body(haystack(300, seed=1)))
        assert a.headers["x-cprs-cache"] == "pending"
        assert (b.headers["x-cprs-cache"], b.headers["x-cprs-skipped"]) == ("miss", "over_budget")
        await until(lambda: engine.finished == 1)
        assert 'cprs_background_jobs_total{result="dropped"} 1.0' in (await c.get("/metrics")).text

    run(app, scenario)


def test_shutdown_cancels_background_jobs(make_app):
    engine = SlowEngine(steps=500, predicted=60.0)
    app, _ = make_app(config(), engine=engine)
    controls = []

    async def scenario(c):
        await post(c, body())
        await until(lambda: bool(engine.priorities and engine.priorities[0]))
        controls.append(engine.controls[0])

    run(app, scenario)  # run() ends with holder.close()
    assert controls[0].cancel.is_set()
    assert engine.cancelled == 1 and engine.finished == 0
    assert app.state.holder.current.background.depth == 0


def test_background_jobs_survive_a_config_reload(tmp_path, backend):
    path = tmp_path / "cprs.yaml"
    cfg = config({"max_wait_ms": 0})
    path.write_text(yaml.safe_dump(cfg))
    engine = SlowEngine(steps=20)
    app = create_app(
        load_config(path), engine=engine, upstream_transport=httpx.MockTransport(backend)
    )

    async def scenario(c):
        holder = app.state.holder
        r = await post(c, body())
        assert r.headers["x-cprs-cache"] == "pending"
        before = holder.current.background
        cfg["engine"]["background_queue"] = 7
        cfg["policies"]["default"]["max_wait_ms"] = 10000
        path.write_text(yaml.safe_dump(cfg))
        assert await holder.reload() is True
        assert holder.current.background is before and before.limit == 7
        await until(lambda: engine.finished == 1)
        r = await post(c, body())
        assert (r.headers["x-cprs-cache"], r.headers["x-cprs-compressed"]) == ("hit", "true")

    run(app, scenario)


def test_every_skip_reason_in_the_header_log_and_metrics(make_app, tmp_path):
    class Failing(QueryWordEngine):
        def __init__(self, ready: bool):
            super().__init__(fail=EngineFailure("boom"))
            self._ready = ready

        def ready(self):
            return self._ready, "x"

    log_path = tmp_path / "requests.jsonl"
    nothing = haystack(300, needle=None)  # shares no word with the question: compresses to ""

    cases = [
        (Failing(True), {}, body(), "engine_error", "miss"),
        (Failing(False), {}, body(), "engine_loading", "miss"),
        (QueryWordEngine(), {}, body(question=""), "no_query", "off"),
        (QueryWordEngine(), {}, body(nothing), "not_shorter", "miss"),
        (QueryWordEngine(), {"ab": {"control_percent": 100}}, body(), "control_arm", "off"),
    ]
    for engine, policy, payload, reason, cache in cases:
        cfg = config(policy, log={"requests_path": str(log_path)})
        app = create_app(
            config_from_dict(cfg),
            engine=engine,
            upstream_transport=httpx.MockTransport(lambda r: httpx.Response(200, json={})),
        )

        async def scenario(c, payload=payload):
            r = await post(c, payload)
            return r, (await c.get("/metrics")).text

        r, metrics = run(app, scenario)
        assert r.status_code == 200, r.text
        assert r.headers.get("x-cprs-skipped") == reason, (reason, dict(r.headers))
        assert r.headers["x-cprs-cache"] == cache, reason
        line = json.loads(log_path.read_text().splitlines()[-1])
        assert line["skipped"] == [reason]
        assert f'cprs_documents_skipped_total{{reason="{reason}",tenant="default"}} 1.0' in metrics


def test_reasons_are_per_document_in_order(make_app):
    engine = SlowEngine(steps=20, predicted=60.0)
    app, _ = make_app(config(), engine=engine)
    payload = {
        "model": "gpt-4o",
        "messages": [
            {"role": "user", "content": f"<document>{DOC}</document>"},
            {"role": "user", "content": f"<document>{haystack(300, seed=2)}</document>"},
            {"role": "user", "content": QUESTION},
        ],
    }

    async def scenario(c):
        r = await post(c, payload)
        assert r.headers["x-cprs-skipped"] == "over_budget,over_budget"
        assert r.headers["x-cprs-cache"] == "pending"

    run(app, scenario)


def test_with_the_cache_off_nothing_is_filled_and_the_work_stops(make_app):
    engine = SlowEngine(steps=50)
    app, _ = make_app(config({"max_wait_ms": 50}, cache={"enabled": False}), engine=engine)

    async def scenario(c):
        r = await post(c, body())
        assert (r.headers["x-cprs-cache"], r.headers["x-cprs-skipped"]) == ("off", "timeout")
        await until(lambda: engine.cancelled == 1)
        assert app.state.holder.current.background.depth == 0

    run(app, scenario)
