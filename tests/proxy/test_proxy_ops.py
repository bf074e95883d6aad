"""Operations: metrics, the JSONL request log, /v1/models, health, readiness, config reload."""

from __future__ import annotations

import asyncio
import json

import yaml
from cprs_doubles import QUESTION, QueryWordEngine, haystack
from proxy_helpers import BACKEND_KEY, base_config, call

from proxy.app import create_app
from proxy.config import load_config

BODY = {
    "model": "gpt-4o",
    "messages": [{"role": "user", "content": f"<document>{haystack(300)}</document>\n{QUESTION}"}],
}
LOG_FIELDS = {
    "ts", "request_id", "tenant", "policy", "model", "arm", "compressed", "cache", "original_tokens",
    "sent_tokens", "latency_ms", "upstream_ms", "compress_ms", "status", "error_type", "stream",
    "followup", "followup_tokens", "endpoint",
    "skipped",
}  # fmt: skip


def test_metrics_by_tenant_model_and_arm(make_app):
    app, _ = make_app(base_config(tenants=[{"name": "acme", "api_keys": ["sk-a"]}]))
    h = {"authorization": "Bearer sk-a"}
    for _ in range(2):
        call(app, "POST", "/v1/chat/completions", json=BODY, headers=h)
    text = call(app, "GET", "/metrics").text
    assert (
        'cprs_requests_total{arm="compress",compressed="true",model="gpt-4o",status="200",tenant="acme"} 2.0'
        in text
    )
    assert 'cprs_cache_lookups_total{result="hit",tenant="acme"} 1.0' in text
    assert 'cprs_cache_lookups_total{result="miss",tenant="acme"} 1.0' in text
    for stage in ("detect", "cache", "engine", "upstream", "total"):
        assert f'stage="{stage}"' in text
    assert "cprs_compression_ratio_bucket" in text and "cprs_tokens_in_total" in text
    assert "sk-a" not in text and BACKEND_KEY not in text


def test_request_log_lines_follow_the_contract(make_app, tmp_path):
    path = tmp_path / "logs" / "requests.jsonl"
    app, _ = make_app(base_config(log={"requests_path": str(path)}))
    call(app, "POST", "/v1/chat/completions", json=BODY)
    call(app, "POST", "/v1/chat/completions", content=b"{oops")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 2 and all(set(rec) == LOG_FIELDS for rec in lines)
    ok, bad = lines
    assert ok["compressed"] is True and ok["cache"] == "miss" and ok["status"] == 200
    assert (
        ok["sent_tokens"] < ok["original_tokens"]
        and ok["arm"] == "compress"
        and ok["stream"] is False
    )
    assert ok["upstream_ms"] is not None and ok["compress_ms"] is not None
    assert bad["status"] == 400 and bad["error_type"] == "invalid_json"
    assert "passcode" not in path.read_text()  # no request text in the log


def test_models_lists_configured_names_the_policy_allows(make_app):
    cfg = base_config(
        models=[
            {"name": "gpt-4o", "model": "openai/gpt-4o", "api_base": "http://b/v1"},
            {"name": "claude", "model": "anthropic/claude-3-5-sonnet-latest"},
            {"name": "local-*", "model": "hosted_vllm/*", "api_base": "http://b/v1"},
        ],
        policies={"default": {"allowed_models": ["gpt-*", "local-*"]}},
    )
    app, _ = make_app(cfg)
    data = call(app, "GET", "/v1/models").json()
    assert data["object"] == "list" and [m["id"] for m in data["data"]] == ["gpt-4o"]


def test_models_adds_what_a_glob_routes_to_from_the_backends_own_list(make_app, backend):
    cfg = base_config(
        models=[
            {"name": "gpt-4o", "model": "openai/gpt-4o", "api_base": "http://b/v1"},
            {"name": "local-*", "model": "hosted_vllm/*", "api_base": "http://b/v1"},
            {"name": "*", "model": "openai/*", "api_base": "http://b/v1", "api_key": "sk-up"},
        ],
        policies={"default": {"allowed_models": ["gpt-*", "local-*", "o1*"]}},
    )
    backend.models = ["gpt-4o", "local-llama", "o1-mini", "text-embedding-3-small"]
    app, _ = make_app(cfg)
    data = call(app, "GET", "/v1/models").json()["data"]
    # configured first; then each glob's share of the backend list, as the backend wrote it
    assert [m["id"] for m in data] == ["gpt-4o", "local-llama", "o1-mini"]
    assert data[1] == {"id": "local-llama", "object": "model", "created": 7, "owned_by": "b"}
    assert {r.headers.get("authorization") for r in backend.model_requests} == {
        None,
        "Bearer sk-up",
    }

    backend.models = None  # the backend cannot list: the configured names still come back
    r = call(app, "GET", "/v1/models")
    assert r.status_code == 200 and [m["id"] for m in r.json()["data"]] == ["gpt-4o"]


def test_health_and_readiness(make_app):
    app, _ = make_app()
    assert call(app, "GET", "/healthz").json() == {"status": "ok"}
    r = call(app, "GET", "/readyz")
    assert (
        r.status_code == 200
        and r.json()["engine_version"] == "test-qw-1"
        and r.json()["cache"] == "memory"
    )

    class NotReady(QueryWordEngine):
        def ready(self):
            return False, "loading"

    app, _ = make_app(engine=NotReady())
    assert call(app, "GET", "/readyz").status_code == 503


def test_reload_swaps_config_and_keeps_it_on_a_bad_file(tmp_path, backend):
    import httpx

    path = tmp_path / "cprs.yaml"
    cfg = base_config(tenants=[{"name": "acme", "api_keys": ["sk-old"]}])
    path.write_text(yaml.safe_dump(cfg))
    app = create_app(
        load_config(path), engine=QueryWordEngine(), upstream_transport=httpx.MockTransport(backend)
    )
    holder = app.state.holder
    assert (
        call(app, "GET", "/v1/models", headers={"authorization": "Bearer sk-old"}).status_code
        == 200
    )

    cfg["tenants"][0]["api_keys"] = ["sk-new"]
    path.write_text(yaml.safe_dump(cfg))
    engine_before = holder.current.engine
    assert asyncio.run(holder.reload()) is True
    assert holder.current.engine is engine_before  # a reload keeps the loaded engine
    assert (
        call(app, "GET", "/v1/models", headers={"authorization": "Bearer sk-old"}).status_code
        == 401
    )
    assert (
        call(app, "GET", "/v1/models", headers={"authorization": "Bearer sk-new"}).status_code
        == 200
    )

    path.write_text("models: [\n")  # broken YAML: keep serving the last good config
    assert asyncio.run(holder.reload()) is False
    assert (
        call(app, "GET", "/v1/models", headers={"authorization": "Bearer sk-new"}).status_code
        == 200
    )
    assert 'cprs_config_reloads_total{result="error"} 1.0' in call(app, "GET", "/metrics").text
