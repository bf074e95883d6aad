"""The bad-input matrix: each kind of bad or odd request, its expected status and error code.

All of them go to one real proxy (uvicorn with the proxy's server settings, tenants configured)
in front of a recording fake backend. Every error must be OpenAI-shaped; no kind may get a 500
or hang; a kind expected to pass must reach the backend.
"""

from __future__ import annotations

import gzip
import json

import httpx
import pytest
from cprs_doubles import QUESTION, haystack
from proxy_int_helpers import proxy_config
from rel_helpers import raw_exchange, served_proxy

pytestmark = pytest.mark.reliability

KEY = "sk-acme"
DOC = haystack(400)
OK_MSGS = [{"role": "user", "content": "hello"}]


def body(**kw) -> dict:
    return {"model": "gpt-4o", "messages": OK_MSGS, **kw}


def raw(text: bytes) -> dict:
    return {"content": text}


def j(obj) -> dict:
    return {"content": json.dumps(obj).encode()}


B = b'{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]'  # without its closing brace
DEEP_A = b"[" * 100_000 + b"]" * 100_000
DEEP_O = b'{"a":' * 50_000 + b"1" + b"}" * 50_000
MSG = lambda m: j(body(messages=[m]))  # noqa: E731

# (kind, request kwargs for httpx, expected status, expected error code or None for a pass)
HTTP_CASES = [
    # authentication
    ("no key", {**j(body()), "headers": {}}, 401, "invalid_api_key"),
    ("wrong key", {**j(body()), "headers": {"authorization": "Bearer sk-nobody"}}, 401, "invalid_api_key"),
    ("empty bearer", {**j(body()), "headers": {"authorization": "Bearer"}}, 401, "invalid_api_key"),
    ("basic auth", {**j(body()), "headers": {"authorization": "Basic c2stYWNtZTp4"}}, 401, "invalid_api_key"),
    ("wrong x-api-key", {**j(body()), "headers": {"x-api-key": "sk-x", "authorization": None}}, 401, "invalid_api_key"),
    ("x-api-key passes", {**j(body()), "headers": {"x-api-key": KEY, "authorization": None}}, 200, None),
    # not JSON, or not an object
    ("empty body", raw(b""), 400, "invalid_json"),
    ("whitespace body", raw(b" \n\t "), 400, "invalid_json"),
    ("plain text", raw(b"hello"), 400, "invalid_json"),
    ("truncated JSON", raw(B), 400, "invalid_json"),
    ("trailing garbage", raw(B + b"}xyz"), 400, "invalid_json"),
    ("JSON array", raw(b"[1,2]"), 400, "invalid_json"),
    ("JSON string", raw(b'"hi"'), 400, "invalid_json"),
    ("JSON number", raw(b"42"), 400, "invalid_json"),
    ("JSON null", raw(b"null"), 400, "invalid_json"),
    ("single quotes", raw(b"{'model': 'gpt-4o'}"), 400, "invalid_json"),
    ("NaN", raw(B + b',"temperature":NaN}'), 400, "invalid_json"),
    ("Infinity", raw(B + b',"temperature":Infinity}'), 400, "invalid_json"),
    ("-Infinity", raw(B + b',"top_p":-Infinity}'), 400, "invalid_json"),
    ("1e999", raw(B + b',"temperature":1e999}'), 400, "invalid_json"),
    ("100k nested arrays", raw(DEEP_A), 400, "invalid_json"),
    ("50k nested objects", raw(DEEP_O), 400, "invalid_json"),
    ("deep nesting in a field", raw(B + b',"x":' + DEEP_A + b"}"), 400, "invalid_json"),
    ("unclosed deep nesting", raw(B + b',"x":' + b"[" * 10_000), 400, "invalid_json"),
    ("invalid UTF-8", raw(B[:-2] + b'\xff\xfe"}]}'), 400, "invalid_json"),
    ("gzip body, no decoding", {"content": gzip.compress(json.dumps(body()).encode()),
                                "headers": {"content-encoding": "gzip"}}, 400, "invalid_json"),
    # lone surrogates
    ("surrogate in content", raw(B.replace(b'"hi"', b'"hi\\ud800"') + b"}"), 400, "invalid_unicode"),
    ("surrogate in model", raw(B.replace(b"gpt-4o", b"gpt-4o\\udc00") + b"}"), 400, "invalid_unicode"),
    ("surrogate in unknown model", raw(B.replace(b"gpt-4o", b"zz\\udbff") + b"}"), 400, "invalid_unicode"),
    ("surrogate in a document", j(body(messages=[{"role": "user", "content": f"<document>{DOC}\ud800</document> {QUESTION}"}])), 400, "invalid_unicode"),
    ("surrogate in the question", j(body(messages=[{"role": "user", "content": f"<document>{DOC}</document> \udfff?"}])), 400, "invalid_unicode"),
    ("surrogate in a key", raw(B + b',"meta\\ud800":1}'), 400, "invalid_unicode"),
    ("surrogate in a text part", MSG({"role": "user", "content": [{"type": "text", "text": "a\ud800"}]}), 400, "invalid_unicode"),
    ("CESU-8 surrogate bytes", raw(B.replace(b'"hi"', b'"\xed\xa0\x80"') + b"}"), 400, "invalid_unicode"),
    # size
    ("body over max_body_bytes", j(body(messages=[{"role": "user", "content": "x" * 600_000}])), 413, "request_too_large"),
    # model
    ("missing model", j({"messages": OK_MSGS}), 400, "missing_required_parameter"),
    ("model null", j(body(model=None)), 400, "missing_required_parameter"),
    ("model number", j(body(model=4)), 400, "invalid_type"),
    ("model empty", j(body(model="")), 400, "invalid_type"),
    ("model whitespace", j(body(model="  ")), 400, "invalid_type"),
    ("model array", j(body(model=["gpt-4o"])), 400, "invalid_type"),
    ("model object", j(body(model={"name": "gpt-4o"})), 400, "invalid_type"),
    ("unknown model", j(body(model="gpt-9")), 404, "model_not_found"),
    ("10k-char model", j(body(model="m" * 10_000)), 404, "model_not_found"),
    ("model with newlines", j(body(model="gpt-4o\r\nx-injected: 1")), 404, "model_not_found"),
    ("model with NUL", j(body(model="gpt-4o\u0000")), 404, "model_not_found"),
    # messages
    ("missing messages", j({"model": "gpt-4o"}), 400, "missing_required_parameter"),
    ("messages null", j(body(messages=None)), 400, "missing_required_parameter"),
    ("messages object", j(body(messages={})), 400, "invalid_type"),
    ("messages empty", j(body(messages=[])), 400, "invalid_type"),
    ("messages string", j(body(messages="hi")), 400, "invalid_type"),
    ("message a string", MSG("hi"), 400, "invalid_type"),
    ("message null", MSG(None), 400, "invalid_type"),
    ("message without role", MSG({"content": "hi"}), 400, "invalid_type"),
    ("role a number", MSG({"role": 1, "content": "hi"}), 400, "invalid_type"),
    ("content a number", MSG({"role": "user", "content": 5}), 400, "invalid_type"),
    ("content an object", MSG({"role": "user", "content": {"text": "hi"}}), 400, "invalid_type"),
    ("part not an object", MSG({"role": "user", "content": ["hi"]}), 400, "invalid_type"),
    ("part without type", MSG({"role": "user", "content": [{"text": "hi"}]}), 400, "invalid_type"),
    ("text part, text a number", MSG({"role": "user", "content": [{"type": "text", "text": 1}]}), 400, "invalid_type"),
    ("stream a string", j(body(stream="true")), 400, "invalid_type"),
    ("stream a number", j(body(stream=1)), 400, "invalid_type"),
    # odd but valid: the backend's business, must pass
    ("unknown role", MSG({"role": "wizard", "content": "hi"}), 200, None),
    ("content null", MSG({"role": "assistant", "content": None}), 200, None),
    ("image part only", MSG({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}), 200, None),
    ("5,000 messages", j(body(messages=[{"role": "user", "content": "hi"}] * 5000)), 200, None),
    ("unknown fields", j(body(x_vendor={"a": [1, 2, {"b": None}]}, seed=3)), 200, None),
    ("duplicate keys", raw(b'{"model":"nope","model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}'), 200, None),
    ("unclosed marker", MSG({"role": "user", "content": f"<document>{DOC} {QUESTION}"}), 200, None),
    ("document, no question", MSG({"role": "user", "content": f"<document>{DOC}</document>"}), 200, None),
    ("astral text", MSG({"role": "user", "content": "\U0001f600 \u202e rtl \ufeff"}), 200, None),
    ("UTF-16 body", {"content": json.dumps(body()).encode("utf-16")}, 200, None),
    ("text/plain content-type", {**j(body()), "headers": {"content-type": "text/plain"}}, 200, None),
    ("chunked body", {"content": iter([json.dumps(body()).encode()[:10], json.dumps(body()).encode()[10:]])}, 200, None),
]  # fmt: skip

