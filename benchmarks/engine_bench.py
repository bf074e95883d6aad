"""Engine throughput and peak memory against document length, on this CPU.

    python -m benchmarks.engine_bench [--write BENCHMARKS.md] [--lengths 8192,32768,131072]
                                      [--shapes tiny,default] [--precisions auto,fp32] [--quick]
                                      [--long]

Precisions: what `Compressor.load(precision=...)` takes (auto, fp32, bf16, int8), plus
`bf16-percall`, the bf16 engine as shipped before issue 17 (fp32 weights that autocast casts to
bf16 on every call; outputs identical to bf16), and a `+compile` suffix (torch.compile'd blocks,
compiled during the warm-up). For each length the precisions run one after another, so rows
compared with each other ran minutes apart, not a whole sweep apart.

`--long` measures 131072, 524288 and 1,000,000 tokens (the million-token rows; about 10 minutes
a precision on the 2-core machine): never in CI, run by hand with one precision.

Each (shape, length) runs in a fresh subprocess, so its peak RSS belongs to that length alone.
The child loads the model, notes its RSS, resets the kernel's peak-RSS mark (/proc/self/clear_refs),
compresses a short warm-up document and then the measured one, and reads the peak back: the
difference is what the document costs on top of the loaded model. Throughput counts context tokens
over model + decode time (tokenizing is reported apart). The matmul limit is timed in the same
child after the run (2048x2048 `torch.mm` in the row's precision: fp32, or bf16 where the critic
runs under bf16 autocast), so each row is compared with what its process could do. Each shape
runs at every precision asked for (`auto` is what the engine picks on this CPU).

Documents (Paul Graham essays with one needle) are cut to length in the parent with the shape's
own tokenizer and handed over as files, so building them does not touch the child's memory.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import _report
from benchmarks._docs import QUERY, document, hf_truncate
from benchmarks._engine_report import WARMUP_TOKENS, render

SECTION = "engine-bench"
DEFAULT_LENGTHS = (8192, 32768, 131072)
QUICK_LENGTHS = (2048, 4096, 8192)
LONG_LENGTHS = (131072, 524288, 1_000_000)
DEFAULT_CRITIC = Path(__file__).resolve().parent.parent / "cprs_engine" / "weights" / "default"
FALLBACK_META = {
    "num_layers": 10,
    "bidirectional_start": 6,
    "window_tokens": 512,
    "windows_per_pass": 4,
}


# --- child: one shape, one length, one process ---------------------------------------------


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> bool:
    """Reset VmHWM (and so ru_maxrss) to the current RSS; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _critic_meta() -> dict:
    path = DEFAULT_CRITIC / "critic.json"
    meta = json.loads(path.read_text()) if path.exists() else {}
    return {k: meta.get(k, v) for k, v in FALLBACK_META.items()}


def split_precision(precision: str) -> tuple[str, bool, bool]:
    """'int8+compile' -> ('int8', compile, cast weights); 'bf16-percall' -> ('bf16', False, False)."""
    name, _, suffix = precision.partition("+")
    if suffix not in ("", "compile"):
        raise SystemExit(f"unknown precision suffix {suffix!r}; expected +compile")
    if name == "bf16-percall":
        return "bf16", bool(suffix), False
    return name, bool(suffix), True


def load_shape(shape: str, precision: str = "auto"):
    """(Compressor, one-line description). `default` prefers the trained critic when it loads."""
    from cprs_engine import inference
    from cprs_engine.checkpoint import smollm2_base, tiny_random
    from cprs_engine.compressor import Compressor
    from cprs_engine.errors import CheckpointNotFound

    precision, compile_, cast = split_precision(precision)
    if shape == "tiny":
        model, tok = tiny_random("qwen2")
        c = model.config
        desc = f"tiny random qwen2 ({c.num_hidden_layers} layers, hidden {c.hidden_size})"
        if precision in ("bf16", "auto") and cast and Compressor(model, tok).precision == "bf16":
            inference.cast_blocks_bf16(model)
        if compile_:
            inference.compile_blocks(model)
        comp = Compressor(
            model, tok, version="tiny", window_tokens=512, windows_per_pass=4, precision=precision
        )
        return comp, desc
    if shape != "default":
        raise SystemExit(f"unknown shape {shape!r}; expected tiny or default")
    try:
        comp = Compressor.load(precision=precision, compile=compile_, cast_weights=cast)
        return comp, f"trained default critic via Compressor.load() ({_arch(comp.model.config)})"
    except CheckpointNotFound:
        pass
    import torch
    from transformers import AutoTokenizer

    from cprs_engine.modeling import CriticConfig, CriticModel

    meta = _critic_meta()
    state, hf_config, tok_dir = smollm2_base(meta["num_layers"])
    cfg = CriticConfig.from_hf(hf_config, bidirectional_start=meta["bidirectional_start"])
    model = CriticModel(cfg)
    model.load_state_dict(state, strict=False)  # heads stay random: speed does not depend on them
    model.lm_head.weight = model.model.embed_tokens.weight
    del state
    model = model.to(torch.float32).eval()
    if compile_:
        inference.compile_blocks(model)
    comp = Compressor(
        model,
        AutoTokenizer.from_pretrained(tok_dir),
        version="bench-base",
        window_tokens=meta["window_tokens"],
        windows_per_pass=meta["windows_per_pass"],
        precision=precision,
    )
    return comp, f"default critic's shape, SmolLM2 base, untrained heads ({_arch(cfg)})"


