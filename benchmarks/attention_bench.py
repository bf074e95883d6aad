"""Where the critic's attention time goes on this CPU, and what shortens it (issue 17).

    python -m benchmarks.attention_bench [--threads 2] [--write BENCHMARKS.md]

After int8 projections and torch.compile, SDPA is about half of the shipped critic's time
(BENCHMARKS.md, "Engine precisions"). Two questions decide whether a faster attention can give
the 2x that issue 17 asks for:

1. Kernels. One layer's attention at the critic's shapes (4 windows of 512 tokens behind a
   53-token prefix; 9 query heads, 3 key/value heads, head size 64), in every way torch
   offers here: SDPA with the engine's boolean mask and `enable_gqa` (what runs today); SDPA
   without a mask; SDPA with the 3 query heads of a group folded into the query length (one
   kernel call per key/value head, bigger tiles); the same in fp32; FlexAttention compiled,
   with a block mask that skips the causal layers' masked blocks; and attention written out
   (QK^T, softmax, PV) and compiled. Each against the GEMM limits of this CPU (2048x2048
   `torch.mm` in bf16 and fp32).
2. Less attention per token. The whole critic (`Compressor._score`) over one 8K document with
   windows of 512 (shipped), 384 and 256 tokens, int8+compile, against the shipped bf16 engine:
   shorter windows cut attention's O(window) cost per token but repeat the prefix more often.

Times are the least of 4 repeats of 20 calls (kernels) or of 3 rounds interleaved (critic).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from benchmarks import _report

SECTION = "attention-bench"
B, NH, NKV, HS, P, W = 4, 9, 3, 64, 53, 512  # the shipped critic's pass
T = P + W


def best_ms(fn, n: int = 20, repeats: int = 4) -> float:
    for _ in range(3):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e3


def dtype_rows(dt, limit: float, flex, manual_c, create_block_mask) -> list[list[str]]:
    """The kernel rows of one dtype."""
    import torch
    import torch.nn.functional as F

    g = NH // NKV
    rows = []
    q = torch.randn(B, NH, T, HS, dtype=dt)
    k, v = torch.randn(B, NKV, T, HS, dtype=dt), torch.randn(B, NKV, T, HS, dtype=dt)
    mask = torch.ones(B, 1, T, T, dtype=torch.bool)
    mask[-1, :, :, T - 100 :] = False  # a padded last window, as the engine sends
    folded, fmask = q.reshape(B, NKV, g * T, HS), mask.repeat(1, 1, g, 1)
    qw = q[:, :, P:].contiguous()
    causal = torch.ones(W, T, dtype=torch.bool).tril(P)[None, None].expand(B, 1, W, T)
    causal = causal.contiguous()
    bm = create_block_mask(lambda b, h, i, j: j <= i + P, None, None, W, T, device="cpu")
    name = "bf16" if dt == torch.bfloat16 else "fp32"
    bi, ca = 4 * B * NH * T * T * HS, 4 * B * NH * W * T * HS
    cases = [
        ("bidirectional", "SDPA, bool mask, enable_gqa (the engine)", bi,
         lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)),
        ("bidirectional", "SDPA, no mask", bi,
         lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True)),
        ("bidirectional", "SDPA, GQA group folded into the query length", bi,
         lambda: F.scaled_dot_product_attention(folded, k, v, attn_mask=fmask)),
        ("bidirectional", "FlexAttention, compiled", bi,
         lambda: flex(q, k, v, enable_gqa=True)),
        ("bidirectional", "written out (QK^T, softmax, PV), compiled", bi,
         lambda: manual_c(q, k, v, mask)),
        ("causal window", "SDPA, bool mask, enable_gqa (the engine)", ca,
         lambda: F.scaled_dot_product_attention(qw, k, v, attn_mask=causal, enable_gqa=True)),
        ("causal window", "FlexAttention, compiled, block mask (skips masked blocks)", ca,
         lambda: flex(qw, k, v, block_mask=bm, enable_gqa=True)),
    ]  # fmt: skip
    for layer, how, flops, fn in cases:
        ms = best_ms(fn)
        rate = flops / ms / 1e6
        rows.append(
            [layer, how, name, f"{ms:.1f}", f"{rate:.0f}", f"{limit:.0f}"]
            + [f"{100 * rate / limit:.0f}%"]
        )
    return rows


def kernels() -> list[list[str]]:
    import torch
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    from benchmarks.engine_bench import matmul_gflops

    torch.manual_seed(0)
    flex = torch.compile(flex_attention, dynamic=False)
    g = NH // NKV

    def manual(q, k, v, m):
        b, nh, t, hs = q.shape
        s = (q.reshape(b, k.shape[1], -1, hs) @ k.transpose(-1, -2)).view(b, k.shape[1], g, t, -1)
        s = (s.float() * hs**-0.5).masked_fill(~m[:, :, None], float("-inf"))
        return (s.softmax(-1).to(q.dtype).view(b, k.shape[1], -1, s.shape[-1]) @ v).view(q.shape)

    manual_c = torch.compile(manual, dynamic=True)
    rows = []
    limits = {
        d: matmul_gflops(dtype=n) for d, n in ((torch.bfloat16, "bf16"), (torch.float32, "fp32"))
    }
    for dt in (torch.bfloat16, torch.float32):
        rows += dtype_rows(dt, limits[dt], flex, manual_c, create_block_mask)
    return rows


def windows() -> list[list[str]]:
    import torch

    from benchmarks._docs import QUERY, document, hf_truncate
    from cprs_engine import prompts
    from cprs_engine.compressor import Compressor

    cfgs = [("bf16", False, 512), ("int8", True, 512), ("int8", True, 384), ("int8", True, 256)]
    control = prompts.resolve(None)
    comps = {c: Compressor.load(precision=c[0], compile=c[1], window_tokens=c[2]) for c in cfgs}
    doc = document(8192, hf_truncate(comps[cfgs[0]].tokenizer))
    prepared = {}
    for c, comp in comps.items():
        ids, _, prefix, wins = comp.prepare(QUERY, doc, control.text)
        prepared[c] = (ids, prefix, wins)
        comp._score(ids, prefix, wins, control.tag)  # compiles, warms up
    times: dict = {c: [] for c in cfgs}
    with torch.inference_mode():
        for _ in range(3):
            for c, comp in comps.items():
                ids, prefix, wins = prepared[c]
                t0 = time.perf_counter()
                comp._score(ids, prefix, wins, control.tag)
                times[c].append(time.perf_counter() - t0)
    base = min(times[cfgs[0]])
    rows = []
    for c in cfgs:
        ids, _, wins = prepared[c]
        s = min(times[c])
        precision = c[0] + ("+compile" if c[1] else "")
        rows.append(
            [precision, str(c[2]), str(len(wins)), f"{s:.2f}", f"{len(ids) / s:,.0f}"]
            + [f"{base / s:.2f}×"]
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.attention_bench", description=__doc__)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--write", metavar="FILE", help="replace the --section section of FILE")
    p.add_argument("--section", default=SECTION)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    info = _report.machine(args.threads)
    load0 = os.getloadavg()[0]
    k_rows = kernels()
    w_rows = windows()
    text = "\n".join(
        [
            "## Engine: attention kernels and window length (issue 17)",
            "",
            f"- Date: {_report.today()}",
            f"- Machine: {_report.machine_text(info)}",
            f"- Command: `{_report.command_line('benchmarks.attention_bench', argv)}`",
            f"- 1-min load {load0:.2f} at start, {os.getloadavg()[0]:.2f} at the end",
            "",
            f"One layer's attention for one pass ({B} windows of {W} tokens behind a {P}-token "
            f"prefix; {NH} query heads, {NKV} key/value heads, head size {HS}); GFLOP/s counts "
            "QK^T and PV as if dense (the causal rows too); the limit is a 2048×2048 `torch.mm` "
            "in that precision:",
            "",
            _report.table(
                ["layer", "attention", "dtype", "ms", "GFLOP/s", "mm limit GFLOP/s", "of limit"],
                k_rows,
            ),
            "",
            "The whole critic over one 8,211-token document (`Compressor._score`, least of 3 "
            "interleaved rounds), by window length:",
            "",
            _report.table(
                ["precision", "window tokens", "windows", "s", "tokens/s", "× bf16 at 512"],
                w_rows,
            ),
        ]
    )
    _report.publish(text, args.write, args.section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
