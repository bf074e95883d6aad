"""The proxy's added latency and throughput, side by side with LiteLLM's own proxy.

    python -m benchmarks.proxy_bench [--write BENCHMARKS.md] [--quick] [--requests N]
        [--concurrency C] [--throughput-requests N] [--doc-tokens N] [--cached-requests N]
        [--checkpoint DIR | --tiny-engine] [--redis URL|none] [--litellm PATH | --no-litellm]
        [--baseline DIR [--baseline-label TEXT] [--baseline-hide PKG,...]]

One fake OpenAI-compatible backend (benchmarks/fake_backend.py) answers instantly; in front of it
run `cprs serve` and LiteLLM's proxy (`litellm[proxy]==1.106.2` from its own venv,
`.venv-litellm`, which `make bench-proxy` creates). The same request body goes to all three.
Latency: sequential requests, interleaved across targets in rounds so that drift in the
machine's load hits each alike; added latency = a proxy's percentile − the backend's. Throughput:
a fixed number of requests at a fixed concurrency. Then a long document with a needle: the first
request is compressed by the engine and cached; the cache hits that follow are timed against the
same document sent to the backend alone and through the proxy's control arm (never compressed).
Every response is checked (status, body, x-cprs-* headers); failures are counted and reported.
`--baseline DIR` adds `cprs serve` from another source tree (an earlier commit) as one more
pass-through target in the same interleaved rounds: before/after on one machine in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from benchmarks import _report, _services
from benchmarks._docs import QUERY, document
from benchmarks._proxy_report import render
from benchmarks.fake_backend import ANSWER

SECTION = "proxy-bench"
LITELLM_DEFAULT = ".venv-litellm/bin/litellm"
KEYS = {
    "compress": "sk-bench-compress",
    "control": "sk-bench-control",
    "litellm": "sk-bench-master",
}


@dataclass
class Target:
    name: str
    url: str
    headers: dict
    body: bytes
    want: dict = field(default_factory=dict)  # response headers that must have these values
    times: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    last_headers: dict = field(default_factory=dict)
    pid: int | None = None  # the server process answering (its CPU is measured per request)
    cpu_s: float = 0.0  # that process's CPU over the timed latency requests

    def check(self, resp: httpx.Response) -> None:
        if resp.status_code != 200:
            self.problems.append(f"HTTP {resp.status_code}: {resp.text[:200]}")
            return
        try:
            content = resp.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            content = None
        if content != ANSWER:
            self.problems.append(f"unexpected body: {resp.text[:200]}")
        for k, v in self.want.items():
            if resp.headers.get(k) != v:
                self.problems.append(f"{k}: {resp.headers.get(k)!r}, expected {v!r}")
        self.last_headers = dict(resp.headers)


def chat_body(content: str) -> bytes:
    return json.dumps(
        {"model": "bench", "messages": [{"role": "user", "content": content}]}
    ).encode()


def target(name: str, base: str, key: str, body: bytes, pid=None, **want: str) -> Target:
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    return Target(name, base + "/v1/chat/completions", headers, body, dict(want), pid=pid)


def cpu_s(pid: int | None) -> float:
    """CPU seconds a process (all its threads) has used: /proc's schedstat (ns) on Linux, 0
    where there is none. Robust to other work on the machine, unlike wall time."""
    if pid is None:
        return 0.0
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                total += int((task / "schedstat").read_text().split()[0])
    except OSError:
        return 0.0
    return total / 1e9


async def one(client: httpx.AsyncClient, t: Target) -> float:
    t0 = time.perf_counter()
    resp = await client.post(t.url, content=t.body, headers=t.headers)
    dt = time.perf_counter() - t0
    t.check(resp)
    return dt


async def latency(targets: list[Target], n: int, rounds: int, warmup: int) -> None:
    """`n` sequential requests per target, in `rounds` interleaved blocks (order rotates)."""
    async with httpx.AsyncClient(timeout=120) as client:
        for t in targets:
            for _ in range(warmup):
                await one(client, t)
            t.problems.clear()
        per = max(1, n // rounds)
        for r in range(rounds):
            for t in targets[r % len(targets) :] + targets[: r % len(targets)]:
                cpu = cpu_s(t.pid)
                for _ in range(per):
                    t.times.append(await one(client, t))
                t.cpu_s += cpu_s(t.pid) - cpu


async def throughput(t: Target, total: int, concurrency: int) -> tuple[float, int]:
    """Requests per second for `total` requests from `concurrency` workers; and problems seen."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    before = len(t.problems)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        await asyncio.gather(*(one(client, t) for _ in range(concurrency)))  # open connections
        left = total

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await one(client, t)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return total / (time.perf_counter() - t0), len(t.problems) - before


