"""Compressor on a tiny random critic: the contract holds whatever the weights say."""

import dataclasses

import pytest

from cprs_engine import compressor as compressor_module
from cprs_engine.checkpoint import tiny_random
from cprs_engine.compressor import Compressor, build_prefix
from cprs_engine.errors import (
    Cancelled,
    ContextTooLong,
    EmptyContext,
    EmptyQuery,
    InvalidInput,
    UnknownGranularity,
)

TEXT = (
    "Paris is the capital of France. The Eiffel Tower was finished in 1889! "
    "Mount Fuji is in Japan? 東京は日本の首都です。大阪は大きい。\n\n"
    "One of the special magic numbers for quiet-lake is: 4821937. "
) * 12


@pytest.fixture(scope="module")
def compressor():
    model, tokenizer = tiny_random("qwen2", seed=1)
    return Compressor(model, tokenizer, window_tokens=64, windows_per_pass=3)


def test_prefix_is_the_reference_template():
    assert build_prefix("P", "Q") == (
        "<|im_start|>system\nP<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>context\n"
    )


@pytest.mark.parametrize("granularity", ["keyword", "sentence", "paragraph"])
def test_output_is_spans_of_the_input_in_order(compressor, granularity):
    r = compressor.compress("What is the magic number?", TEXT, granularity=granularity)
    last = 0
    for s in r.spans:
        assert TEXT[s.start : s.end] == s.text
        assert s.start >= last
        assert 0.0 <= s.score <= 1.0
        last = s.end
    assert r.input_tokens == compressor.count_tokens(TEXT)
    assert r.granularity == granularity
    if r.spans:
        sep = "\n\n" if granularity == "paragraph" else "\n"
        assert r.compressed == sep.join(s.text for s in r.spans)


def test_same_input_same_output(compressor):
    a = compressor.compress("Where is Mount Fuji?", TEXT)
    b = compressor.compress("Where is Mount Fuji?", TEXT)
    assert a.compressed == b.compressed and a.spans == b.spans


def test_window_batching_does_not_change_the_result():
    model, tokenizer = tiny_random("llama", seed=2)
    one = Compressor(model, tokenizer, window_tokens=64, windows_per_pass=1, precision="fp32")
    many = Compressor(model, tokenizer, window_tokens=64, windows_per_pass=5, precision="fp32")
    ids, _, prefix, windows = one.prepare("q", TEXT, "Extract the facts.")
    assert len(windows) > 5
    a = one._score(ids, prefix, windows, "fact")
    b = many._score(ids, prefix, windows, "fact")
    assert (a[0] == b[0]).all()
    assert abs(a[1] - b[1]).max() < 1e-5  # support
    assert abs(a[2] - b[2]).max() < 1e-5  # critic scores


def test_budget_is_respected(compressor):
    r = compressor.compress("magic number", TEXT, budget_tokens=20)
    assert r.output_tokens <= 20


def test_bad_inputs_raise_typed_errors(compressor):
    with pytest.raises(EmptyQuery):
        compressor.compress("  ", TEXT)
    with pytest.raises(EmptyContext):
        compressor.compress("q", "\n \t")
    with pytest.raises(UnknownGranularity):
        compressor.compress("q", TEXT, granularity="chapter")
    small = Compressor(compressor.model, compressor.tokenizer, max_context_tokens=10)
    with pytest.raises(ContextTooLong):
        small.compress("q", TEXT)


def test_precision_is_named_in_the_engine_version():
    model, tokenizer = tiny_random("qwen2", seed=1)
    fp32 = Compressor(model, tokenizer, window_tokens=64, precision="fp32")
    bf16 = Compressor(model, tokenizer, window_tokens=64, precision="bf16")
    assert fp32.engine_version.endswith(".fp32") and bf16.engine_version.endswith(".bf16")
    with pytest.raises(InvalidInput):
        Compressor(model, tokenizer, precision="fp16")


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_follows_the_cpu(monkeypatch, native):
    monkeypatch.setattr(compressor_module, "cpu_has_bf16", lambda: native)
    model, tokenizer = tiny_random("qwen2", seed=1)
    assert Compressor(model, tokenizer).precision == ("bf16" if native else "fp32")


