"""Checkpoint layouts: the released 7B's directory shape, and honest errors when weights are missing."""

import json

import pytest
import torch
from safetensors import safe_open

from cprs_engine import checkpoint
from cprs_engine.errors import CheckpointNotFound


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    out = tmp_path_factory.mktemp("released-layout")
    model, tokenizer = checkpoint.tiny_random("qwen2", seed=3)
    checkpoint.save_hf_layout(model, tokenizer, out, shard_bytes=8 << 20)
    return out, model, tokenizer


def test_layout_matches_the_released_checkpoint(saved):
    out, model, _ = saved
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "qwen2"
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1, "the tiny model should still be sharded like the 7B"
    keys = set()
    for shard in shards:
        with safe_open(str(out / shard), "pt") as f:
            keys |= set(f.keys())
    assert keys == set(index["weight_map"])
    assert "lm_head.weight" in keys and "cls_head.weight" in keys and "cls_head.bias" in keys
    assert "model.embed_tokens.weight" in keys and "model.norm.weight" in keys
    assert "model.layers.0.self_attn.q_proj.bias" in keys  # Qwen2 keeps q/k/v biases
    assert all(k.startswith(("model.", "lm_head.", "cls_head.")) for k in keys)
    assert (out / "tokenizer.json").exists() or (out / "vocab.json").exists()


def test_reload_through_the_public_loader_gives_identical_outputs(saved):
    out, model, tokenizer = saved
    loaded = checkpoint.load(out, device="cpu")
    ids = torch.tensor([tokenizer.encode("The special magic number is 42. Paris is in France.")])
    with torch.no_grad():
        a, b = model(ids), loaded.model(ids)
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(model.boundary_logits(a), loaded.model.boundary_logits(b))
    assert loaded.tokenizer.encode("Hello world") == tokenizer.encode("Hello world")
    assert loaded.meta["format"] == "hf" and len(loaded.meta["version"]) == 16


def test_missing_directory_says_what_it_needs(tmp_path):
    with pytest.raises(CheckpointNotFound, match="config.json"):
        checkpoint.load(tmp_path / "nowhere")


def test_missing_shard_is_reported(saved, tmp_path):
    out, _, _ = saved
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in out.iterdir():
        if f.name != sorted(out.glob("model-*.safetensors"))[0].name:
            (broken / f.name).write_bytes(f.read_bytes())
    with pytest.raises(CheckpointNotFound, match="missing"):
        checkpoint.load(broken)
