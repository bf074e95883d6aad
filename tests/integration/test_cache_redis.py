"""The compression cache against real Redis: the shared one on 127.0.0.1:6379 (own key prefix,
only own keys deleted, never flushed) and a private redis-server this test starts, kills,
freezes and restarts to show that a failing Redis never fails or slows a request."""

import asyncio
import os
import signal
import time
import uuid

import pytest
import redis

from cprs_engine.result import CompressionResult, Span
from proxy.cache import CircuitBreaker, CompressionCache, RedisStore, cache_key

pytestmark = pytest.mark.integration

SHARED_URL = "redis://127.0.0.1:6379/0"
TIMEOUT_S = 0.1
# One get_or_compute against a dead or frozen Redis: get and set are each bounded by 2x the
# timeout; the compute below is instant. Generous slack for a loaded 2-core machine.
PER_CALL_BOUND_S = 4 * TIMEOUT_S + 0.35
COOLDOWN_S = 0.5


def _result(text: str) -> CompressionResult:
    return CompressionResult(text, [Span(0, len(text), text, 1.0)], 10, 2, 5.0, "sentence", {})


def _key(tenant: str, context: str = "a long document", engine: str = "it-engine") -> str:
    return cache_key(
        tenant=tenant,
        engine_version=engine,
        query="q",
        context=context,
        granularity="sentence",
        prompt_text="p",
        budget_tokens=None,
        secret=b"it-secret",
    )


@pytest.fixture
def shared():
    """(sync client, unique prefix); deletes only keys under that prefix afterwards."""
    client = redis.Redis.from_url(SHARED_URL, socket_timeout=2)
    client.ping()
    prefix = f"cprs-test:{uuid.uuid4().hex}:"
    yield client, prefix
    for k in client.scan_iter(match=prefix + "*", count=500):
        client.delete(k)
    client.close()


def _compute(label: str, calls: list):
    async def compute():
        calls.append(label)
        return _result(label)

    return compute


def test_miss_then_hit_and_ttl_is_set(shared):
    client, prefix = shared

    async def go():
        cache = CompressionCache.from_settings(SHARED_URL, timeout_s=0.5, key_prefix=prefix)
        assert cache.backend == "redis"
        calls: list = []
        key = _key("tenant-a")
        try:
            res1, st1 = await cache.get_or_compute(key, _compute("A", calls), 120)
            res2, st2 = await cache.get_or_compute(key, _compute("A-again", calls), 120)
        finally:
            await cache.close()
        assert (st1, st2) == ("miss", "hit")
        assert res2 == res1 and calls == ["A"]
        return key

    key = asyncio.run(go())
    ttl = client.ttl(prefix + key)
    assert 0 < ttl <= 120
    assert client.exists(prefix + key) == 1


def test_tenant_cannot_read_another_tenants_entry(shared):
    client, prefix = shared
    secret = "tenant B's confidential contract text"

    async def go():
        cache = CompressionCache.from_settings(SHARED_URL, timeout_s=0.5, key_prefix=prefix)
        calls: list = []
        try:
            await cache.get_or_compute(_key("tenant-b", secret), _compute("B", calls), 60)
            res, status = await cache.get_or_compute(
                _key("tenant-a", secret), _compute("A", calls), 60
            )
        finally:
            await cache.close()
        assert (res.compressed, status) == ("A", "miss")
        assert calls == ["B", "A"]

    asyncio.run(go())
    keys = sorted(k.decode() for k in client.scan_iter(match=prefix + "*"))
    assert len(keys) == 2
    namespaces = {k[len(prefix) :].split(":")[3] for k in keys}
    assert len(namespaces) == 2  # different tenant namespaces, not just different hashes
    assert all("confidential" not in k and "tenant" not in k for k in keys)


# --- a private redis-server that fails ------------------------------------------------------


async def _timed(cache, key, label, calls):
    t0 = time.monotonic()
    res, status = await cache.get_or_compute(key, _compute(label, calls), 60)
    return res, status, time.monotonic() - t0


