"""Budget units: a budget is cut exactly in the unit it was given in."""

from __future__ import annotations

import pytest

from cprs_engine import units
from cprs_engine.checkpoint import tiny_random
from cprs_engine.compressor import Compressor
from cprs_engine.errors import UnknownBudgetUnit

# Chinese: the critic's (Qwen2) tokenizer needs far fewer tokens than cl100k_base for it, so a
# budget counted in the wrong unit overshoots what the backend bills.
ZH = "".join(f"第{i}号仓库的管理员在星期{i % 7}检查了货物的数量和质量。" for i in range(80))


@pytest.fixture(scope="module")
def compressor():
    model, tokenizer = tiny_random("qwen2", seed=1)
    # keep_threshold just above 0: every sentence is kept, so the budget alone decides
    return Compressor(model, tokenizer, window_tokens=64, windows_per_pass=4, keep_threshold=1e-6)


def test_known_units_pass_and_others_name_the_known_ones():
    for unit in (None, "critic", "tiktoken:o200k_base", "tiktoken:cl100k_base"):
        units.check(unit)
    with pytest.raises(UnknownBudgetUnit) as info:
        units.check("tiktoken:gpt2")
    assert info.value.param == "budget_unit" and "tiktoken:o200k_base" in info.value.message


def test_the_counter_of_a_unit():
    def critic(text: str) -> int:
        return 99

    assert units.counter(None, critic) is critic and units.counter("critic", critic) is critic
    count = units.counter(units.tiktoken_unit("cl100k_base"), critic)
    assert count("") == 0 and count("hello world") == 2


def test_a_tiktoken_budget_is_cut_in_tiktoken_tokens(compressor):
    cl100k = units.counter("tiktoken:cl100k_base", compressor.count_tokens)
    budget = cl100k(ZH) // 10
    r = compressor.compress(
        "哪个仓库?", ZH, budget_tokens=budget, budget_unit="tiktoken:cl100k_base"
    )
    assert 0.8 * budget <= cl100k(r.compressed) <= budget  # filled, never over
    for s in r.spans:
        assert ZH[s.start : s.end] == s.text
    # the same number in the critic's tokens lets through more than the backend's budget
    critic_cut = compressor.compress("哪个仓库?", ZH, budget_tokens=budget)
    assert critic_cut.output_tokens <= budget < cl100k(critic_cut.compressed)


def test_an_unknown_unit_fails_before_the_model(compressor):
    with pytest.raises(UnknownBudgetUnit):
        compressor.compress("q", ZH, budget_tokens=5, budget_unit="bytes")