# raw bytes on a fresh connection: (kind, bytes, expected status, expected code)
SOCKET_CASES = [
    ("Content-Length: abc", b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}", 400, "invalid_http"),
    ("bare CR in a header", b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400, "invalid_http"),
    ("garbage request line", b"HELLO THERE\r\n\r\n", 400, "invalid_http"),
    ("128 KiB header", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-L: " + b"a" * 131072 + b"\r\n\r\n", 400, "invalid_http"),
    ("two content-lengths", b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400, "invalid_http"),
    ("header without colon", b"GET /healthz HTTP/1.1\r\nHost: x\r\nbroken header\r\n\r\n", 400, "invalid_http"),
    ("declared length over limit", b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-acme\r\nContent-Length: 999999999\r\n\r\n{}", 413, "request_too_large"),
    ("wrong method", b"GET /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 405, None),
    ("unknown path", b"POST /nothing HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 404, None),
]  # fmt: skip


@pytest.fixture(scope="module")
def proxy():
    from cprs_doubles import FakeBackend, ServerThread

    backend = FakeBackend()
    with ServerThread(backend.app()) as b:
        cfg = proxy_config(b.url, server={"max_body_bytes": 512 * 1024, "reload_interval_s": 0})
        with served_proxy(cfg) as (url, _):
            yield url, backend


def _check_error(status: int, data: dict, want_status: int, want_code: str | None) -> None:
    err = data["error"]
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["type"], str)
    if want_code is not None:
        assert err["code"] == want_code, err


@pytest.mark.parametrize("kind,kw,status,code", HTTP_CASES, ids=[c[0] for c in HTTP_CASES])
def test_bad_http_request(proxy, figures, kind, kw, status, code):
    url, backend = proxy
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    headers.update(kw.get("headers", {}))
    headers = {k: v for k, v in headers.items() if v is not None}
    if kw.get("headers") == {}:
        headers.pop("authorization")
    before = len(backend.received)
    r = httpx.post(url + "/v1/chat/completions", content=kw["content"], headers=headers, timeout=30)
    figures.setdefault("bad_input_kinds", {})[kind] = r.status_code
    assert r.status_code == status, r.text[:300]
    if status >= 400:
        _check_error(r.status_code, r.json(), status, code)
        assert len(backend.received) == before  # nothing reached the backend
    else:
        assert len(backend.received) == before + 1


@pytest.mark.parametrize("kind,data,status,code", SOCKET_CASES, ids=[c[0] for c in SOCKET_CASES])
def test_malformed_http(proxy, figures, kind, data, status, code):
    url, _ = proxy
    out = raw_exchange(int(url.rsplit(":", 1)[1]), data)
    head, _, payload = out.partition(b"\r\n\r\n")
    got = int(head.split(b" ")[1])
    figures.setdefault("bad_input_kinds", {})[kind] = got
    assert got == status, out[:300]
    assert b"application/json" in head.lower()
    _check_error(got, json.loads(payload), status, code)


def test_the_matrix_is_at_least_60_kinds():
    assert len(HTTP_CASES) + len(SOCKET_CASES) >= 60
