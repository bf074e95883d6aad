"""The compose stack, checked without docker: its services, ports, commands (parsed by the real
`cprs` parser), environment and config (loaded by the proxy's own loader) agree."""

from __future__ import annotations

from urllib.parse import urlsplit

import yaml
from deploy_helpers import DEPLOY, parse_cprs_args

from proxy.config import load_config

COMPOSE = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]


def config_path_on_host(proxy: dict, in_container: str):
    for volume in proxy["volumes"]:
        host, target, *_ = volume.split(":")
        if target == in_container:
            return DEPLOY / host
    raise AssertionError(f"{in_container} is not mounted")


def test_services_and_commands():
    assert set(SERVICES) == {"redis", "engine", "proxy"}
    engine = parse_cprs_args(SERVICES["engine"]["command"])
    proxy = parse_cprs_args(SERVICES["proxy"]["command"])
    assert engine.engine_command == "serve" and engine.host == "0.0.0.0"
    assert proxy.host == "0.0.0.0"
    assert SERVICES["proxy"]["ports"] == [f"{proxy.port}:{proxy.port}"]
    assert f":{engine.port}/readyz" in " ".join(SERVICES["engine"]["healthcheck"]["test"])
    assert SERVICES["proxy"]["build"]["args"] == {"EXTRAS": ""}  # the proxy image has no torch


def test_proxy_config_reaches_the_other_services():
    proxy_args = parse_cprs_args(SERVICES["proxy"]["command"])
    cfg = load_config(config_path_on_host(SERVICES["proxy"], proxy_args.config))
    engine_args = parse_cprs_args(SERVICES["engine"]["command"])
    assert cfg.engine.mode == "remote"
    for url in cfg.engine.urls:
        parts = urlsplit(url)
        assert (parts.hostname, parts.port) == ("engine", engine_args.port)
    redis = urlsplit(cfg.cache.redis_url)
    assert redis.hostname in SERVICES and redis.hostname == "redis"
    assert set(SERVICES["proxy"]["depends_on"]) == {"redis", "engine"}


def test_proxy_environment_carries_every_key_the_config_reads():
    proxy_args = parse_cprs_args(SERVICES["proxy"]["command"])
    cfg = load_config(config_path_on_host(SERVICES["proxy"], proxy_args.config))
    env = SERVICES["proxy"]["environment"]
    wanted = {m.api_key_env for m in cfg.models if m.api_key_env} | {cfg.cache.key_secret_env}
    assert wanted <= set(env)
