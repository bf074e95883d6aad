"""The engine benchmark's markdown: per-row derived numbers, the table, a reading from them."""

from __future__ import annotations

from benchmarks import _report

WARMUP_TOKENS = 2048  # the warm-up document's length (engine_bench imports it from here)


def derive(row: dict) -> dict:
    """Per-row numbers: throughput, ms/token, achieved GFLOP/s and its share of the matmul limit."""
    t = row["timings"]
    secs = t["model"] + t["decode"]
    n = row["input_tokens"]
    computed = n + row["windows"] * row["prefix_tokens"]  # every window repeats the prefix
    flops = row["flops_per_token"] * computed
    gflops = flops / t["model"] / 1e9
    return {
        "secs": secs,
        "tok_s": n / secs,
        "ms_tok": 1000 * secs / n,
        "limit_ms_tok": 1000 * flops / n / (row["matmul_gflops"] * 1e9),
        "gflops": gflops,
        "pct": 100 * gflops / row["matmul_gflops"],
        "peak_mb": max(row["load_peak_mb"], row["run_peak_mb"]),
        "delta_mb": row["run_peak_mb"] - row["rss_loaded_mb"],
    }


def speedups(rows: list[dict]) -> list[str]:
    """Each row's tokens/s over the first precision's at the same shape and length ("" for
    that row itself, or where there is none): the in-run comparison the issue asks for."""
    first: dict[tuple, float] = {}
    for r in rows:
        key = (r["shape"].split()[0], r.get("target_tokens", r["input_tokens"]))
        first.setdefault(key, derive(r)["tok_s"])
    out = []
    for r in rows:
        key = (r["shape"].split()[0], r.get("target_tokens", r["input_tokens"]))
        ratio = derive(r)["tok_s"] / first[key]
        out.append("" if abs(ratio - 1.0) < 1e-12 else f"{ratio:.2f}×")
    return out


def render(rows: list[dict], command: str, info: dict) -> str:
    headers = ["shape", "context tokens", "windows", "model s", "decode s", "tokenize s"]
    headers += ["tokens/s", "× first", "CPU s", "1-min load"]
    headers += ["ms/token", "ms/token at matmul limit", "GFLOP/s", "matmul limit GFLOP/s"]
    headers += ["% of limit", "process peak RSS MB", "run peak RSS MB", "run peak − loaded MB"]
    body, notes, reading = [], [], []
    ratio = dict(zip((id(r) for r in rows), speedups(rows), strict=True))
    for shape in dict.fromkeys(r["shape"] for r in rows):
        rs = [r for r in rows if r["shape"] == shape]
        ds = [derive(r) for r in rs]
        for r, d in zip(rs, ds, strict=True):
            cpu = f"{r['cpu_s']:.1f}" if "cpu_s" in r else "–"
            load = f"{r['loadavg_1m']:.2f}" if "loadavg_1m" in r else "–"
            body.append(
                [shape, f"{r['input_tokens']:,}", str(r["windows"]), f"{r['timings']['model']:.2f}"]
                + [f"{r['timings']['decode']:.2f}", f"{r['timings']['tokenize']:.2f}"]
                + [f"{d['tok_s']:,.0f}", ratio[id(r)], cpu, load, f"{d['ms_tok']:.3f}"]
                + [f"{d['limit_ms_tok']:.3f}", f"{d['gflops']:.1f}", f"{r['matmul_gflops']:.1f}"]
                + [f"{d['pct']:.0f}%", f"{d['peak_mb']:,.0f}", f"{r['run_peak_mb']:,.0f}"]
                + [f"{d['delta_mb']:,.0f}"]
            )
        r0 = rs[0]
        notes.append(
            f"- `{shape}`: {r0['desc']}; windows of {r0['window_tokens']} tokens, "
            f"{r0['windows_per_pass']} per pass, behind a {r0['prefix_tokens']}-token prefix."
        )
        reading.append(_reading(shape, rs, ds))
    caveat = _caveat(info)
    return "\n".join(
        [
            "## Engine: throughput and memory against document length",
            "",
            f"- Date: {_report.today()}",
            f"- Machine: {_report.machine_text(info)}",
            f"- Command: `{command}`",
            *notes,
            "",
            _report.table(headers, body),
            "",
            "Each row is a fresh process; for each length the precisions ran one after another. "
            "× first: tokens/s over the first precision's at the same shape and length. CPU s: "
            "the process's CPU seconds (all threads) per measured run, which other processes "
            "on the machine inflate less than wall time; 1-min load: the load average as the row finished. "
            "int8 rows' matmul limit is `torch._int_mm` on 2048×2048 int8 (tera-ops, not FLOPs). "
            "Throughput is context tokens over model + decode time "
            f"({_median_of(rows[0]['repeat'])}), after a {WARMUP_TOKENS:,}-token warm-up "
            "in the same process. GFLOP/s counts the "
            "critic's matmul FLOPs (`cprs_engine.modeling.flops_per_token` at prefix + window "
            "length, the prefix counted once per window) over model time; the limit is the best "
            "rate of 2048×2048 `torch.mm` in the row's precision (fp32 rows: fp32; bf16 rows, "
            "which run the matmuls under bf16 autocast: bf16) in the same process. "
            "Process peak RSS is the "
            "whole process's, model loading included; run peak RSS is the peak from just after "
            "the model loaded (peak mark reset) through the warm-up and the measured run.",
            "",
            "**Reading.** " + " ".join(reading) + (" " + caveat if caveat else ""),
        ]
    )


