"""The soak: a proxy serving a steady mix for a long time, its RSS and open files sampled.

    python -m tests.reliability.soak [--minutes 30] [--concurrency 8] [--json runs/soak.json]

Not part of any test run (`make soak`, 30 minutes). The proxy (real server settings, the
QueryWordEngine double, in-process cache) and a streaming fake backend run in their own
processes on loopback. The mix, in a bounded loop: short chats, streams, documents that compress
(new ones: misses, repeated ones: hits), bad JSON, and clients that leave mid-stream. Every
`--sample-s` seconds the proxy's RSS (/proc/PID/status VmRSS) and open file descriptors
(/proc/PID/fd) are recorded. Drift is measured from the end of the first tenth (warm-up) to the
end; the target is within 5%.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "proxy"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cprs_doubles import QUESTION, haystack  # noqa: E402
from rel_helpers import spawn  # noqa: E402

H = {"authorization": "Bearer sk-load"}
DOCS = [haystack(400, seed=i) for i in range(200)]  # 200 distinct documents, then repeats


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def one(client: httpx.AsyncClient, url: str, rng: random.Random, counts: dict) -> None:
    kind = rng.choice(["chat", "stream", "doc", "doc", "bad", "leave"])
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]}
    try:
        if kind == "bad":
            r = await client.post(url, content=b'{"model": NaN', headers=H)
            ok = r.status_code == 400
        elif kind == "doc":
            doc = DOCS[rng.randrange(len(DOCS))]
            body["messages"][0]["content"] = f"<document>{doc}</document>\n{QUESTION}"
            r = await client.post(url, json=body, headers=H)
            ok = r.status_code == 200 and r.headers.get("x-cprs-compressed") == "true"
        elif kind in ("stream", "leave"):
            async with client.stream("POST", url, json={**body, "stream": True}, headers=H) as r:
                n = 0
                async for _ in r.aiter_bytes():
                    n += 1
                    if kind == "leave" and n == 3:
                        break  # the client goes mid-stream
                ok = r.status_code == 200
        else:
            r = await client.post(url, json=body, headers=H)
            ok = r.status_code == 200
    except httpx.HTTPError:
        ok = False
    counts[kind if ok else f"{kind}-failed"] = counts.get(kind if ok else f"{kind}-failed", 0) + 1


async def drive(url: str, pid: int, seconds: float, concurrency: int, sample_s: float) -> dict:
    counts: dict[str, int] = {}
    samples: list[dict] = []
    deadline = time.monotonic() + seconds
    t0 = time.monotonic()

    async def worker(seed: int) -> None:
        rng = random.Random(seed)
        async with httpx.AsyncClient(timeout=30) as client:
            while time.monotonic() < deadline:
                await one(client, url + "/v1/chat/completions", rng, counts)

    async def sampler() -> None:
        while time.monotonic() < deadline:
            samples.append(
                {"t_s": round(time.monotonic() - t0, 1), "rss_kib": rss_kib(pid), "fds": fds(pid)}
            )
            await asyncio.sleep(sample_s)

    await asyncio.gather(sampler(), *(worker(i) for i in range(concurrency)))
    samples.append(
        {"t_s": round(time.monotonic() - t0, 1), "rss_kib": rss_kib(pid), "fds": fds(pid)}
    )
    return {"counts": counts, "samples": samples}


def drift(samples: list[dict], key: str) -> dict:
    start = samples[max(1, len(samples) // 10)][key]
    end = samples[-1][key]
    peak = max(s[key] for s in samples)
    return {
        "after_warmup": start,
        "end": end,
        "peak": peak,
        "drift_pct": round(100 * (end - start) / max(start, 1), 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.reliability.soak")
    p.add_argument("--minutes", type=float, default=30)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--sample-s", type=float, default=10)
    p.add_argument("--json", help="write the result here")
    args = p.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="cprs-soak-") as tmp,
        spawn(tmp, "backend", "--chunks", "21", "--over-s", "0.5") as backend,
        spawn(tmp, "proxy", "--backend", backend.url) as proxy,
    ):
        result = asyncio.run(
            drive(proxy.url, proxy.pid, args.minutes * 60, args.concurrency, args.sample_s)
        )
    result.update(
        minutes=args.minutes,
        concurrency=args.concurrency,
        rss=drift(result["samples"], "rss_kib"),
        fds=drift(result["samples"], "fds"),
    )
    result["failed"] = sum(n for k, n in result["counts"].items() if k.endswith("-failed"))
    summary = {k: result[k] for k in ("minutes", "counts", "failed", "rss", "fds")}
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0 if result["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
