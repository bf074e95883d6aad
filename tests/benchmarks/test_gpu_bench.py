"""make bench-gpu's parts: the engine's pass schedule on small models (CPU), and the CUDA path
itself (bf16, SDPA, the shared-prefix forward, the shipped critic) where CUDA exists."""

from __future__ import annotations

import json
import math

import pytest
import torch

from benchmarks import gpu_bench
from cprs_engine.modeling import CriticConfig, CriticModel

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


def small_model(device="cpu", dtype=torch.float32, **kw) -> CriticModel:
    cfg = CriticConfig(
        vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, bidirectional_start=2,
        max_position_embeddings=2048, **kw,
    )  # fmt: skip
    torch.manual_seed(0)
    return CriticModel(cfg).to(device=device, dtype=dtype).eval()


class Recording(torch.nn.Module):
    """Wraps a critic and records every forward call's shapes, masks and prefix."""

    def __init__(self, model):
        super().__init__()
        self.inner, self.config, self.calls = model, model.config, []

    def forward(self, ids, mask, *, shared_prefix=0):
        self.calls.append((tuple(ids.shape), mask.clone(), shared_prefix))
        return self.inner(ids, mask, shared_prefix=shared_prefix)

    def boundary_logits(self, h):
        return self.inner.boundary_logits(h)

    def critic_scores(self, h, tag, outside):
        return self.inner.critic_scores(h, tag, outside)


@pytest.mark.parametrize("n_tokens", [200, 192, 31])
def test_a_document_runs_as_the_engine_schedules_it(n_tokens):
    model = Recording(small_model())
    critic = gpu_bench.Critic("t", "test", model, window=32, per_pass=3)
    windows, passes = gpu_bench.run_document(critic, n_tokens, prefix=8)
    assert windows == math.ceil(n_tokens / 32)
    assert passes == len(model.calls) == math.ceil(windows / 3)
    assert all(c[0][0] <= 3 and c[0][1] == 8 + 32 and c[2] == 8 for c in model.calls)
    # every context token is scored exactly once: the masks past the prefix add up to n_tokens
    assert sum(int(c[1][:, 8:].sum()) for c in model.calls) == n_tokens
    assert all(bool(c[1][:, :8].all()) for c in model.calls)


def test_a_row_reports_what_it_measured():
    critic = gpu_bench.Critic("t", "test", small_model(), window=32, per_pass=2)
    row = gpu_bench.measure(critic, 100, limit_tflops=1.0, device="cpu")
    assert (row.tokens, row.windows, row.passes) == (100, 4, 2)
    assert row.tokens_per_s == pytest.approx(100 / row.seconds)
    assert row.share == pytest.approx(row.tflops / 1.0)
    text = gpu_bench.render([row], [critic], {"gpu": "x", "torch": "t", "limit_tflops": 1.0}, "c")
    assert "| t | 100 | 4 | 2 |" in text


def test_the_7b_shape_is_the_released_one():
    cfg = CriticConfig()
    assert (cfg.family, cfg.num_hidden_layers, cfg.hidden_size) == ("qwen2", 28, 3584)
    assert (
        cfg.layer_types.count("bidirectional") == 7
        and cfg.layer_types[-7:] == ["bidirectional"] * 7
    )


def test_data_sheet_peaks_match_gpu_names():
    assert gpu_bench.spec_tflops("NVIDIA H100 80GB HBM3 SXM") == 989.0
    assert gpu_bench.spec_tflops("NVIDIA H100 PCIe") == 756.0
    assert gpu_bench.spec_tflops("NVIDIA GeForce RTX 4090") is None


@cuda
def test_bf16_sdpa_forward_on_cuda_matches_fp32():
    """The CUDA path: bf16 weights, SDPA attention, the shared-prefix forward; its hidden states
    agree with fp32 on CPU, and shared-prefix agrees with the plain forward."""
    cpu, gpu = small_model(), small_model("cuda", torch.bfloat16)
    ids = torch.randint(0, 512, (3, 72))
    ids[:, :8] = ids[:1, :8]
    mask = torch.ones_like(ids)
    mask[-1, 50:] = 0
    with torch.inference_mode():
        ref = cpu(ids, mask, shared_prefix=8)
        out = gpu(ids.cuda(), mask.cuda(), shared_prefix=8)
        plain = gpu(ids.cuda(), mask.cuda())
    assert out.dtype == torch.bfloat16 and out.device.type == "cuda"
    keep = mask.bool()
    cos = torch.nn.functional.cosine_similarity(out.float().cpu()[keep], ref[keep], dim=-1)
    assert cos.min() > 0.98
    assert torch.allclose(out.float(), plain.float(), atol=0.1)


@cuda
def test_the_shipped_critic_compresses_on_cuda():
    from benchmarks._docs import QUERY, document, hf_truncate
    from cprs_engine.compressor import Compressor

    comp = Compressor.load(device="cuda")
    assert next(comp.model.parameters()).dtype == torch.bfloat16
    doc = document(2000, hf_truncate(comp.tokenizer))
    result = comp.compress(QUERY, doc)
    assert result.input_tokens >= 2000 and 0 < result.output_tokens < result.input_tokens
    assert "7421983" in result.compressed  # the needle survives


@cuda
def test_bench_gpu_runs_end_to_end_on_cuda(tmp_path):
    out = tmp_path / "rows.json"
    code = gpu_bench.main(["--critics", "shipped", "--shipped-lengths", "8192", "--json", str(out)])
    assert code == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["tokens"] == 8192 and row["peak_mem_gib"] > 0 and 0 < row["share"] < 1.5
