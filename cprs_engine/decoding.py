"""Span decoding: tags → lowered tags → corrected tags → char spans → granularity → weak
neighbours → budget → merge → text.

Every span is an exact substring of the input (`text[s.start:s.end] == s.text`); spans move by
offsets only, text is never edited, so the compressed context never holds words that were not
in the input. Lists of spans are kept in document order and non-overlapping (asserted).

Labels are the critic's boundary tags B=0, I=1, O=2, E=3.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Callable, Sequence

import numpy as np

from cprs_engine import doctypes, structure
from cprs_engine.anchors import ANCHOR_SCORE
from cprs_engine.codeindex import CodeIndex
from cprs_engine.linking import terms
from cprs_engine.result import Span
from cprs_engine.windows import paragraph_ends, sentence_ends

B, I, O, E = 0, 1, 2, 3  # noqa: E741  (the paper's label names)

# Kept spans are joined with one separator per granularity. Keywords go one per line, not
# space-joined, so that two distant keywords never read as one phrase ("Paris 1889").
SEPARATORS = {"keyword": "\n", "sentence": "\n", "paragraph": "\n\n"}
# Longer "units" are texts without boundaries; expansion then falls back (see `expand`).
MAX_UNIT_CHARS = {"sentence": 2_000, "paragraph": 12_000}
_WORD_END = re.compile(r"[^\W\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff]+|\S")


def correct_tags(tags: Sequence[int], max_gap: int = 20) -> list[int]:
    """Bridge short O-runs inside predicted spans (the reference's `correct_tag_pred`).

    Forward pass: from each B, walk right over the non-O tags; whenever the next non-O tag is
    fewer than `max_gap` positions past the previous one (an O-run of at most max_gap - 2),
    the O-run between them becomes I. The walk stops after reaching a B or an E (that gap
    still filled), at a gap of `max_gap` or more, or at the end. Backward pass: the mirror
    image, from each E walking left and stopping at a B or an E. The backward pass runs on
    the forward pass's output.

    The reference's backward loop moves the wrong index when it meets an O (an endless loop
    whenever an E follows an O) and never looks at position 0; this is the intended mirror.
    One left-to-right (and one right-to-left) scan: O(n), returns a new list, idempotent.
    """
    out = list(tags)
    _bridge(out, range(len(out)), start=B, max_gap=max_gap)
    _bridge(out, range(len(out) - 1, -1, -1), start=E, max_gap=max_gap)
    return out


def _bridge(tags: list[int], order: range, *, start: int, max_gap: int) -> None:
    """One correction pass over `order`; a walk opens at `start` (B forward, E backward)."""
    active, last = False, -1
    for i in order:
        t = tags[i]
        if t == O:
            continue
        if active:
            if abs(i - last) < max_gap:
                lo, hi = sorted((last, i))
                tags[lo + 1 : hi] = [I] * (hi - lo - 1)
            else:
                active = False
        if t == start:
            active, last = True, i
        elif t in (B, E):
            active = False
        elif active:
            last = i


def lower_tags(tags: Sequence[int], support: Sequence[float], threshold: float) -> list[int]:
    """Tags with every O token whose `support` (1 - P(O)) reaches `threshold` turned into I.

    The argmax keeps a token only where one inside class beats O; a multi-hop fact the critic
    half-believes (P(O) just above one half, the rest spread over B, I and E) is lost by it.
    A threshold on the support keeps it, and the unit expansion after it makes it the whole
    sentence. The same threshold holds everywhere in the document, unlike `extend_weak`'s,
    which is for the neighbours of kept sentences only.
    """
    sup = np.asarray(support, dtype=np.float32)
    out = np.asarray(tags, dtype=np.int8).copy()
    out[(sup >= threshold) & (out == O)] = I
    return out.tolist()


def tags_to_spans(
    tags: Sequence[int],
    offsets: Sequence[tuple[int, int]],
    text: str,
    scores: Sequence[float],
    *,
    min_tokens: int = 1,
) -> list[Span]:
    """Char spans from (corrected) tags, as the reference's `get_pred_set_bi`. `offsets` and
    `scores` may be lists or numpy arrays ((n, 2) and (n,)): they are read per span only.

    A span opens at a non-O token and runs until the next O or B (an E does not close it).
    It covers chars [offsets[start][0], offsets[end][0]), or to the last token's end; its
    score is the mean of the tokens' `scores`. Surrounding whitespace is trimmed by moving
    the offsets; empty and punctuation-only spans are dropped, as are spans of fewer than
    `min_tokens` tokens (the reference API drops keywords of <= 4 tokens: min_tokens=5).
    """
    n = len(tags)
    assert len(offsets) == n == len(scores), (
        f"{n} tags, {len(offsets)} offsets, {len(scores)} scores"
    )
    spans: list[Span] = []
    i = 0
    while i < n:
        if tags[i] == O:
            i += 1
            continue
        j = i + 1
        while j < n and tags[j] not in (O, B):
            j += 1
        if j - i >= min_tokens:
            a = int(offsets[i][0])
            b = int(offsets[j][0] if j < n else offsets[n - 1][1])
            a, b = _trim(text, a, min(max(a, b), len(text)))
            if b > a and not _punctuation_only(text[a:b]):
                score = sum(float(s) for s in scores[i:j]) / (j - i)
                spans.append(Span(a, b, text[a:b], score))
        i = j
    check_spans(spans, text)
    return spans


def expand(
    spans: Sequence[Span],
    text: str,
    granularity: str,
    *,
    bounds: Sequence[int] | None = None,
    max_unit_chars: int | None = None,
) -> list[Span]:
    """Widen spans to the granularity's units: keyword as is; sentence/paragraph to the
    enclosing sentence/paragraph (`windows.sentence_ends` / `paragraph_ends`, or `bounds`
    given precomputed), trimmed of whitespace. Spans that land in the same unit become one
    (overlaps only; touching units stay apart until `merge`) scored by its best detection:
    a sentence holding one strong hit is a strong sentence, whatever else it holds.

    A unit longer than `max_unit_chars` (default MAX_UNIT_CHARS) is not a unit but a text
    without boundaries (one giant line, a table): a paragraph falls back to the sentence, a
    sentence to the span itself, so one hit never keeps a whole unsplit document.
    """
    if granularity == "keyword":
        return list(spans)
    if granularity not in SEPARATORS:
        raise ValueError(f"unknown granularity {granularity!r}")
    if bounds is None:
        bounds = sentence_ends(text) if granularity == "sentence" else paragraph_ends(text)
    limit = MAX_UNIT_CHARS[granularity] if max_unit_chars is None else max_unit_chars
    sentences: Sequence[int] | None = None
    ranges = []
    for s in spans:
        a, b = _unit(bounds, s, text)
        if b - a > limit and granularity == "paragraph":
            sentences = sentence_ends(text) if sentences is None else sentences
            a, b = _unit(sentences, s, text)
            limit_s = MAX_UNIT_CHARS["sentence"]
            a, b = (a, b) if b - a <= limit_s else (s.start, s.end)
        elif b - a > limit:
            a, b = s.start, s.end
        ranges.append((a, b, s.score))
    return _coalesce(ranges, text, max_gap_chars=-1, score="max")


def _unit(bounds: Sequence[int], s: Span, text: str) -> tuple[int, int]:
    """The trimmed unit [last bound <= start, first bound >= end) around a span."""
    k = bisect.bisect_right(bounds, s.start) - 1
    a = bounds[k] if k >= 0 else 0
    k = bisect.bisect_left(bounds, s.end)
    b = bounds[k] if k < len(bounds) else len(text)
    a, b = _trim(text, a, b)
    return min(a, s.start), max(b, s.end)  # a unit never shrinks a span


# A weak neighbour joins only a kept sentence it is linked to (`linked`).
WEAK_NEEDS_LINK = True
# First words by which a sentence refers back to the one before it.
_REFERRING = frozenset(
    ("he", "she", "it", "they", "his", "her", "its", "their", "them", "him", "this", "these",
     "that", "those", "such", "both", "there", "each", "neither", "either")
)  # fmt: skip
_REFERRING_PAIRS = frozenset(("the latter", "the former"))
_WORDY = re.compile(r"\b[A-Za-z][a-z]{2,}\b")  # a word, not a code: "film", "Desperado"


def linked(neighbour: str, kept: str) -> bool:
    """Whether a neighbour sentence can be read as going with a kept one: it opens with a word
    that refers back ("It was directed by ...", "His father ...") to a kept sentence written
    in words (one with nothing but codes and numbers, `VAR X = 12`, has nothing to refer to),
    or it shares a content word with it (`linking.terms`: 3+ letters, not a stop word)."""
    words = neighbour.split(maxsplit=2)
    first = words[0].strip("\"'([").lower() if words else ""
    refers = first in _REFERRING or " ".join(words[:2]).lower().rstrip(",") in _REFERRING_PAIRS
    if refers and _WORDY.search(kept):
        return True
    return bool(terms(neighbour) & terms(kept))


# A structured type's unit is a whole line (or statement) with its context: a span of at most
# FAINT_TOKENS tokens, none of them at SURE support, is a stray sub-word (`_dtype`, `wise`,
# `://`) and does not keep one (`drop_faint`).
FAINT_TOKENS = 2
SURE = 0.9
# Prose: a faint span (at most STRAY_TOKENS tokens) next to a clear detection needs a link to
# it, and one touching only stop words keeps nothing (`drop_stray`); 0 turns both off.
STRAY_TOKENS = 2


def drop_faint(
    spans: Sequence[Span],
    text: str,
    offsets: Sequence[tuple[int, int]],
    support: Sequence[float],
    query: str = "",
) -> list[Span]:
    """Spans of code, markdown, logs and JSON without the faint ones: at most FAINT_TOKENS
    tokens, no token's `support` at SURE, and a line that shares no word with the question.

    In prose a faint hit costs its sentence; in a structured type it costs a whole line or
    statement and the context that makes it readable (enclosing signatures, a heading path),
    and the critic's faint hits there are mostly pieces of identifiers and URLs that resemble
    the question's kind of answer (`wise` of `Piecewise`, `_dtype`, `://`: measured in
    docs/document-types.md). A faint hit on a line that names a word of the question (`ap` of
    `self.leapdays` for "Where is `leapdays` applied?") is a real one. Prose keeps them all:
    there a lone token at 0.5 can be the only trace of a half-believed fact. Symbol anchors
    are added after this.
    """
    starts = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)[:, 0]
    sup = np.asarray(support, dtype=np.float32)
    asked = terms(query)
    out = []
    for s in spans:
        if faint(s, starts, sup, FAINT_TOKENS):
            a = text.rfind("\n", 0, s.start) + 1
            b = text.find("\n", s.end)
            if not asked & terms(text[a : b if b >= 0 else len(text)]):
                continue
        out.append(s)
    return out


def faint(span: Span, starts: np.ndarray, sup: np.ndarray, max_tokens: int) -> bool:
    """At most `max_tokens` tokens (those overlapping the span, so the token " wise" of the
    span "wise" counts) and none at SURE support."""
    i = max(int(np.searchsorted(starts, span.start, side="right")) - 1, 0)
    j = int(np.searchsorted(starts, span.end))
    return j - i <= max_tokens and not (j > i and float(sup[i:j].max()) >= SURE)


def drop_stray(
    spans: Sequence[Span],
    text: str,
    offsets: Sequence[tuple[int, int]],
    support: Sequence[float],
    bounds: Sequence[int],
) -> list[Span]:
    """Prose: faint spans (at most STRAY_TOKENS tokens) in a sentence next to one holding a
    clear detection, when that sentence is not `linked` to it: the critic's span running on
    past a planted statement into the unrelated sentence after it (" Abu" at 0.86), or a word
    there that resembles the question. A faint span anywhere else stays (the only trace of a
    half-believed fact), unless the words it touches are stop words only (a lone " the" at
    0.44 kept a whole sentence about a Warsaw museum for a variable-tracking question)."""
    starts = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)[:, 0]
    sup = np.asarray(support, dtype=np.float32)
    paragraphs = paragraph_ends(text)
    spans = [p for s in spans for p in _split_at(s, text, bounds)]
    weak = [faint(s, starts, sup, STRAY_TOKENS) for s in spans]
    where = [bisect.bisect_right(bounds, s.start) for s in spans]
    clear = {k for k, w in zip(where, weak, strict=True) if not w}

    def stray(k: int) -> bool:  # sentence k sits next to a clear one it is not linked to
        a, b = _sentence(text, bounds, k)
        par = bisect.bisect_right(paragraphs, a)
        return any(
            bisect.bisect_right(paragraphs, na) == par and not linked(text[a:b], text[na:nb])
            for na, nb in (_sentence(text, bounds, n) for n in (k - 1, k + 1) if n in clear)
        )

    return [
        s
        for s, w, k in zip(spans, weak, where, strict=True)
        if not w or (terms(_words_around(text, s)) and (k in clear or not stray(k)))
    ]


def _sentence(text: str, bounds: Sequence[int], k: int) -> tuple[int, int]:
    """Unit k of `bounds` (ends, as `sentence_ends`), trimmed of whitespace."""
    return _trim(text, bounds[k - 1] if k else 0, bounds[k])


def _words_around(text: str, span: Span) -> str:
    """The span widened to whole words (`IT` of `VPITF` is the word `VPITF`)."""
    a, b = span.start, span.end
    while a > 0 and (text[a - 1].isalnum() or text[a - 1] == "_"):
        a -= 1
    while b < len(text) and (text[b].isalnum() or text[b] == "_"):
        b += 1
    return text[a:b]


def _split_at(span: Span, text: str, bounds: Sequence[int]) -> list[Span]:
    """A span cut at the unit bounds inside it, each piece trimmed, with the span's score."""
    cuts = bounds[bisect.bisect_right(bounds, span.start) : bisect.bisect_left(bounds, span.end)]
    if not cuts:
        return [span]
    out = []
    for a, b in zip([span.start, *cuts], [*cuts, span.end], strict=True):
        a, b = _trim(text, a, b)
        if b > a:
            out.append(Span(a, b, text[a:b], span.score))
    return out


