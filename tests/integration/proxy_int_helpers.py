"""Integration helpers: proxy config for a fake backend, and a proxy served on a loopback port."""

from __future__ import annotations

import contextlib
from typing import Any

from cprs_doubles import QueryWordEngine, ServerThread

from proxy.app import create_app
from proxy.config import config_from_dict

SHARED_REDIS = "redis://127.0.0.1:6379/0"


def proxy_config(backend_url: str, **sections: Any) -> dict:
    cfg: dict[str, Any] = {
        "models": [
            {
                "name": "gpt-4o",
                "model": "openai/gpt-4o",
                "api_base": backend_url + "/v1",
                "api_key": "sk-backend-777",
            }
        ],
        "tenants": [
            {"name": "acme", "api_keys": ["sk-acme"]},
            {"name": "globex", "api_keys": ["sk-globex"]},
        ],
        "policies": {"default": {"threshold_tokens": 300}},
        "server": {"reload_interval_s": 0},
    }
    cfg.update(sections)
    return cfg


@contextlib.contextmanager
def running_proxy(cfg: dict, engine: Any = None):
    """(base_url, engine) of a proxy served by uvicorn in a background thread."""
    engine = engine or QueryWordEngine()
    app = create_app(config_from_dict(cfg), engine=engine)
    with ServerThread(app) as server:
        yield server.url, engine
