"""Faults end to end: Redis dying mid-run, bad inputs, failing backends - all through the SDK."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from cprs_doubles import QUESTION, free_port, haystack
from proxy_int_helpers import proxy_config, running_proxy

pytestmark = pytest.mark.integration


def doc_request(i: int) -> list[dict]:
    return [
        {"role": "user", "content": f"<document>{haystack(400, seed=i)}</document>\n{QUESTION}"}
    ]


def test_stopping_redis_mid_run_fails_no_request(fake_backend, sdk, private_redis):
    cfg = proxy_config(fake_backend.url, cache={"redis_url": private_redis.url, "timeout_s": 0.1})
    with running_proxy(cfg) as (url, engine):
        c = sdk(url)
        before = [
            c.chat.completions.with_raw_response.create(model="gpt-4o", messages=doc_request(0))
            for _ in range(2)
        ]
        assert [r.headers["x-cprs-cache"] for r in before] == ["miss", "hit"]
        private_redis.kill()
        after = []
        for i in range(6):
            t = time.perf_counter()
            r = c.chat.completions.with_raw_response.create(
                model="gpt-4o", messages=doc_request(i % 2)
            )
            after.append(
                (
                    r.http_response.status_code,
                    r.headers["x-cprs-compressed"],
                    time.perf_counter() - t,
                )
            )
        stream = c.chat.completions.create(model="gpt-4o", messages=doc_request(3), stream=True)
        assert (
            "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)
            == "Hello there, friend."
        )
        readyz = httpx.get(url + "/readyz")
    assert all(status == 200 and compressed == "true" for status, compressed, _ in after)
    assert max(secs for *_, secs in after) < 2.0  # a dead Redis slows nothing down
    assert readyz.status_code == 200  # the cache is not a readiness dependency


def test_bad_inputs_get_openai_format_errors(fake_backend, sdk):
    cfg = proxy_config(
        fake_backend.url, server={"max_body_bytes": 64 * 1024, "reload_interval_s": 0}
    )
    with running_proxy(cfg) as (url, _):
        c = sdk(url)
        with pytest.raises(openai.AuthenticationError) as e:
            sdk(url, key="sk-nobody").chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "x"}]
            )
        assert e.value.body["code"] == "invalid_api_key"
        with pytest.raises(openai.NotFoundError) as e:
            c.chat.completions.create(
                model="gpt-5-nonexistent", messages=[{"role": "user", "content": "x"}]
            )
        assert e.value.body["code"] == "model_not_found"
        with pytest.raises(openai.BadRequestError) as e:
            c.chat.completions.create(model="gpt-4o", messages="not a list")  # type: ignore[arg-type]
        assert e.value.body["param"] == "messages"
        with pytest.raises(openai.APIStatusError) as e:
            c.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "x" * 100_000}]
            )
        assert e.value.status_code == 413 and e.value.body["code"] == "request_too_large"
        r = httpx.post(
            url + "/v1/chat/completions",
            content=b'{"model": "gpt-4o", "messages": [',
            headers={"authorization": "Bearer sk-acme"},
        )
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
        closed = {"default": {"threshold_tokens": 300, "failure_mode": "closed"}}
    with running_proxy(proxy_config(fake_backend.url, policies=closed)) as (url, _):
        with pytest.raises(openai.BadRequestError) as e:
            sdk(url).chat.completions.create(
                model="gpt-4o",
                messages=[{"role": "user", "content": f"<document>{haystack(400)}</document>"}],
            )
        assert e.value.body["code"] == "missing_query"
    assert fake_backend.received == []  # nothing bad reached the backend


def test_backend_errors_keep_their_status_through_the_sdk(fake_backend, sdk):
    with running_proxy(proxy_config(fake_backend.url)) as (url, _):
        c = sdk(url)
        msgs = [{"role": "user", "content": "hi"}]
        fake_backend.mode = "error"
        fake_backend.error_status = 429
        fake_backend.error_body = {
            "error": {
                "message": "slow down",
                "type": "requests",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        }
        with pytest.raises(openai.RateLimitError) as e:
            c.chat.completions.create(model="gpt-4o", messages=msgs)
        assert e.value.body["code"] == "rate_limit_exceeded"
        fake_backend.error_status, fake_backend.error_body = (
            500,
            {"error": {"message": "oops", "type": "server_error", "param": None, "code": None}},
        )
        with pytest.raises(openai.InternalServerError):
            c.chat.completions.create(model="gpt-4o", messages=msgs, stream=True)
    fake_backend.mode = "hang"
    slow = proxy_config(
        fake_backend.url, server={"upstream_timeout_s": 0.5, "reload_interval_s": 0}
    )
    with running_proxy(slow) as (url, _):
        with pytest.raises(openai.APIStatusError) as e:
            sdk(url).chat.completions.create(model="gpt-4o", messages=msgs)
        assert e.value.status_code == 504
    dead = proxy_config(f"http://127.0.0.1:{free_port()}")
    with running_proxy(dead) as (url, _):
        with pytest.raises(openai.APIStatusError) as e:
            sdk(url).chat.completions.create(model="gpt-4o", messages=msgs)
        assert e.value.status_code == 502 and e.value.body["code"] == "upstream_unreachable"
