"""The adapters that show Responses and Messages bodies to detection as chat messages."""

from __future__ import annotations

import copy

from proxy.detect import Document, TextLoc
from proxy.rewrite import Replacement
from proxy.views import apply_view, messages_view, responses_view


def _doc(loc: TextLoc, text: str) -> Document:
    return Document(loc, 0, len(text), text, 10, "tool", None, "q", 0)


def test_messages_view_splits_tool_results_and_inserts_after_them():
    body = {
        "system": "sys",
        "messages": [
            {"role": "user", "content": "q1"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "t1", "name": "f", "input": {"b": 1, "a": 2}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "LONG"},
                {"type": "image", "source": {}},
                {"type": "text", "text": "q2"}]},
        ],
    }  # fmt: skip
    view = messages_view(body)
    roles = [m["role"] for m in view.messages]
    assert roles == ["system", "user", "assistant", "tool", "user"]
    assert view.messages[2]["tool_calls"][0]["function"] == {
        "name": "f",
        "arguments": '{"a": 2, "b": 1}',
    }
    assert view.messages[3] == {"role": "tool", "tool_call_id": "t1", "content": "LONG"}
    assert view.paths[TextLoc(3, None)] == ("messages", 2, "content", 0, "content")
    before = copy.deepcopy(body)
    out = apply_view(body, view, [Replacement(_doc(TextLoc(3, None), "LONG"), "L")], {4: ["<x>"]})
    assert body == before  # never mutated
    content = out["messages"][2]["content"]
    assert content[0]["content"] == "L"
    assert (
        content[1] == {"type": "text", "text": "<x>"}
        and content[2] == before["messages"][2]["content"][1]
    )
    assert out["messages"][:2] == before["messages"][:2] and out["system"] == "sys"


def test_responses_view_maps_items_and_merges_consecutive_calls():
    body = {
        "instructions": "be brief",
        "input": [
            {"role": "user", "content": "q"},
            {"type": "function_call", "call_id": "a", "name": "f", "arguments": "{}"},
            {"type": "function_call", "call_id": "b", "name": "g", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "a", "output": [{"type": "input_text", "text": "A"}]},
            {"type": "function_call_output", "call_id": "b", "output": "B"},
            {"type": "item_reference", "id": "x"},
        ],
    }  # fmt: skip
    view = responses_view(body)
    assert [m["role"] for m in view.messages] == ["system", "user", "assistant", "tool", "tool"]
    assert len(view.messages[2]["tool_calls"]) == 2
    assert view.paths[TextLoc(3, 0)] == ("input", 3, "output", 0, "text")
    assert view.paths[TextLoc(0, None)] == ("instructions",)
    out = apply_view(body, view, [Replacement(_doc(TextLoc(4, None), "B"), "b")], {1: ["<x>"]})
    assert out["input"][4]["output"] == "b" and out["input"][0]["content"] == "<x>\n\nq"
    assert out["input"][5] is body["input"][5]
