"""Rewriting swaps only document ranges and never mutates the client's object."""

from __future__ import annotations

import copy

from proxy.detect import find_documents
from proxy.rewrite import Replacement, apply, with_model

LONG = " ".join(f"word{i}" for i in range(100))


def _docs(body):
    return find_documents(
        body["messages"],
        markers=["document"],
        threshold_tokens=50,
        system_min_tokens=50,
        compress_user_parts=True,
        count=lambda t: len(t.split()),
    ).documents


def test_only_document_text_changes():
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "sys"},
            {
                "role": "user",
                "content": [
                    {
                        "type": "text",
                        "text": f"A <document>{LONG}</document> B <document>{LONG}</document> C?",
                    },
                    {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}},
                ],
                "name": "bob",
            },
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "unknown_vendor_field": [1, 2],
    }
    before = copy.deepcopy(body)
    d1, d2 = _docs(body)
    out = apply(body, [Replacement(d1, "ONE"), Replacement(d2, "TWO")])
    assert body == before  # the client's object is untouched
    assert (
        out["messages"][1]["content"][0]["text"]
        == "A <document>ONE</document> B <document>TWO</document> C?"
    )
    assert out["messages"][1]["content"][1] == before["messages"][1]["content"][1]
    assert out["messages"][1]["name"] == "bob"
    assert out["messages"][0] is body["messages"][0]
    assert {k: v for k, v in out.items() if k != "messages"} == {
        k: v for k, v in before.items() if k != "messages"
    }
    assert list(out) == list(before)


def test_no_replacements_returns_the_same_object():
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert apply(body, []) is body


def test_with_model_keeps_key_order():
    body = {"a": 1, "model": "x", "z": 2}
    out = with_model(body, "y")
    assert list(out) == ["a", "model", "z"] and out["model"] == "y" and body["model"] == "x"
