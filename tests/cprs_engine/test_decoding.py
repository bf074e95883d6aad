"""Span decoding: tag correction, spans, expansion, merge, budget, join."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cprs_engine.decoding import (
    B,
    E,
    I,
    O,
    apply_budget,
    check_spans,
    correct_tags,
    decode,
    expand,
    extend_weak,
    join,
    lower_tags,
    merge,
    tags_to_spans,
)
from cprs_engine.result import Span
from cprs_engine.windows import paragraph_ends, sentence_ends

TAG = {"B": B, "I": I, "O": O, "E": E}


def tags(s: str) -> list[int]:
    return [TAG[c] for c in s]


def untag(t: list[int]) -> str:
    return "".join("BIOE"[x] for x in t)


def count_words(s: str) -> int:
    return len(re.findall(r"\w+|[^\w\s]", s))


def walk_oracle(seq: list[int], max_gap: int) -> list[int]:
    """The correction as the reference describes it, one walk per B (then per E), quadratic."""
    out = list(seq)
    for step, opener in ((1, B), (-1, E)):
        order = range(len(out)) if step == 1 else range(len(out) - 1, -1, -1)
        for start in [i for i in order if out[i] == opener]:
            last, j = start, start + step
            while 0 <= j < len(out):
                if out[j] == O:
                    j += step
                    continue
                if abs(j - last) >= max_gap:
                    break
                for k in range(min(last, j) + 1, max(last, j)):
                    out[k] = I
                if out[j] in (B, E):
                    break
                last, j = j, j + step
    return out


# Hand-worked from the reference's semantics.
@pytest.mark.parametrize(
    ("before", "max_gap", "after"),
    [
        ("BOOIOE", 20, "BIIIIE"),  # from B: fill up to the I, then up to the E, stop
        ("BOOI", 3, "BOOI"),  # a gap of 3 positions is not < 3
        ("BOI", 3, "BII"),
        ("OIOOE", 20, "OIIIE"),  # backward from E over the I
        ("BOEOOI", 20, "BIEOOI"),  # the forward walk stops at E; the trailing I is not reached
        ("BOOB", 20, "BIIB"),  # stops at the next B, which opens its own walk
        ("OOOO", 20, "OOOO"),
        ("IOOI", 20, "IOOI"),  # no B or E: nothing opens a walk
        ("B" + "O" * 19 + "I", 20, "B" + "O" * 19 + "I"),  # 20 apart: too far
        ("B" + "O" * 18 + "I", 20, "B" + "I" * 19),
        ("EOOB", 20, "EOOB"),  # E walks left, B walks right: nothing between them
    ],
)
def test_correct_tags_hand_worked(before, max_gap, after):
    assert untag(correct_tags(tags(before), max_gap)) == after


def test_correct_tags_does_not_mutate_its_input():
    t = tags("BOOE")
    correct_tags(t)
    assert untag(t) == "BOOE"


_TAGS = st.lists(st.sampled_from([B, I, O, O, O, E]), max_size=80)


@settings(max_examples=300, deadline=None)
@given(_TAGS, st.integers(1, 8))
def test_correct_tags_matches_walk_oracle_and_is_idempotent(seq, max_gap):
    once = correct_tags(seq, max_gap)
    assert once == walk_oracle(seq, max_gap)
    assert correct_tags(once, max_gap) == once
    # only O becomes I; nothing else changes
    assert all(a == b or (a == O and b == I) for a, b in zip(seq, once, strict=True))


def word_tokens(text: str) -> list[tuple[int, int]]:
    """A tokenizer stand-in: words with their leading whitespace, as byte-level BPE does."""
    return [m.span() for m in re.finditer(r"\s*(\w+|[^\w\s])|\s+$", text)]


def test_tags_to_spans_hand_worked():
    text = "Hello world. Foo bar."
    offsets = word_tokens(text)
    assert [text[a:b] for a, b in offsets] == ["Hello", " world", ".", " Foo", " bar", "."]
    spans = tags_to_spans(tags("OBIOBE"), offsets, text, [0.0, 0.9, 0.7, 0.1, 0.6, 0.4])
    assert [s.text for s in spans] == ["world.", "bar."]
    assert spans[0].start == 6 and spans[0].end == 12
    assert spans[0].score == pytest.approx(0.8) and spans[1].score == pytest.approx(0.5)
    # an E does not close a span; a B does
    assert [s.text for s in tags_to_spans(tags("BEIOBI"), offsets, text, [1.0] * 6)] == [
        "Hello world.",
        "bar.",
    ]


def test_punctuation_only_and_short_spans_are_dropped():
    text = "Hello world. Foo bar."
    offsets = word_tokens(text)
    assert tags_to_spans(tags("OOBOOB"), offsets, text, [1.0] * 6) == []
    spans = tags_to_spans(tags("BIOBOO"), offsets, text, [1.0] * 6, min_tokens=2)
    assert [s.text for s in spans] == ["Hello world"]


def test_expand_to_sentence_and_paragraph():
    text = "First one here. Second has the needle inside. Third.\n\nNew paragraph. Last."
    i = text.index("needle")
    key = [Span(i, i + 6, "needle", 0.9)]
    assert expand(key, text, "keyword") == key
    (s,) = expand(key, text, "sentence")
    assert s.text == "Second has the needle inside." and s.score == 0.9
    (p,) = expand(key, text, "paragraph")
    assert p.text == "First one here. Second has the needle inside. Third."
    j = text.index("Last")
    assert [x.text for x in expand([Span(j, j + 4, "Last", 0.5)], text, "paragraph")] == [
        "New paragraph. Last."
    ]


def test_expand_coalesces_spans_in_one_sentence():
    text = "Alpha beta gamma. Delta."
    spans = [Span(0, 5, "Alpha", 1.0), Span(11, 16, "gamma", 0.0)]
    (s,) = expand(spans, text, "sentence")
    assert s.text == "Alpha beta gamma." and s.score == 1.0  # the best detection


def test_merge_touching_and_whitespace_separated():
    text = "New York is big. Paris too."
    spans = [Span(0, 3, "New", 1.0), Span(4, 8, "York", 0.5), Span(17, 22, "Paris", 0.2)]
    merged = merge(spans, text)
    assert [s.text for s in merged] == ["New York", "Paris"]
    assert merged[0].score == pytest.approx((3 * 1.0 + 4 * 0.5) / 7)  # length-weighted
    assert [s.text for s in merge(spans, text, max_gap_chars=-1)] == ["New", "York", "Paris"]


def test_budget_keeps_best_in_document_order():
    spans = [Span(0, 6, "aa bb.", 0.5), Span(7, 16, "cc dd ee.", 0.9), Span(17, 20, "ff.", 0.5)]
    kept = apply_budget(spans, 6, count_words)  # costs 3, 4, 2
    assert [s.text for s in kept] == ["cc dd ee.", "ff."]
    assert [s.text for s in apply_budget(spans, 100, count_words)] == [s.text for s in spans]


def test_budget_truncates_a_single_oversized_span_at_a_word_end():
    text = "one two three four five six"
    spans = [Span(0, len(text), text, 0.7)]
    (s,) = apply_budget(spans, 3, count_words)
    assert s.text == "one two three" and s.start == 0 and count_words(s.text) <= 3
    assert apply_budget([Span(0, 6, "abcdef", 1.0)], 1, lambda t: len(t)) == []
    with pytest.raises(ValueError):
        apply_budget(spans, 0, count_words)


def test_join_separators():
    spans = [Span(0, 1, "a", 1.0), Span(2, 3, "b", 1.0)]
    assert join(spans, "sentence") == "a\nb"
    assert join(spans, "keyword") == "a\nb"
    assert join(spans, "paragraph") == "a\n\nb"


def test_check_spans_rejects_broken_spans():
    with pytest.raises(AssertionError):
        check_spans([Span(0, 2, "xy", 1.0)], "ab")
    with pytest.raises(AssertionError):
        check_spans([Span(1, 2, "b", 1.0), Span(0, 1, "a", 1.0)], "ab")


_PIECES = st.sampled_from(
    ["word", "Other", " ", "  ", ".", ". ", "!", "\n", "\n\n", "。", "你好", "3.14", ",", "é"]
)


@st.composite
def documents(draw):
    text = "".join(draw(st.lists(_PIECES, min_size=1, max_size=60)))
    offsets = word_tokens(text) or [(0, len(text))]
    n = len(offsets)
    seq = draw(st.lists(st.sampled_from([B, I, O, E]), min_size=n, max_size=n))
    scores = draw(st.lists(st.floats(0, 1), min_size=n, max_size=n))
    return text, offsets, seq, scores


@settings(max_examples=300, deadline=None)
@given(documents(), st.sampled_from(["keyword", "sentence", "paragraph"]), st.integers(1, 30))
def test_pipeline_properties(doc, granularity, budget):
    text, offsets, seq, scores = doc
    spans = tags_to_spans(correct_tags(seq), offsets, text, scores)
    check_spans(spans, text)
    assert all(0.0 <= s.score <= 1.0 for s in spans)
    assert all(s.text == s.text.strip() for s in spans)

    wide = expand(spans, text, granularity)
    check_spans(wide, text)
    covered = [(s.start, s.end) for s in wide]
    for s in spans:  # every detected span lies inside some expanded span
        assert any(a <= s.start and s.end <= b for a, b in covered)
    if granularity == "sentence":
        ends = set(sentence_ends(text)) | {0}
        for s in wide:  # starts at a sentence start (after trimming whitespace)
            assert any(text[e : s.start].strip() == "" and e <= s.start for e in ends)
    if granularity == "paragraph":
        assert paragraph_ends(text)[-1] == len(text)

    merged = merge(wide, text)
    check_spans(merged, text)
    for a, b in zip(merged, merged[1:], strict=False):
        assert text[a.end : b.start].strip(), "whitespace-separated spans must have merged"

    kept = apply_budget(wide, budget, count_words)
    check_spans(kept, text)
    assert sum(count_words(s.text) for s in kept) <= budget

    compressed, out = decode(
        seq,
        offsets,
        text,
        scores,
        granularity=granularity,
        budget_tokens=budget,
        count_tokens=count_words,
    )
    check_spans(out, text)
    assert count_words(compressed) <= budget
    assert compressed == join(out, granularity)


@settings(max_examples=100, deadline=None)
@given(documents())
def test_decode_without_budget_keeps_every_detection(doc):
    text, offsets, seq, scores = doc
    compressed, out = decode(seq, offsets, text, scores, granularity="keyword")
    detected = tags_to_spans(correct_tags(seq), offsets, text, scores)
    for s in detected:
        assert any(o.start <= s.start and s.end <= o.end for o in out)
        assert s.text in compressed


def test_expand_falls_back_when_a_unit_is_a_whole_unsplit_text():
    text = " ".join(["word"] * 1000) + " needle " + " ".join(["word"] * 1000)
    i = text.index("needle")
    hit = [Span(i, i + 6, "needle", 0.9)]
    assert [s.text for s in expand(hit, text, "sentence")] == ["needle"]
    assert [s.text for s in expand(hit, text, "sentence", max_unit_chars=10**6)] == [text]
    # a paragraph too long for a unit falls back to its sentence
    para = ("Filler sentence here. " * 700) + "The needle is here. " + "More filler. " * 10
    j = para.index("needle")
    (s,) = expand([Span(j, j + 6, "needle", 0.9)], para, "paragraph")
    assert s.text == "The needle is here."


WEAK_TEXT = (
    "East Is East is a 1999 film. It is set in Salford. Its cast is large. The end.\n\n"
    "Another paragraph starts. Unrelated here."
)


def weak_case(support_by_sentence: dict[str, float]):
    """Word tokens, support per sentence (by its first word), one kept span: the first sentence."""
    offsets = word_tokens(WEAK_TEXT)
    bounds = sentence_ends(WEAK_TEXT)
    support = []
    for a, _ in offsets:
        k = sum(b <= a for b in bounds)  # the sentence this token starts in
        first = WEAK_TEXT[bounds[k - 1] if k else 0 :].split()[0]
        support.append(support_by_sentence.get(first, 0.0))
    kept = [Span(0, 28, WEAK_TEXT[:28], 0.9)]
    assert kept[0].text == "East Is East is a 1999 film."
    return kept, offsets, support


def test_extend_weak_adds_only_the_supported_neighbour_in_the_paragraph():
    kept, offsets, support = weak_case({"It": 0.35, "Its": 0.9, "Another": 0.9})
    scores = [0.2] * len(offsets)
    out = extend_weak(kept, WEAK_TEXT, offsets, support, scores, 0.3)
    # "It is set..." joins (0.35 >= 0.3); "Its cast..." is two sentences away: not a
    # neighbour of a kept one, however strong; "Another..." is in the next paragraph.
    assert [s.text for s in out] == ["East Is East is a 1999 film.", "It is set in Salford."]
    assert out[0].score == 0.9 and out[1].score == pytest.approx(0.2)
    assert extend_weak(kept, WEAK_TEXT, offsets, support, scores, 0.4) == kept
    assert extend_weak([], WEAK_TEXT, offsets, support, scores, 0.3) == []


def test_extend_weak_counts_the_first_word_token_of_a_neighbour():
    """Byte-level tokens carry the space before a word; the neighbour's first token (where its
    B is predicted) starts before the trimmed sentence and must still count."""
    kept, offsets, support = weak_case({})
    first = next(k for k, (a, _) in enumerate(offsets) if WEAK_TEXT[a:].startswith(" It "))
    support[first] = 0.6
    out = extend_weak(kept, WEAK_TEXT, offsets, support, [0.0] * len(offsets), 0.5)
    assert [s.text for s in out][-1] == "It is set in Salford."


def test_decode_with_a_weak_threshold_only_adds_neighbours():
    offsets = word_tokens(WEAK_TEXT)
    t = [O] * len(offsets)
    t[0], t[1] = B, I  # "East Is": the first sentence is detected
    support = [0.95, 0.95] + [0.4] * (len(offsets) - 2)
    plain, _ = decode(t, offsets, WEAK_TEXT, [0.5] * len(t))
    weak, spans = decode(t, offsets, WEAK_TEXT, [0.5] * len(t), support=support, weak_threshold=0.3)
    assert plain == "East Is East is a 1999 film."
    assert weak == "East Is East is a 1999 film. It is set in Salford."
    check_spans(spans, WEAK_TEXT)
    # keyword and paragraph granularity have no sentence neighbours to add
    kw, _ = decode(
        t,
        offsets,
        WEAK_TEXT,
        [0.5] * len(t),
        granularity="keyword",
        support=support,
        weak_threshold=0.3,
    )
    assert kw == "East Is"


def test_lower_tags_keeps_every_token_the_threshold_reaches():
    tags = [O, B, E, O, O]
    support = [0.1, 0.9, 0.8, 0.35, 0.29]
    assert lower_tags(tags, support, 0.3) == [O, B, E, I, O]
    assert lower_tags(tags, support, 0.95) == tags  # never removes what the argmax kept


def test_decode_with_a_keep_threshold_adds_whole_sentences_anywhere():
    offsets = word_tokens(WEAK_TEXT)
    t = [O] * len(offsets)
    t[0], t[1] = B, I  # "East Is": the first sentence is detected
    support = [0.95, 0.95] + [0.0] * (len(offsets) - 2)
    far = next(k for k, (a, _) in enumerate(offsets) if WEAK_TEXT[a:].startswith(" Unrelated"))
    support[far] = 0.4  # a lone token, two sentences and a paragraph away
    scores = [0.5] * len(t)
    plain, _ = decode(t, offsets, WEAK_TEXT, scores, support=support, keep_threshold=0.5)
    kept, spans = decode(t, offsets, WEAK_TEXT, scores, support=support, keep_threshold=0.3)
    assert plain == "East Is East is a 1999 film."
    assert kept == "East Is East is a 1999 film.\nUnrelated here."
    check_spans(spans, WEAK_TEXT)
    kw, _ = decode(
        t, offsets, WEAK_TEXT, scores, granularity="keyword", support=support, keep_threshold=0.3
    )
    assert kw == "East Is"  # sentence granularity only


@pytest.mark.parametrize(
    "neighbour, kept, expected",
    [
        ("It is set in Salford.", "East Is East is a 1999 film.", True),  # refers back
        ("His father was a miner.", "Bob Smith is a poet.", True),
        ("The latter won in 1990.", "A and B ran.", True),
        ("Robert Rodriguez is a filmmaker.", "It was directed by Robert Rodriguez.", True),
        ("However, kinetic friction differs.", "VAR OOKAZ = VAR XGYYE.", False),  # unrelated
        ("The Rhine drains the Alps.", "One of the magic numbers is 42.", False),
        ("It grew out of folk rock.", "VAR YBCAU = 49741.", False),  # nothing to refer to
    ],
)
def test_a_neighbour_is_linked_by_a_referring_first_word_or_a_shared_term(
    neighbour, kept, expected
):
    from cprs_engine.decoding import linked

    assert linked(neighbour, kept) is expected


def test_extend_weak_leaves_out_a_supported_neighbour_that_is_not_linked(monkeypatch):
    """A statement planted in a text (a variable assignment): the sentence after it, however
    supported, is not its bridge; without the link requirement it joins."""
    from cprs_engine import decoding

    text = "VAR QKNSL = 37221. The Rhine drains the Alps.\n\nOther text."
    offsets = word_tokens(text)
    kept = [Span(0, 18, text[:18], 0.9)]
    support = [0.5] * len(offsets)
    scores = [0.1] * len(offsets)
    assert extend_weak(kept, text, offsets, support, scores, 0.3) == kept
    monkeypatch.setattr(decoding, "WEAK_NEEDS_LINK", False)
    out = extend_weak(kept, text, offsets, support, scores, 0.3)
    assert [s.text for s in out] == ["VAR QKNSL = 37221.", "The Rhine drains the Alps."]


FAINT_CODE = "def f(x):\n    return x\n\n\ndef load_dtype(y):\n    return y\n"


def faint_case(hit: str, support_at_hit: float):
    """Tags for FAINT_CODE: `return x` detected for sure, plus the tokens of `hit` (a piece of
    the second function) at `support_at_hit`."""
    offsets = word_tokens(FAINT_CODE)
    t, support = [O] * len(offsets), [0.0] * len(offsets)
    first = next(k for k, (a, b) in enumerate(offsets) if FAINT_CODE[a:b].strip() == "return")
    t[first], t[first + 1], support[first], support[first + 1] = B, E, 0.99, 0.99
    at = FAINT_CODE.index(hit)
    for k, (a, b) in enumerate(offsets):
        if a < at + len(hit) and b > at:
            t[k], support[k] = I, support_at_hit
    return t, offsets, support


@pytest.mark.parametrize(
    "hit, support_at_hit, kept",
    [
        ("load_dtype", 0.5, False),  # one faint sub-word: no line, no context for it
        ("load_dtype", 0.95, True),  # the critic is sure of it
        ("load_dtype(y):", 0.5, True),  # more than FAINT_TOKENS tokens
    ],
)
def test_a_faint_short_span_keeps_no_line_of_a_structured_type(hit, support_at_hit, kept):
    t, offsets, support = faint_case(hit, support_at_hit)
    out, spans = decode(t, offsets, FAINT_CODE, support, support=support, doc_type="code")
    check_spans(spans, FAINT_CODE)
    assert "return x" in out
    assert ("def load_dtype(y):" in out) is kept
    prose, _ = decode(t, offsets, FAINT_CODE, support, support=support)
    assert "load_dtype" in prose  # prose keeps its faint hits


def test_a_faint_hit_on_a_line_naming_a_word_of_the_question_stays():
    t, offsets, support = faint_case("load_dtype", 0.5)
    asked = "Where is `load_dtype` defined?"
    out, _ = decode(t, offsets, FAINT_CODE, support, support=support, doc_type="code", query=asked)
    assert "def load_dtype(y):" in out
    other = "Where is the value returned?"
    out, _ = decode(t, offsets, FAINT_CODE, support, support=support, doc_type="code", query=other)
    assert "def load_dtype(y):" not in out


STRAY_TEXT = (
    "VAR QKNSL = 37221. Abu was a geologist. Rivers drain QKNSL basins.\n\nA lone clue sits here."
)


@pytest.mark.parametrize(
    "hit, kept",
    [
        ("Abu", False),  # faint, next to the clear statement, not linked to it: a run-on
        ("lone", True),  # faint but in another paragraph: the only trace of something
        ("Abu was a", True),  # three tokens: not faint
    ],
)
def test_a_faint_hit_next_to_a_clear_sentence_needs_a_link(hit, kept):
    offsets = word_tokens(STRAY_TEXT)
    t, support = [O] * len(offsets), [0.0] * len(offsets)
    end = STRAY_TEXT.index(" Abu")
    at, to = STRAY_TEXT.index(hit), STRAY_TEXT.index(hit) + len(hit)
    for k, (a, b) in enumerate(offsets):
        if b <= end:
            t[k], support[k] = I, 0.99
        elif a < to and b > at:
            t[k], support[k] = I, 0.86
    t[0] = B
    out, spans = decode(t, offsets, STRAY_TEXT, support, support=support)
    check_spans(spans, STRAY_TEXT)
    assert out.startswith("VAR QKNSL = 37221.")
    sentence = next(s for s in ("Abu was a geologist.", "A lone clue sits here.") if hit in s)
    assert (sentence in out) is kept


def test_a_faint_hit_in_a_linked_neighbour_stays():
    """`Rivers drain QKNSL basins.` shares a term with the statement before it: no run-on."""
    text = "VAR QKNSL = 37221. Rivers drain QKNSL basins. Abu was a geologist."
    offsets = word_tokens(text)
    t, support = [O] * len(offsets), [0.0] * len(offsets)
    for k, (a, b) in enumerate(offsets):
        if b <= text.index(" Rivers"):
            t[k], support[k] = I, 0.99
        elif text[a:b].strip() == "drain":
            t[k], support[k] = B, 0.6
    t[0] = B
    out, _ = decode(t, offsets, text, support, support=support)
    assert out == "VAR QKNSL = 37221. Rivers drain QKNSL basins."


@pytest.mark.parametrize(
    "hit, kept",
    [
        ("the", False),  # a faint stop word is no trace of anything
        ("sits", True),  # a faint word is
    ],
)
def test_a_faint_hit_without_a_content_word_keeps_nothing(hit, kept):
    filler = "The river runs far from here, past many old towns and over the wide plain. " * 2
    text = f"VAR QKNSL = 37221. Abu was a geologist.\n\n{filler}\n\nA clue sits on the shelf."
    offsets = word_tokens(text)
    t, support = [O] * len(offsets), [0.0] * len(offsets)
    far = text.index("A clue")
    for k, (a, b) in enumerate(offsets):
        if b <= text.index(" Abu"):
            t[k], support[k] = I, 0.99
        elif a >= far - 1 and text[a:b].strip() == hit:
            t[k], support[k] = I, 0.5
    t[0] = B
    out, _ = decode(t, offsets, text, support, support=support)
    assert ("A clue sits on the shelf." in out) is kept


def test_a_faint_piece_of_a_word_counts_as_that_word():
    """`IT` alone is no content word, but it is a piece of `VPITF`: that sentence stays."""
    from cprs_engine.decoding import _words_around

    text = "VAR HBROO = VAR VPITF."
    at = text.index("IT")
    assert _words_around(text, Span(at, at + 2, "IT", 0.5)) == "VPITF"
