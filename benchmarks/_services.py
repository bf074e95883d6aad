"""Processes the proxy benchmark starts: the fake backend, `cprs serve`, LiteLLM's proxy.

Each runs in its own session on a free 127.0.0.1 port, logs to a file in the run's temp folder,
and is stopped (SIGTERM, then SIGKILL to its own process group) when the `Services` stack closes,
whatever happened in between.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_OFFLINE": "1",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    def __init__(
        self,
        name: str,
        argv: list[str],
        port: int,
        log: Path,
        env: dict | None = None,
        cwd: str | None = None,
    ):
        """`env` is added to this environment; a None value removes that variable."""
        self.name, self.port, self.log = name, port, log
        self.base = f"http://127.0.0.1:{port}"
        self._fh = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in (os.environ | ENV | (env or {})).items() if v is not None},
            start_new_session=True,  # its own process group: stop() reaches its children too
            cwd=cwd,
        )

    def wait(self, path: str, timeout_s: float) -> None:
        """Until GET `path` answers 200; fails early with the log's tail if the process died."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base + path, timeout=2).status_code == 200:
                    return
            time.sleep(0.25)
        raise RuntimeError(f"{self.name} not ready after {timeout_s:.0f}s:\n{self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        self._fh.flush()
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._fh.close()


class Services(contextlib.ExitStack):
    """Start services inside `with Services(tmp) as s:`; all are stopped on exit."""

    def __init__(self, tmp: Path):
        super().__init__()
        self.tmp = tmp

    def start(
        self, name: str, argv: list[str], port: int, env: dict | None = None, cwd=None
    ) -> Service:
        svc = Service(name, argv, port, self.tmp / f"{name}.log", env, cwd)
        self.callback(svc.stop)
        return svc


def fake_backend(services: Services) -> Service:
    port = free_port()
    argv = [sys.executable, "-m", "benchmarks.fake_backend", "--port", str(port)]
    return services.start("fake-backend", argv, port)


def cprs_config(
    backend: str,
    *,
    keys: dict[str, str],
    checkpoint: str | None,
    redis_url: str | None,
    key_prefix: str,
) -> dict:
    """One `bench` model; tenant `bench` compresses (fail closed), `bench-control` never does."""
    engine: dict = {"timeout_s": 600}
    if checkpoint:
        engine["checkpoint"] = checkpoint
    cache: dict = {"enabled": True, "ttl_seconds": 3600}
    if redis_url:
        cache |= {"redis_url": redis_url, "key_prefix": key_prefix}
    return {
        "models": [
            {"name": "bench", "model": "openai/bench", "api_base": backend, "api_key": "sk-fake"}
        ],
        "tenants": [
            {"name": "bench", "api_keys": [keys["compress"]], "policy": "bench"},
            {"name": "bench-control", "api_keys": [keys["control"]], "policy": "bench-control"},
        ],
        "policies": {
            "bench": {"failure_mode": "closed"},
            "bench-control": {"ab": {"control_percent": 100}},
        },
        "cache": cache,
        "engine": engine,
        "server": {"reload_interval_s": 0},
    }


def cprs_proxy(
    services: Services,
    config: dict,
    *,
    name: str = "cprs-proxy",
    source: str | None = None,
    hide: tuple[str, ...] = (),
) -> Service:
    """`cprs serve` from this checkout, or from `source` (another tree of the project, e.g. an
    earlier commit's `git archive`), with the packages in `hide` made unimportable in it."""
    port = free_port()
    path = services.tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    argv = [sys.executable, "-m", "proxy.cli", "serve", "--config", str(path)]
    argv += ["--port", str(port)]
    env = None
    if hide:
        stubs = services.tmp / f"{name}-hidden"
        for pkg in hide:
            (stubs / pkg).mkdir(parents=True, exist_ok=True)
            (stubs / pkg / "__init__.py").write_text(f"raise ImportError('{pkg} hidden')\n")
        env = {"PYTHONPATH": str(stubs)}
    return services.start(name, argv, port, env, cwd=source)


def litellm_proxy(services: Services, litellm: str, backend: str, master_key: str) -> Service:
    """LiteLLM's own proxy from its separate venv: no database, no spend logs, no telemetry."""
    port = free_port()
    config = {
        "model_list": [
            {
                "model_name": "bench",
                "litellm_params": {
                    "model": "openai/bench",
                    "api_base": backend,
                    "api_key": "sk-fake",
                },
            }
        ],
        "general_settings": {"master_key": master_key, "disable_spend_logs": True},
        "litellm_settings": {"telemetry": False},
    }
    path = services.tmp / "litellm.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    argv = [litellm, "--config", str(path), "--port", str(port), "--host", "127.0.0.1"]
    env = {"DATABASE_URL": None, "STORE_MODEL_IN_DB": "False"}  # None: unset
    return services.start("litellm-proxy", argv, port, env)


def venv_facts(python: str) -> dict:
    """litellm's version and whether uvloop is importable, in the venv of `python`."""
    code = (
        "import importlib.metadata as m, importlib.util as u, json;"
        "print(json.dumps({'litellm': m.version('litellm'),"
        " 'uvloop': u.find_spec('uvloop') is not None}))"
    )
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
    except OSError:
        return {"litellm": "?", "uvloop": None}
    if out.returncode != 0:
        return {"litellm": "?", "uvloop": None}
    import json

    return json.loads(out.stdout)
