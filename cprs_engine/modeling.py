"""The CPRS critic: a decoder LM with hybrid attention, a boundary head and the LM head as critic.

Reads top to bottom, one file (the transformers "one model, one file" habit):

    CriticConfig        hyperparameters, read from a Hugging Face config.json (qwen2 or llama)
    RMSNorm, rotary     as in Qwen2/Llama
    Attention           grouped-query attention through SDPA; the mask decides causal or not
    Block               pre-norm attention + SwiGLU MLP
    CriticModel         embed -> blocks (lower causal, upper bidirectional) -> norm
                        cls_head: 4-way boundary logits B=0, I=1, O=2, E=3
                        lm_head: reused as the token critic, only the tag rows are gathered

Parameter names are those of the released QwenLong-CPRS-7B (and of HF Qwen2/Llama):
`model.embed_tokens`, `model.layers.{i}.self_attn.{q,k,v,o}_proj`, `model.layers.{i}.mlp.
{gate,up,down}_proj`, `model.layers.{i}.{input,post_attention}_layernorm`, `model.norm`,
`lm_head`, `cls_head`. A checkpoint in that layout loads with `load_state_dict` unchanged.

Hybrid attention the transformers way: each layer has an attention type ("causal" or
"bidirectional") and the forward builds one mask per type. Padding is masked in both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

B_TAG, I_TAG, O_TAG, E_TAG = 0, 1, 2, 3
NUM_BOUNDARY_LABELS = 4


@dataclass
class CriticConfig:
    family: str = "qwen2"  # "qwen2" (q/k/v biases) or "llama"
    vocab_size: int = 151936
    hidden_size: int = 3584
    intermediate_size: int = 18944
    num_hidden_layers: int = 28
    num_attention_heads: int = 28
    num_key_value_heads: int = 4
    head_dim: int | None = None  # default hidden_size // num_attention_heads
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    max_position_embeddings: int = 32768
    tie_word_embeddings: bool = False
    attention_bias: bool | None = None  # None: qwen2 -> True, llama -> False
    # First bidirectional layer; layers below it stay causal. The released 7B: 21 of 28.
    bidirectional_start: int = 21
    layer_types: list[str] = field(default_factory=list)  # derived when empty

    def __post_init__(self) -> None:
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.attention_bias is None:
            self.attention_bias = self.family == "qwen2"
        if not self.layer_types:
            self.layer_types = [
                "bidirectional" if i >= self.bidirectional_start else "causal"
                for i in range(self.num_hidden_layers)
            ]
        assert len(self.layer_types) == self.num_hidden_layers, "one attention type per layer"
        assert set(self.layer_types) <= {"causal", "bidirectional"}, self.layer_types
        assert self.num_attention_heads % self.num_key_value_heads == 0, "GQA groups must divide"

    @classmethod
    def from_hf(cls, hf: dict, **overrides) -> CriticConfig:
        """From a Hugging Face config.json dict (Qwen2 or Llama, transformers 4.x or 5.x)."""
        family = hf.get("model_type", "qwen2")
        if family not in ("qwen2", "llama"):
            raise ValueError(f"unsupported model_type {family!r}: expected qwen2 or llama")
        rope = hf.get("rope_parameters") or {}
        scaling = hf.get("rope_scaling") or {}
        rope_type = rope.get("rope_type", scaling.get("rope_type", scaling.get("type", "default")))
        if rope_type not in ("default", None):
            raise ValueError(f"unsupported rope type {rope_type!r}")
        layers = hf["num_hidden_layers"]
        start = hf.get("bidirectional_start", hf.get("BiLLM_START_INDEX"))
        if start is None:  # the released 7B's config does not say; its code fixes 21 of 28
            start = 21 if (family == "qwen2" and layers == 28) else layers
        kwargs = dict(
            family=family,
            vocab_size=hf["vocab_size"],
            hidden_size=hf["hidden_size"],
            intermediate_size=hf["intermediate_size"],
            num_hidden_layers=layers,
            num_attention_heads=hf["num_attention_heads"],
            num_key_value_heads=hf.get("num_key_value_heads", hf["num_attention_heads"]),
            head_dim=hf.get("head_dim"),
            rms_norm_eps=hf.get("rms_norm_eps", 1e-6),
            rope_theta=rope.get("rope_theta", hf.get("rope_theta", 10000.0)),
            max_position_embeddings=hf.get("max_position_embeddings", 32768),
            tie_word_embeddings=hf.get("tie_word_embeddings", False),
            attention_bias=hf.get("attention_bias"),
            bidirectional_start=start,
            layer_types=list(hf.get("cprs_layer_types", [])),
        )
        kwargs.update(overrides)
        if "bidirectional_start" in overrides and "layer_types" not in overrides:
            kwargs["layer_types"] = []
        return cls(**kwargs)

    def to_hf(self) -> dict:
        """A config.json dict that HF and `from_hf` both read."""
        return {
            "model_type": self.family,
            "architectures": ["CPRSCriticForTokenScoring"],
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.attention_bias,
            "hidden_act": "silu",
            "bidirectional_start": self.bidirectional_start,
            "cprs_layer_types": self.layer_types,
        }


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rotary_tables(
    positions: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin of shape (T, hs) for the non-interleaved (rotate-half) RoPE of Qwen2/Llama."""
    inv_freq = 1.0 / (
        theta ** (torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim)
    )
    freqs = positions.float()[:, None] * inv_freq[None, :]  # (T, hs/2)
    emb = torch.cat([freqs, freqs], dim=-1)  # (T, hs)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class Attention(nn.Module):
    def __init__(self, cfg: CriticConfig):
        super().__init__()
        hs, nh, nkv = cfg.head_dim, cfg.num_attention_heads, cfg.num_key_value_heads
        self.nh, self.nkv, self.hs = nh, nkv, hs
        self.q_proj = nn.Linear(cfg.hidden_size, nh * hs, bias=cfg.attention_bias)
        self.k_proj = nn.Linear(cfg.hidden_size, nkv * hs, bias=cfg.attention_bias)
        self.v_proj = nn.Linear(cfg.hidden_size, nkv * hs, bias=cfg.attention_bias)
        self.o_proj = nn.Linear(nh * hs, cfg.hidden_size, bias=False)
        self.qkv: nn.Module | None = None  # q|k|v fused, set by int8.quantize_int8

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor,
        prefix_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Output and this call's rotated (k, v). `prefix_kv` (from a batch-1 pass over a
        shared prefix) is prepended to the keys and values: rows attend to it as to their own."""
        B, T, _ = x.shape
        if self.qkv is not None:
            q, k, v = self.qkv(x).split([self.nh * self.hs, *[self.nkv * self.hs] * 2], dim=-1)
        else:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        q = q.view(B, T, self.nh, self.hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.nkv, self.hs).transpose(1, 2)  # (B, nkv, T, hs)
        v = v.view(B, T, self.nkv, self.hs).transpose(1, 2)  # (B, nkv, T, hs)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        kv = (k, v)
        if prefix_kv is not None:
            pk, pv = prefix_kv  # (1, nkv, P, hs)
            k = torch.cat([pk.expand(B, -1, -1, -1), k], dim=2)  # (B, nkv, P+T, hs)
            v = torch.cat([pv.expand(B, -1, -1, -1), v], dim=2)  # (B, nkv, P+T, hs)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, enable_gqa=self.nkv != self.nh
        )  # (B, nh, T, hs)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.nh * self.hs)), kv


class MLP(nn.Module):
    def __init__(self, cfg: CriticConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)
        self.gate_up: nn.Module | None = None  # gate|up fused, set by int8.quantize_int8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate_up is not None:
            gate, up = self.gate_up(x).chunk(2, dim=-1)
        else:
            gate, up = self.gate_proj(x), self.up_proj(x)
        return self.down_proj(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, cfg: CriticConfig, attention_type: str):
        super().__init__()
        self.attention_type = attention_type
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, mask, prefix_kv=None):
        """(B, T, C) -> (B, T, C), and the attention's (k, v) for a prefix pass."""
        a, kv = self.self_attn(self.input_layernorm(x), cos, sin, mask, prefix_kv)
        x = x + a
        return x + self.mlp(self.post_attention_layernorm(x)), kv