def _arch(cfg) -> str:
    return (
        f"{cfg.num_hidden_layers} layers from {cfg.bidirectional_start} bidirectional, "
        f"hidden {cfg.hidden_size}"
    )


def matmul_gflops(n: int = 2048, loops: int = 4, rounds: int = 3, dtype: str = "fp32") -> float:
    """Best of `rounds` timings of `loops` n x n matmuls in `dtype` (fp32 or bf16): this process's
    dense-compute limit."""
    import torch

    if dtype == "int8":  # int8 x int8 -> int32, as the int8 critic's projections run
        a = torch.randint(-127, 128, (n, n), dtype=torch.int8)
        b = torch.randint(-127, 128, (n, n), dtype=torch.int8).t()

        def mm():
            torch._int_mm(a, b)
    else:
        dt = torch.bfloat16 if dtype == "bf16" else torch.float32
        a, b = torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)
        out = torch.empty(n, n, dtype=dt)

        def mm():
            torch.mm(a, b, out=out)

    mm()
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(loops):
            mm()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 * loops / best / 1e9


def child(
    shape: str, doc_path: str, warmup_path: str, rounds: int, repeat: int = 1, precision="auto"
) -> dict:
    import torch

    from cprs_engine import prompts
    from cprs_engine.modeling import flops_per_token

    doc = Path(doc_path).read_text(encoding="utf-8")
    warm = Path(warmup_path).read_text(encoding="utf-8")
    comp, desc = load_shape(shape, precision)
    label = comp.precision + precision[len(precision.partition("+")[0]) :]
    if precision.startswith("bf16-percall"):
        label = precision
    gc.collect()
    load_peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_loaded_kb = _status_kb("VmRSS")
    reset = _reset_peak()
    cpu0 = time.process_time()
    comp.compress(QUERY, warm)
    warm_cpu = time.process_time() - cpu0
    cpu0 = time.process_time()
    runs = [comp.compress(QUERY, doc) for _ in range(max(1, repeat))]
    cpu_s = (time.process_time() - cpu0) / max(1, repeat)
    run_peak_kb = _status_kb("VmHWM")
    runs.sort(key=lambda r: r.timings["model"] + r.timings["decode"])
    res = runs[len(runs) // 2]  # the median run (the only one when repeat is 1)
    _, _, prefix, windows = comp.prepare(QUERY, doc, prompts.resolve(None).text)
    cfg = comp.model.config
    seq = len(prefix) + comp.window_tokens
    return {
        "shape": f"{shape} {label}",
        "precision": label,
        "cpu_s": cpu_s,  # process CPU seconds per measured run (all threads), for a busy machine
        "warmup_cpu_s": warm_cpu,
        "loadavg_1m": os.getloadavg()[0],
        "desc": desc,
        "input_tokens": res.input_tokens,
        "output_tokens": res.output_tokens,
        "timings": res.timings,
        "repeat": len(runs),
        "windows": len(windows),
        "prefix_tokens": len(prefix),
        "window_tokens": comp.window_tokens,
        "windows_per_pass": comp.windows_per_pass,
        "flops_per_token": flops_per_token(cfg, seq_len=seq),
        "rss_loaded_mb": rss_loaded_kb / 1024,
        "load_peak_mb": load_peak_kb / 1024,
        "run_peak_mb": run_peak_kb / 1024,
        "peak_reset": reset,
        "threads": torch.get_num_threads(),
        "matmul_gflops": matmul_gflops(rounds=rounds, dtype=comp.precision),
        "matmul_dtype": comp.precision,
    }


# --- parent: documents, subprocesses, the report --------------------------------------------


def tokenizer_for(shape: str):
    from transformers import AutoTokenizer

    from cprs_engine.checkpoint import qwen2_tokenizer_dir, smollm2_base

    if shape == "tiny":
        return AutoTokenizer.from_pretrained(qwen2_tokenizer_dir())
    return AutoTokenizer.from_pretrained(smollm2_base(1)[2])  # converts the GGUF once, if needed


def measure(
    shapes: list[str], lengths: list[int], rounds: int, repeat: int, precisions: list[str]
) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="engine-bench-") as tmp:
        for shape in shapes:
            cut = hf_truncate(tokenizer_for(shape))
            warm = Path(tmp, f"{shape}-warmup.txt")
            warm.write_text(document(WARMUP_TOKENS, cut), encoding="utf-8")
            for n in lengths:
                doc = Path(tmp, f"{shape}-{n}.txt")
                doc.write_text(document(n, cut), encoding="utf-8")
            for n in lengths:  # precisions interleaved per length: compared rows run close
                for precision in precisions:
                    doc = Path(tmp, f"{shape}-{n}.txt")
                    print(f"[engine-bench] {shape} {precision} {n} tokens ...", file=sys.stderr)
                    argv = [sys.executable, "-m", "benchmarks.engine_bench", "--child", shape]
                    argv += [str(doc), str(warm), "--rounds", str(rounds), "--repeat", str(repeat)]
                    argv += ["--precisions", precision]
                    out = subprocess.run(argv, capture_output=True, text=True, check=False)
                    if out.returncode != 0:
                        raise SystemExit(f"child {shape}/{n} failed:\n{out.stderr[-4000:]}")
                    row = json.loads(out.stdout.strip().splitlines()[-1])
                    row["target_tokens"] = n
                    rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.engine_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--write", metavar="FILE", help="replace the engine-bench section of FILE")
    p.add_argument(
        "--section",
        default=None,
        help=f"the marked section --write replaces (default {SECTION}; with --long, "
        f"{SECTION}-long, so the million-token rows sit beside the main table)",
    )
    p.add_argument("--lengths", help="comma-separated context lengths in tokens")
    p.add_argument("--shapes", default=None, help="comma-separated: tiny,default")
    p.add_argument("--quick", action="store_true", help="smoke run: 2K/4K/8K, tiny only")
    p.add_argument(
        "--long",
        action="store_true",
        help="128K, 512K and 1M tokens (by hand, one precision: ~10 minutes each on 2 cores)",
    )
    p.add_argument("--rounds", type=int, default=3, help="matmul-limit timing rounds")
    p.add_argument("--repeat", type=int, default=1, help="measured runs per length (median kept)")
    p.add_argument(
        "--precisions",
        default="auto,fp32",
        help="comma-separated critic precisions: auto (the engine's pick here), fp32, bf16, "
        "int8, bf16-percall (bf16 as shipped before issue 17); a +compile suffix compiles",
    )
    p.add_argument("--child", nargs=3, metavar=("SHAPE", "DOC", "WARMUP"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        row = child(*args.child, rounds=args.rounds, repeat=args.repeat, precision=args.precisions)
        print(json.dumps(row))
        return 0
    default = LONG_LENGTHS if args.long else QUICK_LENGTHS if args.quick else DEFAULT_LENGTHS
    lengths = args.lengths or ",".join(map(str, default))
    shapes = args.shapes or ("tiny" if args.quick else "default" if args.long else "tiny,default")
    info = _report.machine()
    lengths_n = [int(x) for x in lengths.split(",")]
    from cprs_engine.compressor import resolve_precision

    def resolved(p: str) -> str:
        name, _, suffix = p.partition("+")
        if name == "bf16-percall":
            return p
        return resolve_precision(name, "cpu") + (f"+{suffix}" if suffix else "")

    precisions = list(dict.fromkeys(resolved(x) for x in args.precisions.split(",")))
    rows = measure(shapes.split(","), lengths_n, args.rounds, args.repeat, precisions)
    info["torch_threads"] = rows[0]["threads"]
    text = render(rows, _report.command_line("benchmarks.engine_bench", argv), info)
    section = args.section or (f"{SECTION}-long" if args.long else SECTION)
    _report.publish(text, args.write, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
