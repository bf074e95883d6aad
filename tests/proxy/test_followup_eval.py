"""`cprs eval-followups`'s runner on a hand-made conversation and the query-word engine double:
each mode's rows say what the backend really received."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

from cprs_doubles import QueryWordEngine, haystack

from cprs_engine.training.data.conversations import Conversation, Turn
from proxy.cache import CompressionCache
from proxy.followup_eval import _variants, conversation_rows, message_text, report, summarize

FACTS = [
    "The secret passcode for the blue vault is 7316.",
    "The orchid code for the green gate is 4409.",
    "The copper key for the north tower is 5521.",
]
QUESTIONS = [
    "What is the secret passcode for the blue vault?",
    "What is the orchid code for the green gate?",
    "Where is the copper key for the north tower?",
]


def conversation() -> Conversation:
    filler = haystack(1500, needle=None).split(". ")
    for k, fact in enumerate(FACTS):
        filler.insert(300 * (k + 1), fact.rstrip("."))
    turns = tuple(Turn(q, (f,)) for q, f in zip(QUESTIONS, FACTS, strict=True))
    return Conversation("hand", ". ".join(filler), turns, (0,))


def rows_for(modes: str) -> list[dict]:
    variants = _variants(SimpleNamespace(modes=modes))
    cache = CompressionCache.from_settings(None)
    out = asyncio.run(conversation_rows(conversation(), QueryWordEngine(), cache, variants))
    return [r | {"length": 8192, "source": "hand", "case": 0} for r in out]


def test_append_finds_every_follow_up_answer_with_an_identical_prefix():
    rows = [r for r in rows_for("append") if not r["off_topic"]]
    assert [r["recall"] for r in rows] == [1.0, 1.0, 1.0]
    assert [r["prefix_identical"] for r in rows] == [None, True, True]
    assert all(r["fresh_recall"] == 1.0 for r in rows)


def test_stable_loses_follow_up_answers_and_requery_changes_the_prefix():
    rows = rows_for("stable,requery")
    stable = [r for r in rows if r["mode"] == "stable" and not r["off_topic"]]
    requery = [r for r in rows if r["mode"] == "requery" and not r["off_topic"]]
    assert [r["recall"] for r in stable] == [1.0, 0.0, 0.0]
    assert [r["recall"] for r in requery] == [1.0, 1.0, 1.0]
    assert requery[1]["prefix_identical"] is False


def test_the_off_topic_turn_adds_no_excerpt_and_the_summary_reads_the_rows():
    rows = rows_for("append,stable")
    off = [r for r in rows if r["off_topic"]]
    assert [r["excerpt_tokens"] for r in off] == [0, 0]
    summary = {s["mode"]: s for s in summarize(rows)}
    assert summary["append"]["followup_recall"] == 1.0
    assert summary["stable"]["followup_recall"] == 0.0
    assert summary["append"]["prefix_identical"] == 1.0
    assert summary["append"]["tokens_vs_fresh"] > 1.0  # history and the first view ride along
    text = report(
        list(summary.values()), {k: "x" for k in ("command", "machine", "date", "engine")}
    )
    assert "| 8K | append | 1 | 100.0% | 100.0% |" in text


def test_message_text_reads_strings_and_parts():
    body = {"messages": [{"content": "a"}, {"content": [{"type": "text", "text": "b"}]}]}
    assert message_text(body) == "a\nb"
    assert json.dumps(body)  # unchanged, still plain JSON
