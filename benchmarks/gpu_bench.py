"""The critic on a GPU: context tokens/s, peak memory and share of the bf16 matmul limit.

    python -m benchmarks.gpu_bench [--write BENCHMARKS.md] [--critics shipped,7b]
                                   [--lengths 8192,...] [--shipped-lengths ...] [--json PATH]

Two critics, on CUDA in bf16 (attention through SDPA, as the engine runs them there):
- `shipped`: the shipped critic (`Compressor.load`): its trained weights where its base model
  package is installed, else its exact shape with random weights (said in the row: the speed
  depends on the shape only). Windows and windows per pass from its critic.json.
- `7b`: the released QwenLong-CPRS-7B's shape (`CriticConfig()`: Qwen2, 28 layers, the top 7
  bidirectional, hidden 3584) with random weights, the window the engine gives a 7B checkpoint
  (`checkpoint._load_hf`: 8,192 - 512 tokens) and the engine's default 4 windows per pass.

What is timed is the engine's GPU work for a document of L tokens, pass by pass as
`Compressor.score_pass` runs it: ceil(L / window) windows, `windows_per_pass` at a time, each
row prefix + window tokens with the shared-prefix forward, then the boundary and critic heads.
Token ids are random (speed does not depend on them); tokenizing and decoding run on the CPU and
are measured by `make bench-engine`. Peak memory is `torch.cuda.max_memory_allocated` over the
run, weights included. The limit is the best rate of 8192x8192 bf16 `torch.mm` on the same GPU;
FLOPs are `cprs_engine.modeling.flops_per_token` at prefix + window length.

Needs only torch (CUDA build) and this repository; without CUDA it exits 2 with a message.
tests/benchmarks/test_gpu_bench.py runs its parts on small models (on CUDA where there is one).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks import _report

SECTION = "gpu-bench"
LENGTHS = (8192, 16384, 32768, 65536, 131072)
SHIPPED_LENGTHS = (*LENGTHS, 262144, 524288, 1048576)
PREFIX_TOKENS = 64  # control prompt + query; the engine bench measures 53 for its query
CRITIC_JSON = Path(__file__).resolve().parent.parent / "cprs_engine" / "weights" / "default"
# SmolLM2-135M-Instruct, the shipped critic's base (its config.json), for a random-weights
# stand-in where the base model package is not installed.
SMOLLM2_135M = dict(
    family="llama",
    vocab_size=49152,
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    rope_theta=100000.0,
    max_position_embeddings=8192,
    tie_word_embeddings=True,
)
# Dense bf16 tensor-core peaks from the vendor's data sheets (no sparsity), TFLOP/s.
SPEC_BF16_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 PCIe": 756.0, "A100": 312.0}


@dataclass
class Critic:
    name: str
    desc: str
    model: object
    window: int
    per_pass: int


@dataclass
class Row:
    critic: str
    tokens: int
    windows: int
    passes: int
    seconds: float
    tokens_per_s: float
    peak_mem_gib: float
    tflops: float
    limit_tflops: float
    share: float


def shipped_critic(device: str) -> Critic:
    import torch

    from cprs_engine.compressor import Compressor
    from cprs_engine.modeling import CriticConfig, CriticModel

    meta = json.loads((CRITIC_JSON / "critic.json").read_text())
    window, per_pass = meta["window_tokens"], meta["windows_per_pass"]
    try:
        comp = Compressor.load(device=device)
        return Critic("shipped", "shipped critic, trained weights", comp.model, window, per_pass)
    except Exception as exc:  # the base model package (or gguf) is absent on this machine
        reason = f"{type(exc).__name__}: {str(exc)[:80]}"
    cfg = CriticConfig(
        **{**SMOLLM2_135M, "num_hidden_layers": meta["num_layers"]},
        bidirectional_start=meta["bidirectional_start"],
    )
    model = _build(CriticModel, cfg, device, torch.bfloat16 if device != "cpu" else torch.float32)
    desc = f"shipped critic's shape, random weights (trained weights did not load: {reason})"
    return Critic("shipped", desc, model, window, per_pass)


def released_7b(device: str) -> Critic:
    import torch

    from cprs_engine.modeling import CriticConfig, CriticModel

    cfg = CriticConfig()  # the released 7B's shape
    window = min(8192, cfg.max_position_embeddings) - 512  # as checkpoint._load_hf sets it
    model = _build(CriticModel, cfg, device, torch.bfloat16 if device != "cpu" else torch.float32)
    return Critic("7b", "QwenLong-CPRS-7B shape, random weights", model, window, 4)


def _build(cls, cfg, device: str, dtype):
    import torch

    torch.manual_seed(0)
    with torch.device(device):
        model = cls(cfg)
    return model.to(dtype).eval()


def _arch(cfg) -> str:
    return (
        f"{cfg.family}, {cfg.num_hidden_layers} layers from {cfg.bidirectional_start} "
        f"bidirectional, hidden {cfg.hidden_size}"
    )


def run_document(critic: Critic, n_tokens: int, prefix: int = PREFIX_TOKENS) -> tuple[int, int]:
    """The engine's forward passes for an `n_tokens` document; returns (windows, passes)."""
    import torch

    model = critic.model
    device = next(model.parameters()).device
    vocab = model.config.vocab_size
    windows = math.ceil(n_tokens / critic.window)
    passes = 0
    gen = torch.Generator(device="cpu").manual_seed(n_tokens)
    prefix_ids = torch.randint(0, vocab, (1, prefix), generator=gen)
    with torch.inference_mode():
        for start in range(0, windows, critic.per_pass):
            rows = min(critic.per_pass, windows - start)
            last = n_tokens - (start + rows - 1) * critic.window  # the last window may be short
            ids = torch.randint(0, vocab, (rows, prefix + critic.window), generator=gen)
            ids[:, :prefix] = prefix_ids
            mask = torch.ones_like(ids)
            if last < critic.window:
                mask[-1, prefix + last :] = 0
            hidden = model(ids.to(device), mask.to(device), shared_prefix=prefix)[:, prefix:]
            model.boundary_logits(hidden).argmax(-1).cpu()
            model.critic_scores(hidden, 1, 2).float().cpu()
            passes += 1
    return windows, passes