def test_bf16_autocast_runs_and_stays_close_to_fp32():
    model, tokenizer = tiny_random("llama", seed=2)
    fp32 = Compressor(model, tokenizer, window_tokens=64, windows_per_pass=3, precision="fp32")
    bf16 = Compressor(model, tokenizer, window_tokens=64, windows_per_pass=3, precision="bf16")
    ids, _, prefix, windows = fp32.prepare("q", TEXT, "Extract the facts.")
    _, _, a = fp32._score(ids, prefix, windows, "fact")
    _, _, b = bf16._score(ids, prefix, windows, "fact")
    _, _, c = bf16._score(ids, prefix, windows, "fact")
    assert (b == c).all()  # deterministic
    assert (a != b).any()  # the matmuls really ran in bf16
    assert abs(a - b).max() < 0.05


def test_a_set_cancel_stops_before_the_next_pass(compressor):
    import threading

    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        compressor.compress("Where is Mount Fuji?", TEXT, cancel=stop)
    done = compressor.compress("Where is Mount Fuji?", TEXT, cancel=threading.Event())
    assert done.input_tokens == compressor.count_tokens(TEXT)


def test_score_then_decode_is_compress_and_the_threshold_is_versioned(compressor):
    query = "What is the magic number?"
    scored = compressor.score(query, TEXT)
    assert len(scored.tags) == len(scored.support) == len(scored.offsets)
    assert ((scored.support >= 0) & (scored.support <= 1)).all()
    assert compressor.decode(scored).compressed == compressor.compress(query, TEXT).compressed
    # the lowest threshold adds every supported neighbour: never less kept than without it
    kept = compressor.decode(scored, weak_threshold=None).compressed
    more = compressor.decode(scored, weak_threshold=1e-9).compressed
    assert len(more) >= len(kept) and all(line in more for line in kept.split("\n") if line)

    model, tokenizer = compressor.model, compressor.tokenizer
    weak = Compressor(model, tokenizer, window_tokens=64, weak_threshold=0.3)
    assert ".t0.3." in weak.engine_version and ".t" not in compressor.engine_version
    with pytest.raises(ValueError):
        Compressor(model, tokenizer, weak_threshold=0.0)


def test_linked_windows_and_keep_threshold_are_versioned_and_keep_the_contract(compressor):
    model, tokenizer = compressor.model, compressor.tokenizer
    linked = Compressor(
        model,
        tokenizer,
        window_tokens=64,
        windows_per_pass=3,
        linked_windows=True,
        keep_threshold=0.3,
        precision="fp32",
    )
    assert ".l.k0.3." in linked.engine_version and ".l." not in compressor.engine_version
    query = "What is the magic number for quiet-lake?"
    ids, _, prefix, windows = linked.prepare(query, TEXT, "Extract the facts.")
    assert any(len(w) > 1 for w in windows), "some window joins pieces from apart"
    assert sorted(t for w in windows for a, b in w for t in range(a, b)) == list(range(len(ids)))
    one = Compressor(
        model,
        tokenizer,
        window_tokens=64,
        windows_per_pass=1,
        linked_windows=True,
        precision="fp32",
    )
    a = one._score(ids, prefix, windows, "fact")
    b = linked._score(ids, prefix, windows, "fact")
    assert (a[0] == b[0]).all() and abs(a[1] - b[1]).max() < 1e-5
    r = linked.compress(query, TEXT)
    assert all(TEXT[s.start : s.end] == s.text for s in r.spans)
    scored = linked.score(query, TEXT)
    lower = linked.decode(scored, keep_threshold=1e-9).compressed
    assert len(lower) >= len(linked.decode(scored, keep_threshold=None).compressed)
    with pytest.raises(ValueError):
        Compressor(model, tokenizer, keep_threshold=1.5)