def extend_weak(
    spans: Sequence[Span],
    text: str,
    offsets: Sequence[tuple[int, int]],
    support: Sequence[float],
    scores: Sequence[float],
    threshold: float,
    *,
    bounds: Sequence[int] | None = None,
) -> list[Span]:
    """Hysteresis at sentence granularity: the sentence just before and the one just after each
    kept sentence join it when they lie in the same paragraph and their best token's
    `support` (the critic's probability that the token is not O) reaches `threshold`.

    The argmax tags keep a sentence only where some token is more likely inside than outside;
    a bridge sentence next to a kept one ("It is set in Salford." after the film's opening
    sentence) is often seen at 0.3-0.5 and lost. Only neighbours of strong detections are
    lowered to `threshold`, so a weak sentence anywhere else stays out and the cost in
    compression stays local. One step, not repeated from the sentences it adds. An added
    sentence is scored like a detected span (the mean of its tokens' `scores`), for the
    budget. Units longer than MAX_UNIT_CHARS["sentence"] are never added. With WEAK_NEEDS_LINK
    a neighbour must also be `linked` to the kept sentence: an unrelated sentence around a
    statement planted in a text (a needle, a variable assignment) is not its bridge.
    """
    if not spans:
        return list(spans)
    if bounds is None:
        bounds = sentence_ends(text)
    paragraphs = paragraph_ends(text)
    off = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    starts = off[:, 0]
    support = np.asarray(support, dtype=np.float32)
    limit = MAX_UNIT_CHARS["sentence"]

    ranges = [(s.start, s.end, s.score) for s in spans]
    held = [
        (bisect.bisect_right(bounds, s.start), bisect.bisect_left(bounds, s.end)) for s in spans
    ]
    seen = {k for first, last in held for k in range(first, last + 1)}
    for s, (first, last) in zip(spans, held, strict=True):
        par = bisect.bisect_right(paragraphs, s.start)
        for k in (first - 1, last + 1):
            if not 0 <= k < len(bounds) or k in seen:
                continue
            seen.add(k)
            a, b = _sentence(text, bounds, k)
            if not a < b <= a + limit or bisect.bisect_right(paragraphs, a) != par:
                continue
            # Its tokens: those overlapping [a, b), so the first word's token (" He", which
            # starts at the space before the unit) counts: its B is the sentence's start.
            i, j = int(np.searchsorted(starts, a)), int(np.searchsorted(starts, b))
            if i > 0 and off[i - 1, 1] > a:
                i -= 1
            if WEAK_NEEDS_LINK and not linked(text[a:b], text[s.start : s.end]):
                continue
            if j > i and float(support[i:j].max()) >= threshold:
                score = sum(float(x) for x in scores[i:j]) / (j - i)
                ranges.append((a, b, score))
    return _coalesce(ranges, text, max_gap_chars=-1, score="max")