def matmul_tflops(device: str, n: int = 8192, loops: int = 10) -> float:
    """Best of 3 timings of `loops` n x n bf16 matmuls: this GPU's dense bf16 limit in practice."""
    import torch

    dtype = torch.bfloat16 if device != "cpu" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(3):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(loops):
            torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 * loops / best / 1e12


def _sync(device: str) -> None:
    import torch

    if device != "cpu":
        torch.cuda.synchronize()


def measure(critic: Critic, n_tokens: int, limit_tflops: float, device: str) -> Row:
    import torch

    from cprs_engine.modeling import flops_per_token

    run_document(critic, min(n_tokens, critic.window * critic.per_pass))  # warm-up
    if device != "cpu":
        torch.cuda.reset_peak_memory_stats()
    _sync(device)
    t0 = time.perf_counter()
    windows, passes = run_document(critic, n_tokens)
    _sync(device)
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if device != "cpu" else float("nan")
    flops = flops_per_token(critic.model.config, PREFIX_TOKENS + critic.window) * n_tokens
    tflops = flops / seconds / 1e12
    return Row(
        critic.name, n_tokens, windows, passes, seconds, n_tokens / seconds, peak, tflops,
        limit_tflops, tflops / limit_tflops,
    )  # fmt: skip


def spec_tflops(gpu_name: str) -> float | None:
    for key, value in SPEC_BF16_TFLOPS.items():
        if all(part in gpu_name for part in key.split()):
            return value
    return None


def render(rows: list[Row], critics: list[Critic], info: dict, command: str) -> str:
    lines = [
        "## GPU: the critic on CUDA (bf16, SDPA)",
        "",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- GPU: {info['gpu']}; torch {info['torch']}; matmul limit "
        f"{info['limit_tflops']:.0f} TFLOP/s measured (8192x8192 bf16 mm)"
        + (f", {info['spec_tflops']:.0f} on the data sheet" if info.get("spec_tflops") else ""),
        f"- Command: `{command}`",
    ]
    for c in critics:
        lines.append(
            f"- `{c.name}`: {c.desc} ({_arch(c.model.config)}); windows of {c.window} tokens, "
            f"{c.per_pass} per pass, behind a {PREFIX_TOKENS}-token prefix."
        )
    lines += [
        "",
        "| critic | context tokens | windows | passes | s | tokens/s | peak GPU memory GiB "
        "| TFLOP/s | % of measured bf16 limit |",
        "| :--- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r.critic} | {r.tokens:,} | {r.windows:,} | {r.passes:,} | {r.seconds:.2f} "
            f"| {r.tokens_per_s:,.0f} | {r.peak_mem_gib:.2f} | {r.tflops:.1f} | {r.share:.0%} |"
        )
    lines += [
        "",
        "Each row times the engine's forward passes for one document (random token ids; "
        "tokenizing and decoding are CPU work, in the engine benchmark) after a one-pass warm-up.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_bench", description=__doc__)
    p.add_argument("--critics", default="shipped,7b")
    p.add_argument("--lengths", default=",".join(map(str, LENGTHS)), help="for every critic")
    p.add_argument(
        "--shipped-lengths", default=",".join(map(str, SHIPPED_LENGTHS)), help="shipped only"
    )
    p.add_argument("--device", default="cuda", help="cuda or cuda:N")
    p.add_argument("--write", help="put the table in this Markdown file (BENCHMARKS.md)")
    p.add_argument("--json", help="write the rows as JSON here")
    args = p.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("gpu_bench: no CUDA device here; nothing measured", file=sys.stderr)
        return 2
    limit = matmul_tflops(args.device)
    gpu = torch.cuda.get_device_name(args.device)
    info = {"gpu": gpu, "torch": torch.__version__, "limit_tflops": limit}
    info["spec_tflops"] = spec_tflops(gpu)
    lengths = {
        "shipped": [int(x) for x in args.shipped_lengths.split(",")],
        "7b": [int(x) for x in args.lengths.split(",")],
    }
    rows: list[Row] = []
    critics: list[Critic] = []
    for name in args.critics.split(","):
        critic = shipped_critic(args.device) if name == "shipped" else released_7b(args.device)
        critics.append(critic)
        for n in lengths[name]:
            rows.append(measure(critic, n, limit, args.device))
            r = rows[-1]
            print(f"{r.critic} {r.tokens:>9,} tokens  {r.seconds:7.2f} s  {r.tokens_per_s:>10,.0f} "
                  f"tok/s  {r.peak_mem_gib:6.2f} GiB  {r.share:.0%} of limit", flush=True)  # fmt: skip
        critic.model = critic.model.to("meta")  # free its memory before the next critic
        torch.cuda.empty_cache()
    text = render(rows, critics, info, _report.command_line("benchmarks.gpu_bench", argv))
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"info": info, "rows": [asdict(r) for r in rows]}))
    if args.write:
        _report.replace_section(args.write, SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