def wait_engine(base: str, timeout_s: float) -> tuple[bool, dict]:
    """Until /readyz says ready (True) or the engine failed for good (False, with its reason)."""
    deadline = time.monotonic() + timeout_s
    body: dict = {}
    while time.monotonic() < deadline:
        resp = httpx.get(base + "/readyz", timeout=5)
        body = resp.json()
        if resp.status_code == 200:
            return True, body
        if body.get("engine") != "loading the critic":
            return False, body
        time.sleep(0.5)
    return False, body | {"engine": f"still loading after {timeout_s:.0f}s"}


def long_document(n_tokens: int) -> str:
    """The haystack document cut to n tiktoken (cl100k) tokens: what the proxy's threshold counts."""
    from proxy.tokens import configure_offline

    configure_offline()
    import tiktoken

    enc = tiktoken.get_encoding("cl100k_base")
    return document(n_tokens, lambda text, n: enc.decode(enc.encode(text)[:n]))


def redis_prefix(url: str | None) -> tuple[str | None, str]:
    """The Redis URL to use (None when unreachable or 'none') and this run's own key prefix."""
    prefix = f"cprs-bench:{uuid.uuid4().hex[:12]}:"
    if not url or url == "none":
        return None, prefix
    import redis

    try:
        redis.Redis.from_url(url, socket_timeout=1).ping()
    except redis.RedisError:
        return None, prefix
    return url, prefix


def drop_keys(url: str, prefix: str) -> None:
    """Delete this run's keys only (never FLUSHDB: the Redis is shared)."""
    import redis

    r = redis.Redis.from_url(url)
    keys = list(r.scan_iter(match=prefix + "*", count=500))
    if keys:
        r.delete(*keys)


def run(args: argparse.Namespace) -> dict:
    res: dict = {"args": vars(args).copy()}
    redis_url, prefix = redis_prefix(args.redis)
    res["cache"] = f"Redis ({redis_url})" if redis_url else "in-process LRU"
    try:
        _run(args, res, redis_url, prefix)
    finally:
        if redis_url:
            drop_keys(redis_url, prefix)  # entries also expire: the bench config's TTL is 1 h
    return res


def _run(args: argparse.Namespace, res: dict, redis_url: str | None, prefix: str) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="proxy-bench-") as tmp,
        _services.Services(Path(tmp)) as s,
    ):
        checkpoint = args.checkpoint
        if args.tiny_engine:
            from cprs_engine.checkpoint import save_tiny_random

            checkpoint = str(save_tiny_random(Path(tmp) / "tiny-critic"))
        fake = _services.fake_backend(s)
        fake.wait("/health", 30)
        backend = fake.base + "/v1"
        cfg = _services.cprs_config(
            backend, keys=KEYS, checkpoint=checkpoint, redis_url=redis_url, key_prefix=prefix
        )
        ours = _services.cprs_proxy(s, cfg)
        before = None
        if args.baseline:
            hide = tuple(x for x in args.baseline_hide.split(",") if x)
            before = _services.cprs_proxy(
                s, cfg, name="cprs-proxy-baseline", source=args.baseline, hide=hide
            )
        lite = (
            None
            if args.no_litellm
            else _services.litellm_proxy(s, args.litellm, backend, KEYS["litellm"])
        )
        ours.wait("/healthz", 120)
        if before:
            before.wait("/healthz", 120)
        if lite:
            lite.wait("/health/liveliness", 180)
        ready, readyz = wait_engine(ours.base, 600)  # no measuring while a model loads
        res["engine"] = readyz

        small = chat_body("Say the special magic number.")
        passthrough = [
            target("backend alone", fake.base, "sk-fake", small, fake.proc.pid),
            target(
                "cprs-proxy",
                ours.base,
                KEYS["compress"],
                small,
                ours.proc.pid,
                **{"x-cprs-compressed": "false"},
            ),
        ]
        if before:
            label = f"cprs-proxy, baseline ({args.baseline_label})"
            passthrough.append(
                target(
                    label,
                    before.base,
                    KEYS["compress"],
                    small,
                    before.proc.pid,
                    **{"x-cprs-compressed": "false"},
                )
            )
        if lite:
            passthrough.append(
                target("LiteLLM proxy", lite.base, KEYS["litellm"], small, lite.proc.pid)
            )
        print("[proxy-bench] pass-through latency ...", file=sys.stderr, flush=True)
        asyncio.run(latency(passthrough, args.requests, args.rounds, args.warmup))
        res["rps"] = {}
        print("[proxy-bench] throughput ...", file=sys.stderr, flush=True)
        for t in passthrough:
            res["rps"][t.name] = asyncio.run(
                throughput(t, args.throughput_requests, args.concurrency)
            )
        res["passthrough"] = passthrough

        res["cached"] = None
        if ready:
            res["cached"] = asyncio.run(cached_arms(args, fake.base, ours.base))
        for svc in (ours, before, lite):
            if svc and svc.proc.poll() is not None:
                raise RuntimeError(f"{svc.name} died during the run:\n{svc.tail()}")


