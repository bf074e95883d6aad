"""The standing reliability suite (`make reliability`; not in the default test run).

Fixtures: the proxy and a fake backend as real servers on loopback ports with the proxy's own
server settings (read deadlines, JSON 400s), private redis-servers (never the shared one), and
`figures`, where each test records what it tried; the session writes them to
runs/reliability.json for RELIABILITY.md.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "proxy"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from proxy_int_helpers import fake_backend, private_redis  # noqa: E402, F401

_FIGURES: dict = {}


@pytest.fixture(scope="session")
def figures():
    yield _FIGURES


def pytest_sessionfinish(session, exitstatus):
    if not _FIGURES:
        return
    out = ROOT / "runs" / "reliability.json"
    out.parent.mkdir(exist_ok=True)
    old = json.loads(out.read_text()) if out.exists() else {}
    old.update(_FIGURES)
    old["_written"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    old["_machine"] = _machine()
    out.write_text(json.dumps(old, indent=2, sort_keys=True))


def _machine() -> dict:
    import subprocess

    from benchmarks import _report

    info = _report.machine(with_torch=False)
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        info["lscpu"] = lscpu.splitlines()[:10]
    except OSError:
        pass
    return info
