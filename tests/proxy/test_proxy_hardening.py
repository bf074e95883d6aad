"""Regression tests for what a reliability probe broke (issue 14), in process.

Lone surrogates, deep nesting and NaN/Infinity are 400s; a client that leaves before the first
byte cancels the backend call (499 in the request log); backend headers are scrubbed of the
route key; a half-sent body gets a 408; a 2xx that is not JSON/SSE becomes a 502.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from cprs_doubles import QUESTION, QueryWordEngine, haystack
from proxy_helpers import BACKEND_KEY, base_config, call

DOC = haystack(300)


def chat(content="hi", **extra) -> dict:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": content}], **extra}


def post_raw(app, raw: bytes) -> httpx.Response:
    headers = {"content-type": "application/json"}
    return call(app, "POST", "/v1/chat/completions", content=raw, headers=headers)


# --- 1. lone surrogates -------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw,param",
    [
        (b'{"model":"gpt-4o","messages":[{"role":"user","content":"hi \\ud800"}]}',
         "messages[0].content"),
        (b'{"model":"gpt-4o\\udfff","messages":[{"role":"user","content":"hi"}]}', "model"),
        (b'{"model":"nope-\\ud800","messages":[{"role":"user","content":"hi"}]}', "model"),
        (b'{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"text",'
         b'"text":"x\\udc00"}]}]}', "messages[0].content[0].text"),
        (b'{"model":"gpt-4o","messages":[{"role":"user","content":"\xed\xa0\x80"}]}',
         "messages[0].content"),
        (b'{"model":"gpt-4o","metadata":{"k\\ud800":1},"messages":[{"role":"user",'
         b'"content":"hi"}]}', "metadata.k\\ud800"),
    ],
)  # fmt: skip
def test_lone_surrogate_is_a_400_naming_the_field(make_app, backend, raw, param):
    app, _ = make_app()
    r = post_raw(app, raw)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert (err["code"], err["param"]) == ("invalid_unicode", param)
    assert backend.bodies == []


def test_lone_surrogate_in_a_document_and_in_the_question(make_app, backend):
    app, _ = make_app()
    for content in (
        f"<document>{DOC}\ud800</document>\n{QUESTION}",
        f"<document>{DOC}</document>\n\udbff?",
    ):
        raw = json.dumps(chat(content)).encode()  # ensure_ascii: the surrogate as \\udxxx
        r = post_raw(app, raw)
        assert r.status_code == 400 and r.json()["error"]["param"] == "messages[0].content"
    assert backend.bodies == []


def test_a_valid_surrogate_pair_is_text_and_passes(make_app, backend):
    app, _ = make_app()
    r = post_raw(app, json.dumps(chat("smile \U0001f600")).encode())
    assert r.status_code == 200
    assert backend.bodies[0]["messages"][0]["content"] == "smile \U0001f600"


# --- 2. deep nesting ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        b'{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"x":'
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}",
        b'{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"x":' + b"[" * 5000,
    ],
    ids=["arrays", "objects", "inside-a-field", "unclosed"],
)
def test_deep_nesting_is_invalid_json_before_parsing(make_app, backend, raw):
    app, _ = make_app()
    r = post_raw(app, raw)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    assert backend.bodies == []


def test_moderate_nesting_and_brackets_in_strings_pass(make_app, backend):
    app, _ = make_app()
    nested: object = 1
    for _ in range(100):
        nested = [nested]
    body = chat("[[[[{{{{" * 200, response_format={"deep": nested})
    r = post_raw(app, json.dumps(body).encode())
    assert r.status_code == 200
    assert backend.bodies[0]["response_format"] == {"deep": nested}


# --- 3. NaN / Infinity --------------------------------------------------------------------


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e400"])
def test_non_finite_numbers_are_invalid_json(make_app, backend, literal):
    app, _ = make_app()
    raw = (
        b'{"model":"gpt-4o","temperature":'
        + literal
        + b',"messages":[{"role":"user","content":"x"}]}'
    )
    r = post_raw(app, raw)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    assert backend.bodies == []


# --- 4. a client that leaves before the first byte -----------------------------------------


async def _leave_early(app, body: dict, leave_after_s: float) -> list[dict]:
    """Send `body` over raw ASGI, disconnect after `leave_after_s`; the messages sent back."""
    raw = json.dumps(body).encode()
    gone = asyncio.Event()
    sent: list[dict] = []
    first = True

    async def receive():
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": raw, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": "POST", "scheme": "http", "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions", "query_string": b"", "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())],
        "client": ("127.0.0.1", 5), "server": ("127.0.0.1", 80), "state": {},
    }  # fmt: skip
    task = asyncio.create_task(app(scope, receive, send))
    await asyncio.sleep(leave_after_s)
    gone.set()
    await asyncio.wait_for(task, 5)
    return sent


def _slow_backend(backend, cancelled: list, *, stream: bool):
    async def respond(request, body):
        try:
            await asyncio.sleep(30)  # never answers in time
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return None

    backend.respond = respond


@pytest.mark.parametrize("stream", [False, True], ids=["non-streamed", "slow-header-stream"])
def test_client_leaving_before_the_first_byte_cancels_the_backend(
    make_app, backend, tmp_path, stream
):
    log = tmp_path / "req.jsonl"
    app, _ = make_app(base_config(log={"requests_path": str(log)}))
    cancelled: list = []
    _slow_backend(backend, cancelled, stream=stream)
    asyncio.run(_leave_early(app, chat(stream=stream), 0.3))
    assert cancelled == [True]
    line = json.loads(log.read_text().splitlines()[-1])
    assert (line["status"], line["error_type"]) == (499, "client_disconnected")


def test_client_leaving_while_its_document_compresses_is_not_sent_on(make_app, backend, tmp_path):
    log = tmp_path / "req.jsonl"
    engine = QueryWordEngine(delay_s=0.6)
    app, _ = make_app(base_config(log={"requests_path": str(log)}), engine=engine)

    async def go():
        await _leave_early(app, chat(f"<document>{DOC}</document>\n{QUESTION}"), 0.2)
        await asyncio.sleep(0.8)  # the compression finishes (and is cached) meanwhile

    asyncio.run(go())
    assert len(engine.calls) == 1
    assert backend.bodies == []  # nothing reached the backend
    assert json.loads(log.read_text().splitlines()[-1])["status"] == 499


# --- 5. backend headers scrubbed of the route key ------------------------------------------


@pytest.mark.parametrize("status", [200, 429])
def test_backend_headers_are_redacted_like_bodies(make_app, backend, status):
    app, _ = make_app()
    backend.respond = lambda req, body: httpx.Response(
        status,
        json={"id": "x", "choices": []} if status == 200 else {"error": {"message": "slow down"}},
        headers={"x-request-id": f"req-{BACKEND_KEY}-1", "x-ratelimit-remaining": BACKEND_KEY},
    )
    r = call(app, "POST", "/v1/chat/completions", json=chat())
    assert r.status_code == status
    assert BACKEND_KEY not in str(r.headers) and BACKEND_KEY not in r.text
    assert r.headers["x-request-id"] == "req-[redacted]-1"


# --- 6. a half-sent body -------------------------------------------------------------------


def test_half_sent_body_gets_a_408(make_app, backend):
    cfg = base_config(server={"body_timeout_s": 0.3, "reload_interval_s": 0})
    app, _ = make_app(cfg)

    async def go():
        sent: list[dict] = []
        parts = [{"type": "http.request", "body": b'{"model": "gpt', "more_body": True}]

        async def receive():
            if parts:
                return parts.pop()
            await asyncio.sleep(30)  # the rest never comes

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions",
                 "raw_path": b"/v1/chat/completions", "query_string": b"", "root_path": "",
                 "headers": [], "scheme": "http", "http_version": "1.1", "state": {},
                 "asgi": {"version": "3.0"}, "client": None, "server": None}  # fmt: skip
        await asyncio.wait_for(app(scope, receive, send), 5)
        return sent

    sent = asyncio.run(go())
    assert sent[0]["status"] == 408
    assert json.loads(sent[1]["body"])["error"]["code"] == "request_timeout"
    assert backend.bodies == []


# --- 8. a 2xx answer that is neither JSON nor SSE ------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    "content", [b"\xff\xfe garbage \x00", b"<html>oops</html>", b""], ids=["bytes", "html", "empty"]
)
def test_2xx_garbage_from_the_backend_is_a_502_and_counted(make_app, backend, stream, content):
    app, _ = make_app()
    ctype = "text/event-stream" if stream else "application/json"
    backend.respond = lambda req, body: httpx.Response(
        200, content=content, headers={"content-type": ctype}
    )
    r = call(app, "POST", "/v1/chat/completions", json=chat(stream=stream))
    assert r.status_code == 502, r.text
    assert r.json()["error"]["code"] == "upstream_invalid_response"
    metrics = call(app, "GET", "/metrics").text
    assert 'cprs_upstream_errors_total{model="gpt-4o",status="502",tenant="default"} 1.0' in metrics


def test_valid_sse_and_json_error_bodies_with_200_still_pass(make_app, backend):
    app, _ = make_app()
    sse = b'data: {"id":"1","choices":[]}\n\ndata: [DONE]\n\n'
    backend.respond = lambda req, body: httpx.Response(
        200, content=sse if body.get("stream") else b'{"error":{"message":"odd"}}',
        headers={"content-type": "text/event-stream" if body.get("stream") else "application/json"},
    )  # fmt: skip
    assert call(app, "POST", "/v1/chat/completions", json=chat(stream=True)).content == sse
    r = call(app, "POST", "/v1/chat/completions", json=chat())
    assert (r.status_code, r.json()) == (200, {"error": {"message": "odd"}})


# --- 9. the cache key secret ----------------------------------------------------------------


def test_cache_key_secret_comes_from_config_or_env(monkeypatch):
    from proxy.config import config_from_dict
    from proxy.metrics import Metrics
    from proxy.state import build_state

    engine = QueryWordEngine()
    cfg = config_from_dict(base_config(cache={"key_secret": "s3cret-from-config"}))
    assert build_state(cfg, Metrics(), engine=engine).cache.key_secret == b"s3cret-from-config"
    monkeypatch.setenv("CPRS_CACHE_KEY_SECRET", "s3cret-from-env")
    state = build_state(config_from_dict(base_config()), Metrics(), engine=engine)
    assert state.cache.key_secret == b"s3cret-from-env"
    monkeypatch.delenv("CPRS_CACHE_KEY_SECRET")
    a = build_state(config_from_dict(base_config()), Metrics(), engine=engine).cache.key_secret
    b = build_state(config_from_dict(base_config()), Metrics(), engine=engine).cache.key_secret
    assert len(a) == 32 and a != b  # none configured: random, never a fixed default


# --- 11. the fast JSON path changes nothing the backend sees --------------------------------


def test_big_integers_and_odd_text_reach_the_backend_exactly(make_app, backend):
    app, _ = make_app()
    raw = (
        b'{"model":"gpt-4o","seed":123456789012345678901234567890,"n":-9223372036854775809,'
        b'"x":[1e16,1.5e-7,0.1,-0.0],"messages":[{"role":"user","content":"\\u2028\\u0000\xc3\xa9"}]}'
    )
    r = post_raw(app, raw)
    assert r.status_code == 200
    assert backend.bodies[0] == json.loads(raw)  # same values, big integers exact


@pytest.mark.parametrize("value", [{"a": [1, 2.5, None, True, "é\u2028"]}, 2**70, [-(2**64)]])
def test_dumps_matches_the_json_module(value):
    from proxy.jsonsafe import dumps

    assert json.loads(dumps(value)) == value


def test_cookies_a_backend_sets_are_never_sent_back(make_app, backend):
    app, _ = make_app()
    backend.respond = lambda req, body: httpx.Response(
        200, json={"id": "x", "choices": []}, headers={"set-cookie": "session=tenant-a; Path=/"}
    )
    for _ in range(2):
        assert call(app, "POST", "/v1/chat/completions", json=chat()).status_code == 200
    assert all("cookie" not in h for h in backend.headers)
