"""Compression cache: keys, LRU + TTL, single flight, the circuit breaker, statuses."""

import asyncio
import json

import pytest

from cprs_engine.result import CompressionResult, Span
from proxy.cache import CompressionCache, cache_key
from proxy.stores import CircuitBreaker, MemoryLRU

KEY_ARGS = dict(
    tenant="acme",
    engine_version="critic-1",
    query="who?",
    context="Alice met Bob. Secret text.",
    granularity="sentence",
    prompt_text="extract facts",
    budget_tokens=None,
    secret=b"test-secret",
)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def _result(text="Alice met Bob.") -> CompressionResult:
    return CompressionResult(
        text, [Span(0, len(text), text, 0.9)], 7, 4, 1.75, "sentence", {"t": 0.1}
    )


def _run(coro):
    return asyncio.run(coro)


# --- keys ---------------------------------------------------------------------------------


def test_key_layout_and_no_text_inside():
    key = cache_key(**KEY_ARGS)
    parts = key.split(":")
    assert parts[:3] == ["cprs", "v2", "critic-1"]
    assert len(parts[3]) == 16 and len(parts[4]) == 64
    for text in ("Alice", "Secret", "who?", "acme", "extract"):
        assert text not in key


@pytest.mark.parametrize(
    "field,value",
    [
        ("tenant", "globex"),
        ("engine_version", "critic-2"),
        ("query", "who else?"),
        ("context", "Alice met Bob. Secret text!"),
        ("granularity", "keyword"),
        ("prompt_text", "extract keywords"),
        ("budget_tokens", 100),
        ("secret", b"another-secret"),
        ("budget_unit", "tiktoken:o200k_base"),
    ],
)
def test_every_field_changes_the_key(field, value):
    assert cache_key(**{**KEY_ARGS, field: value}) != cache_key(**KEY_ARGS)
    assert cache_key(**KEY_ARGS) == cache_key(**dict(KEY_ARGS))  # and it is deterministic


def test_the_same_budget_in_another_unit_is_another_key():
    budget = {**KEY_ARGS, "budget_tokens": 300}
    keys = {
        cache_key(**budget, budget_unit=unit)
        for unit in (None, "critic", "tiktoken:o200k_base", "tiktoken:cl100k_base")
    }
    assert len(keys) == 4


def test_tenant_and_engine_version_are_in_the_namespace():
    a = cache_key(**KEY_ARGS)
    b = cache_key(**{**KEY_ARGS, "tenant": "globex"})
    c = cache_key(**{**KEY_ARGS, "engine_version": "critic-2"})
    assert a.split(":")[3] != b.split(":")[3]  # tenant namespace
    assert a.split(":")[2] != c.split(":")[2]  # engine namespace
    d = cache_key(**{**KEY_ARGS, "secret": b"another-secret"})
    assert a.split(":")[3] != d.split(":")[3]  # keyed: the tenant hash needs the secret
    weird = cache_key(**{**KEY_ARGS, "engine_version": "a:b c"})
    assert weird.split(":")[2] == "a_b_c" and len(weird.split(":")) == 5


def test_tenants_and_engine_versions_do_not_share_entries():
    async def go():
        cache = CompressionCache(MemoryLRU(16))
        calls = []

        def compute_for(label):
            async def compute():
                calls.append(label)
                return _result(label)

            return compute

        k_a = cache_key(**KEY_ARGS)
        k_b = cache_key(**{**KEY_ARGS, "tenant": "globex"})
        k_v2 = cache_key(**{**KEY_ARGS, "engine_version": "critic-2"})
        assert (await cache.get_or_compute(k_a, compute_for("A"), 60))[1] == "miss"
        res_b, st_b = await cache.get_or_compute(k_b, compute_for("B"), 60)
        res_v2, st_v2 = await cache.get_or_compute(k_v2, compute_for("V2"), 60)
        res_a, st_a = await cache.get_or_compute(k_a, compute_for("A2"), 60)
        assert (st_b, st_v2, st_a) == ("miss", "miss", "hit")
        assert (res_b.compressed, res_v2.compressed, res_a.compressed) == ("B", "V2", "A")
        assert calls == ["A", "B", "V2"]

    _run(go())


