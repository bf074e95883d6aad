"""The app's immutable running state, built from one config, swapped whole on reload.

A request takes `holder.current` once at its start and uses that object to its end, so a reload
(SIGHUP or a changed config file) never changes settings under a request in flight. Engine, cache
and request log are carried over from the previous state when their settings did not change (a
reload must not drop a loaded critic or a warm cache); replaced ones are closed a little later,
when requests that still hold them have finished. The background jobs (proxy/background.py)
always carry over, with the new queue settings; a job keeps the engine and cache it started on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
from dataclasses import dataclass, field

from policies.schema import Policy
from proxy.background import Background
from proxy.cache import CompressionCache
from proxy.config import ConfigError, ProxyConfig, Tenant, load_config
from proxy.engine import Engine, build_engine
from proxy.errors import AuthenticationFailed
from proxy.metrics import Metrics
from proxy.requestlog import RequestLog
from proxy.routing import Router

log = logging.getLogger(__name__)
DEFAULT_TENANT = "default"
CLOSE_GRACE_S = 30.0  # replaced engines/caches stay open this long for requests still using them


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


@dataclass(frozen=True)
class AppState:
    config: ProxyConfig
    router: Router
    engine: Engine
    cache: CompressionCache
    request_log: RequestLog
    _keys: dict[bytes, Tenant] = field(default_factory=dict)
    background: Background = field(default_factory=lambda: Background(Metrics()))

    @property
    def auth_required(self) -> bool:
        return bool(self.config.tenants)

    def authenticate(self, api_key: str | None) -> tuple[str, Policy]:
        """(tenant name, policy) for a client key; raises AuthenticationFailed."""
        if not self.auth_required:
            return DEFAULT_TENANT, self.config.policies["default"]
        if not api_key:
            raise AuthenticationFailed(
                "You didn't provide an API key. Send it as `Authorization: Bearer <key>`."
            )
        digest = _digest(api_key)
        found = None
        for known, tenant in self._keys.items():  # constant time per key: no early exit on match
            if hmac.compare_digest(known, digest):
                found = tenant
        if found is None:
            raise AuthenticationFailed("Incorrect API key provided.")
        return found.name, self.config.policies[found.policy]

    def cache_ttl(self, policy: Policy) -> int:
        if "cache_ttl_seconds" in policy.model_fields_set:
            return policy.cache_ttl_seconds
        return self.config.cache.ttl_seconds


def build_state(
    config: ProxyConfig,
    metrics: Metrics,
    *,
    engine: Engine | None = None,
    cache: CompressionCache | None = None,
    previous: AppState | None = None,
) -> AppState:
    keys = {_digest(k.get_secret_value()): t for t in config.tenants for k in t.api_keys}
    if engine is None:
        if previous is not None and _engine_part(previous.config) == _engine_part(config):
            engine = previous.engine
        else:
            engine = build_engine(config.engine)
    if cache is None:
        if previous is not None and previous.config.cache == config.cache:
            cache = previous.cache
        else:
            c = config.cache
            cache = CompressionCache.from_settings(
                c.redis_url,
                max_memory_entries=c.max_memory_entries,
                timeout_s=c.timeout_s,
                on_error=metrics.cache_error,
                enabled=c.enabled,
                key_prefix=c.key_prefix,
                key_secret=_cache_secret(config),
            )
    if previous is not None and previous.config.log == config.log:
        request_log = previous.request_log
    else:
        request_log = RequestLog(config.log.requests_path)
    router = Router(config.models, config.server)
    e = config.engine
    if previous is not None:
        background = previous.background
        background.configure(limit=e.background_queue, timeout_s=e.background_timeout_s)
    else:
        background = Background(metrics, limit=e.background_queue, timeout_s=e.background_timeout_s)
    return AppState(config, router, engine, cache, request_log, keys, background)


def _engine_part(config: ProxyConfig) -> dict:
    """The engine settings that need a new engine when they change (not the queue's)."""
    return config.engine.model_dump(exclude={"background_queue", "background_timeout_s"})


class StateHolder:
    """Holds the current AppState; `reload()` builds a new one and swaps it in atomically."""

    def __init__(self, state: AppState, metrics: Metrics, *, owns_engine: bool, owns_cache: bool):
        self.current = state
        self.metrics = metrics
        self.owns_engine = owns_engine
        self.owns_cache = owns_cache
        self._mtime = _mtime(state.config.source)
        self._lock = asyncio.Lock()
        self._pending: set[asyncio.Task] = set()

    def changed_on_disk(self) -> bool:
        src = self.current.config.source
        return src is not None and _mtime(src) != self._mtime

    async def reload(self) -> bool:
        """Re-read the config file. An invalid file is logged and the running state kept."""
        async with self._lock:
            old = self.current
            if old.config.source is None:
                return False
            self._mtime = _mtime(old.config.source)
            try:
                config = await asyncio.to_thread(load_config, old.config.source)
                new = build_state(
                    config,
                    self.metrics,
                    engine=None if self.owns_engine else old.engine,
                    cache=None if self.owns_cache else old.cache,
                    previous=old,
                )
            except (ConfigError, OSError, ValueError) as exc:
                self.metrics.reloads.labels("error").inc()
                log.error("config reload failed, keeping the running config: %s", exc)
                return False
            if new.engine is not old.engine:
                await new.engine.start()
            self.current = new
            self.metrics.reloads.labels("ok").inc()
            log.info("config reloaded from %s", old.config.source)
            self._retire(old, new)
            return True

    def _retire(self, old: AppState, new: AppState) -> None:
        async def later() -> None:
            await asyncio.sleep(CLOSE_GRACE_S)
            await close_parts(old, keep=new)

        task = asyncio.get_running_loop().create_task(later())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def close(self) -> None:
        for task in list(self._pending):
            task.cancel()
        await self.current.background.close()
        await close_parts(self.current, keep=None, engine=self.owns_engine, cache=self.owns_cache)


async def close_parts(
    old: AppState, *, keep: AppState | None, engine: bool = True, cache: bool = True
) -> None:
    if engine and (keep is None or keep.engine is not old.engine):
        with contextlib.suppress(Exception):
            await old.engine.close()
    if cache and (keep is None or keep.cache is not old.cache):
        with contextlib.suppress(Exception):
            await old.cache.close()
    if keep is None or keep.request_log is not old.request_log:
        old.request_log.close()


def _cache_secret(config: ProxyConfig) -> bytes | None:
    c = config.cache
    secret = c.key_secret.get_secret_value() if c.key_secret else os.environ.get(c.key_secret_env)
    if not secret and c.redis_url and c.enabled:
        log.warning(
            "no cache key secret (cache.key_secret or $%s): using a random one, so this process "
            "shares no Redis entries with other replicas or its own restarts",
            c.key_secret_env,
        )
    return secret.encode() if secret else None


def _mtime(path: str | None) -> float | None:
    if path is None:
        return None
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None