class Backbone(nn.Module):
    def __init__(self, cfg: CriticConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList([Block(cfg, t) for t in cfg.layer_types])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


def attention_masks(attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """One boolean SDPA mask per attention type, (B, 1, T, T), True = may attend.

    Padded keys are masked in both kinds. Every query may attend to itself, so a padded
    query row is never empty (an all-False row would give NaNs); its output is ignored.
    """
    B, T = attention_mask.shape
    keys = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T)
    eye = torch.eye(T, dtype=torch.bool, device=attention_mask.device)  # (T, T)
    causal = torch.ones(T, T, dtype=torch.bool, device=attention_mask.device).tril()
    return {
        "bidirectional": keys | eye,  # (B, 1, T, T)
        "causal": (keys & causal) | eye,  # (B, 1, T, T)
    }


class CriticModel(nn.Module):
    def __init__(self, cfg: CriticConfig):
        super().__init__()
        self.config = cfg
        self.model = Backbone(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.cls_head = nn.Linear(cfg.hidden_size, NUM_BOUNDARY_LABELS)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        grad_from_layer: int = 0,
        shared_prefix: int = 0,
    ) -> torch.Tensor:
        """Last hidden states (B, T, C). Right padding only (position ids count from 0).

        Layers below `grad_from_layer` run without autograd: training the upper layers
        alone then costs no backward through the frozen lower ones. `shared_prefix=P` says
        the first P tokens are the same in every row (inference; see below).
        """
        B, T = input_ids.shape
        assert self.config.max_position_embeddings >= T, (
            f"window of {T} tokens exceeds {self.config.max_position_embeddings} positions"
        )
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if shared_prefix:
            return self._forward_shared_prefix(input_ids, attention_mask, shared_prefix)
        masks = attention_masks(attention_mask)
        cos, sin = self._rotary(0, T)
        with torch.set_grad_enabled(torch.is_grad_enabled() and grad_from_layer == 0):
            x = self.model.embed_tokens(input_ids)  # (B, T, C)
        for i, layer in enumerate(self.model.layers):
            with torch.set_grad_enabled(torch.is_grad_enabled() and i >= grad_from_layer):
                x, _ = layer(x, cos, sin, masks[layer.attention_type])  # (B, T, C)
        return self.model.norm(x)

    def _rotary(self, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        weight = self.model.embed_tokens.weight
        positions = torch.arange(start, end, device=weight.device)
        return rotary_tables(positions, self.config.head_dim, self.config.rope_theta, weight.dtype)

    def _forward_shared_prefix(self, input_ids, attention_mask, P: int) -> torch.Tensor:
        """Inference with the first P tokens identical in every row (prompt + query).

        In the lower causal layers a prefix token never sees what follows it, so the prefix is
        computed once at batch 1 and its keys/values are shared by every window. From the first
        bidirectional layer on, the prefix depends on the window, so rows run in full.
        The same arithmetic as `forward`, less the repeated prefix rows.
        """
        B, T = input_ids.shape
        assert torch.equal(input_ids[:, :P], input_ids[:1, :P].expand(B, -1)), "prefix differs"
        assert bool(attention_mask[:, :P].all()), "the shared prefix cannot hold padding"
        bottom = next(
            (i for i, t in enumerate(self.config.layer_types) if t != "causal"),
            self.config.num_hidden_layers,
        )
        cos_p, sin_p = self._rotary(0, P)
        cos_w, sin_w = self._rotary(P, T)
        ones = torch.ones(1, P, dtype=torch.long, device=input_ids.device)
        prefix_mask = attention_masks(ones)["causal"]  # (1, 1, P, P)
        full = attention_masks(attention_mask)
        window_mask = full["causal"][:, :, P:, :]  # (B, 1, T-P, T): prefix keys, then own keys
        x_p = self.model.embed_tokens(input_ids[:1, :P])  # (1, P, C)
        x_w = self.model.embed_tokens(input_ids[:, P:])  # (B, T-P, C)
        for layer in self.model.layers[:bottom]:
            x_p_next, kv = layer(x_p, cos_p, sin_p, prefix_mask)  # (1, P, C)
            x_w, _ = layer(x_w, cos_w, sin_w, window_mask, prefix_kv=kv)  # (B, T-P, C)
            x_p = x_p_next
        x = torch.cat([x_p.expand(B, -1, -1), x_w], dim=1)  # (B, T, C)
        cos, sin = self._rotary(0, T)
        for layer in self.model.layers[bottom:]:
            x, _ = layer(x, cos, sin, full[layer.attention_type])  # (B, T, C)
        return self.model.norm(x)

    def boundary_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.cls_head(hidden).float()  # (B, T, 4)

    def tag_logits(self, hidden: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
        """LM-head logits of a few vocabulary rows only, (B, T, K): never the full vocabulary."""
        rows = self.lm_head.weight.index_select(0, token_ids)  # (K, C)
        return (hidden @ rows.T).float()  # (B, T, K)

    def critic_scores(self, hidden: torch.Tensor, tag_id: int, outside_id: int) -> torch.Tensor:
        """P(tag) against P(outside) per token, (B, T) in [0, 1]: the token critic."""
        ids = torch.tensor([tag_id, outside_id], device=hidden.device)
        return self.tag_logits(hidden, ids).softmax(-1)[..., 0]


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_token(cfg: CriticConfig, seq_len: int) -> float:
    """Forward FLOPs per token (2 per multiply-add), matmuls only, for the roofline in benchmarks."""
    c, hs = cfg.hidden_size, cfg.head_dim
    attn_proj = 2 * c * hs * (2 * cfg.num_attention_heads + 2 * cfg.num_key_value_heads)
    mlp = 2 * 3 * c * cfg.intermediate_size
    attn_scores = 2 * 2 * cfg.num_attention_heads * hs * seq_len  # QK^T and AV
    return cfg.num_hidden_layers * (attn_proj + mlp + attn_scores) + 2 * c * (
        NUM_BOUNDARY_LABELS + 2
    )