def merge(
    spans: Sequence[Span], text: str, *, max_gap_chars: int = 0, score: str = "mean"
) -> list[Span]:
    """Merge spans that overlap, touch, are at most `max_gap_chars` apart, or are separated
    only by whitespace (max_gap_chars=-1: overlapping spans only). The merged span keeps the
    original text between its parts. Its score is by default the length-weighted mean of the
    parts' characters (a long weak span does not ride on a short strong one), or with
    score="max" the best part's."""
    return _coalesce([(s.start, s.end, s.score) for s in spans], text, max_gap_chars, score)


def _coalesce(
    ranges: list[tuple[int, int, float]], text: str, max_gap_chars: int, score: str
) -> list[Span]:
    """`merge` on (start, end, score) triples; texts are sliced once, at the end (a span that
    grows by many merges must not be re-sliced each time: that is quadratic)."""
    assert score in ("mean", "max"), f"unknown score rule {score!r}"
    merged: list[list] = []  # [start, end, sum of score * chars, chars, best score]
    for a, b, sc in sorted(ranges):
        if merged:
            m = merged[-1]
            if max_gap_chars < 0:
                joins = a < m[1]
            else:
                gap = text[m[1] : a]
                joins = a - m[1] <= max_gap_chars or not gap or gap.isspace()
            if joins:
                new = max(b - max(m[1], a), 0)  # chars this part adds
                m[1], m[2], m[3], m[4] = max(m[1], b), m[2] + sc * new, m[3] + new, max(m[4], sc)
                continue
        merged.append([a, b, sc * (b - a), b - a, sc])
    out = [
        Span(a, b, text[a:b], best if score == "max" or not n else min(1.0, max(0.0, w / n)))
        for a, b, w, n, best in merged
    ]
    check_spans(out, text)
    return out


