"""Follow-up questions about a document sent in an earlier turn (the policy's `followups`).

Every chat client resends the whole history, so each request holds every document as the client
sent it and every question asked since. A document is compressed for the question of the turn
it was sent in (its "view"); what happens when a later turn asks something else:

    stable   nothing: the later question is answered from the first question's view.
    requery  the document is compressed in place for all its questions so far, joined in
             conversation order (`requery_text`). The prefix changes once per new question.
    append   the document keeps its view, byte for byte, and each later turn t gets the spans a
             compression for q_t adds to what the conversation already shows:
                 new_t = spans(doc, q_t) - (view ∪ new_{t0+1} ∪ ... ∪ new_{t-1})
             put at the start of turn t's question message as one excerpt block per document
             (`<document-excerpt>…</document-excerpt>`, in document order). Every earlier turn's
             excerpt is rebuilt the same way on every request (from the cache, or recomputed
             deterministically when it is cold), so the bytes before the latest question are
             the bytes the previous turn's request carried, and providers' prompt caches hold.

Excerpt text is exact substrings of the client's own document, joined like the view (the
granularity's separator). No score threshold filters it: the critic's span scores do not rank
answer sentences above the rest of a view (see docs/proxy.md), so a threshold would drop answers.

Pure functions over parsed messages and spans; nothing here mutates the client's object.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from cprs_engine.decoding import SEPARATORS
from cprs_engine.result import Span
from proxy.detect import Detection, Document

QUESTION_JOINER = "\n"  # requery: the questions of a conversation, oldest first


def requery_text(doc: Document, detection: Detection) -> str | None:
    """The document's own question followed by every later turn's question (requery)."""
    if doc.query is None:
        return None
    later = [q.text for q in detection.later_questions(doc.turn)]
    return QUESTION_JOINER.join([doc.query, *later])


def new_pieces(spans: Sequence[Span], covered: Iterable[tuple[int, int]]) -> list[Span]:
    """The parts of `spans` outside every `covered` char range, in document order.

    A span that the covered ranges cut is kept in pieces (each still an exact substring, trimmed
    of surrounding whitespace); pieces with no letter or digit are dropped."""
    ranges = sorted(covered)
    out: list[Span] = []
    for s in sorted(spans, key=lambda s: s.start):
        pos = s.start
        for a, b in ranges:
            if b <= pos or a >= s.end:
                continue
            if a > pos:
                out.extend(_piece(s, pos, a))
            pos = max(pos, b)
        if pos < s.end:
            out.extend(_piece(s, pos, s.end))
    return out


def _piece(span: Span, a: int, b: int) -> list[Span]:
    text = span.text[a - span.start : b - span.start]
    lead = len(text) - len(text.lstrip())
    body = text.strip()
    if not any(c.isalnum() for c in body):
        return []
    start = a + lead
    return [Span(start, start + len(body), body, span.score)]


def excerpt_block(pieces: Sequence[Span], *, marker: str, granularity: str) -> str:
    """`<marker>\\n{pieces joined like the view}\\n</marker>`."""
    joined = SEPARATORS.get(granularity, "\n").join(p.text for p in pieces)
    return f"<{marker}>\n{joined}\n</{marker}>"


def insert_excerpts(body: dict, blocks: dict[int, list[str]]) -> dict:
    """A copy of `body` with each message's excerpt blocks put before its text.

    String content becomes `blocks + "\\n\\n" + content`; a list of parts gets one text part
    first. Only the path to a changed message is copied."""
    if not blocks:
        return body
    out = dict(body)
    messages = list(body["messages"])
    out["messages"] = messages
    for index, texts in blocks.items():
        if not texts:
            continue
        block = "\n\n".join(texts)
        msg = dict(messages[index])
        content = msg.get("content")
        if isinstance(content, list):
            msg["content"] = [{"type": "text", "text": block}, *content]
        else:
            msg["content"] = f"{block}\n\n{content or ''}"
        messages[index] = msg
    return out
