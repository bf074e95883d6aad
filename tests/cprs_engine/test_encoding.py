"""Chunked tokenization: exactly the whole-text ids and offsets, on both shipped tokenizers."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cprs_engine.encoding import count, cut_points, encode

PIECES = [
    "a",
    "Word",
    "ünïcödé",
    "e\u0301",
    "\u0301",
    "3.14",
    "2024",
    "it's",
    "don't",
    "(x)",
    "...",
    "—",
    "你好。",
    "再见",
    "🙂",
    "👩‍👩‍👧",
    "<|im_start|>",
    "<|endoftext|>",
    " ",
    "  ",
    "\n",
    "\n\n",
    "\t",
    "\r\n",
    "\u00a0",
    "\u3000",
]


@functools.cache
def tokenizer(name: str):
    from transformers import AutoTokenizer

    from cprs_engine.checkpoint import qwen2_tokenizer_dir, smollm2_base

    path = qwen2_tokenizer_dir() if name == "qwen2" else smollm2_base(1)[2]
    return AutoTokenizer.from_pretrained(path)


def whole(tok, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    return enc["input_ids"], [tuple(o) for o in enc["offset_mapping"]]


def check_same(tok, text: str, chunk_chars: int) -> None:
    ids, offsets = encode(tok, text, chunk_chars)
    want_ids, want_offsets = whole(tok, text)
    assert ids.dtype == np.int32 and offsets.dtype == np.int64 and offsets.shape == (len(ids), 2)
    assert ids.tolist() == want_ids
    assert [tuple(o) for o in offsets.tolist()] == want_offsets
    assert count(tok, text, chunk_chars) == len(want_ids)


@pytest.mark.parametrize("name", ["qwen2", "smollm2"])
@settings(max_examples=150, deadline=None)
@given(
    parts=st.lists(st.sampled_from(PIECES), min_size=1, max_size=60),
    chunk_chars=st.integers(1, 24),
)
def test_chunked_equals_whole(name, parts, chunk_chars):
    check_same(tokenizer(name), "".join(parts), chunk_chars)


@pytest.mark.parametrize("name", ["qwen2", "smollm2"])
def test_long_prose_many_chunks(name):
    from benchmarks._docs import haystack

    text = haystack()[:400_000]
    assert len(cut_points(text, 1000)) > 100
    check_same(tokenizer(name), text, 1000)


def test_cut_points_only_single_spaces_between_non_spaces():
    text = "ab  cd\te f g\n h i"
    cuts = cut_points(text, 1)
    assert cuts == [8, 10, 15]
    for i in cuts:
        assert text[i] == " " and not text[i - 1].isspace() and not text[i + 1].isspace()
    assert cut_points(text, 9) == [10]  # at least chunk_chars apart, the first at >= chunk_chars
    assert cut_points("你好。再见。" * 100, 5) == []  # no spaces: one chunk
    assert cut_points("", 5) == []
    with pytest.raises(ValueError):
        cut_points(text, 0)
