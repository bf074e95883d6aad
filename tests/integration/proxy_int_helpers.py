"""Integration helpers: proxy config for a fake backend, and a proxy served on a loopback port."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from typing import Any

import pytest
import redis
from cprs_doubles import FakeBackend, QueryWordEngine, ServerThread, free_port

from proxy.app import create_app
from proxy.config import config_from_dict

SHARED_REDIS = "redis://127.0.0.1:6379/0"


def proxy_config(backend_url: str, **sections: Any) -> dict:
    cfg: dict[str, Any] = {
        "models": [
            {
                "name": "gpt-4o",
                "model": "openai/gpt-4o",
                "api_base": backend_url + "/v1",
                "api_key": "sk-backend-777",
            }
        ],
        "tenants": [
            {"name": "acme", "api_keys": ["sk-acme"]},
            {"name": "globex", "api_keys": ["sk-globex"]},
        ],
        "policies": {"default": {"threshold_tokens": 300}},
        "server": {"reload_interval_s": 0},
    }
    cfg.update(sections)
    return cfg


@contextlib.contextmanager
def running_proxy(cfg: dict, engine: Any = None):
    """(base_url, engine) of a proxy served by uvicorn in a background thread."""
    engine = engine or QueryWordEngine()
    app = create_app(config_from_dict(cfg), engine=engine)
    with ServerThread(app) as server:
        yield server.url, engine


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


def served(backend):
    """Run a recording fake backend (anything with `.app()`) on a loopback port while the
    generator is open; yields it with its `url` set. Fixtures `yield from` it."""
    with ServerThread(backend.app()) as server:
        backend.url = server.url  # type: ignore[attr-defined]
        yield backend


@pytest.fixture
def fake_backend():
    """A recording FakeBackend on a loopback port (a fixture; conftests import it)."""
    yield from served(FakeBackend())


@pytest.fixture
def private_redis():
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server binary not found; cannot run Redis fault tests")
    server = PrivateRedis(binary, free_port())
    server.start()
    yield server
    server.kill()