# --- MemoryLRU ----------------------------------------------------------------------------


def test_lru_evicts_least_recently_used():
    async def go():
        lru = MemoryLRU(2)
        await lru.set("a", "1", 60)
        await lru.set("b", "2", 60)
        assert await lru.get("a") == "1"  # a is now most recent
        await lru.set("c", "3", 60)  # evicts b
        assert await lru.get("b") is None
        assert await lru.get("a") == "1" and await lru.get("c") == "3"
        assert len(lru) == 2

    _run(go())


def test_lru_ttl_expires_entries():
    async def go():
        clock = Clock()
        lru = MemoryLRU(10, clock=clock)
        await lru.set("a", "1", 10)
        await lru.set("b", "2", 100)
        await lru.set("z", "0", 0)  # ttl 0: not stored
        clock.now += 9.9
        assert await lru.get("a") == "1"
        clock.now += 0.1
        assert await lru.get("a") is None
        assert await lru.get("b") == "2"
        assert await lru.get("z") is None
        assert len(lru) == 1

    _run(go())


def test_cache_entry_expires_and_is_recomputed():
    async def go():
        clock = Clock()
        cache = CompressionCache(MemoryLRU(10, clock=clock))
        n = 0

        async def compute():
            nonlocal n
            n += 1
            return _result(f"v{n}")

        assert (await cache.get_or_compute("k", compute, 5))[1] == "miss"
        assert (await cache.get_or_compute("k", compute, 5))[1] == "hit"
        clock.now += 6
        res, status = await cache.get_or_compute("k", compute, 5)
        assert (res.compressed, status, n) == ("v2", "miss", 2)

    _run(go())


def test_hit_round_trips_the_whole_result():
    async def go():
        cache = CompressionCache(MemoryLRU(4))
        original = _result()

        async def compute():
            return original

        await cache.get_or_compute("k", compute, 60)
        res, status = await cache.get_or_compute("k", compute, 60)
        assert status == "hit"
        assert res == original and res is not original

    _run(go())


# --- single flight ------------------------------------------------------------------------


def test_single_flight_runs_compute_once_for_100_callers():
    async def go():
        cache = CompressionCache(MemoryLRU(4))
        calls = 0

        async def compute():
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.05)
            return _result()

        results = await asyncio.gather(
            *(cache.get_or_compute("k", compute, 60) for _ in range(100))
        )
        assert calls == 1
        assert {r.compressed for r, _ in results} == {"Alice met Bob."}
        assert {s for _, s in results} == {"miss"}  # all waited on the one computation
        assert (await cache.get_or_compute("k", compute, 60))[1] == "hit"
        assert calls == 1

    _run(go())


def test_single_flight_exception_reaches_every_caller_and_nothing_is_cached():
    async def go():
        store = MemoryLRU(4)
        cache = CompressionCache(store)
        calls = 0

        class Boom(RuntimeError):
            pass

        async def failing():
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.02)
            raise Boom("engine down")

        outcomes = await asyncio.gather(
            *(cache.get_or_compute("k", failing, 60) for _ in range(100)), return_exceptions=True
        )
        assert calls == 1
        assert all(isinstance(o, Boom) and str(o) == "engine down" for o in outcomes)
        assert len({id(o) for o in outcomes}) == 1  # the very same exception
        assert await store.get("k") is None

        async def ok():
            return _result("recovered")

        res, status = await cache.get_or_compute("k", ok, 60)  # not stuck after a failure
        assert (res.compressed, status) == ("recovered", "miss")

    _run(go())


