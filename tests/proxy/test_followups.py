"""proxy.followups: the pure pieces (span subtraction, the excerpt block, insertion, requery)."""

from __future__ import annotations

from cprs_engine.result import Span
from proxy.detect import find_documents
from proxy.followups import excerpt_block, insert_excerpts, new_pieces, requery_text

TEXT = "Alpha one. Beta two. Gamma three. Delta four."


def span(a: int, b: int, score: float = 1.0) -> Span:
    return Span(a, b, TEXT[a:b], score)


def at(word: str) -> tuple[int, int]:
    a = TEXT.index(word)
    return a, TEXT.index(".", a) + 1


def test_new_pieces_leaves_out_what_is_covered_and_keeps_document_order():
    spans = [span(*at("Gamma")), span(*at("Alpha")), span(*at("Beta"))]
    got = new_pieces(spans, [at("Beta")])
    assert [p.text for p in got] == ["Alpha one.", "Gamma three."]
    assert all(TEXT[p.start : p.end] == p.text for p in got)


def test_a_span_cut_by_covered_ranges_keeps_its_exact_uncovered_pieces():
    whole = span(0, len(TEXT), 0.7)
    got = new_pieces([whole], [at("Beta"), at("Delta")])
    assert [p.text for p in got] == ["Alpha one.", "Gamma three."]
    assert {p.score for p in got} == {0.7}
    assert all(TEXT[p.start : p.end] == p.text for p in got)


def test_overlapping_covered_ranges_and_punctuation_leftovers():
    a, b = at("Beta")
    got = new_pieces([span(a, b)], [(a, b - 1), (a + 2, b - 3)])
    assert got == []  # only "." is left


def test_excerpt_block_joins_like_the_view():
    pieces = [span(*at("Alpha")), span(*at("Gamma"))]
    block = excerpt_block(pieces, marker="document-excerpt", granularity="sentence")
    assert block == "<document-excerpt>\nAlpha one.\nGamma three.\n</document-excerpt>"
    para = excerpt_block(pieces, marker="x", granularity="paragraph")
    assert para == "<x>\nAlpha one.\n\nGamma three.\n</x>"


def test_insert_excerpts_copies_only_the_changed_message():
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "q1"},
            {"role": "assistant", "content": "a"},
            {"role": "user", "content": [{"type": "text", "text": "q2"}]},
        ],
        "extra": {"k": 1},
    }
    before = repr(body)
    out = insert_excerpts(body, {0: ["<e>\nA\n</e>", "<e>\nB\n</e>"], 2: ["<e>\nC\n</e>"]})
    assert repr(body) == before  # the client's object is untouched
    assert out["messages"][0]["content"] == "<e>\nA\n</e>\n\n<e>\nB\n</e>\n\nq1"
    assert out["messages"][1] is body["messages"][1]
    assert out["messages"][2]["content"][0] == {"type": "text", "text": "<e>\nC\n</e>"}
    assert out["extra"] is body["extra"]
    assert insert_excerpts(body, {}) is body


def test_requery_text_joins_the_questions_from_the_documents_turn_on():
    messages = [
        {"role": "user", "content": "q0"},
        {"role": "assistant", "content": "a"},
        {"role": "user", "content": "<document>" + "w " * 50 + "</document>\nq1"},
        {"role": "assistant", "content": "a"},
        {"role": "user", "content": "q2"},
        {"role": "assistant", "content": "a"},
        {"role": "user", "content": "q3"},
    ]
    det = find_documents(
        messages,
        markers=["document"],
        threshold_tokens=10,
        system_min_tokens=10,
        compress_user_parts=True,
        count=lambda t: len(t.split()),
    )
    (doc,) = det.documents
    assert doc.turn == 1 and det.latest_turn == 3
    assert [q.message for q in det.later_questions(doc.turn)] == [4, 6]
    assert requery_text(doc, det) == "q1\nq2\nq3"
