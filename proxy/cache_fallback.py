"""A local LRU in front of Redis, so a Redis outage does not mean compressing everything again.

`LocalFirstStore(primary, local)`: every value stored goes to both; a lookup asks the local LRU
first and Redis only on a local miss. While Redis is unreachable (its circuit breaker open, every
call an instant miss) the documents this process has seen are still served from memory, in a few
milliseconds instead of a new compression. Values are immutable per key (the key hashes every
input of a compression), so a local copy can never be staler than Redis's; both carry the same
TTL (a value found only in Redis is copied with `copy_ttl`). The local LRU is bounded by `cache.max_memory_entries`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from proxy.cache import Store


class LocalFirstStore:
    def __init__(self, primary: Store, local: Store, *, copy_ttl: int = 3600):
        self.primary = primary
        self.local = local
        self.copy_ttl = copy_ttl  # for values found in Redis only (Redis does not say its TTL)
        self.name = primary.name  # "redis": what /readyz and the metrics call this cache

    async def get(self, key: str) -> str | None:
        value = await self.local.get(key)
        if value is not None:
            return value
        value = await self.primary.get(key)
        if value is not None:
            await self.local.set(key, value, self.copy_ttl)
        return value

    async def set(self, key: str, value: str, ttl: int) -> None:
        await self.local.set(key, value, ttl)
        await self.primary.set(key, value, ttl)

    async def close(self) -> None:
        await self.local.close()
        await self.primary.close()
