"""`POST /v1/compress`: the prefetch endpoint. Same auth, policy and cache as chat; no backend."""

from __future__ import annotations

import asyncio

import httpx
from cprs_doubles import NEEDLE, QUESTION, SlowEngine, haystack
from proxy_helpers import base_config, call

DOC = haystack(300)


def chat_body(**extra) -> dict:
    return {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": f"<document>{DOC}</document>\n{QUESTION}"}],
        **extra,
    }


def test_a_chat_body_comes_back_compressed_and_fills_the_cache_for_chat(make_app, backend):
    # a target ratio puts the document's token count in the cache key: prefetch must count as chat
    app, engine = make_app(
        base_config(policies={"default": {"threshold_tokens": 300, "target_ratio": 5}})
    )

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as c:
            r = await c.post("/v1/compress", json=chat_body())
            chat = await c.post("/v1/chat/completions", json=chat_body())
            return r, chat

    r, chat = asyncio.run(scenario())
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["messages"] == [
        {"role": "user", "content": f"<document>{NEEDLE}</document>\n{QUESTION}"}
    ]
    assert (out["cache"], out["skipped"], out["documents"], out["compressed"]) == ("miss", [], 1, 1)
    assert out["compressed_tokens"] < out["original_tokens"]
    assert len(backend.bodies) == 1  # only the chat call reached the backend
    assert chat.headers["x-cprs-cache"] == "hit" and len(engine.calls) == 1


def test_query_and_context_give_text_and_spans(make_app, backend):
    app, engine = make_app()
    r = call(
        app, "POST", "/v1/compress",
        json={"query": QUESTION, "context": DOC, "granularity": "paragraph"},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["compressed"] == NEEDLE and out["cache"] == "miss"
    (span,) = out["spans"]
    assert DOC[span["start"] : span["end"]] == span["text"] and NEEDLE in span["text"]
    assert engine.calls[0]["granularity"] == "paragraph"
    assert backend.bodies == []


def test_wait_false_answers_202_and_the_job_runs_in_the_background(make_app):
    engine = SlowEngine(steps=5)
    app, _ = make_app(engine=engine)

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as c:
            r = await c.post(
                "/v1/compress", json={"query": QUESTION, "context": DOC, "wait": False}
            )
            done_then = engine.finished
            for _ in range(500):
                if engine.finished:
                    break
                await asyncio.sleep(0.01)
            again = await c.post("/v1/compress", json={"query": QUESTION, "context": DOC})
            await app.state.holder.close()
            return r, done_then, again

    r, done_then, again = asyncio.run(scenario())
    assert r.status_code == 202 and done_then == 0
    assert (r.json()["cache"], r.json()["skipped"], r.json()["compressed"]) == (
        "pending",
        ["over_budget"],
        None,
    )
    assert again.json()["cache"] == "hit" and again.json()["compressed"] == NEEDLE


def test_auth_policy_and_bad_bodies_answer_openai_errors(make_app):
    cfg = base_config(
        tenants=[{"name": "acme", "api_keys": ["sk-acme"], "policy": "narrow"}],
        policies={"narrow": {"threshold_tokens": 300, "allowed_models": ["other-*"]}},
    )
    app, engine = make_app(cfg)
    auth = {"authorization": "Bearer sk-acme"}
    cases = [
        ({}, {"query": QUESTION, "context": DOC}, 401, "invalid_api_key"),
        (auth, chat_body(), 404, "model_not_found"),
        (auth, {"query": QUESTION}, 400, "invalid_request"),
        (auth, {"query": "", "context": DOC}, 400, "invalid_request"),
        (auth, {"query": QUESTION, "context": DOC, "wait": "no"}, 400, "invalid_request"),
        (auth, {"query": QUESTION, "context": DOC, "granularity": "word"}, 400, "invalid_request"),
        (auth, {"model": "gpt-4o", "messages": "hi"}, 400, None),
    ]
    for headers, payload, status, code in cases:
        r = call(app, "POST", "/v1/compress", json=payload, headers=headers)
        assert r.status_code == status, (payload, r.text)
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"}
        if code is not None:
            assert err["code"] == code, payload
    assert engine.calls == []
    r = call(app, "POST", "/v1/compress", content=b"{oops", headers=auth)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
