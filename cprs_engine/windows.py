"""Window-parallel input splitting (paper §2.2).

A long context is cut into windows of at most `w` tokens; each window is scored with the same
prompt and query prefix, and `ρ` windows share one forward pass. Windows are cut at sentence
ends where possible, so that a sentence the critic should keep is seen whole. The reference
(`build_request_sample_with_sent`) re-tokenizes sentence by sentence; here the whole context is
tokenized once and the windows are ranges of that one tokenization, which keeps token offsets
global and makes the split O(N) (numpy searchsorted, no per-token Python).

Invariants (asserted): windows partition the tokens [0, N) and the characters [0, len(text));
window i's char_end == window i+1's char_start == the char start of its first token; no cut
falls between two tokens that share a character (byte-level BPE splits a CJK char or an emoji
over several tokens with overlapping offsets).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# A terminal punctuation run, closing quotes/brackets after it, then trailing whitespace.
# Latin terminals (. ! ?) and CJK ones (。！？；… and full-width ．) alike; a bare newline run
# ends a line-sentence (titles, list items). A Latin semicolon joins two clauses of one
# sentence, as the training data's splitter (data/text.py) has it: a supporting fact written
# "X; Y" must not decode as two units of which only one may be kept.
_END_RE = re.compile(
    r"(?P<p>[.!?。！？；…．]+[\"'”’」』）)\]]*)(?P<ws>\s*)|(?P<nl>\n)\s*",
)
_CJK_TERMINALS = frozenset("。！？；…．")
_ABBREVIATIONS = frozenset(
    [
        "mr",
        "mrs",
        "ms",
        "dr",
        "st",
        "jr",
        "sr",
        "vs",
        "etc",
        "fig",
        "eq",
        "al",
        "e.g",
        "i.e",
        "cf",
        "approx",
        "dept",
        "inc",
        "ltd",
        "co",
        "v",
        "mt",
        "ph",
        "prof",
        "gen",
        "gov",
        "sen",
        "rev",
        "capt",
        "col",
        "lt",
        "sgt",
        "ft",
        "ave",
    ]
)
# Initials and dotted abbreviations: "R." in "Thomas R. Suozzi", "U.S.", "D.C.", "a.k.a.".
_INITIALS_RE = re.compile(r"[a-z](?:\.[a-z])*")
_WORD_BEFORE = re.compile(r"(?<![A-Za-z0-9])([A-Za-z][A-Za-z.]*)$")
_BLANK_LINE_RE = re.compile(r"\n[ \t\r\f\v]*\n\s*")
_NEWLINE_RE = re.compile(r"\n\s*")
_WHITESPACE_CODES = np.array([ord(c) for c in map(chr, range(0x3001)) if c.isspace()], np.uint32)


@dataclass(frozen=True)
class Window:
    """Tokens [tok_start, tok_end) of the one tokenization; chars [char_start, char_end)."""

    char_start: int
    char_end: int
    tok_start: int
    tok_end: int


def _is_sentence_end(text: str, m: re.Match[str]) -> bool:
    """Whether a terminal-punctuation match really ends a sentence (cheap heuristics).

    CJK terminals always end one. A Latin terminal glued to a lower-case letter or a digit
    does not ("3.14", "e.g.", "example.com"); glued to an upper-case letter it does
    ("mistakes.If you", as in the Paul Graham haystack). A period followed by a lower-case
    word, or after a known abbreviation or an initial ("e.g. the", "Mr. Smith", "Thomas R.
    Suozzi", "the U.S. Senate"), does not: a sentence ending in a lone capital ("World War
    I. The") is the price, one unit too long rather than a name cut in two.
    """
    punct = m.group("p")
    if any(c in _CJK_TERMINALS for c in punct):
        return True
    nxt = text[m.end()] if m.end() < len(text) else ""
    if not nxt:
        return True
    if nxt.isdigit() or nxt.islower():
        return False
    if punct.rstrip("\"'”’」』）)]")[-1:] == ".":
        word = _WORD_BEFORE.search(text, max(0, m.start() - 12), m.start())
        before = word.group(1).lower().rstrip(".") if word else ""
        if before in _ABBREVIATIONS or _INITIALS_RE.fullmatch(before):
            return False
    return True


def _sentence_gaps(text: str) -> tuple[list[int], list[int]]:
    """(P, E): sentence k's terminal punctuation ends at P[k]; its trailing whitespace at E[k].

    Any cut in [P[k], E[k]] separates sentence k from the next one. The text's end is always
    the last entry. Both lists are strictly increasing.
    """
    ps: list[int] = []
    es: list[int] = []
    for m in _END_RE.finditer(text):
        if m.group("nl") is not None:
            p = m.start("nl")
        elif _is_sentence_end(text, m):
            p = m.end("p")
        elif "\n" in m.group("ws"):  # not a sentence end, but still a line end
            p = m.start("ws") + m.group("ws").index("\n")
        else:
            continue
        e = m.end()
        if es and e <= es[-1]:
            continue
        ps.append(p)
        es.append(e)
    if text and (not es or es[-1] < len(text)):
        ps.append(len(text))
        es.append(len(text))
    return ps, es


def _line_gaps(text: str) -> tuple[list[int], list[int]]:
    """`_sentence_gaps` for line-structured text (code, logs, JSON, markdown): only line ends
    count, so a window never opens inside a line ("httpx.Client" is no sentence end)."""
    ps: list[int] = []
    es: list[int] = []
    for m in _NEWLINE_RE.finditer(text):
        ps.append(m.start())
        es.append(m.end())
    if text and (not es or es[-1] < len(text)):
        ps.append(len(text))
        es.append(len(text))
    return ps, es


def sentence_ends(text: str) -> list[int]:
    """Char offsets where sentences end: after the terminal punctuation, its closing quotes and
    the trailing whitespace (which stays with the sentence, as in the reference). Strictly
    increasing, each in (0, len(text)]; the last is len(text). Empty text: []."""
    return _sentence_gaps(text)[1]


def paragraph_ends(text: str) -> list[int]:
    """Char offsets where paragraphs end (after the separating newlines). Paragraphs are
    separated by blank lines; a text without any blank line uses single newlines instead.
    Strictly increasing; the last is len(text). Empty text: []."""
    pattern = _BLANK_LINE_RE if _BLANK_LINE_RE.search(text) else _NEWLINE_RE
    ends = [m.end() for m in pattern.finditer(text) if m.end() > 0]
    ends = [e for i, e in enumerate(ends) if i == 0 or e > ends[i - 1]]
    if text and (not ends or ends[-1] < len(text)):
        ends.append(len(text))
    return ends


def split_windows(
    text: str,
    offsets: Sequence[tuple[int, int]] | np.ndarray,
    window_tokens: int,
    *,
    lines: bool = False,
) -> list[Window]:
    """Cut one tokenization of `text` into windows of at most `window_tokens` tokens.

    `offsets` are the per-token (start, end) char offsets of the whole text (an HF fast
    tokenizer's `offset_mapping`, no special tokens). Windows are packed greedily with whole
    sentences; a sentence longer than a window is cut at a token boundary. The only case a
    window can exceed `window_tokens` is when one character's tokens alone exceed it (a
    window smaller than 4 tokens with byte-level BPE), since a cut never splits a character.
    Empty text gives []; a non-empty text with no tokens gives one token-less window.
    `lines=True` (every document type but prose, cprs_engine/doctypes.py) packs whole lines
    instead of sentences: code, logs and JSON have periods that end nothing.
    """
    if window_tokens < 1:
        raise ValueError(f"window_tokens must be >= 1, got {window_tokens}")
    off = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    n = len(off)
    if not text:
        assert n == 0, f"empty text but {n} tokens"
        return []
    if n == 0:
        return [Window(0, len(text), 0, 0)]
    starts, ends = off[:, 0], off[:, 1]
    assert starts.min() >= 0 and ends.max() <= len(text), "token offsets outside the text"
    assert (np.diff(starts) >= 0).all(), "token start offsets must be non-decreasing"

    # Per-token arrays in int32 (token indices and char offsets both fit) and temporaries
    # freed as soon as used: at a million tokens each int64 array is 8 MB, and this function
    # was the peak of a whole compression's memory (~130 B a token) before they were cut.
    cuttable = window_starts(off).astype(np.int32)
    cut_chars = starts[cuttable].astype(np.int32)
    # A sentence cut: the token starts inside a sentence's [P, E] gap (k = which sentence).
    ps, es = _line_gaps(text) if lines else _sentence_gaps(text)
    k = np.searchsorted(np.asarray(ps, dtype=np.int64), cut_chars, side="right").astype(np.int32)
    k -= 1
    in_gap = cut_chars <= np.asarray(es, dtype=np.int32)[np.maximum(k, 0)]
    in_gap &= k >= 0
    sentence_cuts = cuttable[in_gap]
    sentence_gap = k[in_gap]
    del k, in_gap, ps, es
    # A word cut: whitespace on either side of the boundary (tier 2, for over-long sentences).
    space = _whitespace_mask(text)
    word = space[cut_chars]
    word |= space[np.maximum(cut_chars - 1, 0)]
    del space, cut_chars
    tiers = [cuttable[word], cuttable]  # arrays, not lists: per-token lists cost ~36 B a token

    bounds = [0]
    cur, cur_gap = 0, -1
    while n - cur > window_tokens:
        limit = cur + window_tokens
        cut, gap = -1, -1
        j = _last_at_most(sentence_cuts, limit)
        # a later cut in the gap `cur` already sits in would only split off whitespace
        if j >= 0 and sentence_cuts[j] > cur and sentence_gap[j] != cur_gap:
            cut, gap = int(sentence_cuts[j]), int(sentence_gap[j])
        for cuts in tiers:
            if cut >= 0:
                break
            j = _last_at_most(cuts, limit)
            if j >= 0 and cuts[j] > cur:
                cut = int(cuts[j])
        if cut < 0:  # one character's tokens exceed the window: take the next legal cut
            j = _last_at_most(tiers[-1], cur) + 1
            if j == len(tiers[-1]):
                break
            cut = int(tiers[-1][j])
        bounds.append(cut)
        cur, cur_gap = cut, gap
    bounds.append(n)

    windows = []
    for i in range(len(bounds) - 1):
        t0, t1 = bounds[i], bounds[i + 1]
        c0 = 0 if i == 0 else int(starts[t0])
        c1 = len(text) if i == len(bounds) - 2 else int(starts[t1])
        windows.append(Window(c0, c1, t0, t1))
    _check(windows, text, n)
    return windows


def window_starts(offsets: np.ndarray) -> np.ndarray:
    """Token indices i (1 <= i < n) where a window may start: token i shares no character with
    the tokens before it (byte-level BPE spreads a CJK character or an emoji over several)."""
    reach = np.maximum.accumulate(offsets[:, 1])  # furthest char any token <= i covers
    return np.flatnonzero(offsets[1:, 0] >= reach[:-1]) + 1


def _last_at_most(sorted_arr: np.ndarray, value: int) -> int:
    """Index of the last element <= value, -1 if none (bisect_right - 1 on an array)."""
    return int(np.searchsorted(sorted_arr, value, side="right")) - 1


def _whitespace_mask(text: str, chunk_chars: int = 1 << 20) -> np.ndarray:
    """Per character (plus one past the end): is it whitespace. Vectorized over code points,
    a chunk at a time: the whole text as UTF-32 would be 4 bytes a character at once."""
    mask = np.zeros(len(text) + 1, dtype=bool)
    for a in range(0, len(text), chunk_chars):
        codes = np.frombuffer(text[a : a + chunk_chars].encode("utf-32-le"), dtype=np.uint32)
        mask[a : a + len(codes)] = np.isin(codes, _WHITESPACE_CODES)
    return mask


def _check(windows: list[Window], text: str, n: int) -> None:
    assert windows[0].char_start == 0 and windows[0].tok_start == 0, "first window not at 0"
    assert windows[-1].char_end == len(text), "last window does not end at the text's end"
    assert windows[-1].tok_end == n, "last window does not end at the last token"
    for a, b in zip(windows, windows[1:], strict=False):
        assert a.char_end == b.char_start, f"char gap/overlap between {a} and {b}"
        assert a.tok_end == b.tok_start, f"token gap/overlap between {a} and {b}"
    for w in windows:
        assert w.tok_start < w.tok_end or n == 0, f"empty window {w}"
        assert w.char_start <= w.char_end, f"negative window {w}"
