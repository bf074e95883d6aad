"""A small sentence splitter and a span-tracking text builder for the data generators.

No NLTK here (its data is not offline). The splitter is regex-based: a sentence ends at
`.`, `!`, `?` (and Chinese `。！？`), optionally followed by closing quotes/brackets or a
footnote mark like `[6]`, when whitespace, the end of text or an upper-case letter follows
(the Paul Graham haystack glues many sentences together: "mistakes.If you ..."). Blank
lines end a sentence too. A few common abbreviations do not end a sentence.
"""

from __future__ import annotations

import re

_END = re.compile(
    r"(?:[.!?]+|[。！？]+)[\"'”’)\]]*(?:\[\d+\])?(?=\s|$|[A-Z\"“])|[。！？]+|\n[ \t]*\n"
)
_ABBREV = re.compile(
    r"(?:\b(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|vs|etc|No|Co|Inc|Ltd|Mt|Gen|Col|Lt)|\b[A-Z])\.$"
)


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of `text`, trimmed of surrounding whitespace.

    Spans are sorted, non-overlapping and non-empty; whitespace between them belongs to
    no sentence.
    """
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _END.finditer(text):
        end = m.end()
        if m.group().startswith(".") and _ABBREV.search(text[max(0, end - 6) : m.start() + 1]):
            continue
        _push(text, start, end, spans)
        start = end
    _push(text, start, len(text), spans)
    return spans


def _push(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end > start:
        spans.append((start, end))


class Builder:
    """Appends text pieces and records the character spans of the gold ones.

    Building the context piece by piece is what makes gold spans exact by construction;
    `build()` still re-checks each span against the text that was added.
    """

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._n = 0
        self._gold: list[tuple[int, int, str]] = []

    def __len__(self) -> int:
        return self._n

    def tail(self) -> str:
        """The last character added ("" when empty)."""
        return self._parts[-1][-1:] if self._parts else ""

    def add(self, text: str, gold: bool = False) -> None:
        if gold:
            assert text and text == text.strip(), f"gold piece must be trimmed: {text!r}"
            self._gold.append((self._n, self._n + len(text), text))
        self._parts.append(text)
        self._n += len(text)

    def build(self) -> tuple[str, list[tuple[int, int]]]:
        context = "".join(self._parts)
        spans = []
        for s, e, t in self._gold:
            assert context[s:e] == t, f"gold span {s}:{e} does not hold the inserted text"
            spans.append((s, e))
        return context, spans
