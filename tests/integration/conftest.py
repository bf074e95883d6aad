"""Integration fixtures: the proxy and a recording fake backend as real HTTP servers on loopback
ports, the real Redis at 127.0.0.1:6379 under a per-test key prefix (cleaned up, never flushed)."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "proxy"))

from proxy_int_helpers import SHARED_REDIS, fake_backend, private_redis  # noqa: E402, F401


@pytest.fixture
def redis_prefix():
    """A unique key prefix on the shared Redis; every key under it is deleted afterwards."""

    prefix = f"cprs-test:{uuid.uuid4().hex}:"
    client = redis.Redis.from_url(SHARED_REDIS)
    yield prefix
    for key in client.scan_iter(match=prefix + "*", count=500):
        client.delete(key)
    client.close()


@pytest.fixture
def sdk():
    """sdk(proxy_url, key="sk-acme") -> an OpenAI SDK client, closed after the test."""
    import openai

    made: list[openai.OpenAI] = []

    def make(url: str, key: str = "sk-acme", timeout: float = 20) -> openai.OpenAI:
        c = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=timeout)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()
