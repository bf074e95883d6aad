"""Conversations about one long document: several questions, each with its own gold facts, for
evaluating follow-up questions (the proxy's `followups` policy, `cprs eval-followups`).

| source   | the document                                                  | question k's facts        |
| -------- | ------------------------------------------------------------- | ------------------------- |
| squad    | every paragraph of one article, scattered among distractors   | its answer sentence(s)    |
| hotpotqa | every paragraph of `n` items (both hops and the item's own     | its supporting sentences  |
|          | distractors), scattered among distractors                     |                           |

SQuAD questions come from different paragraphs of the article, so each turn needs text the
others did not. Documents are sized like `evalset.eval_case`: built once at ~4 chars a token,
counted with the caller's counter, rebuilt from the same seed at the corrected size. Built from
the `eval` split by default (the reserved slices: evaluation only, never training or tuning).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from .qa import _assemble, _fillers, _hotpot_unit, _offsets, _sentence_pieces, _supporting
from .sources import Corpora, load_corpora

SOURCES = ("squad", "hotpotqa")


@dataclass(frozen=True)
class Turn:
    question: str
    facts: tuple[str, ...]  # exact sentences of the context that answer it


@dataclass(frozen=True)
class Conversation:
    source: str
    context: str
    turns: tuple[Turn, ...]
    index: tuple[int, ...]  # the article or items drawn (for the reserved-split tests)


def make_conversation(
    source: str,
    length_tokens: int,
    seed: int,
    k: int,
    count_tokens: Callable[[str], int],
    *,
    questions: int = 3,
    split: str = "eval",
    corpora: Corpora | None = None,
) -> Conversation:
    """Conversation `k` of `source` with `questions` turns, about `length_tokens` long."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {SOURCES}")
    c = corpora or load_corpora()
    tag = f"cprs-conv:{seed}:{source}:{length_tokens}:{k}"
    chars = length_tokens * 4
    conv = _build(source, tag, chars, questions, split, c)
    n = count_tokens(conv.context)
    if abs(n - length_tokens) > 0.02 * length_tokens:
        conv = _build(source, tag, int(chars * length_tokens / max(n, 1)), questions, split, c)
    for t in conv.turns:
        assert t.facts and all(f in conv.context for f in t.facts), "a fact is not in the context"
    return conv


def _build(
    source: str, tag: str, chars: int, questions: int, split: str, c: Corpora
) -> Conversation:
    rng = random.Random(tag)
    used: dict[str, list[int]] = {"hotpot": [], "squad": []}
    if source == "squad":
        index, units, turns = _squad_article(rng, c, split, questions)
        more = _fillers(rng, c, split, "squad", used, 0, skip_squad=frozenset({(index[0], -1)}))
    else:
        index, units, turns, titles = _hotpot_items(rng, c, split, questions)
        more = _fillers(rng, c, split, "mixed", used, 0, skip_titles=titles)
    rng.shuffle(units)
    context, _ = _assemble(rng, chars, units, [], more)
    return Conversation(source, context, tuple(turns), index)


def _squad_article(rng: random.Random, c: Corpora, split: str, questions: int):
    """An article with `questions` answerable questions on different paragraphs."""
    while True:
        ai, art = rng.choice(c.squad_articles(split))
        asked = []
        for pi, para in enumerate(art["paragraphs"]):
            qas = [q for q in para["qas"] if not q["is_impossible"] and q["answers"]]
            if qas:
                asked.append((pi, rng.choice(qas)))
        if len(asked) >= questions:
            break
    picked = rng.sample(asked, questions)
    units = [_sentence_pieces(p["context"]) for p in art["paragraphs"]]
    turns = [
        Turn(qa["question"], _answer_sentences(art["paragraphs"][pi]["context"], qa))
        for pi, qa in picked
    ]
    return (ai,), units, turns


def _answer_sentences(text: str, qa: dict) -> tuple[str, ...]:
    """The sentences of `text` (as `_sentence_pieces` cuts them) that hold the first answer."""
    ans = qa["answers"][0]
    s = ans["answer_start"]
    e = s + len(ans["text"])
    assert text[s:e] == ans["text"], "SQuAD answer_start does not match the answer text"
    return tuple(
        t
        for (t, _), (ts, te) in zip(_sentence_pieces(text), _offsets(text), strict=True)
        if ts < e and s < te and not t.isspace()
    )


def _hotpot_items(rng: random.Random, c: Corpora, split: str, questions: int):
    """`questions` items whose paragraph titles do not overlap, every paragraph of each."""
    items: list[tuple[int, dict]] = []
    titles: set[str] = set()
    pool = c.hotpot_items(split)
    while len(items) < questions:
        i, item = rng.choice(pool)
        own = {t for t, _ in item["context"]}
        if not _supporting(item) or own & titles or any(i == j for j, _ in items):
            continue
        items.append((i, item))
        titles |= own
    units, turns = [], []
    for _, item in items:
        sup = _supporting(item)
        mine = [
            _hotpot_unit(item, p, sup.get(p, set()), False, 0) for p in range(len(item["context"]))
        ]
        units += mine
        turns.append(Turn(item["question"], tuple(t for u in mine for t, g in u if g)))
    return tuple(i for i, _ in items), units, turns, frozenset(titles)