def test_per_prompt_thresholds_apply_to_their_prompt_only(compressor):
    model, tokenizer = compressor.model, compressor.tokenizer
    own = {"needle": {"keep_threshold": 1e-9, "weak_threshold": None}}
    comp = Compressor(
        model, tokenizer, window_tokens=64, windows_per_pass=3, weak_threshold=0.3,
        prompt_thresholds=own,
    )  # fmt: skip
    assert comp.thresholds("needle") == (1e-9, None)  # null: off, not the global 0.3
    assert comp.thresholds("fact") == (None, 0.3)  # no entry: the global ones
    assert ".p-needlek1e-09-needlewoff" in comp.engine_version
    assert ".p-" not in compressor.engine_version  # no table, no version change
    query = "What is the magic number?"
    needle = comp.score(query, TEXT, prompt="needle")

    def out(scored, **kw):
        r = comp.decode(scored, **kw)
        return r.compressed, r.spans

    assert out(needle) == out(needle, keep_threshold=1e-9, weak_threshold=None)
    assert out(needle) != out(needle, keep_threshold=None)
    fact = comp.score(query, TEXT, prompt="fact")
    assert out(fact) == out(fact, keep_threshold=None, weak_threshold=0.3)
    for bad in ({"nope": {}}, {"needle": {"keep": 0.1}}, {"needle": {"keep_threshold": 0}}):
        with pytest.raises(ValueError):
            Compressor(model, tokenizer, prompt_thresholds=bad)


def test_doc_type_is_detected_forced_and_shown(compressor):
    query = "What is the magic number?"
    prose = compressor.compress(query, TEXT)
    assert prose.doc_type == "prose"
    forced = compressor.compress(query, TEXT, doc_type="prose")
    assert (forced.compressed, forced.spans) == (prose.compressed, prose.spans)
    code = "def magic():\n    number = 4821937\n    return number\n" * 30
    r = compressor.compress(query, code, elision="marker")
    assert r.doc_type == "code"
    assert all(code[s.start : s.end] == s.text for s in r.spans)
    assert compressor.compress(query, code, doc_type="log").doc_type == "log"
    with pytest.raises(InvalidInput):
        compressor.compress(query, TEXT, doc_type="yaml")
    with pytest.raises(InvalidInput):
        compressor.compress(query, TEXT, elision="dots")


def test_code_windows_start_at_line_ends_and_prose_windows_do_not_move(compressor):
    code = "import httpx.Client\nvalue = obj.Attr.Method(x) + 1\n" * 80
    _, offsets, _, windows = compressor.prepare("q", code, "P", doc_type="code")
    starts = [int(offsets[a][0]) for w in windows for a, _ in w][1:]
    assert starts and all(code[s - 1] == "\n" or code[s] == "\n" for s in starts)
    prose_default = compressor.prepare("q", TEXT, "P")[3]
    assert compressor.prepare("q", TEXT, "P", doc_type="prose")[3] == prose_default


def test_load_reads_per_prompt_thresholds_from_critic_json(monkeypatch, compressor):
    from cprs_engine import checkpoint

    meta = {"version": "v", "window_tokens": 64, "weak_threshold": 0.1,
            "prompts": {"needle": {"weak_threshold": None}}}  # fmt: skip
    loaded = checkpoint.Loaded(compressor.model, compressor.tokenizer, meta)
    monkeypatch.setattr(checkpoint, "load", lambda path, device=None: loaded)
    comp = Compressor.load("anywhere")
    assert comp.thresholds("needle") == (None, None) and comp.thresholds("fact") == (None, 0.1)


def test_code_keeps_the_lines_its_query_names_whatever_the_critic_scores(compressor):
    """Symbol anchors (anchors.py) reach the output through `decode`, for code only: with
    every critic score zeroed, the named function still comes back, and prose gets nothing."""
    import numpy as np

    from cprs_engine import decoding

    code = "import os\n\n\ndef helper_fn(x):\n    y = x + 1\n    return y * 2\n\n\nZ = 3\n" * 3
    code += "\n\ndef target_fn(a, b):\n    total = a + b\n    return total\n"
    scored = compressor.score("What does `target_fn` return?", code, doc_type="code")
    n = len(scored.tags)
    zeroed = dataclasses.replace(
        scored, tags=np.full(n, decoding.O, np.int8), support=np.zeros(n, np.float32),
        scores=np.zeros(n, np.float32),
    )  # fmt: skip
    out = compressor.decode(zeroed).compressed
    assert out == "def target_fn(a, b):\n    total = a + b\n    return total"
    as_prose = dataclasses.replace(zeroed, doc_type="prose")
    assert compressor.decode(as_prose).compressed == ""
