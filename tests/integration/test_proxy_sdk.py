"""End to end with the real OpenAI SDK as the client, a recording fake backend, and real Redis."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest
from cprs_doubles import NEEDLE, QUESTION, QueryWordEngine, haystack, stream_chunks
from proxy_int_helpers import SHARED_REDIS, proxy_config, running_proxy

from proxy.tokens import TokenCounter

pytestmark = pytest.mark.integration

DOC = haystack(1200)  # ~14k tokens
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
IMAGE = {
    "type": "image_url",
    "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUg==", "detail": "low"},
}


def messages() -> list[dict]:
    return [
        {"role": "system", "content": "Answer from the document only."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": f"<document>{DOC}</document>\n{QUESTION}"},
                IMAGE,
            ],
        },
    ]


def test_needle_document_is_compressed_and_every_other_field_is_identical(
    fake_backend, redis_prefix, sdk
):
    cfg = proxy_config(
        fake_backend.url, cache={"redis_url": SHARED_REDIS, "key_prefix": redis_prefix}
    )
    with running_proxy(cfg) as (url, engine):
        raw = sdk(url).chat.completions.with_raw_response.create(
            model="gpt-4o",
            messages=messages(),
            tools=TOOLS,
            tool_choice="auto",
            response_format={"type": "text"},
            logit_bias={"50256": -100},
            seed=42,
            temperature=0,
            user="u-1",
            extra_body={"vendor_flag": {"x": [1, 2]}, "top_k": 5},
        )
    resp = raw.parse()
    assert resp.choices[0].message.content.startswith("echo ")
    got = fake_backend.received[-1]["body"]
    text = got["messages"][1]["content"][0]["text"]
    assert NEEDLE in text and QUESTION in text
    counter = TokenCounter("gpt-4o")
    assert counter.count(text) * 50 < counter.count(messages()[1]["content"][0]["text"])
    assert got["messages"][1]["content"][1] == IMAGE and got["messages"][0] == messages()[0]
    expected = {
        "model": "gpt-4o", "tools": TOOLS, "tool_choice": "auto", "response_format": {"type": "text"},
        "logit_bias": {"50256": -100}, "seed": 42, "temperature": 0, "user": "u-1",
        "vendor_flag": {"x": [1, 2]}, "top_k": 5,
    }  # fmt: skip
    assert {k: v for k, v in got.items() if k != "messages"} == expected
    h = raw.headers
    assert (h["x-cprs-arm"], h["x-cprs-compressed"], h["x-cprs-cache"]) == (
        "compress",
        "true",
        "miss",
    )
    assert int(h["x-cprs-compressed-tokens"]) * 20 < int(h["x-cprs-original-tokens"])
    assert fake_backend.received[-1]["headers"]["authorization"] == "Bearer sk-backend-777"
    assert resp.model_extra["vendor_extra"] == {"kept": True}  # unknown response fields come back


def test_streaming_relays_tool_call_deltas_and_usage(fake_backend, sdk):
    with running_proxy(proxy_config(fake_backend.url)) as (url, _):
        stream = sdk(url).chat.completions.create(
            model="gpt-4o",
            messages=messages(),
            tools=TOOLS,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        # the exact bytes the backend sent, as a raw SSE client sees them
        with httpx.stream(
            "POST", url + "/v1/chat/completions", headers={"authorization": "Bearer sk-acme"},
            json={"model": "gpt-4o", "messages": messages(), "tools": TOOLS, "stream": True},
        ) as r:  # fmt: skip
            raw = b"".join(r.iter_bytes())
            assert r.headers["content-type"].startswith("text/event-stream")
            assert r.headers["x-cprs-compressed"] == "true"
    sent = fake_backend.received[0]["body"]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    expected = stream_chunks(sent)
    assert [c.model_dump(exclude_unset=True) for c in chunks] == expected
    args = "".join(
        tc.function.arguments or ""
        for c in chunks
        if c.choices
        for tc in (c.choices[0].delta.tool_calls or [])
    )
    assert json.loads(args) == {"city": "Paris"}
    assert chunks[-1].usage.total_tokens == 15 and chunks[-1].choices == []
    second = fake_backend.received[1]["body"]
    assert (
        raw
        == b"".join(f"data: {json.dumps(c)}\n\n".encode() for c in stream_chunks(second))
        + b"data: [DONE]\n\n"
    )


def test_repeated_request_hits_the_redis_cache_per_tenant(fake_backend, redis_prefix, sdk):
    import redis

    cfg = proxy_config(
        fake_backend.url, cache={"redis_url": SHARED_REDIS, "key_prefix": redis_prefix}
    )
    with running_proxy(cfg) as (url, engine):
        seen = []
        for key in ("sk-acme", "sk-acme", "sk-globex"):
            raw = sdk(url, key).chat.completions.with_raw_response.create(
                model="gpt-4o", messages=messages()
            )
            seen.append(raw.headers["x-cprs-cache"])
    assert seen == ["miss", "hit", "miss"]  # another tenant never reads acme's entry
    assert len(engine.calls) == 2
    keys = redis.Redis.from_url(SHARED_REDIS).keys(redis_prefix + "*")
    assert len(keys) == 2 and len({k.split(b":")[-2] for k in keys}) == 2  # two tenant namespaces
    a, b, _ = (r["body"] for r in fake_backend.received)
    assert a == b


def test_control_arm_goes_through_untouched(fake_backend, sdk):
    policies = {"default": {"threshold_tokens": 300, "ab": {"control_percent": 100}}}
    with running_proxy(proxy_config(fake_backend.url, policies=policies)) as (url, engine):
        raw = sdk(url).chat.completions.with_raw_response.create(
            model="gpt-4o", messages=messages(), seed=1, extra_body={"vendor_flag": True}
        )
    assert raw.headers["x-cprs-arm"] == "control" and raw.headers["x-cprs-compressed"] == "false"
    assert fake_backend.received[-1]["body"] == {
        "messages": messages(), "model": "gpt-4o", "seed": 1, "vendor_flag": True,
    }  # fmt: skip
    assert engine.calls == []


def test_client_disconnect_mid_stream_cancels_the_upstream(fake_backend, sdk):
    fake_backend.mode, fake_backend.chunk_delay_s = "slow_stream", 0.5
    with running_proxy(proxy_config(fake_backend.url)) as (url, _):
        stream = sdk(url).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        first = next(iter(stream))
        assert first.choices[0].delta.role == "assistant"
        stream.close()
        assert fake_backend.stream_cancelled.wait(5), "backend stream was not cancelled"
        deadline = time.monotonic() + 5
        while 'status="499"' not in (text := httpx.get(url + "/metrics").text):
            assert time.monotonic() < deadline, text
            time.sleep(0.05)
        assert "cprs_requests_in_flight 0.0" in text


def test_backend_dying_mid_stream_becomes_an_sse_error(fake_backend, sdk):
    fake_backend.mode = "drop"
    with running_proxy(proxy_config(fake_backend.url)) as (url, _):
        stream = sdk(url).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        with pytest.raises(openai.APIError):
            list(stream)


def test_engine_failing_or_slow_never_breaks_the_request(fake_backend, sdk):
    for engine, cfg_extra in (
        (QueryWordEngine(fail=RuntimeError("gpu on fire")), {}),
        (QueryWordEngine(delay_s=5), {"engine": {"timeout_s": 0.2}}),
    ):
        with running_proxy(proxy_config(fake_backend.url, **cfg_extra), engine) as (url, _):
            raw = sdk(url).chat.completions.with_raw_response.create(
                model="gpt-4o", messages=messages()
            )
        assert raw.headers["x-cprs-compressed"] == "false"
        assert fake_backend.received[-1]["body"]["messages"] == messages()
