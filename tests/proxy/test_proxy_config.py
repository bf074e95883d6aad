"""Config: embedded defaults, strict keys, cross-checks, model routing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from proxy.config import DEFAULT_UPSTREAM, ConfigError, config_from_dict, load_config
from proxy.routing import Router


def test_embedded_defaults(monkeypatch):
    monkeypatch.delenv("CPRS_CONFIG", raising=False)
    monkeypatch.delenv("CPRS_UPSTREAM_API_BASE", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cfg = load_config(None)
    assert cfg.tenants == [] and "default" in cfg.policies
    assert cfg.policies["default"].threshold_tokens == 4000
    assert cfg.cache.redis_url is None and cfg.engine.mode == "local"
    [route] = cfg.models
    assert (route.name, route.model, route.api_base) == ("*", "openai/*", DEFAULT_UPSTREAM)
    assert route.forward_client_key  # no OPENAI_API_KEY: the client's own key goes upstream
    assert cfg.source is None


def test_default_route_from_env(monkeypatch):
    monkeypatch.setenv("CPRS_UPSTREAM_API_BASE", "http://vllm.local:8000/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    [route] = config_from_dict({}).models
    assert route.api_base == "http://vllm.local:8000/v1" and route.api_key_env == "OPENAI_API_KEY"
    assert not route.forward_client_key


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"modles": []}, "unknown top-level key"),
        ({"cache": {"redis": "x"}}, "cache.redis: unknown key"),
        ({"server": {"port": "eighty"}}, "server.port"),
        ({"engine": {"mode": "remote"}}, "at least one url"),
        ({"policies": {"default": {"treshold_tokens": 5}}}, "treshold_tokens"),
        ({"tenants": [{"name": "a", "api_keys": ["k"], "policy": "missing"}]}, "unknown policy"),
        (
            {"tenants": [{"name": "a", "api_keys": ["k"]}, {"name": "b", "api_keys": ["k"]}]},
            "also used by",
        ),
        ({"tenants": [{"name": "a", "api_keys": []}]}, "tenants.0.api_keys"),
        (
            {"models": [{"name": "m", "model": "openai/m"}, {"name": "m", "model": "openai/n"}]},
            "duplicate",
        ),
        ("just a string", "expected a mapping"),
    ],
)
def test_invalid_configs_name_the_problem(raw, needle):
    with pytest.raises(ConfigError) as e:
        config_from_dict(raw)
    assert needle in str(e.value)


def test_policy_names_are_checked_against_the_engine_library():
    """Policies do not know the engine's names; the proxy passes its library in."""
    from cprs_engine.prompts import GRANULARITIES, LIBRARY

    rule = {"when": {"model": "gpt-4o*"}, "granularity": "chapter", "prompt": "fact"}
    raw = {"policies": {"legal": {"prompt": "no-such-prompt", "rules": [rule]}}}
    with pytest.raises(ConfigError) as e:
        config_from_dict(raw)
    text = str(e.value)
    assert (
        f"policies.legal.prompt: unknown prompt 'no-such-prompt'; known: {', '.join(sorted(LIBRARY))}"
        in text
    )
    assert (
        f"policies.legal.rules.0.granularity: unknown granularity 'chapter'; expected one of {', '.join(GRANULARITIES)}"
        in text
    )
    assert "policies.legal.rules.0.prompt" not in text  # `fact` is in the library
    ok = config_from_dict({"policies": {"legal": {"prompt": "needle", "granularity": "keyword"}}})
    assert (ok.policies["legal"].prompt, ok.policies["legal"].granularity) == ("needle", "keyword")


def test_policies_merge_over_the_shipped_default():
    cfg = config_from_dict({"policies": {"strict": {"failure_mode": "closed"}}})
    assert set(cfg.policies) >= {"default", "strict"}
    assert cfg.policies["strict"].name == "strict"


def test_load_config_file_and_errors(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(
        yaml.safe_dump(
            {"server": {"port": 9999}, "log": {"requests_path": str(tmp_path / "r.jsonl")}}
        )
    )
    cfg = load_config(p)
    assert cfg.server.port == 9999 and cfg.source == str(p.resolve())
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    p.write_text("models: [")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(p)


def test_router_exact_names_win_over_globs_and_star_substitutes():
    cfg = config_from_dict(
        {
            "models": [
                {"name": "*", "model": "openai/*", "api_base": "http://a/v1"},
                {
                    "name": "gpt-4o",
                    "model": "openai/gpt-4o-2024-08-06",
                    "api_base": "http://b/v1",
                    "api_key": "sk-b",
                },
                {
                    "name": "claude",
                    "model": "anthropic/claude-3-5-sonnet-latest",
                    "api_key": "sk-c",
                },
                {"name": "qwen", "model": "dashscope/qwen-max", "api_key": "sk-q"},
                {"name": "ds", "model": "deepseek/deepseek-chat", "api_key": "sk-d"},
            ]
        }
    )
    router = Router(cfg.models, cfg.server)
    b = router.resolve(router.match("gpt-4o"), "gpt-4o", None)
    assert (b.route, b.model, b.api_base, b.api_key, b.passthrough) == (
        "gpt-4o",
        "gpt-4o-2024-08-06",
        "http://b/v1",
        "sk-b",
        True,
    )
    b = router.resolve(router.match("my-model"), "my-model", "client-key")
    assert (b.model, b.api_base, b.api_key) == ("my-model", "http://a/v1", None)
    b = router.resolve(router.match("claude"), "claude", None)
    assert (b.provider, b.passthrough) == ("anthropic", False)
    assert router.resolve(router.match("qwen"), "qwen", None).passthrough
    ds = router.resolve(router.match("ds"), "ds", None)
    assert ds.passthrough and ds.api_base.startswith("https://api.deepseek.com")
    assert router.listed() == ["gpt-4o", "claude", "qwen", "ds"]
    assert set(router.secrets) == {"sk-b", "sk-c", "sk-q", "sk-d"}


def test_the_shipped_example_config_is_valid():

    cfg = load_config(Path(__file__).resolve().parents[2] / "deploy" / "config.example.yaml")
    assert {t.name for t in cfg.tenants} == {"acme", "research"}
    assert cfg.policies["aggressive"].failure_mode == "closed"
    assert cfg.policies["default"].ab.control_percent == 10


def test_deploy_configs_load():
    """The compose config must stay valid as the schema moves (the Helm chart's config is
    checked in tests/deploy)."""
    deploy = Path(__file__).resolve().parents[2] / "deploy"
    compose = load_config(deploy / "compose.config.yaml")
    assert compose.engine.mode == "remote" and compose.cache.redis_url
