"""`cprs tune`: the choice rule, the table, and one measured sweep on a tiny random critic."""

from __future__ import annotations

import json

import pytest

from cprs_engine.checkpoint import tiny_random
from cprs_engine.compressor import Compressor
from cprs_engine.evaluation import tune
from cprs_engine.training.data.evalset import eval_case
from cprs_engine.training.data.sources import HOTPOT_RESERVED_FROM


def row(linked, keep, weak, recall, ratio):
    return {
        "linked_windows": linked,
        "keep_threshold": keep,
        "weak_threshold": weak,
        "recall": recall,
        "all": 0.0,
        "ratio": ratio,
        "min_ratio": ratio,
        "pooled_ratio": ratio,
    }


OFF = tune.OFF


def test_choose_takes_the_best_recall_that_keeps_the_ratio():
    rows = [
        row(False, OFF, OFF, 0.80, 27),
        row(False, OFF, 0.3, 0.90, 25),
        row(True, 0.3, OFF, 0.93, 23),
        row(True, 0.2, 0.1, 0.95, 19),
    ]
    assert tune.choose(rows, 22) is rows[2]
    assert tune.choose(rows, 18) is rows[3]
    assert tune.choose(rows, 30) is rows[0]  # nothing keeps it: everything off
    tied = [row(False, OFF, OFF, 0.9, 27), row(True, 0.3, OFF, 0.9, 23)]
    assert tune.choose(tied, 20) is tied[0]  # same recall: the higher ratio


def test_table_marks_the_choice():
    rows = [row(k, t, w, 0.5, 30) for k in (False, True) for t in (OFF, 0.3) for w in (OFF, 0.1)]
    text = tune.table(rows, rows[5])
    lines = text.splitlines()
    assert len(lines) == 2 + 4 and text.count("**") == 2
    assert lines[2 + 2].startswith("| linked | off |") and "**50.0% / 30.0x**" in lines[4]


def test_measure_tunes_on_training_items_only():
    model, tokenizer = tiny_random("qwen2", seed=1)
    comp = Compressor(model, tokenizer, window_tokens=64, windows_per_pass=4, precision="fp32")
    docs = [eval_case("hotpotqa", 600, 0, k, comp.count_tokens, split="train") for k in range(2)]
    assert all(d.meta["index"] < HOTPOT_RESERVED_FROM for d in docs)
    rows = tune.measure(comp, docs, [None, 1e-9], [None, 0.5, 1e-9])
    assert [(r["keep_threshold"], r["weak_threshold"]) for r in rows] == [
        (OFF, OFF),
        (OFF, 0.5),
        (OFF, 1e-9),
        (1e-9, OFF),
        (1e-9, 0.5),
        (1e-9, 1e-9),
    ]
    for r in rows:
        assert 0.0 <= r["recall"] <= 1.0 and r["min_ratio"] <= r["ratio"]
        assert r["min_ratio"] <= r["pooled_ratio"]  # a weighted mean of the same ratios
        assert r["linked_windows"] is False
    # a lower threshold can only add sentences: recall never falls, the ratio never rises
    assert rows[2]["recall"] >= rows[1]["recall"] >= rows[0]["recall"]
    assert rows[2]["ratio"] <= rows[1]["ratio"] <= rows[0]["ratio"]
    assert rows[2]["pooled_ratio"] <= rows[1]["pooled_ratio"] <= rows[0]["pooled_ratio"]
    assert rows[3]["recall"] >= rows[0]["recall"] and rows[3]["ratio"] <= rows[0]["ratio"]


