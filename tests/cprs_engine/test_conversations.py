"""Conversations for the follow-up evaluation: reserved slices only, facts exact, deterministic."""

from __future__ import annotations

import pytest

from cprs_engine.training.data.conversations import make_conversation
from cprs_engine.training.data.sources import HOTPOT_RESERVED_FROM, load_corpora


def words(text: str) -> int:
    return len(text.split())


@pytest.mark.parametrize("source", ["squad", "hotpotqa"])
def test_conversations_come_from_the_reserved_slices_with_exact_facts(source):
    c = load_corpora()
    for k in range(3):
        conv = make_conversation(source, 3000, 7, k, words, corpora=c)
        assert len(conv.turns) == 3
        assert len({t.question for t in conv.turns}) == 3
        for t in conv.turns:
            assert t.facts and all(f in conv.context for f in t.facts)
        if source == "squad":
            (article,) = conv.index
            assert article >= len(c.squad) - 7
            paragraphs = c.squad[article]["paragraphs"]
            assert all(p["context"].strip() in conv.context for p in paragraphs)  # whole article
        else:
            assert len(set(conv.index)) == 3 and min(conv.index) >= HOTPOT_RESERVED_FROM
            assert abs(words(conv.context) - 3000) < 0.2 * 3000


def test_squad_questions_need_different_sentences():
    conv = make_conversation("squad", 3000, 7, 0, words)
    facts = [set(t.facts) for t in conv.turns]
    assert not (facts[0] & facts[1] or facts[1] & facts[2] or facts[0] & facts[2])


def test_the_same_seed_gives_the_same_conversation():
    a = make_conversation("hotpotqa", 2000, 3, 1, words)
    b = make_conversation("hotpotqa", 2000, 3, 1, words)
    assert a == b
    assert make_conversation("hotpotqa", 2000, 3, 2, words) != a


def test_training_split_conversations_never_reach_reserved_items():
    conv = make_conversation("hotpotqa", 2000, 3, 0, words, split="train")
    assert max(conv.index) < HOTPOT_RESERVED_FROM
