"""Every other /v1/ path: relayed byte for byte, with the same auth and model checks."""

from __future__ import annotations

import httpx
from cprs_doubles import QueryWordEngine
from proxy_helpers import BACKEND_KEY, base_config, call

from proxy.app import create_app
from proxy.config import config_from_dict


class Recorder:
    def __init__(self) -> None:
        self.requests: list[tuple[httpx.Request, bytes]] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        content = await request.aread()
        self.requests.append((request, content))
        return httpx.Response(
            201, content=b'{"object":"list", "data": [ 1 ]}',
            headers={"content-type": "application/json", "x-request-id": "req-9",
                     "openai-processing-ms": "3"},
        )  # fmt: skip


def app_with(recorder: Recorder, **cfg):
    config = config_from_dict(base_config(
        tenants=[{"name": "acme", "api_keys": ["sk-acme"], "policy": "narrow"}],
        policies={"default": {}, "narrow": {"allowed_models": ["gpt-4o", "text-embedding-*"]}},
        models=[{"name": "gpt-4o", "model": "openai/gpt-4o", "api_base": "http://backend.test/v1",
                 "api_key": BACKEND_KEY},
                {"name": "*", "model": "openai/*", "api_base": "http://backend.test/v1",
                 "api_key": BACKEND_KEY}],
        **cfg,
    ))  # fmt: skip
    return create_app(
        config, engine=QueryWordEngine(), upstream_transport=httpx.MockTransport(recorder)
    )


AUTH = {"authorization": "Bearer sk-acme"}


def test_embeddings_go_byte_for_byte_and_come_back_unchanged():
    rec = Recorder()
    app = app_with(rec)
    raw = b'{"input": ["a",  "b"], "model":"text-embedding-3-small", "dimensions": 8}'
    r = call(app, "POST", "/v1/embeddings?x=1", content=raw,
             headers={**AUTH, "content-type": "application/json", "x-cprs-compress": "off",
                      "openai-organization": "org-1"})  # fmt: skip
    assert r.status_code == 201 and r.content == b'{"object":"list", "data": [ 1 ]}'
    assert r.headers["x-request-id"] == "req-9"
    assert not any(k.startswith("x-cprs") for k in r.headers)
    req, content = rec.requests[-1]
    assert str(req.url) == "http://backend.test/v1/embeddings?x=1" and content == raw
    assert req.headers["authorization"] == f"Bearer {BACKEND_KEY}"
    assert req.headers["openai-organization"] == "org-1"
    assert not any(k.startswith("x-cprs") for k in req.headers)


def test_auth_and_allowed_models_apply_where_the_body_names_a_model():
    rec = Recorder()
    app = app_with(rec)
    r = call(app, "POST", "/v1/embeddings", json={"model": "text-embedding-3-small", "input": "a"})
    assert r.status_code == 401
    r = call(
        app, "POST", "/v1/completions", json={"model": "davinci-002", "prompt": "a"}, headers=AUTH
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    r = call(app, "GET", "/v1/models/davinci-002", headers=AUTH)
    assert r.status_code == 404
    assert rec.requests == []
    r = call(app, "GET", "/v1/models/gpt-4o", headers=AUTH)
    assert (
        r.status_code == 201
        and str(rec.requests[-1][0].url) == "http://backend.test/v1/models/gpt-4o"
    )


def test_multipart_uploads_and_modelless_paths_stream_to_the_first_route():
    rec = Recorder()
    app = app_with(rec)
    files = {"file": ("batch.jsonl", b'{"custom_id": "1"}\n' * 1000, "application/jsonl")}
    r = call(app, "POST", "/v1/files", files=files, data={"purpose": "batch"}, headers=AUTH)
    assert r.status_code == 201
    req, content = rec.requests[-1]
    assert str(req.url) == "http://backend.test/v1/files"
    assert content.count(b'{"custom_id": "1"}') == 1000
    assert req.headers["content-type"].startswith("multipart/form-data; boundary=")
    r = call(app, "DELETE", "/v1/files/file-1", headers=AUTH)
    assert r.status_code == 201 and rec.requests[-1][0].method == "DELETE"


def test_specific_routes_come_before_the_passthrough():
    rec = Recorder()
    app = app_with(rec)
    assert app.routes[-1].path == "/v1/{path:path}"
    paths = [r.path for r in app.routes[:-1]]
    assert {"/v1/chat/completions", "/v1/responses", "/v1/messages", "/v1/models"} <= set(paths)
    r = call(app, "GET", "/v1/chat/completions", headers=AUTH)
    assert r.status_code == 405 and r.json()["error"]["type"] == "invalid_request_error"
    assert rec.requests == []
    r = call(app, "GET", "/v1/vector_stores/vs_1", headers=AUTH)
    assert r.status_code == 201 and str(rec.requests[-1][0].url).endswith("/v1/vector_stores/vs_1")
