"""Linked windows: which pieces of a document share a window (an engine option, off by default).

The critic sees one window at a time. In a multi-hop question ("Where was the director of
"Desperado" born?") the second fact ("Z (born in W) is a director ...") names the bridge entity
Z, not the question's words; its window rarely also holds the first fact, which is what names
Z. The critic was trained on windows that mostly hold both, and alone it keeps the second one
far less often. Contiguous windows put paragraphs together by accident of position; linked
windows put them together on purpose:

    pieces: the contiguous windows (`split_windows`), cut again at paragraph ends
    terms:  a piece's lower-cased words of 3+ characters, less a short stop list; idf over pieces
    seeds:  pieces sharing terms with the query, best query score first (ties: document order)
    a seed's window: add the unplaced piece that fits with the highest
            (idf of the non-query terms it shares with the window so far) + (its query score),
            while that reaches MIN_SCORE
    the rest: unplaced pieces in document order, packed up to the window size

Only the grouping changes; each window is still <= `window_tokens` tokens, its pieces run in
document order, and every token is scored exactly once, so decoding maps back by offsets as
before. Terms in more than max(MAX_DF, N / 16) pieces are not followed as links (they link
everything, and following them would make the grouping quadratic in a long document).
Deterministic: no randomness, every tie broken by document order.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

from cprs_engine.windows import Window, paragraph_ends, window_starts

Segments = tuple[tuple[int, int], ...]  # token ranges [start, end), in document order

MIN_SCORE = 2.0
MAX_DF = 64
_WORD = re.compile(r"\w+")
_STOP_WORDS = (
    "the and for with that this from was were are has have had its his her their they them "
    "which who whom what when where why how not but also into than then there these those "
    "been being over such only other more most some any all one two can may will would about "
    "after before between during under while"
)
_STOP = frozenset(_STOP_WORDS.split())


def terms(text: str) -> set[str]:
    return {w for w in (m.lower() for m in _WORD.findall(text)) if len(w) >= 3 and w not in _STOP}


def as_segments(windows: Sequence[Window]) -> list[Segments]:
    """Contiguous windows as one-range segment tuples."""
    return [((w.tok_start, w.tok_end),) for w in windows]


def pieces(text: str, offsets: np.ndarray, windows: Sequence[Window]) -> list[tuple[int, int]]:
    """Token ranges: the windows' cuts plus a cut at every paragraph end where a window could
    start (`windows.window_starts`)."""
    off = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    n = len(off)
    if n == 0:
        return []
    allowed = window_starts(off)
    ends = np.searchsorted(off[:, 0], np.asarray(paragraph_ends(text), dtype=np.int64))
    cuts = {0, n} | {w.tok_start for w in windows} | set(np.intersect1d(ends, allowed).tolist())
    b = sorted(cuts)
    return [(b[k], b[k + 1]) for k in range(len(b) - 1) if b[k + 1] > b[k]]


def link_windows(
    text: str,
    offsets: np.ndarray,
    windows: Sequence[Window],
    query: str,
    window_tokens: int,
) -> list[Segments]:
    """The document's pieces grouped into windows of at most `window_tokens` tokens."""
    ps = pieces(text, offsets, windows)
    if not ps:
        return as_segments(windows)
    off = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    ix = _Index([terms(text[int(off[a, 0]) : int(off[b - 1, 1])]) for a, b in ps], terms(query))
    size = [b - a for a, b in ps]
    placed = [False] * len(ps)
    groups: list[list[int]] = []
    seeds = sorted((k for k in range(len(ps)) if ix.qs[k] > 0), key=lambda k: (-ix.qs[k], k))
    for s in seeds:
        if not placed[s]:
            groups.append(_grow(ix, s, seeds, size, placed, window_tokens))
    cur: list[int] = []
    room = window_tokens
    for k in range(len(ps)):
        if placed[k]:
            continue
        if cur and size[k] > room:
            groups.append(cur)
            cur, room = [], window_tokens
        cur.append(k)
        room -= size[k]
    if cur:
        groups.append(cur)
    return [tuple(ps[k] for k in g) for g in groups]


class _Index:
    """Per-piece terms, idf over pieces, query scores, and postings of the followable terms."""

    def __init__(self, piece_terms: list[set[str]], query_terms: set[str]):
        n = len(piece_terms)
        df: dict[str, int] = {}
        for ts in piece_terms:
            for t in ts:
                df[t] = df.get(t, 0) + 1
        self.terms = piece_terms
        self.query = query_terms
        self.idf = {t: math.log((n + 1) / (c + 0.5)) for t, c in df.items()}
        self.qs = [sum(self.idf[t] for t in ts & query_terms) for ts in piece_terms]
        max_df = max(MAX_DF, n // 16)
        self.postings: dict[str, list[int]] = {}
        for k, ts in enumerate(piece_terms):
            for t in ts - query_terms:
                if df[t] <= max_df:
                    self.postings.setdefault(t, []).append(k)


def _grow(
    ix: _Index, seed: int, seeds: list[int], size: list[int], placed: list[bool], room: int
) -> list[int]:
    """One window from `seed`: add the best-scoring piece that fits until none reaches
    MIN_SCORE. `link[x]`: idf of the non-query terms piece x shares with the window."""
    group, held, link = [seed], set(), {}
    placed[seed] = True
    room -= size[seed]
    k = seed
    while True:
        for t in ix.terms[k] - ix.query - held:
            held.add(t)
            for x in ix.postings.get(t, ()):
                link[x] = link.get(x, 0.0) + ix.idf[t]
        best, best_score = -1, MIN_SCORE
        for x, v in link.items():  # linked pieces: link + query score
            if not placed[x] and size[x] <= room:
                sc = v + ix.qs[x]
                if sc > best_score or (sc == best_score and x < best):
                    best, best_score = x, sc
        for x in seeds:  # the best unlinked piece: its query score alone
            if not placed[x] and x not in link and size[x] <= room:
                if ix.qs[x] > best_score or (ix.qs[x] == best_score and x < best):
                    best, best_score = x, ix.qs[x]
                break  # seeds run in query-score order: the first that fits is the best
        if best < 0:
            return sorted(group)
        group.append(best)
        placed[best] = True
        room -= size[best]
        k = best
