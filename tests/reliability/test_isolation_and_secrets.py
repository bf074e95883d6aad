"""Tenant isolation fuzzing and a secrets scan, against the app in process.

Isolation: random tenants, keys and documents go through one proxy whose cache store records
every read and write; no tenant may ever read an entry another tenant wrote (zero cross-tenant
cache reads), and each tenant's cache keys live in a namespace of their own.

Secrets: canary values for the backend key, a tenant key and the cache key secret; a backend
that echoes the key it received into error bodies, headers and exception text. No canary may
show up in a log record (any logger, DEBUG), the request log, a response header or body, the
metrics, or a cache key; the tenant key never reaches the backend.
"""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest
from cprs_doubles import QUESTION, QueryWordEngine, haystack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from proxy_helpers import Backend, base_config

from proxy.app import create_app
from proxy.cache import CompressionCache, MemoryLRU
from proxy.config import config_from_dict

pytestmark = pytest.mark.reliability


class SpyStore(MemoryLRU):
    def __init__(self) -> None:
        super().__init__(10_000)
        self.ops: list[tuple[str, str, bool]] = []  # (op, key, found)

    async def get(self, key):
        value = await super().get(key)
        self.ops.append(("get", key, value is not None))
        return value

    async def set(self, key, value, ttl):
        self.ops.append(("set", key, True))
        await super().set(key, value, ttl)


