"""Where cached compressions live: a string key-value store with TTLs that never raises.

- `MemoryLRU`: in-process, for a proxy without Redis; bounded by entry count.
- `RedisStore`: Redis is an accelerator, never a dependency: every call has a short timeout,
  every error is a miss, and after a few consecutive failures a `CircuitBreaker` skips Redis
  entirely for a cooldown, then lets one probe through. A dead Redis costs nothing per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("proxy.cache")  # one logger name for the cache and its stores

ErrorHook = Callable[[str], None]  # called with "timeout" | "connection" | "error" | "decode"


class Store(Protocol):
    """A string key-value store with TTLs. Implementations never raise on get/set."""

    name: str

    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str, ttl: int) -> None: ...

    async def close(self) -> None: ...


class MemoryLRU:
    """In-process LRU with per-entry TTL, for a proxy without Redis. Bounded by entry count."""

    name = "memory"

    def __init__(self, max_entries: int = 1024, *, clock: Callable[[], float] = time.monotonic):
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.max_entries = max_entries
        self._clock = clock
        self._data: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    async def get(self, key: str) -> str | None:
        item = self._data.get(key)
        if item is None:
            return None
        expires, value = item
        if self._clock() >= expires:
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    async def set(self, key: str, value: str, ttl: int) -> None:
        if ttl <= 0:
            return
        self._data[key] = (self._clock() + ttl, value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    async def close(self) -> None:
        self._data.clear()


class CircuitBreaker:
    """closed -> (threshold consecutive failures) -> open -> (cooldown) -> half-open: one probe.

    A successful probe closes it; a failed one reopens it for another cooldown.
    """

    def __init__(
        self,
        threshold: int = 3,
        cooldown_s: float = 5.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.threshold = max(1, threshold)
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half-open" if self._clock() - self._opened_at >= self.cooldown_s else "open"

    def allow(self) -> bool:
        """Whether a call may go to the backend now. In half-open, only one caller at a time."""
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self._probing:
            self._probing = True
            return True
        return False

    def release_probe(self) -> None:
        """A probe was abandoned (cancelled) without an outcome: let the next caller probe."""
        self._probing = False

    def success(self) -> bool:
        """Record a success; True when this closed an open breaker."""
        was_open = self._opened_at is not None
        self._failures, self._opened_at, self._probing = 0, None, False
        return was_open

    def failure(self) -> bool:
        """Record a failure; True when this opened the breaker (from closed)."""
        self._failures += 1
        if self._opened_at is not None:  # failed probe: another full cooldown
            self._opened_at, self._probing = self._clock(), False
            return False
        if self._failures >= self.threshold:
            self._opened_at = self._clock()
            return True
        return False


class RedisStore:
    """Redis via redis.asyncio: short timeouts, no client retries, fail-open, circuit breaker."""

    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 0.1,
        key_prefix: str = "",
        on_error: ErrorHook | None = None,
        breaker: CircuitBreaker | None = None,
        max_connections: int | None = None,
    ):
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        self._timeout_errors = (TimeoutError, RedisTimeoutError)
        self._connection_errors = (RedisConnectionError, OSError)

        self.timeout_s = timeout_s
        self.key_prefix = key_prefix
        self.breaker = breaker or CircuitBreaker()
        self._on_error = on_error
        pool_opts = {} if max_connections is None else {"max_connections": max_connections}
        self._client = Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),  # the breaker decides when to try again, not the client
            **pool_opts,
        )

    async def get(self, key: str) -> str | None:
        raw = await self._call(self._client.get, self.key_prefix + key)
        if raw is None:
            return None
        try:
            return raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
        except UnicodeDecodeError:
            self._error("decode")
            return None

    async def set(self, key: str, value: str, ttl: int) -> None:
        if ttl > 0:
            await self._call(self._client.set, self.key_prefix + key, value.encode(), ex=ttl)

    async def ping(self) -> bool:
        """Readiness probe; also goes through the breaker."""
        return bool(await self._call(self._client.ping))

    async def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a dead connection must not fail shutdown
            await self._client.aclose()

    async def _call(self, fn, *args, **kwargs):
        """Run one Redis command under the breaker and a hard timeout; any failure -> None."""
        if not self.breaker.allow():
            return None
        try:
            async with asyncio.timeout(self.timeout_s * 2):  # bounds pool waits and connects too
                result = await fn(*args, **kwargs)
        except asyncio.CancelledError:
            self.breaker.release_probe()
            raise
        except self._timeout_errors as exc:
            self._failed("timeout", exc)
            return None
        except self._connection_errors as exc:
            self._failed("connection", exc)
            return None
        except Exception as exc:  # noqa: BLE001 - any Redis error is a miss, by design
            self._failed("error", exc)
            return None
        if self.breaker.success():
            log.warning("redis cache reachable again; circuit breaker closed")
        return result

    def _failed(self, kind: str, exc: BaseException) -> None:
        self._error(kind)
        if self.breaker.failure():
            # Logged once per outage: the exception type and message, never keys or values.
            log.warning(
                "redis cache unavailable (%s: %s); serving without it for %.1fs between probes",
                type(exc).__name__,
                str(exc)[:200],
                self.breaker.cooldown_s,
            )

    def _error(self, kind: str) -> None:
        if self._on_error is not None:
            try:
                self._on_error(kind)
            except Exception:  # a broken metrics hook must not break the request
                log.exception("cache on_error hook failed")
