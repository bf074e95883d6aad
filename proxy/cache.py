"""Compression cache: the key, and get-or-compute with single flight over a store (Redis when
configured, an in-process LRU if not; the stores and the circuit breaker are proxy/stores.py).

Why each piece:
- Keys are namespaced by engine version (a new critic never serves old spans) and by a keyed
  hash (HMAC-SHA256) of the tenant (no tenant can address another's entries, and whoever reads
  Redis cannot confirm a guessed tenant name without the secret), then HMAC'd over every input
  that changes the output. Keys carry no document text, and neither keys nor values are logged.
- While Redis is unreachable, a local LRU in front of it (proxy/cache_fallback.py) still serves
  what this process has seen.
- Redis is an accelerator, never a dependency: every call has a short timeout, every error is a
  miss, and after a few consecutive failures a circuit breaker skips Redis entirely for a
  cooldown, then lets one probe through. A dead Redis costs nothing per request.
- Single flight: concurrent requests for one key run the compression once per process; the
  work runs in its own task, so a client that disconnects does not cancel it for the others.
  If it raises, every waiter gets that exception and nothing is stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable

from cprs_engine.result import CompressionResult
from proxy.stores import CircuitBreaker, ErrorHook, MemoryLRU, RedisStore, Store

log = logging.getLogger(__name__)

KEY_VERSION = "v2"  # v2: keyed (HMAC) tenant namespace and digest


def cache_key(
    *,
    tenant: str,
    engine_version: str,
    query: str,
    context: str,
    granularity: str,
    prompt_text: str,
    budget_tokens: int | None,
    secret: bytes,
    budget_unit: str | None = None,
    elision: str | None = None,
) -> str:
    """`cprs:v2:{engine_version}:{hmac(tenant)[:16]}:{hmac(all fields)}` - no text inside.

    `secret` is the cache's key secret (`cache.key_secret`, or $CPRS_CACHE_KEY_SECRET)."""
    fields = {
        "tenant": tenant,
        "engine_version": engine_version,
        "query": query,
        "context": context,
        "granularity": granularity,
        "prompt_text": prompt_text,
        "budget_tokens": budget_tokens,
        "budget_unit": budget_unit,  # the same number in another unit is another budget
    }
    if elision is not None:  # only when a policy asks: the default keeps every existing key
        fields["elision"] = elision
    blob = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    digest = hmac.new(secret, blob.encode(), hashlib.sha256).hexdigest()
    tenant_ns = hmac.new(secret, b"tenant:" + tenant.encode(), hashlib.sha256).hexdigest()[:16]
    version = re.sub(r"[^A-Za-z0-9._+-]", "_", engine_version)[:64] or "unknown"
    return f"cprs:{KEY_VERSION}:{version}:{tenant_ns}:{digest}"


class CompressionCache:
    """get_or_compute over a Store, with per-process single flight. Statuses: hit | miss | off."""

    def __init__(
        self,
        store: Store | None,
        *,
        enabled: bool = True,
        on_error: ErrorHook | None = None,
        key_secret: bytes | None = None,
    ):
        self.store = store
        # No configured secret: a random one, so keys stay unguessable (not shared across
        # processes then; state.py warns when that defeats a shared Redis).
        self.key_secret = key_secret or secrets.token_bytes(32)
        self.enabled = enabled and store is not None
        self._on_error = on_error
        self._inflight: dict[str, asyncio.Task[tuple[CompressionResult, str]]] = {}

    @classmethod
    def from_settings(
        cls,
        redis_url: str | None,
        *,
        max_memory_entries: int = 1024,
        timeout_s: float = 0.1,
        on_error: ErrorHook | None = None,
        enabled: bool = True,
        breaker_threshold: int = 3,
        breaker_cooldown_s: float = 5.0,
        key_prefix: str = "",
        key_secret: bytes | None = None,
    ) -> CompressionCache:
        """Redis (behind a local LRU) when `redis_url` is given, else an in-process LRU alone;
        `enabled=False` turns it off."""
        if not enabled:
            return cls(None, enabled=False, key_secret=key_secret)
        store: Store
        if redis_url:
            from proxy.cache_fallback import LocalFirstStore

            redis_store = RedisStore(
                redis_url,
                timeout_s=timeout_s,
                key_prefix=key_prefix,
                on_error=on_error,
                breaker=CircuitBreaker(breaker_threshold, breaker_cooldown_s),
            )
            store = LocalFirstStore(redis_store, MemoryLRU(max_memory_entries))
        else:
            store = MemoryLRU(max_memory_entries)
        return cls(store, on_error=on_error, key_secret=key_secret)

    @property
    def backend(self) -> str:
        """ "redis", "memory" or "off" - for logs, /readyz and metrics labels."""
        return self.store.name if self.enabled and self.store is not None else "off"

    async def get_or_compute(
        self, key: str, compute: Callable[[], Awaitable[CompressionResult]], ttl: int
    ) -> tuple[CompressionResult, str]:
        """The cached result ("hit") or compute's ("miss"); "off" when the cache is disabled.

        Concurrent callers with the same key share one lookup and one compute and get the same
        status as the caller that started it. ttl <= 0 computes without storing.
        """
        if not self.enabled:
            return await compute(), "off"
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(
                self._lookup_or_compute(key, compute, ttl)
            )
            self._inflight[key] = task
            task.add_done_callback(lambda t, k=key: self._finished(k, t))
        # shield: a cancelled caller stops waiting; the shared work goes on for the others.
        return await asyncio.shield(task)

    async def _lookup_or_compute(
        self, key: str, compute: Callable[[], Awaitable[CompressionResult]], ttl: int
    ) -> tuple[CompressionResult, str]:
        assert self.store is not None
        raw = await self.store.get(key)
        if raw is not None:
            try:
                return CompressionResult.from_dict(json.loads(raw)), "hit"
            except (ValueError, KeyError, TypeError):
                self._error("decode")  # a corrupt entry is a miss and gets overwritten
        result = await compute()
        if ttl > 0:
            await self.store.set(key, json.dumps(result.to_dict(), ensure_ascii=False), ttl)
        return result, "miss"

    def _finished(self, key: str, task: asyncio.Task) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # mark retrieved: no "exception never retrieved" if all waiters left

    def _error(self, kind: str) -> None:
        if self._on_error is not None:
            try:
                self._on_error(kind)
            except Exception:
                log.exception("cache on_error hook failed")

    async def close(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()
        if self.store is not None:
            await self.store.close()