async def cached_arms(args: argparse.Namespace, fake: str, ours: str) -> dict:
    """First request compresses (cache miss); then hits vs the same document uncompressed."""
    doc = long_document(args.doc_tokens)
    body = chat_body(f"<document>\n{doc}\n</document>\n\n{QUERY}")
    miss = target("miss", ours, KEYS["compress"], body, **{"x-cprs-compressed": "true"})
    miss.want["x-cprs-cache"] = "miss"
    print("[proxy-bench] first compressed request (cache miss) ...", file=sys.stderr, flush=True)
    async with httpx.AsyncClient(timeout=900) as client:
        first_s = await one(client, miss)
    arms = [
        target("backend alone", fake, "sk-fake", body),
        target("cprs-proxy, control arm", ours, KEYS["control"], body, **{"x-cprs-arm": "control"}),
        target(
            "cprs-proxy, compressed, cache hit",
            ours,
            KEYS["compress"],
            body,
            **{"x-cprs-compressed": "true", "x-cprs-cache": "hit"},
        ),
    ]
    arms[1].want["x-cprs-compressed"] = "false"
    print("[proxy-bench] cached compressed latency ...", file=sys.stderr, flush=True)
    await latency(arms, args.cached_requests, args.rounds, max(2, args.warmup // 10))
    return {"first_s": first_s, "miss": miss, "arms": arms}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.proxy_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--write", metavar="FILE", help="replace the proxy-bench section of FILE")
    p.add_argument("--quick", action="store_true", help="smoke run: few requests, tiny engine")
    p.add_argument("--requests", type=int, default=None, help="latency requests per target (1000)")
    p.add_argument("--rounds", type=int, default=10, help="interleaved latency rounds")
    p.add_argument("--warmup", type=int, default=50, help="warm-up requests per target")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--throughput-requests", type=int, default=None, help="per target (2000)")
    p.add_argument("--doc-tokens", type=int, default=6000, help="long document, cl100k tokens")
    p.add_argument("--cached-requests", type=int, default=None, help="per arm (300)")
    p.add_argument("--checkpoint", help="critic for the proxy's engine (default: shipped critic)")
    p.add_argument("--tiny-engine", action="store_true", help="a tiny random critic (smoke runs)")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="cache URL, or none")
    p.add_argument("--litellm", default=LITELLM_DEFAULT, help="LiteLLM proxy executable")
    p.add_argument("--no-litellm", action="store_true", help="skip LiteLLM's proxy")
    p.add_argument("--baseline", metavar="DIR", help="also run `cprs serve` from this source tree")
    p.add_argument("--baseline-label", default="baseline", help="its name in the tables")
    p.add_argument("--baseline-hide", default="", help="packages to hide from it, comma-separated")
    args = p.parse_args(argv)
    q = args.quick
    args.requests = args.requests or (60 if q else 1000)
    args.throughput_requests = args.throughput_requests or (200 if q else 2000)
    args.cached_requests = args.cached_requests or (30 if q else 300)
    args.rounds = min(args.rounds, 3) if q else args.rounds
    args.warmup = min(args.warmup, 10) if q else args.warmup
    args.tiny_engine = args.tiny_engine or (q and not args.checkpoint)
    if not args.no_litellm and not Path(args.litellm).exists():
        raise SystemExit(
            f"{args.litellm} not found: `make bench-proxy` creates .venv-litellm with "
            "litellm[proxy]==1.106.2 (or pass --litellm PATH, or --no-litellm)"
        )
    info = _report.machine(with_torch=False)
    facts = {"ours": _services.venv_facts(sys.executable)}
    if not args.no_litellm:
        facts["litellm"] = _services.venv_facts(str(Path(args.litellm).with_name("python")))
    res = run(args)
    text = render(res, _report.command_line("benchmarks.proxy_bench", argv), info, facts)
    _report.publish(text, args.write, SECTION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
