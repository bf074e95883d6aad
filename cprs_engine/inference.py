"""Runtime transformations of a loaded critic for CPU inference: whatever weights are shipped.

    cast_blocks_bf16(model) every Block's projection weights -> bf16, in place. Under bf16
                           autocast this gives bit-identical outputs (autocast casts the same
                           fp32 weights to the same bf16 values, on every call) without the cast:
                           a quarter of the shipped critic's CPU time was those copies.
    compile_blocks(model)  torch.compile each Block (dynamic shapes): fuses the norms, rotary,
                           SiLU and (int8) the quantize/dequantize steps; a one-time compile
                           of tens of seconds on first use
    quantize_int8(model)   every Block's projections -> Int8Linear, in place:
                           q|k|v fused into one `qkv`, gate|up into one `gate_up`, o and down alone
    Int8Linear             y = (x_q @ W_q^T) * s_x * s_w (+ b)
                           W_q: int8, one scale per output channel (absmax / 127), made once
                           x_q: int8, one scale per row (token), made per call (absmax / 127)

Why int8: on a CPU with AVX512-VNNI an int8 dot product does twice the multiply-adds of a bf16
one per instruction (`vpdpbusd` against `vdpbf16ps`); `torch._int_mm` runs the int8 x int8 ->
int32 product through oneDNN (measured here 1.3-1.5x a bf16 `F.linear` at the critic's shapes).
What limits the gain (profiled on the 2-core AMD EPYC, BENCHMARKS.md): the projections were
only ~23% of the bf16 engine's time; the rest was autocast's weight copies (~26%, gone with
`cast_blocks_bf16`), eager elementwise ops (norms, rotary, SiLU, and for int8 the quantize and
dequantize passes: each a trip through memory) and attention. Compiled, int8's time is ~55%
SDPA (CPU flash attention over 565-token rows runs at ~70 GFLOP/s in bf16, a sixth of a GEMM's
rate, and attention is 15% of the FLOPs) and ~30% the int8 products themselves.

Why per-row activation scales, not the per-tensor ones of `torch.ao`'s `quantize_dynamic`: a
row's scale then depends on that token alone, so a window's scores do not depend on which other
windows (of this or another document: the engine scheduler batches them) or how much padding
share its forward pass. Same input, same output, whatever the batch.

Everything else stays as it was: embeddings, norms, rotary, attention (SDPA, in bf16 where the
CPU has it natively, else fp32), the residual stream in fp32, and the heads (cls_head and the
few LM-head rows the critic reads) in fp32. The weights' fp32 copies are dropped from the
blocks, so the loaded model is smaller, too.
"""

from __future__ import annotations

import torch
from torch import nn

QMAX = 127.0  # symmetric int8: [-127, 127], so negating never overflows


def quantize_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 (N, K), fp32 scales (N,)): each row by its own absmax / 127."""
    w = w.detach().float()
    scale = w.abs().amax(dim=1).clamp(min=1e-12) / QMAX  # (N,)
    q = torch.round(w / scale[:, None]).clamp_(-QMAX, QMAX).to(torch.int8)  # (N, K)
    return q, scale


class Int8Linear(nn.Module):
    """An inference-only Linear with int8 weights and per-token int8 activations."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        q, scale = quantize_rows(weight)
        self.out_features, self.in_features = q.shape
        self.register_buffer("weight_q", q)  # (N, K) int8
        self.register_buffer("weight_scale", scale)  # (N,) fp32
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())

    @classmethod
    def fuse(cls, *linears: nn.Linear) -> Int8Linear:
        """One Int8Linear for several Linears over the same input, outputs concatenated."""
        weight = torch.cat([m.weight for m in linears], dim=0)
        biases = [m.bias for m in linears]
        if all(b is None for b in biases):
            bias = None
        else:
            bias = torch.cat(
                [
                    b if b is not None else torch.zeros(m.out_features, device=m.weight.device)
                    for m, b in zip(linears, biases, strict=True)
                ]
            )
        return cls(weight, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, self.in_features).float()  # (M, K)
        s = x2.abs().amax(dim=1, keepdim=True).clamp_(min=1e-12) / QMAX  # (M, 1)
        xq = torch.round(x2 / s).to(torch.int8)  # (M, K); |x / s| <= 127 by construction
        # oneDNN takes the weight as a transposed view of the (N, K) buffer (measured faster
        # than a contiguous (K, N) copy).
        y = torch._int_mm(xq, self.weight_q.t())  # (M, N) int32
        y = (y * s).mul_(self.weight_scale)  # (M, N) fp32
        if self.bias is not None:
            y.add_(self.bias)
        return y.view(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def is_quantized(model: nn.Module) -> bool:
    return any(isinstance(m, Int8Linear) for m in model.modules())


def cast_blocks_bf16(model: nn.Module) -> nn.Module:
    """The Blocks' Linear weights (not the heads, not the tied embedding) to bf16, in place."""
    for layer in model.model.layers:
        for m in layer.modules():
            if isinstance(m, nn.Linear):
                m.to(torch.bfloat16)
    return model


def compile_blocks(model: nn.Module) -> nn.Module:
    """Each Block wrapped in torch.compile (dynamic shapes: windows and prefixes vary), in place."""
    for i, layer in enumerate(model.model.layers):
        model.model.layers[i] = torch.compile(layer, dynamic=True)
    return model


def quantize_int8(model: nn.Module) -> nn.Module:
    """Replace every Block's projections with fused Int8Linears, in place; returns `model`.

    The model must be fp32 on CPU (as `checkpoint.load` leaves it there). The heads and the
    embedding stay fp32: they are a few percent of the work and the critic reads them directly.
    """
    p = next(model.parameters())
    assert p.device.type == "cpu" and p.dtype == torch.float32, "int8 runs on an fp32 CPU model"
    for layer in model.model.layers:
        attn, mlp = layer.self_attn, layer.mlp
        attn.qkv = Int8Linear.fuse(attn.q_proj, attn.k_proj, attn.v_proj)
        attn.o_proj = Int8Linear(attn.o_proj.weight, attn.o_proj.bias)
        del attn.q_proj, attn.k_proj, attn.v_proj
        mlp.gate_up = Int8Linear.fuse(mlp.gate_proj, mlp.up_proj)
        mlp.down_proj = Int8Linear(mlp.down_proj.weight)
        del mlp.gate_proj, mlp.up_proj
    return model