def test_per_prompt_tuning_groups_documents_by_prompt_and_writes_nulls(tmp_path):
    model, tokenizer = tiny_random("qwen2", seed=1)
    comp = Compressor(model, tokenizer, window_tokens=64, windows_per_pass=4, precision="fp32")
    docs = tune.dev_docs(["hotpotqa", "niah_single"], 500, [0], 2, comp.count_tokens)
    assert {d.prompt_name for d in docs} == {"fact", "needle"}
    assert all(d.meta["index"] < HOTPOT_RESERVED_FROM for d in docs if "index" in d.meta)
    results = tune.tune_per_prompt(comp, docs, [None, 1e-9], [None, 1e-9], {"needle": 1e9}, 1.0)
    assert set(results) == {"fact", "needle"}
    rows, best = results["needle"]
    assert len(rows) == 4
    assert (best["keep_threshold"], best["weak_threshold"]) == (OFF, OFF)  # no row reaches 1e9x
    path = tmp_path / "critic.json"
    path.write_text(json.dumps({"base": "x", "prompts": {"kv": {"weak_threshold": 0.2}}}))
    meta = tune.write_prompt_thresholds(path, {n: b for n, (_, b) in results.items()})
    assert meta["prompts"]["needle"] == {"keep_threshold": None, "weak_threshold": None}
    assert meta["prompts"]["kv"] == {"weak_threshold": 0.2}  # other prompts stay
    assert json.loads(path.read_text()) == meta
    # what was written loads back as the compressor's own per-prompt table
    again = Compressor(model, tokenizer, prompt_thresholds=meta["prompts"], weak_threshold=0.5)
    assert again.thresholds("needle") == (None, None)
    fact = results["fact"][1]
    want = tuple(None if fact[k] == OFF else fact[k] for k in ("keep_threshold", "weak_threshold"))
    assert again.thresholds("fact") == want


def test_per_prompt_tuning_refuses_the_evaluation_seed_and_parses_ratios():
    from cprs_engine.evaluation.evaluate import DEFAULT_SEED

    with pytest.raises(SystemExit):
        tune.dev_docs(["niah_single"], 500, [DEFAULT_SEED], 1, len)
    with pytest.raises(SystemExit):
        tune.dev_docs(["no_such_task"], 500, [0], 1, len)
    assert tune.min_ratios("needle=50, fact=22", 10.0) == {"needle": 50.0, "fact": 22.0}
    with pytest.raises(SystemExit):
        tune.min_ratios("needle", 10.0)


def test_tune_per_prompt_command_writes_critic_json(tmp_path, capsys, monkeypatch):
    """`cprs tune --per-prompt --write` end to end on a tiny random critic: one table per
    prompt, and critic.json gets the "prompts" table, its other keys untouched."""
    import argparse

    model, tokenizer = tiny_random("qwen2", seed=1)
    loads = []

    def load(path, **kw):
        loads.append(path)
        return Compressor(model, tokenizer, window_tokens=64, precision="fp32", **kw)

    monkeypatch.setattr(Compressor, "load", staticmethod(load))
    ckpt = tmp_path / "critic"
    ckpt.mkdir()
    (ckpt / "critic.json").write_text(json.dumps({"keep_threshold": 0.3}))
    parser = argparse.ArgumentParser()
    tune.add_arguments(parser)
    args = parser.parse_args(
        ["--checkpoint", str(ckpt), "--per-prompt", "--tasks", "niah_single,hotpotqa",
         "--docs", "1", "--seeds", "0", "--length", "400", "--keep-thresholds", "0.5",
         "--weak-thresholds", "0.5", "--min-ratios", "needle=1", "--min-ratio", "1", "--write"]
    )  # fmt: skip
    assert tune.run(args) == 0 and loads == [str(ckpt)]
    out = capsys.readouterr().out
    assert "## prompt fact" in out and "## prompt needle" in out
    meta = json.loads((ckpt / "critic.json").read_text())
    assert meta["keep_threshold"] == 0.3 and set(meta["prompts"]) == {"fact", "needle"}
    for entry in meta["prompts"].values():
        assert set(entry) == {"keep_threshold", "weak_threshold"}
        assert all(v in (None, 0.5) for v in entry.values())