def _reading(shape: str, rs: list[dict], ds: list[dict]) -> str:
    """Plain sentences from the numbers, each judgement conditional on what they show."""
    ns = [r["input_tokens"] for r in rs]
    runs, deltas = [r["run_peak_mb"] for r in rs], [d["delta_mb"] for d in ds]
    tok_s, pct = [d["tok_s"] for d in ds], [d["pct"] for d in ds]
    out = [
        f"`{shape}` ran at {min(tok_s):,.0f}–{max(tok_s):,.0f} context tokens/s "
        f"({min(pct):.0f}–{max(pct):.0f}% of the matmul limit)."
    ]
    if len(rs) >= 3:
        a, b, r2 = _report.linear_fit(ns, [d["secs"] for d in ds])
        verdict = "grows linearly" if r2 >= 0.99 else "does not grow as a straight line"
        out.append(
            f"A least-squares line time = {a * 1e3:.4f} ms × tokens "
            f"{'+' if b >= 0 else '−'} {abs(b):.2f} s fits with R² = {r2:.4f}: time {verdict} "
            f"from {min(ns):,} to {max(ns):,} tokens"
            + (f" ({1 / a:,.0f} tokens/s at the margin)." if a > 0 else ".")
        )
    elif len(rs) == 2:
        out.append("Two lengths cannot test linearity; run three or more.")
    spread = max(runs) - min(runs)
    flat = spread <= max(0.05 * min(runs), 16.0)
    per_token = ""
    if max(ns) > min(ns):
        slope = (runs[ns.index(max(ns))] - runs[ns.index(min(ns))]) * 2**20 / (max(ns) - min(ns))
        per_token = f"; {slope:,.0f} bytes per added context token between the extremes"
    out.append(
        f"Run peak RSS {'stays flat (within 5%)' if flat else 'grows with length'}: "
        f"{min(runs):,.0f}–{max(runs):,.0f} MB (max − min {spread:,.0f} MB{per_token}), "
        f"{min(deltas):,.0f}–{max(deltas):,.0f} MB above the loaded model."
    )
    return " ".join(out)


def _caveat(info: dict) -> str:
    """The caveat that belongs with any timing: how busy the machine was."""
    load, cores = info.get("loadavg_1m"), info.get("cores") or 1
    if load is not None and load > 0.5 * cores:
        return (
            f"The machine was busy when this ran (1-min load {load:.2f} on {cores} cores): the "
            "times are inflated and noisy; rerun on an idle machine before quoting them."
        )
    return ""


def _median_of(n: int) -> str:
    if n == 1:
        return "one run"
    return f"the median of {n} runs" if n % 2 else f"the upper median of {n} runs"
