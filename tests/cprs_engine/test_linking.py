"""Linked windows: a partition of the tokens, and linked paragraphs share a window."""

from __future__ import annotations

import re

import numpy as np

from cprs_engine.linking import link_windows, pieces, terms
from cprs_engine.windows import split_windows


def word_offsets(text: str) -> np.ndarray:
    """A tokenizer stand-in: words with their leading whitespace, as byte-level BPE does."""
    return np.array([m.span() for m in re.finditer(r"\s*\S+", text)], dtype=np.int64)


def filler(k: int) -> str:
    return f"Paragraph {k} describes gardens, rivers and weather in plain words. It ends here."


QUERY = "When was the album containing Desperado released?"
FIRST = "Desperado is a song by Rihanna from her eighth studio album Anti."
SECOND = "Anti is the eighth record by Rihanna. It came out on 28 January 2016."
DOC = "\n\n".join(
    [FIRST] + [filler(k) for k in range(40)] + [SECOND] + [filler(k) for k in range(40, 60)]
)


def windows_of(text: str, query: str, w: int):
    offsets = word_offsets(text)
    return offsets, link_windows(text, offsets, split_windows(text, offsets, w), query, w)


def window_holding(offsets, groups, text: str, needle: str) -> int:
    at = text.index(needle)
    tok = int(np.searchsorted(offsets[:, 0], at, side="right")) - 1
    return next(g for g, segs in enumerate(groups) if any(a <= tok < b for a, b in segs))


def test_linked_windows_partition_the_tokens():
    for w in (16, 40, 64, 200):
        offsets, groups = windows_of(DOC, QUERY, w)
        seen = np.zeros(len(offsets), dtype=np.int64)
        for segs in groups:
            assert sum(b - a for a, b in segs) <= w
            assert all(a < b for a, b in segs)
            assert all(x[1] <= y[0] for x, y in zip(segs, segs[1:], strict=False))  # in order
            for a, b in segs:
                seen[a:b] += 1
        assert (seen == 1).all(), "every token in exactly one window"


def test_the_bridge_paragraph_joins_the_question_paragraph():
    offsets, linked = windows_of(DOC, QUERY, 64)
    assert window_holding(offsets, linked, DOC, FIRST) == window_holding(
        offsets, linked, DOC, SECOND
    )
    contiguous = [((w.tok_start, w.tok_end),) for w in split_windows(DOC, offsets, 64)]
    assert window_holding(offsets, contiguous, DOC, FIRST) != window_holding(
        offsets, contiguous, DOC, SECOND
    )
    assert windows_of(DOC, QUERY, 64)[1] == linked  # deterministic


def test_without_query_terms_the_pieces_stay_in_document_order():
    offsets, groups = windows_of(DOC, "Zebra xylophone quokka?", 64)
    flat = [seg for segs in groups for seg in segs]
    assert flat == sorted(flat)
    assert flat == pieces(DOC, offsets, split_windows(DOC, offsets, 64))


def test_terms_drop_short_and_stop_words():
    assert terms("The Eiffel Tower was finished in 1889, and it is tall.") == {
        "eiffel",
        "tower",
        "finished",
        "1889",
        "tall",
    }


def test_degenerate_inputs():
    assert link_windows("", np.zeros((0, 2), dtype=np.int64), [], "q", 8) == []
    offsets = word_offsets("one")
    assert link_windows("one", offsets, split_windows("one", offsets, 8), "one", 8) == [((0, 1),)]