def test_different_keys_do_not_wait_on_each_other():
    async def go():
        cache = CompressionCache(MemoryLRU(4))
        calls = []

        def compute_for(k):
            async def compute():
                calls.append(k)
                await asyncio.sleep(0.01)
                return _result(k)

            return compute

        results = await asyncio.gather(
            *(cache.get_or_compute(k, compute_for(k), 60) for k in "abc")
        )
        assert sorted(calls) == ["a", "b", "c"]
        assert [r.compressed for r, _ in results] == ["a", "b", "c"]

    _run(go())


def test_a_cancelled_caller_does_not_cancel_the_shared_work():
    async def go():
        cache = CompressionCache(MemoryLRU(4))
        started = asyncio.Event()

        async def compute():
            started.set()
            await asyncio.sleep(0.05)
            return _result("done")

        leader = asyncio.create_task(cache.get_or_compute("k", compute, 60))
        await started.wait()
        follower = asyncio.create_task(cache.get_or_compute("k", compute, 60))
        await asyncio.sleep(0)
        leader.cancel()
        res, status = await follower
        assert (res.compressed, status) == ("done", "miss")
        assert leader.cancelled()
        assert (await cache.get_or_compute("k", compute, 60))[1] == "hit"

    _run(go())


def test_ttl_zero_computes_without_storing():
    async def go():
        store = MemoryLRU(4)
        cache = CompressionCache(store)

        async def compute():
            return _result()

        assert (await cache.get_or_compute("k", compute, 0))[1] == "miss"
        assert len(store) == 0

    _run(go())


def test_corrupt_entry_is_a_miss_and_is_overwritten():
    async def go():
        errors = []
        store = MemoryLRU(4)
        cache = CompressionCache(store, on_error=errors.append)
        await store.set("k", "{not json", 60)

        async def compute():
            return _result()

        assert (await cache.get_or_compute("k", compute, 60))[1] == "miss"
        assert errors == ["decode"]
        assert json.loads(await store.get("k"))["compressed"] == "Alice met Bob."

    _run(go())


# --- settings -----------------------------------------------------------------------------


def test_disabled_cache_reports_off_and_always_computes():
    async def go():
        cache = CompressionCache.from_settings(None, enabled=False)
        assert cache.backend == "off"
        n = 0

        async def compute():
            nonlocal n
            n += 1
            return _result()

        for _ in range(3):
            assert (await cache.get_or_compute("k", compute, 60))[1] == "off"
        assert n == 3
        await cache.close()

    _run(go())


def test_from_settings_picks_the_backend():
    async def go():
        mem = CompressionCache.from_settings(None, max_memory_entries=3)
        assert mem.backend == "memory" and mem.store.max_entries == 3
        red = CompressionCache.from_settings("redis://127.0.0.1:1/0", timeout_s=0.05)
        assert red.backend == "redis"  # constructing connects to nothing
        await mem.close()
        await red.close()

    _run(go())


# --- circuit breaker ----------------------------------------------------------------------


def test_breaker_opens_after_threshold_and_probes_after_cooldown():
    clock = Clock()
    br = CircuitBreaker(threshold=3, cooldown_s=5, clock=clock)
    assert br.state == "closed" and br.allow()
    assert not br.failure() and not br.failure()
    assert br.failure()  # third consecutive failure opens it
    assert br.state == "open" and not br.allow()
    clock.now += 5
    assert br.state == "half-open"
    assert br.allow()  # one probe
    assert not br.allow()  # only one at a time
    br.failure()  # failed probe: another full cooldown
    assert br.state == "open" and not br.allow()
    clock.now += 5
    assert br.allow()
    assert br.success()  # closes
    assert br.state == "closed" and br.allow()


def test_breaker_success_resets_the_failure_count():
    br = CircuitBreaker(threshold=2, cooldown_s=5, clock=Clock())
    br.failure()
    br.success()
    assert not br.failure()
    assert br.state == "closed"


def test_abandoned_probe_lets_the_next_caller_probe():
    clock = Clock()
    br = CircuitBreaker(threshold=1, cooldown_s=1, clock=clock)
    br.failure()
    clock.now += 1
    assert br.allow()
    br.release_probe()
    assert br.allow()
