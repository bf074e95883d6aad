"""The proxy benchmark's markdown: setup, the two tables, and a reading built from the numbers."""

from __future__ import annotations

from benchmarks import _report


def summary(t) -> dict:
    """p50/p99 in ms of a target's timed requests."""
    ms = [1000 * x for x in t.times]
    return {"p50": _report.percentile(ms, 50), "p99": _report.percentile(ms, 99), "n": len(ms)}


def _cpu_per_request(t) -> str:
    cpu = getattr(t, "cpu_s", 0.0)
    return f"{cpu / len(t.times) * 1e6:,.0f}" if cpu and t.times else "–"


def render(res: dict, command: str, info: dict, facts: dict) -> str:
    a = res["args"]
    base = summary(res["passthrough"][0])
    rows = []
    for t in res["passthrough"]:
        s, (rps, _) = summary(t), res["rps"][t.name]
        added = t is not res["passthrough"][0]
        rows.append(
            [t.name, f"{s['p50']:.2f}", f"{s['p99']:.2f}"]
            + (
                [f"{s['p50'] - base['p50']:+.2f}", f"{s['p99'] - base['p99']:+.2f}"]
                if added
                else ["–", "–"]
            )
            + [_cpu_per_request(t), f"{rps:,.0f}", str(len(t.problems))]
        )
    lines = [
        "## Proxy: added latency and throughput",
        "",
        f"- Date: {_report.today()}",
        f"- Machine: {_report.machine_text(info)}",
        f"- Command: `{command}`",
        f"- Setup: one fake OpenAI-compatible backend (`benchmarks/fake_backend.py`, starlette + "
        f"uvicorn, fixed instant answer) behind each proxy, all on 127.0.0.1 with the load client "
        f"(httpx) on the same cores. cprs-proxy: `cprs serve`, litellm {facts['ours']['litellm']}, "
        f"uvloop {'installed' if facts['ours']['uvloop'] else 'not installed (asyncio loop)'}, "
        f"cache: {res['cache']}. LiteLLM proxy: "
        + (
            f"`litellm[proxy]=={facts['litellm']['litellm']}` from `.venv-litellm`, uvloop "
            f"{'installed' if facts['litellm']['uvloop'] else 'not installed'}, no database, "
            "spend logs off."
            if facts.get("litellm")
            else "not run (--no-litellm)."
        ),
        f"- Latency: {a['requests']} sequential requests per target in {a['rounds']} interleaved "
        f"rounds after {a['warmup']} warm-up requests; throughput: {a['throughput_requests']} "
        f"requests at concurrency {a['concurrency']}. Added = the proxy's percentile − the "
        "backend's.",
        "",
        "### Pass-through (a short chat request; nothing to compress)",
        "",
        _report.table(
            ["target", "p50 ms", "p99 ms", "added p50 ms", "added p99 ms"]
            + ["server CPU µs/request", f"req/s at concurrency {a['concurrency']}"]
            + ["failed checks"],
            rows,
        ),
        "",
        "Server CPU: the CPU time (all threads, from /proc) of the process answering the target's "
        "timed latency requests, per request; for a proxy its own process only, not the backend "
        "behind it. Unlike latency it changes little with other work on the machine.",
        "",
    ]
    lines += _render_cached(res, base)
    lines += ["", "**Reading.** " + _reading(res, info)]
    return "\n".join(lines)


def _render_cached(res: dict, base: dict) -> list[str]:
    c = res["cached"]
    head = f"### A compressed request served from the cache ({res['args']['doc_tokens']:,}-token document)"
    if c is None:
        return [
            head,
            "",
            f"Not measured: the engine was not ready ({res['engine'].get('engine')}).",
        ]
    rows, direct = [], summary(c["arms"][0])
    for t in c["arms"]:
        s, h = summary(t), t.last_headers
        added = t is not c["arms"][0]
        sent = h.get("x-cprs-compressed-tokens", "–") if added else "–"
        rows.append(
            [t.name, f"{s['p50']:.2f}", f"{s['p99']:.2f}"]
            + (
                [f"{s['p50'] - direct['p50']:+.2f}", f"{s['p99'] - direct['p99']:+.2f}"]
                if added
                else ["–", "–"]
            )
            + [h.get("x-cprs-original-tokens", "–") if added else "–", sent, str(len(t.problems))]
        )
    e = res["engine"]
    return [
        head,
        "",
        _report.table(
            ["request", "p50 ms", "p99 ms", "added p50 ms", "added p99 ms"]
            + ["prompt tokens", "prompt tokens forwarded", "failed checks"],
            rows,
        ),
        "",
        f"The first request (cache miss: the engine compressed the document) took "
        f"{c['first_s']:.2f} s ({len(c['miss'].problems)} failed checks); engine "
        f"`{e.get('engine_version')}`, cache {e.get('cache')}. Token counts are the proxy's "
        "(tiktoken cl100k) from its x-cprs-* headers.",
    ]