def _redis_only(url: str, errors: list, *, threshold: int) -> CompressionCache:
    """Redis with no local LRU in front (from_settings adds one), to watch Redis alone."""
    store = RedisStore(
        url,
        timeout_s=TIMEOUT_S,
        on_error=errors.append,
        breaker=CircuitBreaker(threshold, COOLDOWN_S),
    )
    return CompressionCache(store, on_error=errors.append, key_secret=b"it-secret")


def test_local_lru_serves_seen_documents_while_redis_is_down(private_redis):
    async def go():
        cache = CompressionCache.from_settings(
            private_redis.url, timeout_s=TIMEOUT_S, breaker_cooldown_s=COOLDOWN_S
        )
        calls: list = []
        try:
            assert (await _timed(cache, "seen", "v0", calls))[1] == "miss"
            private_redis.kill()
            for _ in range(5):
                res, status, took = await _timed(cache, "seen", "never", calls)
                assert (res.compressed, status) == ("v0", "hit")  # not recomputed
                assert took < PER_CALL_BOUND_S
            res, status, _ = await _timed(cache, "new", "v1", calls)
            assert (res.compressed, status) == ("v1", "miss")
            assert (await _timed(cache, "new", "never", calls))[:2][1] == "hit"
            assert len(calls) == 2
        finally:
            await cache.close()

    asyncio.run(go())


def test_redis_killed_mid_run_fails_open_trips_breaker_and_recovers(private_redis):
    errors: list[str] = []

    async def go():
        cache = _redis_only(private_redis.url, errors, threshold=3)
        breaker = cache.store.breaker
        calls: list = []
        try:
            assert (await _timed(cache, "k0", "v0", calls))[1] == "miss"
            assert (await _timed(cache, "k0", "v0", calls))[1] == "hit"

            private_redis.kill()  # mid-run
            for i in range(12):
                res, status, took = await _timed(cache, "k0", f"down{i}", calls)
                assert status == "miss" and res.compressed == f"down{i}"  # still answers
                assert took < PER_CALL_BOUND_S, f"call {i} took {took:.3f}s"
            assert breaker.state == "open"
            assert errors and set(errors) <= {"connection", "timeout", "error"}
            # the breaker stopped the hammering: far fewer errors than the 24 get/set attempts
            assert len(errors) <= 4
            errors_when_open = len(errors)
            for i in range(5):
                await _timed(cache, f"k-open-{i}", "x", calls)
            assert len(errors) == errors_when_open

            private_redis.start()  # same port, empty
            await asyncio.sleep(COOLDOWN_S + 0.1)
            assert breaker.state == "half-open"
            assert (await _timed(cache, "k1", "v1", calls))[1] == "miss"  # probe succeeds
            assert breaker.state == "closed"
            res, status, _ = await _timed(cache, "k1", "never", calls)
            assert (res.compressed, status) == ("v1", "hit")
        finally:
            await cache.close()

    asyncio.run(go())


def test_frozen_redis_times_out_quickly_and_recovers(private_redis):
    errors: list[str] = []

    async def go():
        cache = _redis_only(private_redis.url, errors, threshold=2)
        breaker = cache.store.breaker
        calls: list = []
        try:
            assert (await _timed(cache, "k", "v", calls))[1] == "miss"
            os.kill(private_redis.proc.pid, signal.SIGSTOP)  # accepts TCP, never answers
            try:
                # Same value as before: a SET that timed out may still land when Redis resumes.
                for i in range(6):
                    res, status, took = await _timed(cache, "k", "v", calls)
                    assert status == "miss" and len(calls) == 2 + i  # computed, not cached
                    assert took < PER_CALL_BOUND_S, f"call {i} took {took:.3f}s"
                assert breaker.state == "open"
                assert "timeout" in errors
                # once open, calls skip Redis entirely: no waiting at all
                t0 = time.monotonic()
                await _timed(cache, "k", "v", calls)
                assert time.monotonic() - t0 < TIMEOUT_S
            finally:
                os.kill(private_redis.proc.pid, signal.SIGCONT)
            await asyncio.sleep(COOLDOWN_S + 0.1)
            n = len(calls)
            res, status, _ = await _timed(cache, "k", "v", calls)
            assert (res.compressed, status, len(calls)) == ("v", "hit", n)  # the entry survived
            assert breaker.state == "closed"
        finally:
            await cache.close()

    asyncio.run(go())