def apply_budget(
    spans: Sequence[Span], budget_tokens: int, count_tokens: Callable[[str], int]
) -> list[Span]:
    """Keep the highest-scoring spans (ties: earlier first) whose token counts fit the budget,
    skipping any that does not fit and trying the next; result in document order.

    If no span fits on its own, the best one is cut to its longest prefix that fits, at a word
    end (a character for CJK): a user who asks for 100 tokens wants the best 100 tokens, not
    nothing. Only a first word larger than the budget gives [].
    """
    if budget_tokens < 1:
        raise ValueError(f"budget_tokens must be >= 1, got {budget_tokens}")
    ranked = sorted(range(len(spans)), key=lambda k: (-spans[k].score, spans[k].start))
    kept, used = [], 0
    for k in ranked:
        cost = count_tokens(spans[k].text)
        if used + cost <= budget_tokens:
            kept.append(k)
            used += cost
    if kept:
        return [spans[k] for k in sorted(kept)]
    if not spans:
        return []
    return _truncate(spans[ranked[0]], budget_tokens, count_tokens)


def _truncate(span: Span, budget: int, count_tokens: Callable[[str], int]) -> list[Span]:
    """The span's longest prefix ending at a word end with at most `budget` tokens."""
    cuts = [m.end() for m in _WORD_END.finditer(span.text)]
    lo, hi = 0, len(cuts)  # invariant: cuts[:lo] fit; binary search on prefix length
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_tokens(span.text[: cuts[mid - 1]]) <= budget:
            lo = mid
        else:
            hi = mid - 1
    if lo == 0:
        return []
    end = span.start + cuts[lo - 1]
    return [Span(span.start, end, span.text[: cuts[lo - 1]], span.score)]


