"""One training/evaluation example for the token critic, and the helpers that build its parts.

An `Example` is what the critic sees for one window (training) or one document (evaluation):
the control prompt text, the user query, the context, and the gold character spans of the
critical content in the context. Spans are exact by construction (see `text.Builder`) and
`check()` re-verifies every invariant the trainer relies on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from cprs_engine.prompts import LIBRARY, ControlPrompt

from .sources import Corpora
from .text import Builder


@dataclass
class Example:
    prompt: str  # control prompt TEXT (a LIBRARY entry, placeholders possibly filled)
    query: str  # the user question; "" for non-query-aware prompts
    context: str
    spans: list[tuple[int, int]]  # gold char ranges in `context`: sorted, non-overlapping
    tag: str  # the prompt's tag word (LM-head critic target for gold tokens)
    task: str  # generator name, e.g. "niah_multikey"
    granularity: str  # keyword / sentence / paragraph
    prompt_name: str = ""  # LIBRARY key the prompt came from
    # Provenance and evaluation facts: "facts" (strings whose presence in a compressed text
    # counts as recall), "source" ("hotpot"/"squad"/"haystack"/"haystack:<source>"/"synthetic"/
    # "code"/"markdown"), "drawn" (haystacks and files other than the essays: ("squad", i),
    # ("hotpot", i), ("code"|"markdown", path)), "index" (the gold
    # item/article) and "indices" ({"hotpot": [...], "squad": [...]}: every item/article
    # drawn, for the reserved-split tests).
    meta: dict = field(default_factory=dict)

    def gold_texts(self) -> list[str]:
        return [self.context[s:e] for s, e in self.spans]

    def check(self) -> Example:
        """Assert the invariants: spans sorted, disjoint, in bounds, non-empty, trimmed."""
        prev = 0
        for s, e in self.spans:
            assert 0 <= prev <= s < e <= len(self.context), f"bad span {s}:{e} in {self.task}"
            piece = self.context[s:e]
            assert piece == piece.strip(), f"untrimmed gold span {piece!r} in {self.task}"
            prev = e
        assert self.prompt_name in LIBRARY, f"unknown prompt name {self.prompt_name!r}"
        assert self.granularity == LIBRARY[self.prompt_name].granularity
        return self


def from_prompt(
    p: ControlPrompt,
    text: str,
    query: str,
    context: str,
    spans: list[tuple[int, int]],
    task: str,
    meta: dict,
) -> Example:
    return Example(text, query, context, spans, p.tag, task, p.granularity, p.name, meta).check()


NEEDLE_TYPES = {"numbers": "number", "words": "word", "uuids": "uuid"}


def needle_prompt_text(rng: random.Random, type_needle_v: str) -> str:
    """The paper's needle prompt (Table 4), placeholders filled generically.

    `{type_needle_v}` becomes the value kind ("numbers"/"words"/"uuids") or, one time in
    four, the generic "values"; `{key}`/`{value}` become "the key"/"the value" so the prompt
    fits any unseen key. One time in five the placeholders stay unfilled, so a caller that
    passes the library text verbatim is also in-distribution.
    """
    text = LIBRARY["needle"].text
    r = rng.random()
    if r < 0.2:
        return text
    kind = "values" if r < 0.4 else type_needle_v
    return text.format(type_needle_v=kind, key="the key", value="the value")


def haystack_slice(rng: random.Random, corpora: Corpora, n_chars: int) -> tuple[str, list[int]]:
    """A contiguous run of whole haystack sentences of about `n_chars` (never more, unless one
    sentence is longer), and the offsets of the sentence boundaries inside it."""
    sents = corpora.haystack_sentences
    text = corpora.haystack
    if n_chars <= 0:
        return "", []
    # the last start that still leaves n_chars of haystack
    last = len(sents) - 1
    while last > 0 and sents[-1][1] - sents[last][0] < n_chars:
        last -= 1
    i = rng.randrange(last + 1)
    j = i + 1
    while j < len(sents) and sents[j][1] - sents[i][0] <= n_chars:
        j += 1
    base = sents[i][0]
    piece = text[base : sents[j - 1][1]]
    cuts = [sents[k][1] - base for k in range(i, j - 1)]
    return piece, cuts


def weave(
    rng: random.Random,
    filler: str,
    cuts: list[int],
    inserts: list[list[tuple[str, bool]]],
    builder: Builder,
) -> None:
    """Add `filler` to `builder` with each insert placed at a random sentence boundary of the
    filler (or its start/end), keeping the inserts' order. An insert is a list of
    (text, is_gold) pieces added back to back (a needle is one piece; a KV dict several)."""
    points = sorted(rng.choice([0, *cuts, len(filler)]) for _ in inserts)
    pos = 0
    for pieces, at in zip(inserts, points, strict=True):
        _add_spaced(builder, filler[pos:at])
        for i, (text, gold) in enumerate(pieces):
            if i == 0:
                _add_spaced(builder, "")
            builder.add(text, gold=gold)
        pos = at
    _add_spaced(builder, filler[pos:])


def _add_spaced(builder: Builder, text: str) -> None:
    """Add `text`, with a space first when neither side has whitespace at the joint
    (empty `text` only adds that space)."""
    tail = builder.tail()
    if tail and not tail.isspace() and not text[:1].isspace():
        builder.add(" ")
    if text:
        builder.add(text)
