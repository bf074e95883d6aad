"""Bad inputs and failing backends all answer in OpenAI's error format, with the right status."""

from __future__ import annotations

import httpx
import pytest
from proxy_helpers import BACKEND_KEY, base_config, call

from proxy.errors import UpstreamTimeout, error_body, from_exception, upstream_error_from_response

OK = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def assert_openai_error(
    r: httpx.Response, status: int, code: str | None = None, param: str | None = None
):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if code is not None:
        assert err["code"] == code
    if param is not None:
        assert err["param"] == param
    return err


@pytest.mark.parametrize(
    ("raw", "code", "param"),
    [
        (b"{not json", "invalid_json", None),
        (b"", "invalid_json", None),
        (b"[1, 2]", "invalid_json", None),
        (
            b'{"messages": [{"role": "user", "content": "x"}]}',
            "missing_required_parameter",
            "model",
        ),
        (b'{"model": 5, "messages": [{"role": "user", "content": "x"}]}', "invalid_type", "model"),
        (b'{"model": "gpt-4o"}', "missing_required_parameter", "messages"),
        (b'{"model": "gpt-4o", "messages": []}', "invalid_type", "messages"),
        (b'{"model": "gpt-4o", "messages": "hi"}', "invalid_type", "messages"),
        (
            b'{"model": "gpt-4o", "messages": [{"content": "x"}]}',
            "invalid_type",
            "messages[0].role",
        ),
        (
            b'{"model": "gpt-4o", "messages": [{"role": "user", "content": 3}]}',
            "invalid_type",
            "messages[0].content",
        ),
        (
            b'{"model": "gpt-4o", "messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]}',
            "invalid_type",
            "messages[0].content[0].text",
        ),
        (
            b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}',
            "invalid_type",
            "stream",
        ),
    ],
)
def test_bad_bodies_are_400_in_openai_format(make_app, backend, raw, code, param):
    app, _ = make_app()
    r = call(
        app,
        "POST",
        "/v1/chat/completions",
        content=raw,
        headers={"content-type": "application/json"},
    )
    err = assert_openai_error(r, 400, code, param)
    assert err["type"] == "invalid_request_error"
    assert backend.bodies == []


def test_oversized_body_is_413(make_app, backend):
    app, _ = make_app(base_config(server={"max_body_bytes": 2048}))
    big = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 5000}]}
    assert_openai_error(
        call(app, "POST", "/v1/chat/completions", json=big), 413, "request_too_large"
    )
    assert backend.bodies == []


def test_unknown_model_and_disallowed_model_are_404(make_app, backend):
    app, _ = make_app()
    assert_openai_error(
        call(app, "POST", "/v1/chat/completions", json={**OK, "model": "nope"}),
        404,
        "model_not_found",
        "model",
    )
    cfg = base_config(policies={"default": {"allowed_models": ["claude-*"]}})
    app, _ = make_app(cfg)
    assert_openai_error(call(app, "POST", "/v1/chat/completions", json=OK), 404, "model_not_found")
    assert backend.bodies == []


def test_a_model_string_litellm_cannot_place_is_404(make_app, backend):
    app, _ = make_app(base_config(models=[{"name": "*", "model": "*", "api_base": "http://b/v1"}]))
    r = call(app, "POST", "/v1/chat/completions", json={**OK, "model": "no-such-provider-model"})
    assert_openai_error(r, 404, "model_not_found")


def test_api_keys_required_when_tenants_configured(make_app, backend):
    cfg = base_config(tenants=[{"name": "acme", "api_keys": ["sk-acme"]}])
    app, _ = make_app(cfg)
    assert_openai_error(call(app, "POST", "/v1/chat/completions", json=OK), 401, "invalid_api_key")
    bad = {"authorization": "Bearer sk-wrong"}
    assert_openai_error(call(app, "POST", "/v1/chat/completions", json=OK, headers=bad), 401)
    assert_openai_error(call(app, "GET", "/v1/models", headers=bad), 401)
    good = {"authorization": "Bearer sk-acme"}
    assert call(app, "POST", "/v1/chat/completions", json=OK, headers=good).status_code == 200
    assert backend.headers[-1]["authorization"] == f"Bearer {BACKEND_KEY}"  # never the client's key


