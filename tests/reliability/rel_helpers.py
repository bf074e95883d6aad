"""Helpers for the reliability suite: the proxy on a loopback port with its real server settings,
raw-socket requests, and percentiles."""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Any

from cprs_doubles import QueryWordEngine, ServerThread

from proxy.app import create_app
from proxy.config import config_from_dict
from proxy.http_limits import uvicorn_settings

FROM_CONFIG = object()  # served_proxy(engine=FROM_CONFIG): the engine the config names


@contextlib.contextmanager
def served_proxy(cfg: dict, engine: Any = None, **app_kw: Any):
    """(url, app) of the proxy under uvicorn with `uvicorn_settings` (what `cprs serve` uses).
    `engine` defaults to a QueryWordEngine double."""
    config = config_from_dict(cfg)
    if engine is None:
        engine = QueryWordEngine()
    app = create_app(config, engine=None if engine is FROM_CONFIG else engine, **app_kw)
    with ServerThread(app, **uvicorn_settings(config.server)) as server:
        yield server.url, app


def raw_exchange(port: int, data: bytes, limit_s: float = 10.0) -> bytes:
    """Send `data` on a fresh connection; everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=limit_s) as s:
        s.sendall(data)
        out = b""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out and _complete(out):
                break
        return out


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


@contextlib.contextmanager
def spawn(tmp, what: str, *args: str):
    """`python -m tests.reliability.servers WHAT` on a free port; yields the process (`.url`)."""
    import subprocess
    import sys
    from pathlib import Path

    import httpx
    from cprs_doubles import free_port

    root = Path(__file__).resolve().parents[2]
    port = free_port()
    log = open(Path(tmp) / f"{what}.log", "wb")  # noqa: SIM115 - closed in finally
    argv = [sys.executable, "-m", "tests.reliability.servers", what, "--port", str(port), *args]
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(argv, cwd=root, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited: {Path(log.name).read_text()[-2000:]}")
            try:
                health = url + ("/health" if what == "backend" else "/healthz")
                if httpx.get(health, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start")
            time.sleep(0.1)
        proc.url = url  # type: ignore[attr-defined]
        yield proc
    finally:
        log.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