def _reading(res: dict, info: dict) -> str:
    """Plain sentences built from the numbers; each comparison states its direction."""
    pt = {t.name: summary(t) for t in res["passthrough"]}
    base, ours = pt["backend alone"], pt["cprs-proxy"]
    rps = {k: v[0] for k, v in res["rps"].items()}
    out = [
        f"In front of an instant backend, cprs-proxy added {ours['p50'] - base['p50']:.2f} ms at "
        f"p50 and {ours['p99'] - base['p99']:.2f} ms at p99 to a pass-through request"
    ]
    if "LiteLLM proxy" in pt:
        lt = pt["LiteLLM proxy"]
        out[0] += (
            f"; LiteLLM's proxy added {lt['p50'] - base['p50']:.2f} ms and "
            f"{lt['p99'] - base['p99']:.2f} ms."
        )
        ratio = rps["cprs-proxy"] / rps["LiteLLM proxy"]
        out.append(
            f"At concurrency {res['args']['concurrency']} cprs-proxy served "
            f"{rps['cprs-proxy']:,.0f} req/s and LiteLLM's proxy {rps['LiteLLM proxy']:,.0f} req/s "
            f"({ratio:.2f}×), against {rps['backend alone']:,.0f} req/s from the backend alone."
        )
    else:
        out[0] += "."
        out.append(
            f"It served {rps['cprs-proxy']:,.0f} req/s at concurrency {res['args']['concurrency']}."
        )
    for name, b in pt.items():
        if name.startswith("cprs-proxy, baseline"):
            out.append(
                f"The {name.removeprefix('cprs-proxy, ')} added {b['p50'] - base['p50']:.2f} ms "
                f"at p50 in the same rounds ({rps[name]:,.0f} req/s at concurrency "
                f"{res['args']['concurrency']})."
            )
    c = res["cached"]
    if c is not None:
        s = {t.name: summary(t) for t in c["arms"]}
        d, ctl, hit = (
            s["backend alone"],
            s["cprs-proxy, control arm"],
            s["cprs-proxy, compressed, cache hit"],
        )
        diff = hit["p50"] - ctl["p50"]
        hh = c["arms"][2].last_headers
        out.append(
            f"With the {res['args']['doc_tokens']:,}-token document, a compressed request served "
            f"from the cache (forwarding {hh.get('x-cprs-compressed-tokens', '?')} of "
            f"{hh.get('x-cprs-original-tokens', '?')} prompt tokens) "
            f"took {hit['p50']:.2f} ms at p50 ({hit['p50'] - d['p50']:+.2f} ms over "
            f"the backend alone, {hit['p99'] - d['p99']:+.2f} ms at p99), "
            f"{abs(diff):.2f} ms {'more' if diff >= 0 else 'less'} than the same document passed "
            "through the proxy uncompressed (control arm)."
        )
    bad = sum(len(t.problems) for t in res["passthrough"])
    if c is not None:
        bad += sum(len(t.problems) for t in c["arms"]) + len(c["miss"].problems)
    if bad:
        out.append(f"{bad} responses failed their checks; see the failed-checks columns.")
    out.append(
        "The client, the proxies and the backend share the same cores, so throughput is the "
        "machine's with all of them on it, not a proxy's alone."
    )
    load, cores = info.get("loadavg_1m"), info.get("cores") or 1
    if load is not None and load > 0.5 * cores:
        out.append(
            f"The machine was busy when this ran (1-min load {load:.2f} on {cores} cores): "
            "rerun on an idle machine before quoting these numbers."
        )
    return " ".join(out)