async def _post(app, body: dict, key: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as c:
        return await c.post(
            "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
        )


tenant_names = st.lists(
    st.text(min_size=1, max_size=12).filter(str.strip), min_size=2, max_size=5, unique=True
)


@pytest.fixture(scope="module")
def iso_stats(figures):
    s = {"requests": 0, "cache_reads": 0, "cross_tenant_reads": 0, "tenants": 0}
    yield s
    figures["tenant_isolation"] = s


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(names=tenant_names, data=st.data())
def test_no_tenant_reads_another_tenants_cache_entries(names, data, iso_stats):
    keys = {
        name: f"sk-{i}-{data.draw(st.text('abcdef0123', min_size=4, max_size=12))}"
        for i, name in enumerate(names)
    }
    tenants = [{"name": n, "api_keys": [k]} for n, k in keys.items()]
    store = SpyStore()
    backend = Backend()
    cfg = config_from_dict(base_config(tenants=tenants, cache={"key_secret": "iso-secret"}))
    app = create_app(
        cfg,
        engine=QueryWordEngine(),
        cache=CompressionCache(store, key_secret=b"iso-secret"),
        upstream_transport=httpx.MockTransport(backend),
    )
    docs = [haystack(350, seed=s) for s in range(3)]
    owner: dict[str, str] = {}  # cache key -> the tenant that wrote it
    namespaces: dict[str, set[str]] = {}
    plan = data.draw(
        st.lists(st.tuples(st.sampled_from(names), st.integers(0, 2)), min_size=4, max_size=12)
    )
    for tenant, d in plan:
        store.ops.clear()
        body = {
            "model": "gpt-4o",
            "messages": [
                {"role": "user", "content": f"<document>{docs[d]}</document>\n{QUESTION}"}
            ],
        }
        r = asyncio.run(_post(app, body, keys[tenant]))
        assert r.status_code == 200
        iso_stats["requests"] += 1
        for op, key, found in store.ops:
            namespaces.setdefault(key.split(":")[3], set()).add(tenant)
            if op == "set":
                owner.setdefault(key, tenant)
            elif found:
                iso_stats["cache_reads"] += 1
                iso_stats["cross_tenant_reads"] += owner[key] != tenant
                assert owner[key] == tenant
    assert all(len(ts) == 1 for ts in namespaces.values())  # one namespace per tenant
    iso_stats["tenants"] += len(names)


CANARY_BACKEND = "sk-canary-BACKEND-9f8e7d6c"
CANARY_TENANT = "sk-canary-TENANT-1a2b3c4d"
CANARY_CACHE = "canary-CACHE-SECRET-5e6f7a8b"
CANARIES = (CANARY_BACKEND, CANARY_TENANT, CANARY_CACHE)


def _echoing_backend(request: httpx.Request, body: dict):
    key = request.headers.get("authorization", "")
    mode = (
        body["messages"][-1]["content"] if isinstance(body["messages"][-1]["content"], str) else ""
    )
    if mode == "401":
        return httpx.Response(
            401,
            json={"error": {"message": f"bad key {key}", "type": "auth"}},
            headers={"x-request-id": key},
        )
    if mode == "500-text":
        return httpx.Response(500, text=f"upstream exploded; key was {key}")
    if mode == "raise":
        raise httpx.ReadError(f"socket died while sending {key}")
    if mode == "stream-cut":

        async def cut():
            yield b'data: {"id":"c","choices":[]}\n\n'
            raise httpx.ReadError(f"cut with {key}")

        return httpx.Response(
            200, content=cut(), headers={"content-type": "text/event-stream", "x-request-id": key}
        )
    if mode == "garbage":
        return httpx.Response(
            200, content=b"<html>" + key.encode(), headers={"x-ratelimit-remaining": key}
        )
    return httpx.Response(
        200, json={"id": "ok", "choices": []}, headers={"x-request-id": f"id-{key}"}
    )


def test_canary_secrets_never_leak(tmp_path, caplog, monkeypatch, figures):
    monkeypatch.setenv("CPRS_CACHE_KEY_SECRET", CANARY_CACHE)
    reqlog = tmp_path / "requests.jsonl"
    backend = Backend()
    backend.respond = _echoing_backend
    cfg = base_config(
        tenants=[{"name": "acme", "api_keys": [CANARY_TENANT]}], log={"requests_path": str(reqlog)}
    )
    cfg["models"][0]["api_key"] = CANARY_BACKEND
    store = SpyStore()
    app = create_app(
        config_from_dict(cfg),
        engine=QueryWordEngine(),
        upstream_transport=httpx.MockTransport(backend),
    )
    app.state.holder.current.cache.store = store  # the configured cache, spied on
    doc = f"<document>{haystack(350)}</document>\n{QUESTION}"
    cases = [
        ("ok", False),
        ("401", False),
        ("500-text", False),
        ("raise", False),
        ("stream-cut", True),
        ("garbage", False),
        ("ok", True),
        (doc, False),
        (doc, False),
    ]
    seen: list[str] = []
    caplog.set_level(logging.DEBUG)

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as c:
            for content, stream in cases:
                body = {
                    "model": "gpt-4o",
                    "stream": stream,
                    "messages": [{"role": "user", "content": content}],
                }
                r = await c.post(
                    "/v1/chat/completions",
                    json=body,
                    headers={"authorization": f"Bearer {CANARY_TENANT}"},
                )
                seen.extend([r.text, json.dumps(dict(r.headers))])
            for wrong in (CANARY_TENANT + "x", CANARY_BACKEND):  # near-misses and the backend key
                r = await c.post(
                    "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {wrong}"}
                )
                assert r.status_code == 401
                seen.extend([r.text, json.dumps(dict(r.headers))])
            seen.append((await c.get("/metrics")).text)

    asyncio.run(go())
    seen.extend(rec.getMessage() + str(rec.exc_info or "") for rec in caplog.records)
    seen.append(reqlog.read_text())
    seen.extend(key for _, key, _ in store.ops)
    assert store.ops and len(reqlog.read_text().splitlines()) == len(cases) + 2
    for canary in CANARIES:
        leaks = [s for s in seen if canary in s]
        assert not leaks, (canary, leaks[:2])
    tenant_near_miss = CANARY_TENANT + "x"
    assert not [s for s in seen if tenant_near_miss in s]
    assert all(CANARY_TENANT not in str(h) for h in backend.headers)  # never forwarded
    assert all(h["authorization"] == f"Bearer {CANARY_BACKEND}" for h in backend.headers)
    figures["secrets_scan"] = {"places_scanned": len(seen), "canaries": len(CANARIES), "found": 0}
