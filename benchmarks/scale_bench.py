"""Scale-out on one machine: N proxies and M `cprs engine serve` replicas on loopback, one Redis.

    python -m benchmarks.scale_bench [--proxies 2] [--engines 1,2,3] [--seconds 60]
                                     [--concurrency 4] [--doc-tokens 2000] [--no-kill]
                                     [--write BENCHMARKS.md] [--json PATH]

Starts max(M) engine replicas (the shipped critic) and the fake backend once; then, for each M,
N proxies whose `engine.urls` are the first M replicas, with the shared Redis at 127.0.0.1:6379
under a key prefix of this run's own (deleted at the end, never flushed). The load is closed-loop
and bounded: `--concurrency` clients, each sending one request at a time to the proxies in turn,
for `--seconds`. Every request carries a document of its own (`--doc-tokens` cl100k tokens of the
essays haystack with the benchmarks' needle; unique, so every one is a cache miss that an engine
compresses), and the policy fails closed: a request whose compression failed is an error, not a pass-through. In the
last phase (M >= 2) one engine replica is killed (SIGKILL) halfway through; the proxies must move
its work to the others, with zero failed requests.

Per phase it reports requests/s, compressed documents' tokens/s, latency percentiles, failures,
and the CPU seconds each kind of process used (from /proc), which shows where the time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import yaml

from benchmarks import _report, _services
from benchmarks._docs import NEEDLE, QUERY, haystack
from benchmarks.fake_backend import ANSWER

SECTION = "scale-bench"
REDIS = "redis://127.0.0.1:6379/0"
KEY = "sk-scale-bench"


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proxy_config(backend: str, engine_urls: list[str], prefix: str) -> dict:
    return {
        "models": [
            {"name": "bench", "model": "openai/bench", "api_base": backend, "api_key": "sk-fake"}
        ],
        "tenants": [{"name": "scale", "api_keys": [KEY], "policy": "scale"}],
        # Every document is compressed and waited for; a failed compression fails the request.
        "policies": {
            "scale": {"threshold_tokens": 500, "max_wait_ms": None, "failure_mode": "closed"}
        },
        "cache": {"redis_url": REDIS, "key_prefix": prefix, "key_secret": "scale-bench"},
        "engine": {"mode": "remote", "urls": engine_urls, "timeout_s": 120,
                   "health_interval_s": 1},
        "server": {"reload_interval_s": 0},
    }  # fmt: skip


class Documents:
    """Unique documents of `n_tokens` cl100k tokens: haystack slices at moving offsets."""

    def __init__(self, n_tokens: int):
        from proxy.tokens import configure_offline

        configure_offline()
        import tiktoken

        self.enc = tiktoken.get_encoding("cl100k_base")
        self.ids = self.enc.encode(haystack())
        self.n = n_tokens

    def __call__(self, i: int) -> str:
        start = (i * 7919) % (len(self.ids) - self.n)
        body = self.enc.decode(self.ids[start : start + self.n])
        at = body.find(". ", len(body) // 2)  # the needle after the middle sentence's end
        at = len(body) if at < 0 else at + 2
        return f"Request {i}.\n{body[:at]}{NEEDLE} {body[at:]}"


async def load(bases, docs, seconds, concurrency, on_half=None, first: int = 0) -> list[dict]:
    """Closed-loop load; returns one record per request. Documents are numbered from `first`
    (each phase its own range, so no phase meets another's documents in the cache)."""
    records: list[dict] = []
    counter = iter(range(first, 10**9))
    t0 = time.monotonic()
    deadline = t0 + seconds
    limits = httpx.Limits(max_connections=4 * concurrency)
    async with httpx.AsyncClient(timeout=180, limits=limits) as client:

        async def worker() -> None:
            while time.monotonic() < deadline:
                i = next(counter)
                body = f"<document>\n{docs(i)}\n</document>\n\n{QUERY}"
                req = {"model": "bench", "messages": [{"role": "user", "content": body}]}
                start = time.monotonic()
                rec = {"i": i, "t": start - t0}
                try:
                    resp = await client.post(
                        bases[i % len(bases)] + "/v1/chat/completions",
                        json=req,
                        headers={"authorization": f"Bearer {KEY}"},
                    )
                    ok = (
                        resp.status_code == 200
                        and resp.json()["choices"][0]["message"]["content"] == ANSWER
                    )
                    rec |= {
                        "status": resp.status_code,
                        "ok": ok,
                        "compressed": resp.headers.get("x-cprs-compressed") == "true",
                        "skipped": resp.headers.get("x-cprs-skipped"),
                        "cache": resp.headers.get("x-cprs-cache"),
                        "error": None if ok else resp.text[:200],
                    }
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    rec |= {"status": None, "ok": False, "compressed": False, "error": repr(exc)}
                rec["latency_s"] = time.monotonic() - start
                records.append(rec)

        async def killer() -> None:
            await asyncio.sleep(seconds / 2)
            on_half()

        tasks = [worker() for _ in range(concurrency)]
        if on_half is not None:
            tasks.append(killer())
        await asyncio.gather(*tasks)
    return records


def summarize(records: list[dict], seconds: float, doc_tokens: int) -> dict:
    """Rates are over `seconds`: the load's wall time, from its start to the last answer."""
    done = records
    ok = [r for r in done if r["ok"]]
    compressed = [r for r in ok if r["compressed"]]
    lat = sorted(r["latency_s"] for r in ok)

    def pct(p: float) -> float | None:
        return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else None

    return {
        "requests": len(done),
        "ok": len(ok),
        "failed": len(done) - len(ok),
        "compressed": len(compressed),
        "cache_hits": sum(r.get("cache") == "hit" for r in ok),
        "not_compressed": len(ok) - len(compressed),
        "req_per_s": len(ok) / seconds,
        "doc_tokens_per_s": len(compressed) * doc_tokens / seconds,
        "p50_s": pct(0.5),
        "p95_s": pct(0.95),
        "errors": sorted({r["error"] for r in done if r.get("error")})[:5],
        "skipped": sorted({r["skipped"] for r in ok if r.get("skipped")}),
        "cache": sorted({r["cache"] for r in ok if r.get("cache")}),
    }


def phase(services, engines, m, args, docs, backend, prefix, kill: bool) -> dict:
    urls = [e.base for e in engines[:m]]
    proxies = []
    for j in range(args.proxies):
        port = _services.free_port()
        path = services.tmp / f"proxy-m{m}-{j}.yaml"
        path.write_text(yaml.safe_dump(proxy_config(backend.base, urls, prefix)))
        argv = [sys.executable, "-m", "proxy.cli", "serve", "--config", str(path)]
        proxies.append(services.start(f"proxy-m{m}-{j}", [*argv, "--port", str(port)], port))
    for p in proxies:
        p.wait("/readyz", 120)
    groups = {"engines": engines[:m], "proxies": proxies, "fake backend": [backend]}
    pids = [s.proc.pid for v in groups.values() for s in v]
    start, final = {pid: cpu_seconds(pid) for pid in pids}, {}
    gen_before, wall0 = sum(os.times()[:2]), time.monotonic()
    victim = engines[m - 1] if kill else None

    def kill_one() -> None:
        print(f"  killing engine {victim.base} at half time", flush=True)
        final[victim.proc.pid] = cpu_seconds(victim.proc.pid)  # its CPU up to its death
        os.killpg(victim.proc.pid, signal.SIGKILL)

    records = asyncio.run(
        load([p.base for p in proxies], docs, args.seconds, args.concurrency,
             kill_one if kill else None, first=m * 1_000_000)
    )  # fmt: skip
    wall = time.monotonic() - wall0
    final = {pid: cpu_seconds(pid) for pid in pids} | final
    cpu = {k: sum(final[s.proc.pid] - start[s.proc.pid] for s in v) for k, v in groups.items()}
    cpu["load generator"] = sum(os.times()[:2]) - gen_before
    for p in proxies:
        p.stop()
    summary = summarize(records, wall, args.doc_tokens)
    return {"engines": m, "proxies": args.proxies, "killed": kill, "wall_s": wall,
            "cpu_s": cpu, **summary}  # fmt: skip


def render(result: dict, command: str) -> str:
    info = result["machine"]
    lines = [
        "## Scale-out: proxies and engine replicas on one machine (`make bench-scale`)",
        "",
        f"- Date: {result['date']}",
        f"- Machine: {_report.machine_text(info)}",
        f"- Command: `{command}`",
        f"- Load: {result['concurrency']} closed-loop clients for {result['seconds']:.0f} s per "
        f"row, each request a unique {result['doc_tokens']:,}-token (cl100k) document, compressed "
        "by the shipped critic on an engine replica (policy fails closed: no pass-through), "
        "backend a local fake. Redis: the shared one, under this run's own key prefix. Rates are "
        "over each row's wall time (load start to the last answer; the clients stop sending at "
        "the row's seconds).",
        "",
        "| engines | proxies | engine killed | requests | failed | compressed | cache hits | req/s "
        "| doc tokens/s | p50 s | p95 s | CPU s: engines | proxies | fake backend | load gen |",
        "| ---: | ---: | :--- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: |",
    ]
    for r in result["rows"]:
        c = r["cpu_s"]
        eng = c["engines"]
        lines.append(
            f"| {r['engines']} | {r['proxies']} | {'yes, at half time' if r['killed'] else 'no'} "
            f"| {r['requests']} | {r['failed']} | {r['compressed']} | {r['cache_hits']} "
            f"| {r['req_per_s']:.2f} "
            f"| {r['doc_tokens_per_s']:,.0f} | {r['p50_s'] or 0:.1f} | {r['p95_s'] or 0:.1f} "
            f"| {eng:.0f} | {c['proxies']:.0f} | {c['fake backend']:.0f} "
            f"| {c['load generator']:.0f} |"
        )
    lines += ["", reading(result)]
    return "\n".join(lines)


def reading(result: dict) -> str:
    """The table in words: throughput against M, and where the CPU time went."""
    cores = result["machine"].get("cores") or 1
    rows = result["rows"]
    base = rows[0]["req_per_s"] or float("nan")
    parts = ["**Reading.**"]
    for r in rows:
        total = sum(r["cpu_s"].values())
        util = total / (r["wall_s"] * cores)
        parts.append(
            f"With {r['engines']} engine(s): {r['req_per_s']:.2f} req/s "
            f"({r['req_per_s'] / base:.2f}x the first row), {r['failed']} failed"
            + (" with one engine killed at half time" if r["killed"] else "")
            + f"; the processes used {util:.0%} of the {cores} cores "
            f"({total:.0f} CPU s in {r['wall_s']:.0f} s), the engines "
            f"{r['cpu_s']['engines'] / max(total, 1e-9):.0%} of it."
        )
    return " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scale_bench", description=__doc__)
    p.add_argument("--proxies", type=int, default=2)
    p.add_argument("--engines", default="1,2,3", help="M values, one row each")
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--doc-tokens", type=int, default=2000)
    p.add_argument("--no-kill", action="store_true", help="kill no engine in the last row")
    p.add_argument("--write", help="put the table in this Markdown file (BENCHMARKS.md)")
    p.add_argument("--json", help="write the rows as JSON here")
    args = p.parse_args(argv)
    ms = [int(x) for x in args.engines.split(",")]
    prefix = f"cprs-scale-bench:{uuid.uuid4().hex}:"
    docs = Documents(args.doc_tokens)
    machine = _report.machine(with_torch=False)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, _services.Services(Path(tmp)) as services:
        backend = _services.fake_backend(services)
        backend.wait("/health", 30)
        engines = []
        for k in range(max(ms)):
            port = _services.free_port()
            argv_e = [sys.executable, "-m", "cprs_engine", "engine", "serve", "--port", str(port)]
            engines.append(services.start(f"engine-{k}", argv_e, port))
        for e in engines:
            e.wait("/readyz", 300)
        try:
            for n, m in enumerate(ms):
                kill = not args.no_kill and n == len(ms) - 1 and m >= 2
                print(f"phase: {m} engine(s), {args.proxies} proxies, kill={kill}", flush=True)
                rows.append(phase(services, engines, m, args, docs, backend, prefix, kill))
                print(json.dumps(rows[-1]), flush=True)
        finally:
            _clean_redis(prefix)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine,
        "seconds": args.seconds,
        "concurrency": args.concurrency,
        "doc_tokens": args.doc_tokens,
        "rows": rows,
    }
    text = render(result, _report.command_line("benchmarks.scale_bench", argv))
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    if args.write:
        _report.replace_section(args.write, SECTION, text)
    return 0 if all(r["failed"] == 0 for r in rows) else 1


def _clean_redis(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS)
    try:
        for key in client.scan_iter(match=prefix + "*", count=500):
            client.delete(key)
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
