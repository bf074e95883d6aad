"""The chat route in process: compression, transparency, A/B arms, failure modes, headers."""

from __future__ import annotations

import asyncio
import copy
import json

import httpx
from cprs_doubles import NEEDLE, QUESTION, QueryWordEngine, haystack
from proxy_helpers import BACKEND_KEY, base_config, call

from cprs_engine.errors import ContextTooLong, EngineFailure
from proxy.tokens import TokenCounter

DOC = haystack(300)


def chat_body(**extra) -> dict:
    body = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": f"<document>{DOC}</document>\n{QUESTION}"},
        ],
    }
    body.update(extra)
    return body


def test_long_document_is_compressed_and_everything_else_is_identical(make_app, backend):
    app, engine = make_app()
    sent = chat_body(
        temperature=0.2,
        seed=7,
        logit_bias={"1234": -5},
        tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        tool_choice="auto",
        response_format={"type": "json_object"},
        some_vendor_field={"nested": [1, "two", None]},
    )
    r = call(app, "POST", "/v1/chat/completions", json=sent)
    assert r.status_code == 200, r.text
    assert r.headers["x-cprs-arm"] == "compress"
    assert r.headers["x-cprs-compressed"] == "true"
    assert r.headers["x-cprs-cache"] == "miss"
    original, compressed = (
        int(r.headers["x-cprs-original-tokens"]),
        int(r.headers["x-cprs-compressed-tokens"]),
    )
    assert compressed * 20 < original
    got = backend.bodies[-1]
    user = got["messages"][1]["content"]
    assert user == f"<document>{NEEDLE}</document>\n{QUESTION}"
    assert got["messages"][0] == sent["messages"][0]
    assert {k: v for k, v in got.items() if k != "messages"} == {
        k: v for k, v in sent.items() if k != "messages"
    }
    assert list(got) == list(sent)  # field order kept too
    assert engine.calls[0]["query"] == QUESTION
    assert r.json()["vendor_extra"] == {"kept": True}  # backend response unchanged
    assert backend.headers[-1]["authorization"] == f"Bearer {BACKEND_KEY}"
    assert BACKEND_KEY not in r.text and BACKEND_KEY not in json.dumps(dict(r.headers))


def test_short_requests_pass_byte_for_byte(make_app, backend):
    app, engine = make_app()
    sent = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "hi \u00e9\u4e2d <document>x</document>"}],
    }
    r = call(app, "POST", "/v1/chat/completions", json=sent)
    assert r.status_code == 200
    assert r.headers["x-cprs-compressed"] == "false" and r.headers["x-cprs-cache"] == "off"
    assert backend.bodies[-1] == sent and engine.calls == []
    assert r.headers["x-cprs-original-tokens"] == r.headers["x-cprs-compressed-tokens"]


def test_images_and_parts_survive(make_app, backend):
    app, _ = make_app()
    image = {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"},
    }
    sent = {
        "model": "gpt-4o",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": DOC},
                    image,
                    {"type": "text", "text": QUESTION},
                ],
            }
        ],
    }
    r = call(app, "POST", "/v1/chat/completions", json=sent)
    assert r.headers["x-cprs-compressed"] == "true"
    parts = backend.bodies[-1]["messages"][0]["content"]
    assert (
        parts[0]["text"] == NEEDLE
        and parts[1] == image
        and parts[2] == sent["messages"][0]["content"][2]
    )


def test_control_arm_forwards_untouched(make_app, backend):
    cfg = base_config(
        policies={"default": {"threshold_tokens": 300, "ab": {"control_percent": 100}}}
    )
    app, engine = make_app(cfg)
    sent = chat_body()
    r = call(app, "POST", "/v1/chat/completions", json=sent)
    assert r.status_code == 200
    assert (r.headers["x-cprs-arm"], r.headers["x-cprs-compressed"], r.headers["x-cprs-cache"]) == (
        "control",
        "false",
        "off",
    )
    assert backend.bodies[-1] == sent and engine.calls == []


def test_repeated_request_hits_the_in_process_cache(make_app, backend):
    app, engine = make_app()
    statuses = [
        call(app, "POST", "/v1/chat/completions", json=chat_body()).headers["x-cprs-cache"]
        for _ in range(2)
    ]
    assert statuses == ["miss", "hit"] and len(engine.calls) == 1
    assert backend.bodies[0] == backend.bodies[1]


def test_concurrent_identical_requests_compress_once(make_app, backend):
    app, engine = make_app(engine=QueryWordEngine(delay_s=0.3))

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as c:
            return await asyncio.gather(
                *(c.post("/v1/chat/completions", json=chat_body()) for _ in range(4))
            )

    rs = asyncio.run(go())
    assert all(r.status_code == 200 and r.headers["x-cprs-compressed"] == "true" for r in rs)
    assert len(engine.calls) == 1


