"""The critic on tiny random configs: hybrid masks, padding, HF parity, gathered critic rows."""

import pytest
import torch

from cprs_engine.modeling import CriticConfig, CriticModel, attention_masks


def tiny(family: str, bidirectional_start: int, layers: int = 4) -> CriticModel:
    torch.manual_seed(0)
    cfg = CriticConfig(
        family=family,
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        rope_theta=10000.0,
        max_position_embeddings=256,
        bidirectional_start=bidirectional_start,
    )
    return CriticModel(cfg).eval()


def layer_outputs(model: CriticModel, ids: torch.Tensor) -> list[torch.Tensor]:
    outs = []
    hooks = [
        layer.register_forward_hook(lambda m, i, o: outs.append(o[0]))
        for layer in model.model.layers
    ]
    with torch.no_grad():
        model(ids)
    for h in hooks:
        h.remove()
    return outs


@pytest.mark.parametrize("family", ["qwen2", "llama"])
def test_bidirectional_layer_sees_later_tokens_causal_layer_does_not(family):
    model = tiny(family, bidirectional_start=2)
    assert model.config.layer_types == ["causal", "causal", "bidirectional", "bidirectional"]
    a = torch.randint(0, 128, (1, 12))
    b = a.clone()
    b[0, 9] = (a[0, 9] + 1) % 128  # change a later token
    out_a, out_b = layer_outputs(model, a), layer_outputs(model, b)
    i = 4  # a position before the change
    for layer in (0, 1):  # causal: position i is blind to token 9
        torch.testing.assert_close(out_a[layer][0, i], out_b[layer][0, i])
    for layer in (2, 3):  # bidirectional: position i changes
        assert not torch.allclose(out_a[layer][0, i], out_b[layer][0, i])


def test_a_bidirectional_layer_alone_changes_earlier_positions():
    causal, hybrid = tiny("qwen2", bidirectional_start=4), tiny("qwen2", bidirectional_start=3)
    hybrid.load_state_dict(causal.state_dict())
    a = torch.randint(0, 128, (1, 10))
    b = a.clone()
    b[0, -1] = (a[0, -1] + 7) % 128
    with torch.no_grad():
        assert torch.allclose(causal(a)[0, :5], causal(b)[0, :5])
        assert not torch.allclose(hybrid(a)[0, :5], hybrid(b)[0, :5])


@pytest.mark.parametrize("start", [0, 2, 4])
def test_padding_is_masked_in_both_kinds_of_layer(start):
    model = tiny("llama", bidirectional_start=start)
    ids = torch.randint(0, 128, (1, 9))
    padded = torch.cat([ids, torch.randint(0, 128, (1, 5))], dim=1)
    mask = torch.cat([torch.ones(1, 9), torch.zeros(1, 5)], dim=1).long()
    with torch.no_grad():
        torch.testing.assert_close(model(padded, mask)[0, :9], model(ids)[0], rtol=1e-5, atol=1e-5)


def test_masks_never_leave_a_row_empty():
    masks = attention_masks(torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]]))
    for m in masks.values():
        assert m.any(-1).all()


@pytest.mark.parametrize("family", ["qwen2", "llama"])
def test_all_causal_critic_matches_transformers(family):
    """With no bidirectional layer the backbone is exactly the HF decoder it loads from."""
    transformers = pytest.importorskip("transformers")
    model = tiny(family, bidirectional_start=4)
    hf_cfg = model.config.to_hf()
    hf_cfg.pop("architectures")
    if family == "qwen2":
        ref = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**hf_cfg))
    else:
        ref = transformers.LlamaForCausalLM(transformers.LlamaConfig(**hf_cfg))
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("cls_head")}
    ref.load_state_dict(state)
    ref.eval()
    ids = torch.randint(0, 128, (2, 16))
    mask = torch.ones_like(ids)
    mask[1, 11:] = 0
    with torch.no_grad():
        ours = model(ids, mask)
        theirs = ref.model(input_ids=ids, attention_mask=mask).last_hidden_state
        torch.testing.assert_close(ours[0], theirs[0], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(ours[1, :11], theirs[1, :11], rtol=1e-4, atol=1e-4)
        rows = torch.tensor([3, 17, 99])
        torch.testing.assert_close(
            model.tag_logits(ours[0], rows), ref.lm_head(theirs[0])[..., rows], rtol=1e-4, atol=1e-4
        )


def test_critic_scores_are_probabilities_of_tag_against_outside():
    model = tiny("qwen2", bidirectional_start=2)
    with torch.no_grad():
        h = model(torch.randint(0, 128, (2, 7)))
        s = model.critic_scores(h, tag_id=5, outside_id=9)
        logits = model.lm_head(h)[..., [5, 9]]
    assert s.shape == (2, 7)
    torch.testing.assert_close(s, logits.softmax(-1)[..., 0])
    assert model.boundary_logits(h).shape == (2, 7, 4)


def test_config_round_trips_through_hf_dict():
    cfg = tiny("qwen2", bidirectional_start=3).config
    again = CriticConfig.from_hf(cfg.to_hf())
    assert again == cfg
    released = CriticConfig.from_hf(
        {
            "model_type": "qwen2",
            "vocab_size": 152064,
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_hidden_layers": 28,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "rope_theta": 1000000.0,
        }
    )
    assert released.layer_types.index("bidirectional") == 21
    assert released.layer_types.count("bidirectional") == 7
    assert released.attention_bias is True


@pytest.mark.parametrize("start", [0, 2, 4])
def test_a_shared_prefix_computed_once_gives_the_same_hidden_states(start):
    model = tiny("qwen2", bidirectional_start=start)
    prefix = torch.randint(0, 128, (1, 7)).expand(3, -1)
    ids = torch.cat([prefix, torch.randint(0, 128, (3, 11))], dim=1)
    mask = torch.ones_like(ids)
    mask[1, 14:] = 0  # a shorter, right-padded window
    with torch.no_grad():
        full = model(ids, mask)
        shared = model(ids, mask, shared_prefix=7)
    torch.testing.assert_close(shared[0], full[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(shared[1, :14], full[1, :14], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(shared[2], full[2], rtol=1e-5, atol=1e-5)
