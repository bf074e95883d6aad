"""`cprs tune`: the choice rule, and one measured sweep on a tiny random critic."""

from __future__ import annotations

from cprs_engine import tune
from cprs_engine.checkpoint import tiny_random
from cprs_engine.compressor import Compressor
from cprs_engine.data.evalset import eval_case
from cprs_engine.data.sources import HOTPOT_RESERVED_FROM


def row(t, recall, ratio):
    return {"threshold": t, "recall": recall, "all": 0.0, "ratio": ratio, "min_ratio": ratio}


def test_choose_takes_the_best_recall_that_keeps_the_ratio():
    rows = [row(tune.OFF, 0.80, 27), row(0.4, 0.90, 25), row(0.3, 0.93, 23), row(0.2, 0.95, 19)]
    assert tune.choose(rows, 22)["threshold"] == 0.3
    assert tune.choose(rows, 18)["threshold"] == 0.2
    assert tune.choose(rows, 30)["threshold"] == tune.OFF  # nothing keeps it: stay off
    tied = [row(tune.OFF, 0.9, 27), row(0.3, 0.9, 23)]
    assert tune.choose(tied, 20)["threshold"] == tune.OFF  # same recall: the higher ratio


def test_measure_tunes_on_training_items_only():
    model, tokenizer = tiny_random("qwen2", seed=1)
    comp = Compressor(model, tokenizer, window_tokens=64, windows_per_pass=4, precision="fp32")
    docs = [eval_case("hotpotqa", 600, 0, k, comp.count_tokens, split="train") for k in range(2)]
    assert all(d.meta["index"] < HOTPOT_RESERVED_FROM for d in docs)
    rows = tune.measure(comp, docs, [None, 0.5, 1e-9])
    assert [r["threshold"] for r in rows] == [tune.OFF, 0.5, 1e-9]
    for r in rows:
        assert 0.0 <= r["recall"] <= 1.0 and r["min_ratio"] <= r["ratio"]
    # a lower threshold can only add sentences: recall never falls, the ratio never rises
    assert rows[2]["recall"] >= rows[1]["recall"] >= rows[0]["recall"]
    assert rows[2]["ratio"] <= rows[1]["ratio"] <= rows[0]["ratio"]
