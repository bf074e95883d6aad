"""What compression costs a request on a cache miss, under the latency budget, on the shipped critic.

    python -m benchmarks.latency_bench [--write BENCHMARKS.md] [--sizes 8192,32768,131072]
        [--budgets 0,2000,10000,null] [--small 6144] [--big 131072] [--concurrency 1,4,16]
        [--concurrent-tokens 8192] [--parts miss,fairness,throughput] [--results FILE] [--note T]

1. Miss latency: the proxy in process (the real app, the in-process engine, the in-memory
   cache) in front of a backend that answers at once. For each document size and `max_wait_ms`,
   a fresh app (empty cache) gets one chat request carrying the document; the latency it adds is
   its time minus the same request's with compression off (median of 3). With a budget the
   document's compression goes on in the background: the time until the cache holds it is
   measured from the request's start, and one more request then shows whether it is served
   from the cache. The engine measured its throughput on a warm-up document first, as a running
   proxy would have, so documents predicted over the budget are not waited for. Each run starts
   once the engine is idle (the previous run's cancelled job gone).
2. Fairness: a `small`-token document alone, then submitted one second after a `big`-token one
   started, with the scheduler's shortest-remaining-first order and with `fifo` (whole jobs in
   arrival order: the engine before the scheduler).
3. Throughput: N concurrent `concurrent-tokens` requests (different documents and questions),
   context tokens over wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import threading
import time
from pathlib import Path

import httpx

from benchmarks import _report
from benchmarks._docs import QUERY, document, hf_truncate

SECTION = "latency-bench"
ANSWER = {
    "id": "x", "object": "chat.completion", "created": 0, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}  # fmt: skip


def _config(max_wait_ms, threshold: int = 1000) -> dict:
    return {
        "models": [{"name": "m", "model": "openai/m", "api_base": "http://backend.test/v1",
                    "api_key": "sk-x"}],
        "policies": {"default": {"threshold_tokens": threshold, "max_wait_ms": max_wait_ms}},
        "engine": {"timeout_s": 600},
        "server": {"reload_interval_s": 0},
    }  # fmt: skip


def _body(doc: str, query: str = QUERY) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": f"<document>{doc}</document>\n{query}"}]}  # fmt: skip


async def _one_app(engine, cfg: dict, doc: str, *, follow: bool) -> dict:
    """One request on a fresh app; with `follow`, wait for the background fill and ask again."""
    from proxy.app import create_app
    from proxy.config import config_from_dict

    app = create_app(
        config_from_dict(cfg), engine=engine,
        upstream_transport=httpx.MockTransport(lambda r: httpx.Response(200, json=ANSWER)),
    )  # fmt: skip
    out: dict = {}
    await _idle(engine)  # the previous run's cancelled job has left the engine
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://p", timeout=900) as c:
        try:
            t0 = time.perf_counter()
            r = await c.post("/v1/chat/completions", json=_body(doc))
            out["latency_s"] = time.perf_counter() - t0
            assert r.status_code == 200, r.text
            out["cache"] = r.headers["x-cprs-cache"]
            out["skipped"] = r.headers.get("x-cprs-skipped", "")
            out["compressed"] = r.headers["x-cprs-compressed"] == "true"
            background = app.state.holder.current.background
            if follow and out["cache"] == "pending":
                while background.depth:
                    await asyncio.sleep(0.05)
                out["filled_s"] = time.perf_counter() - t0
                t1 = time.perf_counter()
                r = await c.post("/v1/chat/completions", json=_body(doc))
                out["next_s"] = time.perf_counter() - t1
                assert r.status_code == 200, r.text
                out["next_cache"] = r.headers["x-cprs-cache"]
                out["next_compressed"] = r.headers["x-cprs-compressed"] == "true"
        finally:
            await app.state.holder.close()  # cancels what still runs in the background
    return out


async def _idle(engine) -> None:
    scheduler = getattr(engine, "_scheduler", None)
    while scheduler is not None and scheduler.depth:
        await asyncio.sleep(0.05)


async def miss_latency(engine, docs: dict[int, str], budgets: list) -> list[dict]:
    rows = []
    for size, doc in docs.items():
        base = [(await _one_app(engine, _config(0, 10**9), doc, follow=False))["latency_s"]
                for _ in range(3)]  # fmt: skip
        baseline = statistics.median(base)
        for budget in budgets:
            got = await _one_app(engine, _config(budget), doc, follow=budget == budgets[0])
            got.update(size=size, budget=budget, added_s=got["latency_s"] - baseline)
            rows.append(got)
            print(f"miss {size} max_wait_ms={budget}: {got}", flush=True)
    return rows


def fairness(compressor, small: str, big: str) -> dict:
    from cprs_engine.scheduler import Control, Scheduler

    out = {}
    s = Scheduler(compressor)
    t = time.perf_counter()
    s.compress(QUERY, small)
    out["alone_s"] = time.perf_counter() - t
    s.close()
    for order in ("srf", "fifo"):
        s = Scheduler(compressor, order=order)
        control = Control()
        job = s.plan(QUERY, big, control=control)  # tokenized before the clock starts
        s.submit(job)
        while job.next == 0:  # its first pass has started
            time.sleep(0.01)
        time.sleep(1.0)
        t = time.perf_counter()
        s.compress("What did the author say about the small document?", small)
        out[f"behind_{order}_s"] = time.perf_counter() - t
        control.cancel.set()  # the big one is not measured: stop it within a pass
        with contextlib.suppress(Exception):
            job.future.result()
        s.close()
        print(f"fairness {order}: {out}", flush=True)
    return out


def throughput(compressor, docs: list[str], counts: list[int]) -> list[dict]:
    from cprs_engine.scheduler import Scheduler

    rows = []
    for n in counts:
        s = Scheduler(compressor)
        jobs = [s.plan(f"{QUERY} (request {i})", docs[i % len(docs)]) for i in range(n)]
        t = time.perf_counter()
        threads = [threading.Thread(target=lambda j=j, s=s: s.submit(j).result()) for j in jobs]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - t
        tokens = sum(len(j.plan.ids) for j in jobs)
        rows.append(
            {"concurrent": n, "tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall}
        )
        s.close()
        print(f"throughput {rows[-1]}", flush=True)
    return rows


def render(info, command, misses, fair, rates, args) -> str:
    def ms(x):
        return f"{x * 1000:,.0f}"

    def budget(b):
        return "null" if b is None else str(b)

    lines = ["## Latency: what a cache miss adds under the budget (issue 13)", ""]
    lines += [f"- Date: {_report.today()}", f"- Machine: {_report.machine_text(info)}",
              f"- Command: `{command}`", "- Engine: the shipped critic in process "
              "(`LocalEngine`, scheduler `srf`), in-memory cache, a backend that answers at once.",
              ""]  # fmt: skip
    if args.reduced:
        lines += [f"**Reduced run**: {args.reduced}. The full run: `make bench-latency`.", ""]
    if args.note:
        lines += [args.note, ""]
    rows = []
    for m in misses:
        rows.append([
            f"{m['size']:,}", budget(m["budget"]), ms(m["added_s"]), m["cache"],
            m["skipped"] or "-", "yes" if m["compressed"] else "no",
            ms(m["filled_s"]) if "filled_s" in m else "-",
            (f"{m['next_cache']}, {'compressed' if m['next_compressed'] else 'as sent'}"
             if "next_cache" in m else "-"),
        ])  # fmt: skip
    lines += [_report.table(
        ["document tokens", "max_wait_ms", "added ms", "x-cprs-cache", "x-cprs-skipped",
         "compressed", "cache filled after ms", "next request"], rows), ""]  # fmt: skip
    lines += ["Added = the request's latency − the same request's with compression off (median "
              "of 3). The cache-fill time is measured once per size (on the first budget's run), "
              "from the request's start; the other runs' background jobs are cancelled when their "
              "app closes.", ""]  # fmt: skip
    lines += [_report.table(
        ["small request", "seconds"],
        [[f"{args.small:,} tokens alone", f"{fair['alone_s']:.2f}"],
         [f"behind a {args.big:,}-token one, scheduler (srf)", f"{fair['behind_srf_s']:.2f}"],
         [f"behind a {args.big:,}-token one, fifo (no scheduler)", f"{fair['behind_fifo_s']:.2f}"]],
    ), ""]  # fmt: skip
    lines += [
        f"Behind: the small document is submitted 1 s after the big one started; "
        f"srf/alone = {fair['behind_srf_s'] / fair['alone_s']:.2f}×, "
        f"fifo/alone = {fair['behind_fifo_s'] / fair['alone_s']:.2f}×.",
        "",
    ]
    one = rates[0]["tokens_per_s"]
    lines += [_report.table(
        ["concurrent requests", "context tokens", "wall s", "tokens/s", "× one request"],
        [[str(r["concurrent"]), f"{r['tokens']:,}", f"{r['wall_s']:.2f}",
          f"{r['tokens_per_s']:,.0f}", f"{r['tokens_per_s'] / one:.2f}"] for r in rates],
    )]  # fmt: skip
    lines += ["", "Concurrent requests carry different documents and questions, so their windows "
              "do not share a prefix and run in their own passes (same-question windows would "
              "share passes)."]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--write", help="replace the latency-bench section of this file")
    p.add_argument("--sizes", default="8192,32768,131072")
    p.add_argument("--budgets", default="0,2000,10000,null")
    p.add_argument("--small", type=int, default=6144)
    p.add_argument("--big", type=int, default=131072)
    p.add_argument("--concurrency", default="1,4,16")
    p.add_argument("--concurrent-tokens", type=int, default=8192)
    p.add_argument("--reduced", help="say why the sizes differ from the full run")
    p.add_argument("--parts", default="miss,fairness,throughput", help="the parts to run now")
    p.add_argument("--results", help="JSON file: parts not run now are read from it; all saved")
    p.add_argument("--note", help="a line for the section (e.g. where older parts came from)")
    args = p.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",")]
    budgets = [None if b == "null" else int(b) for b in args.budgets.split(",")]
    counts = [int(x) for x in args.concurrency.split(",")]
    info = _report.machine()
    command = _report.command_line("benchmarks.latency_bench", argv)

    from proxy.config import EngineSettings
    from proxy.engine import LocalEngine

    async def proxy_part():
        engine = LocalEngine(EngineSettings(timeout_s=600))
        await engine.start()
        await engine._load_task
        assert engine.ready()[0], engine.ready()[1]
        compressor = engine._scheduler.compressor
        cut = hf_truncate(compressor.tokenizer)
        await engine.compress(QUERY, document(2048, cut))  # warm-up: the engine measures itself
        docs = {n: document(n, cut) for n in sizes}
        misses = await miss_latency(engine, docs, budgets)
        await engine.close()
        return compressor, cut, misses

    parts = set(args.parts.split(","))
    saved = (
        json.loads(Path(args.results).read_text())
        if args.results and Path(args.results).exists()
        else {}
    )
    if "miss" in parts:
        compressor, cut, saved["misses"] = asyncio.run(proxy_part())
    else:
        from cprs_engine import Compressor

        compressor = Compressor.load()
        cut = hf_truncate(compressor.tokenizer)
    if "fairness" in parts:
        saved["fair"] = fairness(
            compressor, document(args.small, cut, depth=0.3), document(args.big, cut)
        )
    if "throughput" in parts:
        docs = [document(args.concurrent_tokens, cut, depth=d / 16) for d in range(16)]
        saved["rates"] = throughput(compressor, docs, counts)
    if args.results:
        Path(args.results).parent.mkdir(parents=True, exist_ok=True)
        Path(args.results).write_text(json.dumps(saved, indent=1))
    misses, fair, rates = saved["misses"], saved["fair"], saved["rates"]
    text = render(info, command, misses, fair, rates, args)
    print(text)
    if args.write:
        _report.replace_section(args.write, SECTION, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
