"""Routing: from the `model` a client sends to the backend that serves it.

`Router.match` picks the configured route (exact names win over globs), and `Router.resolve`
turns it into a `Backend`: the litellm model string (a trailing `*` takes the client's model
name), the provider litellm resolves from it, the base URL, the key (the route's, the client's
when the route forwards it, else the provider's env var), the timeouts, and whether the body
can pass through as OpenAI-format bytes (proxy/upstream.py calls it).
"""

from __future__ import annotations

import fnmatch
import logging
import os
from dataclasses import dataclass
from functools import lru_cache

from proxy.config import ModelRoute, ServerSettings
from proxy.errors import ModelNotFound, UpstreamError

log = logging.getLogger("proxy.upstream")
PASSTHROUGH = frozenset(
    {"openai", "custom_openai", "openai_like", "deepseek", "dashscope", "hosted_vllm", "groq",
     "together_ai", "fireworks_ai", "mistral", "xai", "openrouter", "lm_studio", "deepinfra",
     "perplexity", "nvidia_nim", "llamafile"}
)  # fmt: skip
DEFAULT_BASE = {"openai": "https://api.openai.com/v1", "openrouter": "https://openrouter.ai/api/v1"}
KEY_ENV = {"openai": "OPENAI_API_KEY", "deepseek": "DEEPSEEK_API_KEY", "dashscope": "DASHSCOPE_API_KEY",
           "groq": "GROQ_API_KEY", "mistral": "MISTRAL_API_KEY", "xai": "XAI_API_KEY",
           "openrouter": "OPENROUTER_API_KEY", "together_ai": "TOGETHERAI_API_KEY",
           "fireworks_ai": "FIREWORKS_API_KEY", "deepinfra": "DEEPINFRA_API_KEY"}  # fmt: skip


@dataclass(frozen=True)
class Backend:
    """One request's resolved destination."""

    route: str  # the matched route's name
    litellm_model: str
    provider: str
    model: str  # the model name the backend sees
    api_base: str | None
    api_key: str | None
    timeout_s: float
    passthrough: bool
    connect_timeout_s: float = 10.0


@lru_cache(maxsize=256)
def _provider(litellm_model: str, api_base: str | None) -> tuple[str, str, str | None, str | None]:
    from proxy.upstream import _litellm  # litellm, imported once and quiet, where it is called

    litellm, _ = _litellm()
    model, provider, key, base = litellm.get_llm_provider(litellm_model, api_base=api_base)
    return model, provider, key, base


def warm_routes(routes: list[ModelRoute]) -> None:
    """Resolve every route once (imports litellm): startup pays it, not the first request."""
    for r in routes:
        target = r.model[:-1] + "warmup" if r.model.endswith("*") else r.model
        try:
            _provider(target, r.api_base)
        except Exception as exc:  # noqa: BLE001 - a bad route errors per request, with its message
            log.warning("model route %r does not resolve: %s", r.name, exc)


class Router:
    """Maps a client's model name to a Backend. Exact route names win over globs."""

    def __init__(self, routes: list[ModelRoute], server: ServerSettings):
        self.routes = routes
        self.server = server
        self._keys = {r.name: _route_key(r) for r in routes}

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(k for k in self._keys.values() if k)

    def match(self, client_model: str) -> ModelRoute | None:
        for r in self.routes:
            if not r.is_glob and r.name == client_model:
                return r
        for r in self.routes:
            if r.is_glob and fnmatch.fnmatchcase(client_model, r.name):
                return r
        return None

    def resolve(self, route: ModelRoute, client_model: str, client_key: str | None) -> Backend:
        target = route.model[:-1] + client_model if route.model.endswith("*") else route.model
        try:
            model, provider, dyn_key, base = _provider(target, route.api_base)
        except Exception as exc:  # litellm cannot place the model string
            raise ModelNotFound(
                f"The model `{client_model}` cannot be routed ({target!r} names no known provider)."
            ) from exc
        passthrough = provider in PASSTHROUGH
        key = self._keys.get(route.name) or (client_key if route.forward_client_key else None)
        if key is None and provider in KEY_ENV:
            key = os.environ.get(KEY_ENV[provider])
        key = key or (dyn_key if dyn_key and dyn_key != "fake-api-key" else None)
        base = route.api_base or base or DEFAULT_BASE.get(provider)
        if passthrough and not base:
            raise UpstreamError(f"route {route.name!r} has no api_base", status=502)
        timeout = route.timeout_s or self.server.upstream_timeout_s
        connect = self.server.upstream_connect_timeout_s
        return Backend(
            route.name, target, provider, model, base, key, timeout, passthrough, connect
        )

    def listed(self) -> list[str]:
        return [r.name for r in self.routes if not r.is_glob]


def _route_key(route: ModelRoute) -> str | None:
    if route.api_key is not None:
        return route.api_key.get_secret_value()
    if route.api_key_env:
        return os.environ.get(route.api_key_env) or None
    return None
