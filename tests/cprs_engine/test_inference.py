"""Runtime transformations for CPU inference (inference.py): int8 projections and bf16 weights,
on tiny random critics. What must hold whatever the weights: int8 stays close to fp32, a row's
result does not depend on the rows beside it, the same input gives the same output, and bf16
weights under autocast change nothing at all."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from cprs_engine import inference
from cprs_engine.checkpoint import tiny_random
from cprs_engine.compressor import Compressor, cpu_has_bf16, cpu_has_int8_mm, resolve_precision

pytestmark = pytest.mark.skipif(not cpu_has_int8_mm(), reason="torch._int_mm missing on this CPU")

TEXT = (
    "Paris is the capital of France. The Eiffel Tower was finished in 1889! "
    "One of the special magic numbers for quiet-lake is: 4821937. Mount Fuji is in Japan.\n\n"
) * 20
QUERY = "What is the special magic number for quiet-lake?"


def test_int8_linear_is_close_to_the_float_one():
    torch.manual_seed(0)
    lin = nn.Linear(96, 40, bias=True)
    x = torch.randn(3, 17, 96)
    want = lin(x).detach()
    got = inference.Int8Linear(lin.weight, lin.bias)(x)
    assert got.shape == want.shape and got.dtype == torch.float32
    rel = (got - want).norm() / want.norm()
    assert rel < 0.02, f"relative error {rel:.4f}"


def test_int8_rows_do_not_depend_on_their_neighbours():
    """Per-row activation scales and integer accumulation: a row alone, or batched with rows of
    a hundred times its size, gives the same bits (the engine batches other documents' windows)."""
    torch.manual_seed(1)
    lin = inference.Int8Linear(torch.randn(64, 32))
    row = torch.randn(1, 32)
    batch = torch.cat([torch.randn(20, 32) * 100, row, torch.randn(7, 32)])
    assert torch.equal(lin(row)[0], lin(batch)[20])


def test_fused_projections_equal_separate_ones():
    torch.manual_seed(2)
    a, b = nn.Linear(32, 16, bias=False), nn.Linear(32, 8, bias=True)
    fused = inference.Int8Linear.fuse(a, b)
    x = torch.randn(5, 32)
    ya, yb = fused(x).split([16, 8], dim=-1)
    assert torch.equal(ya, inference.Int8Linear(a.weight)(x))
    assert torch.equal(yb, inference.Int8Linear(b.weight, b.bias)(x))


@pytest.mark.parametrize("family", ["qwen2", "llama"])  # qwen2 has q/k/v biases, llama none
def test_quantized_model_tracks_the_fp32_one(family):
    model, _ = tiny_random(family, seed=3)
    q = inference.quantize_int8(copy.deepcopy(model))
    assert inference.is_quantized(q) and not inference.is_quantized(model)
    assert not any(isinstance(m, nn.Linear) for layer in q.model.layers for m in layer.modules())
    ids = torch.randint(0, 1000, (2, 40))
    ids[1, :8] = ids[0, :8]  # the shared prompt + query prefix
    mask = torch.ones_like(ids)
    mask[1, 30:] = 0
    with torch.inference_mode():
        want = model(ids, mask, shared_prefix=8)
        got = q(ids, mask, shared_prefix=8)
    rel = (got - want).norm() / want.norm()
    assert rel < 0.05, f"relative error {rel:.4f}"


def test_int8_compressor_is_deterministic_and_leaves_the_callers_model_alone():
    model, tok = tiny_random("qwen2", seed=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    c = Compressor(model, tok, window_tokens=64, windows_per_pass=3, precision="int8")
    assert c.precision == "int8" and c.engine_version.endswith(".int8")
    assert c.model is not model and inference.is_quantized(c.model)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    a, b = c.score(QUERY, TEXT), c.score(QUERY, TEXT)
    assert np.array_equal(a.scores, b.scores) and np.array_equal(a.tags, b.tags)
    assert np.array_equal(a.support, b.support)
    ra, rb = c.compress(QUERY, TEXT), c.compress(QUERY, TEXT)
    assert ra.compressed == rb.compressed and ra.spans == rb.spans
    # windows per pass: the projections are row-exact (test above); attention over a padded
    # batch rounds a little differently, as in every precision (test_compressor)
    one = Compressor(c.model, tok, window_tokens=64, windows_per_pass=1, precision="int8").score(
        QUERY, TEXT
    )
    assert np.abs(one.scores - a.scores).max() < 0.02 and np.mean(one.tags == a.tags) > 0.98
    f = Compressor(model, tok, window_tokens=64, windows_per_pass=3, precision="fp32")
    ref = f.score(QUERY, TEXT)
    assert np.abs(ref.scores - a.scores).max() < 0.1
    assert np.mean(ref.tags == a.tags) > 0.95


@pytest.mark.skipif(not cpu_has_bf16(), reason="no native bf16 on this CPU")
def test_bf16_weights_under_autocast_change_no_output():
    model, tok = tiny_random("qwen2", seed=5)
    percall = Compressor(model, tok, window_tokens=64, windows_per_pass=3, precision="bf16")
    cast = inference.cast_blocks_bf16(copy.deepcopy(model))
    assert cast.model.layers[0].mlp.up_proj.weight.dtype == torch.bfloat16
    assert cast.cls_head.weight.dtype == torch.float32  # heads and embedding stay fp32
    pre = Compressor(cast, tok, window_tokens=64, windows_per_pass=3, precision="bf16")
    a, b = percall.score(QUERY, TEXT), pre.score(QUERY, TEXT)
    assert np.array_equal(a.scores, b.scores) and np.array_equal(a.support, b.support)
    assert np.array_equal(a.tags, b.tags)


def test_int8_is_a_precision_of_its_own():
    assert resolve_precision("int8", "cpu") == "int8"
    assert resolve_precision("int8", "cuda") == "bf16"  # CUDA weights are bf16 (checkpoint.load)