def join(spans: Sequence[Span], granularity: str, *, mark: bool = False) -> str:
    """The compressed text: the spans' text joined by the granularity's separator; with `mark`
    (prose under `elision: marker`), a line holding `…` between every two spans (after
    `merge`, no two spans are adjacent in the input)."""
    sep = SEPARATORS[granularity]
    if mark and granularity != "keyword":
        sep = sep + structure.TEXT_MARKER + sep
    return sep.join(s.text for s in spans)


def decode(
    tags: Sequence[int],
    offsets: Sequence[tuple[int, int]],
    text: str,
    scores: Sequence[float],
    *,
    granularity: str = "sentence",
    budget_tokens: int | None = None,
    count_tokens: Callable[[str], int] | None = None,
    max_gap: int = 20,
    min_tokens: int = 1,
    support: Sequence[float] | None = None,
    weak_threshold: float | None = None,
    keep_threshold: float | None = None,
    doc_type: str = doctypes.PROSE,
    elision: str | None = None,
    anchors: Sequence[tuple[int, int]] = (),
    context: bool = True,
    code_index: CodeIndex | None = None,
    query: str = "",
) -> tuple[str, list[Span]]:
    """The whole pipeline: lower → correct → spans → expand → weak neighbours → budget → merge
    → join.

    `doc_type` other than prose, at sentence or paragraph granularity: after the spans, the
    type's own units, context and joins (structure.py). `elision` (structure.ELISIONS): whether
    joins carry a marker; None and `auto` are the type's default, which for prose is no marker.

    `support` (per token, the probability of not being O) with `keep_threshold` keeps every
    token it reaches (`lower_tags`), and with `weak_threshold` adds the weak neighbours of kept
    sentences (`extend_weak`); both at sentence granularity only.

    `anchors` (char ranges, anchors.py: the lines a question names by symbol) join the
    critic's spans of a structured type at sentence or paragraph granularity, scored
    `anchors.ANCHOR_SCORE`. `context=False` (a standalone prompt's extracts, such as needles):
    such a type keeps whole lines without the structure around them. `code_index`: the code
    document's `CodeIndex` when the caller has built one already (for its anchors).

    With `support`, faint spans go first: in a structured type those on lines sharing no word
    with `query` (`drop_faint`), in prose at sentence granularity the stray ones (`drop_stray`).

    The budget picks among granularity units before touching units are merged (so it chooses
    sentences, not one merged block). With a budget, the returned text's `count_tokens` is
    guaranteed <= budget_tokens: if joining added tokens, the weakest span is dropped again.
    """
    if granularity not in SEPARATORS:
        raise ValueError(f"unknown granularity {granularity!r}")
    if keep_threshold is not None and granularity == "sentence":
        assert support is not None, "keep_threshold needs the per-token support"
        tags = lower_tags(tags, support, keep_threshold)
    spans = tags_to_spans(correct_tags(tags, max_gap), offsets, text, scores, min_tokens=min_tokens)
    mark = structure.resolve_elision(elision, doc_type, granularity)
    if doc_type != doctypes.PROSE and granularity != "keyword":
        if support is not None:
            spans = drop_faint(spans, text, offsets, support, query)
        if weak_threshold is not None and granularity == "sentence":
            assert support is not None, "weak_threshold needs the per-token support"
            lines = None if doc_type == doctypes.MARKDOWN else line_ends(text)
            spans = extend_weak(spans, text, offsets, support, scores, weak_threshold, bounds=lines)
        if anchors:
            pinned = [Span(a, b, text[a:b], ANCHOR_SCORE) for a, b in anchors if b > a]
            spans = sorted([*spans, *pinned], key=lambda s: (s.start, s.end))
        return structure.decode(
            spans, text, doc_type, granularity,
            budget_tokens=budget_tokens, count_tokens=count_tokens, mark=mark, context=context,
            code_index=code_index,
        )  # fmt: skip
    bounds = sentence_ends(text) if granularity == "sentence" else None
    if bounds is not None and support is not None:
        spans = drop_stray(spans, text, offsets, support, bounds)
    spans = expand(spans, text, granularity, bounds=bounds)
    if weak_threshold is not None and granularity == "sentence":
        assert support is not None, "weak_threshold needs the per-token support"
        spans = extend_weak(spans, text, offsets, support, scores, weak_threshold, bounds=bounds)
    if budget_tokens is not None:
        assert count_tokens is not None, "a budget needs count_tokens"
        spans = apply_budget(spans, budget_tokens, count_tokens)
    spans = merge(spans, text)
    compressed = join(spans, granularity, mark=mark)
    while budget_tokens is not None and spans and count_tokens(compressed) > budget_tokens:
        weakest = min(range(len(spans)), key=lambda k: (spans[k].score, -spans[k].start))
        spans = spans[:weakest] + spans[weakest + 1 :]
        compressed = join(spans, granularity, mark=mark)
    return compressed, spans


def line_ends(text: str) -> list[int]:
    """Char offsets just past every newline, and the text's end: lines as `bounds`."""
    ends = [m.end() for m in re.finditer("\n", text)]
    if not ends or ends[-1] < len(text):
        ends.append(len(text))
    return ends


def check_spans(spans: Sequence[Span], text: str) -> None:
    """Assert the span invariants: in bounds, exact substrings, ordered, non-overlapping."""
    prev_end = 0
    for s in spans:
        assert 0 <= s.start < s.end <= len(text), f"span out of bounds: {s!r}"
        assert text[s.start : s.end] == s.text, f"span text is not the input's: {s!r}"
        assert s.start >= prev_end, f"spans overlap or are out of order at {s!r}"
        prev_end = s.end


def _trim(text: str, a: int, b: int) -> tuple[int, int]:
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return a, b


def _punctuation_only(s: str) -> bool:
    return all(c.isspace() or unicodedata.category(c)[0] in "PS" for c in s)
