"""The proxy's configuration: one YAML file, validated once into frozen models, then passed around.

Top-level keys (any other key is an error, as is any unknown key below them):

    models:    routes from the `model` a client sends to a litellm model string and its backend
    tenants:   API keys -> tenant -> policy; none configured means no auth, tenant "default"
    policies:  name -> policy (policies.schema.Policy); merged over the shipped default policies
    cache:     {enabled, redis_url, ttl_seconds, timeout_s, max_memory_entries, key_prefix, key_secret*}
    engine:    {mode: local|remote, urls, checkpoint, window_tokens, windows_per_pass, timeout_s, ...}
    server:    {host, port, max_body_bytes, upstream_timeout_s, ...}
    log:       {requests_path, level}

With no file (`cprs serve` alone) the embedded defaults serve: no tenants, the shipped default
policy, the in-process cache, the local engine, and one catch-all route that forwards the client's
model name to an OpenAI-compatible upstream: `CPRS_UPSTREAM_API_BASE` (default OpenAI's API),
key from `OPENAI_API_KEY` (or, when that is unset, the client's own bearer token).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from cprs_engine.prompts import GRANULARITIES, LIBRARY
from policies.loader import PolicyError, default_policies, validate_policies
from policies.schema import Names, Policy

ENV_CONFIG = "CPRS_CONFIG"  # config path when --config is not given
ENV_UPSTREAM = "CPRS_UPSTREAM_API_BASE"  # the default catch-all route's backend
DEFAULT_UPSTREAM = "https://api.openai.com/v1"
TOP_LEVEL = ("models", "tenants", "policies", "cache", "engine", "server", "log")


class ConfigError(ValueError):
    """The config file is missing, unreadable or invalid; the message names the key path."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelRoute(_Strict):
    """`name` is what clients send (an fnmatch glob is allowed, e.g. "*" or "gpt-4o*"); `model`
    is the litellm model string; a trailing `*` in it is replaced by the client's model name."""

    name: str = Field(min_length=1)
    model: str = Field(min_length=1)
    api_base: str | None = None  # any OpenAI-compatible base URL, e.g. http://vllm:8000/v1
    api_key: SecretStr | None = None  # a literal key: for tests; use api_key_env in production
    api_key_env: str | None = None  # env var holding the backend key, read at (re)load
    forward_client_key: bool = False  # send the client's bearer token (only without tenants)
    timeout_s: float | None = Field(None, gt=0)  # overrides server.upstream_timeout_s

    @property
    def is_glob(self) -> bool:
        return any(c in self.name for c in "*?[")


class Tenant(_Strict):
    name: str = Field(min_length=1)
    api_keys: list[SecretStr] = Field(min_length=1)
    policy: str = "default"


class CacheSettings(_Strict):
    enabled: bool = True
    redis_url: str | None = None  # none -> in-process LRU
    ttl_seconds: int = Field(86400, ge=0)  # a policy's own cache_ttl_seconds wins when set
    timeout_s: float = Field(0.1, gt=0, le=5)  # per Redis command; errors and timeouts fail open
    max_memory_entries: int = Field(1024, ge=1)
    key_prefix: str = ""  # prepended to every Redis key (tests, shared Redis)
    key_secret: SecretStr | None = None  # HMAC secret for cache keys; prefer key_secret_env
    key_secret_env: str = "CPRS_CACHE_KEY_SECRET"  # env var holding it, read at (re)load


class EngineSettings(_Strict):
    mode: Literal["local", "remote"] = "local"
    urls: list[str] = Field(default_factory=list)  # remote: `cprs engine serve` base URLs
    checkpoint: str | None = None  # local: None = the shipped default critic
    window_tokens: int | None = Field(None, ge=16)
    windows_per_pass: int | None = Field(None, ge=1)
    # local: auto = bf16 autocast on bf16 CPUs, else fp32; int8 = CPU int8 projections
    precision: Literal["auto", "fp32", "bf16", "int8"] = "auto"
    compile: bool = False  # local: torch.compile the critic's blocks (a minute at start, faster)
    timeout_s: float = Field(30.0, gt=0)  # per compression; slower -> failure_mode decides
    workers: int = Field(1, ge=1, le=16)  # local: threads tokenizing and decoding
    scheduler_queue: int = Field(256, ge=1)  # local: documents queued in the engine at once
    scheduler: Literal["srf", "fifo"] = "srf"  # local: shortest first, or whole jobs in order
    health_interval_s: float = Field(5.0, gt=0)  # remote: seconds between /readyz probes
    background_queue: int = Field(64, ge=0)  # compressions nobody waits for; more are dropped
    background_timeout_s: float = Field(600.0, gt=0)  # cap on one background compression

    @model_validator(mode="after")
    def _urls_for_remote(self) -> EngineSettings:
        if self.mode == "remote" and not self.urls:
            raise ValueError("engine.mode remote needs at least one url in engine.urls")
        return self


class ServerSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024)  # larger bodies get 413
    upstream_timeout_s: float = Field(600.0, gt=0)  # whole backend call (non-stream) / idle gap
    upstream_connect_timeout_s: float = Field(10.0, gt=0)
    reload_interval_s: float = Field(2.0, ge=0)  # config mtime polling; 0 = SIGHUP only
    header_timeout_s: float = Field(10.0, gt=0)  # request line + headers must arrive within it
    body_timeout_s: float = Field(60.0, gt=0)  # the whole request body must arrive within it
    # Idle keep-alive connections close after it: above httpx's and the OpenAI SDK's 5 s pool
    # expiry, so clients close idle connections first (no close racing their next request).
    keep_alive_s: float = Field(10.0, gt=0)
    http: Literal["auto", "httptools", "h11"] = "auto"  # HTTP parser; auto: httptools if there
    loop: Literal["auto", "uvloop", "asyncio"] = "auto"  # event loop; auto: uvloop if there


class LogSettings(_Strict):
    requests_path: str | None = None  # JSONL, one line per chat request (read by `cprs ab-report`)
    level: str = "INFO"


class ProxyConfig(_Strict):
    models: list[ModelRoute]
    tenants: list[Tenant] = Field(default_factory=list)
    policies: dict[str, Policy]
    cache: CacheSettings = Field(default_factory=CacheSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    source: str | None = None  # the file it came from, for reloads; None = embedded defaults

    @model_validator(mode="after")
    def _consistent(self) -> ProxyConfig:
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"models: duplicate name(s) {dupes}")
        seen: dict[str, str] = {}
        for t in self.tenants:
            if t.policy not in self.policies:
                raise ValueError(f"tenants.{t.name}.policy: unknown policy {t.policy!r}")
            for k in t.api_keys:
                other = seen.setdefault(k.get_secret_value(), t.name)
                if other != t.name:
                    raise ValueError(f"tenants.{t.name}: an api key is also used by {other}")
        if len({t.name for t in self.tenants}) != len(self.tenants):
            raise ValueError("tenants: duplicate tenant name")
        if self.tenants and any(m.forward_client_key for m in self.models):
            raise ValueError(
                "models: forward_client_key cannot be used when tenants are configured"
            )
        if "default" not in self.policies and not self.tenants:
            raise ValueError(
                "policies: a `default` policy is needed when no tenants are configured"
            )
        return self


def default_route() -> ModelRoute:
    """The embedded catch-all: any model name to an OpenAI-compatible upstream from env."""
    has_key = bool(os.environ.get("OPENAI_API_KEY"))
    return ModelRoute(
        name="*",
        model="openai/*",
        api_base=os.environ.get(ENV_UPSTREAM) or DEFAULT_UPSTREAM,
        api_key_env="OPENAI_API_KEY" if has_key else None,
        forward_client_key=not has_key,
    )


def config_from_dict(raw: Any, *, source: str | None = None) -> ProxyConfig:
    """Validate a parsed YAML document (None = empty) into a ProxyConfig."""
    where = f" in {source}" if source else ""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config{where}: expected a mapping at the top level")
    unknown = sorted(str(k) for k in raw if k not in TOP_LEVEL)
    if unknown:
        raise ConfigError(f"config{where}: unknown top-level key(s) {unknown}; known: {TOP_LEVEL}")
    data = dict(raw)
    names = engine_names()
    try:
        policies = dict(default_policies(names=names))
        if data.get("policies") is not None:
            policies.update(validate_policies(data["policies"], source=source, names=names))
    except PolicyError as exc:
        raise ConfigError(str(exc)) from exc
    data["policies"] = policies
    if data.get("models") is None:
        data["models"] = [default_route()]
    for key in ("tenants", "cache", "engine", "server", "log"):
        if key in data and data[key] is None:
            del data[key]
    data["source"] = source
    try:
        return ProxyConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, where)) from exc


def engine_names() -> Names:
    """The granularities and control prompts the engine knows: what a policy may name."""
    return Names(granularities=tuple(GRANULARITIES), prompts=tuple(LIBRARY))


def load_config(path: str | os.PathLike | None = None) -> ProxyConfig:
    """Load `path`, else $CPRS_CONFIG, else the embedded defaults."""
    path = path or os.environ.get(ENV_CONFIG) or None
    if path is None:
        return config_from_dict({})
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {p}: {exc.strerror or exc}") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {p}: invalid YAML: {exc}") from exc
    return config_from_dict(raw, source=str(p.resolve()))


def _explain(exc: ValidationError, where: str) -> str:
    lines = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(x) for x in err["loc"]) or "<root>"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"  {loc}: {msg.removeprefix('Value error, ')}")
    return f"invalid config{where}:\n" + "\n".join(lines)