def test_multi_turn_earlier_documents_stay_identical(make_app, backend):
    cfg = base_config(policies={"default": {"threshold_tokens": 300, "followups": "stable"}})
    app, engine = make_app(cfg)
    turn1 = chat_body()
    call(app, "POST", "/v1/chat/completions", json=turn1)
    turn2 = copy.deepcopy(turn1)
    turn2["messages"] += [
        {"role": "assistant", "content": "7316"},
        {"role": "user", "content": "And what did the farmer paint?"},
    ]
    r = call(app, "POST", "/v1/chat/completions", json=turn2)
    assert r.headers["x-cprs-cache"] == "hit"
    first, second = backend.bodies
    assert second["messages"][:2] == first["messages"][:2]  # prefix identical for prompt caches
    assert second["messages"][2:] == turn2["messages"][2:]


def test_engine_failure_fails_open(make_app, backend):
    app, _ = make_app(engine=QueryWordEngine(fail=EngineFailure("boom")))
    r = call(app, "POST", "/v1/chat/completions", json=chat_body())
    assert r.status_code == 200 and r.headers["x-cprs-compressed"] == "false"
    assert backend.bodies[-1] == chat_body()
    assert (
        'cprs_engine_errors_total{kind="failure",tenant="default"} 1.0'
        in call(app, "GET", "/metrics").text
    )


def test_engine_failure_closed_is_an_openai_error(make_app, backend):
    cfg = base_config(policies={"default": {"threshold_tokens": 300, "failure_mode": "closed"}})
    app, _ = make_app(cfg, engine=QueryWordEngine(fail=EngineFailure("boom")))
    r = call(app, "POST", "/v1/chat/completions", json=chat_body())
    assert r.status_code == 503 and r.json()["error"]["code"] == "compression_failed"
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert backend.bodies == []


def test_engine_refusing_the_document_closed_is_context_too_long(make_app, backend):
    cfg = base_config(policies={"default": {"threshold_tokens": 300, "failure_mode": "closed"}})
    app, _ = make_app(cfg, engine=QueryWordEngine(fail=ContextTooLong("over 1M tokens")))
    r = call(app, "POST", "/v1/chat/completions", json=chat_body())
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"


def test_engine_timeout_open_forwards_uncompressed_and_closed_is_504(make_app, backend):
    open_cfg = base_config(engine={"timeout_s": 0.05})
    app, _ = make_app(open_cfg, engine=QueryWordEngine(delay_s=2))
    r = call(app, "POST", "/v1/chat/completions", json=chat_body())
    assert r.status_code == 200 and r.headers["x-cprs-compressed"] == "false"
    assert backend.bodies[-1] == chat_body()
    closed = base_config(
        engine={"timeout_s": 0.05},
        policies={"default": {"threshold_tokens": 300, "failure_mode": "closed"}},
    )
    app, _ = make_app(closed, engine=QueryWordEngine(delay_s=2))
    r = call(app, "POST", "/v1/chat/completions", json=chat_body())
    assert r.status_code == 504 and r.json()["error"]["code"] == "compression_timeout"


def test_missing_query_open_passes_and_closed_is_400(make_app, backend):
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": f"<document>{DOC}</document>"}],
    }
    app, engine = make_app()
    r = call(app, "POST", "/v1/chat/completions", json=body)
    assert r.status_code == 200 and r.headers["x-cprs-compressed"] == "false" and engine.calls == []
    assert backend.bodies[-1] == body
    app, _ = make_app(
        base_config(policies={"default": {"threshold_tokens": 300, "failure_mode": "closed"}})
    )
    r = call(app, "POST", "/v1/chat/completions", json=body)
    assert r.status_code == 400
    assert (
        r.json()["error"]["code"] == "missing_query" and "question" in r.json()["error"]["message"]
    )


def test_tokens_headers_count_with_tiktoken(make_app):
    app, _ = make_app()
    r = call(app, "POST", "/v1/chat/completions", json=chat_body())
    counter = TokenCounter("gpt-4o")
    expected = counter.count("You are terse.") + counter.count(
        chat_body()["messages"][1]["content"]
    )
    assert int(r.headers["x-cprs-original-tokens"]) == expected


def test_a_backend_cookie_is_neither_kept_nor_sent_back(make_app, backend):
    from cprs_doubles import completion

    backend.respond = lambda request, body: httpx.Response(
        200, json=completion(body), headers={"set-cookie": "session=abc; Path=/"}
    )
    app, _ = make_app()
    for _ in range(2):
        assert call(app, "POST", "/v1/chat/completions", json=chat_body()).status_code == 200
    assert "cookie" not in backend.headers[-1]
    assert len(app.state.upstream.client.cookies) == 0
