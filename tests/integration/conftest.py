"""Integration fixtures: the proxy and a recording fake backend as real HTTP servers on loopback
ports, the real Redis at 127.0.0.1:6379 under a per-test key prefix (cleaned up, never flushed)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "proxy"))

from cprs_doubles import FakeBackend, ServerThread, free_port  # noqa: E402
from proxy_int_helpers import SHARED_REDIS  # noqa: E402


@pytest.fixture
def fake_backend():
    backend = FakeBackend()
    with ServerThread(backend.app()) as server:
        backend.url = server.url  # type: ignore[attr-defined]
        yield backend


@pytest.fixture
def redis_prefix():
    """A unique key prefix on the shared Redis; every key under it is deleted afterwards."""
    import redis

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


class PrivateRedis:
    """A throwaway redis-server on its own port, no persistence; only it is ever stopped."""

    def __init__(self, binary: str, port: int):
        self.binary, self.port = binary, port
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("private redis-server did not start") from None
                time.sleep(0.05)
        client.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)  # in case it was frozen
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def private_redis():
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server binary not found; cannot run the Redis fault test")
    server = PrivateRedis(binary, free_port())
    server.start()
    yield server
    server.kill()
