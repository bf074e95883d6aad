"""Load: 200 concurrent streams for 60 s through the proxy, then the same straight to the
backend, each stream 21 chunks over 1 s from a fake backend. Everything on loopback, in separate
processes; bounded (each phase stops by itself) and recorded, not timed: zero errors and zero
lost requests are asserted; time to first byte through the proxy and direct is recorded for
RELIABILITY.md (speed targets belong to benchmarks, not tests).

RELIABILITY_LOAD_S (default 60) and RELIABILITY_STREAMS (default 200) change the size.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import httpx
import pytest
from rel_helpers import percentile, spawn

pytestmark = pytest.mark.reliability
SECONDS = float(os.environ.get("RELIABILITY_LOAD_S", "60"))
STREAMS = int(os.environ.get("RELIABILITY_STREAMS", "200"))
BODY = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "count"}]}


async def phase(url: str, key: str, seconds: float, streams: int) -> dict:
    ttfb: list[float] = []
    errors: list[str] = []
    done = 0
    deadline = time.monotonic() + seconds
    # Like the OpenAI SDK, the client drops idle connections itself, before the server's
    # keep-alive would (2 s here: a saturated client's own loop lag counts as idle time).
    limits = httpx.Limits(
        max_connections=streams, max_keepalive_connections=streams, keepalive_expiry=2.0
    )
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                t = time.perf_counter()
                try:
                    async with client.stream("POST", url + "/v1/chat/completions", json=BODY,
                                             headers={"authorization": f"Bearer {key}"}) as r:  # fmt: skip
                        first = None
                        tail = b""
                        async for chunk in r.aiter_bytes():
                            if first is None:
                                first = time.perf_counter() - t
                            tail = (tail + chunk)[-32:]
                        if r.status_code != 200 or not tail.endswith(b"data: [DONE]\n\n"):
                            errors.append(f"{r.status_code} {tail!r}")
                            continue
                        ttfb.append(first)
                        done += 1
                except httpx.HTTPError as exc:
                    errors.append(type(exc).__name__)

        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(streams))), seconds + 60)
    return {
        "requests": done,
        "errors": len(errors),
        "error_kinds": sorted(set(errors))[:5],
        "rps": round(done / seconds, 1),
        "ttfb_p50_ms": round(percentile(ttfb, 50) * 1000, 1),
        "ttfb_p99_ms": round(percentile(ttfb, 99) * 1000, 1),
    }


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux /proc; 0 elsewhere)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(url: str, key: str, procs: dict) -> dict:
    """A load phase, with the CPU each process spent per finished stream (the proxy's CPU per
    stream is what decides its time to first byte on saturated cores)."""
    before = {name: cpu_s(p.pid) for name, p in procs.items()}
    client = time.process_time()
    result = asyncio.run(phase(url, key, SECONDS, STREAMS))
    spent = {name: cpu_s(p.pid) - before[name] for name, p in procs.items()}
    spent["load client"] = time.process_time() - client
    n = max(result["requests"], 1)
    result["cpu_ms_per_stream"] = {name: round(s * 1000 / n, 2) for name, s in spent.items()}
    return result


def test_200_concurrent_streams_for_60s(tmp_path, figures):
    with (
        spawn(tmp_path, "backend") as backend,
        spawn(tmp_path, "proxy", "--backend", backend.url) as proxy,
    ):
        procs = {"proxy": proxy, "backend": backend}
        via_proxy = measured(proxy.url, "sk-load", procs)
        direct = measured(backend.url, "sk-backend-load", {"backend": backend})
    print(f"load: through the proxy {via_proxy}\nload: direct {direct}")
    figures["load"] = {
        "streams": STREAMS,
        "seconds": SECONDS,
        "proxy": via_proxy,
        "direct": direct,
        "ttfb_p99_ratio": round(via_proxy["ttfb_p99_ms"] / max(direct["ttfb_p99_ms"], 1e-9), 2),
    }
    assert via_proxy["errors"] == 0 and direct["errors"] == 0, figures["load"]
    assert via_proxy["requests"] > 0
