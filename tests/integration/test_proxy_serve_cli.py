"""`cprs serve` as a process: starts from a config, reloads on SIGHUP and on file change."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from cprs_doubles import QUESTION, free_port, haystack

pytestmark = pytest.mark.integration
CPRS = [sys.executable, "-m", "proxy.cli"]


def write(path: Path, key: str, backend_url: str, interval: float) -> None:
    cfg = {
        "models": [
            {
                "name": "gpt-4o",
                "model": "openai/gpt-4o",
                "api_base": backend_url + "/v1",
                "api_key": "sk-b",
            }
        ],
        "tenants": [{"name": "acme", "api_keys": [key]}],
        "policies": {"default": {"threshold_tokens": 300}},
        "engine": {"mode": "remote", "urls": [f"http://127.0.0.1:{free_port()}"], "timeout_s": 1},
        "server": {"reload_interval_s": interval},
    }
    path.write_text(yaml.safe_dump(cfg))


def status(url: str, key: str) -> int:
    return httpx.get(url + "/v1/models", headers={"authorization": f"Bearer {key}"}).status_code


def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_serve_reloads_on_sighup_and_file_change(tmp_path, fake_backend, sdk):
    path = tmp_path / "cprs.yaml"
    write(path, "sk-one", fake_backend.url, interval=0.3)
    port = free_port()
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    errfile = (tmp_path / "stderr.txt").open("w")
    proc = subprocess.Popen(
        [*CPRS, "serve", "--config", str(path), "--port", str(port)], env=env, stderr=errfile
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return httpx.get(url + "/healthz").status_code == 200
            except httpx.TransportError:
                assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
                return False

        wait_for(up, 60)
        assert status(url, "sk-one") == 200
        # engine unreachable: the request still succeeds, uncompressed (fail open)
        c = sdk(url, "sk-one")
        raw = c.chat.completions.with_raw_response.create(
            model="gpt-4o",
            messages=[
                {"role": "user", "content": f"<document>{haystack(300)}</document> {QUESTION}"}
            ],
        )
        assert raw.http_response.status_code == 200 and raw.headers["x-cprs-compressed"] == "false"
        assert httpx.get(url + "/readyz").status_code == 503

        write(path, "sk-two", fake_backend.url, interval=0)  # mtime watcher picks this up
        wait_for(lambda: status(url, "sk-two") == 200)
        assert status(url, "sk-one") == 401

        write(path, "sk-three", fake_backend.url, interval=0)  # watcher now off: SIGHUP only
        time.sleep(0.8)
        assert status(url, "sk-three") == 401
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: status(url, "sk-three") == 200)
    finally:
        proc.terminate()
        proc.wait(15)
        errfile.close()
    # uvicorn re-raises SIGTERM after a clean shutdown
    assert proc.returncode in (0, -signal.SIGTERM), (tmp_path / "stderr.txt").read_text()
    assert "Application shutdown complete" in (tmp_path / "stderr.txt").read_text()


def test_serve_rejects_a_bad_config(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("servr: {port: 1}\n")
    out = subprocess.run(
        [*CPRS, "serve", "--config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2 and "servr" in out.stderr