def test_backend_openai_error_passes_through_with_status(make_app, backend):
    body = {
        "error": {
            "message": "Rate limit reached",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    backend.respond = lambda req, b: httpx.Response(429, json=body, headers={"retry-after": "3"})
    app, _ = make_app()
    r = call(app, "POST", "/v1/chat/completions", json=OK)
    assert r.status_code == 429 and r.json() == body and r.headers["retry-after"] == "3"


def test_backend_non_json_error_is_wrapped_and_never_leaks_the_key(make_app, backend):
    backend.respond = lambda req, b: httpx.Response(500, text=f"<html>boom {BACKEND_KEY}</html>")
    app, _ = make_app()
    r = call(app, "POST", "/v1/chat/completions", json=OK)
    assert_openai_error(r, 500)
    assert BACKEND_KEY not in r.text and "boom" in r.text


def test_backend_timeout_is_504_and_connection_failure_502(make_app, backend):
    def timeout(req, b):
        raise httpx.ReadTimeout("slow", request=req)

    backend.respond = timeout
    app, _ = make_app()
    assert_openai_error(call(app, "POST", "/v1/chat/completions", json=OK), 504, "upstream_timeout")

    def refused(req, b):
        raise httpx.ConnectError("refused", request=req)

    backend.respond = refused
    assert_openai_error(
        call(app, "POST", "/v1/chat/completions", json=OK), 502, "upstream_unreachable"
    )
    assert_openai_error(call(app, "POST", "/v1/chat/completions", json={**OK, "stream": True}), 502)


def test_streaming_backend_error_before_first_byte_is_a_json_error(make_app, backend):
    backend.respond = lambda req, b: httpx.Response(
        503,
        json={
            "error": {"message": "overloaded", "type": "server_error", "param": None, "code": None}
        },
    )
    app, _ = make_app()
    r = call(app, "POST", "/v1/chat/completions", json={**OK, "stream": True})
    assert r.status_code == 503 and r.json()["error"]["message"] == "overloaded"


def test_unknown_paths_and_methods_are_openai_errors(make_app):
    app, _ = make_app()
    assert_openai_error(call(app, "GET", "/nope"), 404)  # /v1/nope is relayed to the backend
    assert_openai_error(call(app, "GET", "/v1/chat/completions"), 405)


def test_error_helpers():
    assert error_body("m", "t") == {
        "error": {"message": "m", "type": "t", "param": None, "code": None}
    }
    e = upstream_error_from_response(400, b'{"error": "bad thing sk-xyz12"}', ("sk-xyz12",))
    assert e.status == 400 and "sk-xyz12" not in e.message
    assert isinstance(from_exception(httpx.ReadTimeout("x")), UpstreamTimeout)


def test_litellm_exceptions_keep_their_status():
    import litellm

    exc = litellm.exceptions.RateLimitError("slow down", llm_provider="anthropic", model="claude")
    assert from_exception(exc).status == 429
    exc = litellm.exceptions.Timeout("late", model="claude", llm_provider="anthropic")
    assert from_exception(exc).status == 504
    exc = litellm.exceptions.APIConnectionError("down", llm_provider="anthropic", model="claude")
    assert from_exception(exc).status == 502
    exc = litellm.exceptions.BadRequestError("bad", model="claude", llm_provider="anthropic")
    assert from_exception(exc).status == 400


def test_the_engine_and_the_proxy_type_a_status_alike():
    """Two deployables, two error-body builders, one status -> type table: a 503 is the same
    `server_error` whether the engine or the proxy answers it."""
    from cprs_engine import errors as engine_errors
    from cprs_engine import wire
    from cprs_engine.service import BodyTooLarge, EngineNotReady
    from proxy import errors as proxy_errors

    pairs = [
        (engine_errors.InvalidInput("m"), proxy_errors.InvalidRequest("m")),
        (BodyTooLarge("m"), proxy_errors.PayloadTooLarge("m")),
        (engine_errors.EngineFailure("m"), proxy_errors.ProxyError("m")),
        (EngineNotReady("m"), proxy_errors.CompressionFailed("m")),
        (engine_errors.CheckpointNotFound("m"), proxy_errors.CompressionFailed("m")),
    ]
    for engine_exc, proxy_exc in pairs:
        assert engine_exc.status == proxy_exc.status
        engine = wire.error_body(engine_exc.status, "m", param=None, code=engine_exc.code)
        assert engine["error"]["type"] == proxy_errors.body_for(proxy_exc)["error"]["type"]
    assert proxy_errors.body_for(proxy_errors.CompressionFailed("m"))["error"]["type"] == (
        "server_error"
    )
