"""Detection: which text is a document, which is the question, and exact character ranges."""

from __future__ import annotations

from proxy.detect import TextLoc, find_documents


def words(text: str) -> int:
    return len(text.split())


def detect(messages, *, threshold=50, system_min=None, user_parts=True, markers=("document",)):
    return find_documents(
        messages,
        markers=list(markers),
        threshold_tokens=threshold,
        system_min_tokens=system_min or threshold,
        compress_user_parts=user_parts,
        count=words,
    )


LONG = " ".join(f"Filler sentence number {i} about nothing." for i in range(30))  # 180 words


def test_marker_inner_text_is_the_document_and_the_rest_is_the_query():
    content = f"Read this.\n<document>{LONG}</document>\nWhat is sentence 7 about?"
    det = detect([{"role": "user", "content": content}])
    assert len(det.documents) == 1
    d = det.documents[0]
    assert d.text == LONG and content[d.start : d.end] == LONG
    assert d.kind == "marker" and d.marker == "document" and d.loc == TextLoc(0, None)
    assert d.query == "Read this.\nWhat is sentence 7 about?"
    assert det.query == d.query


def test_marker_with_attributes_and_configured_names():
    content = f'<doc title="a b">{LONG}</doc> <document>{LONG}</document> Q?'
    det = detect([{"role": "user", "content": content}], markers=("doc", "document"))
    assert [d.marker for d in det.documents] == ["doc", "document"]
    assert all(content[d.start : d.end] == LONG for d in det.documents)
    assert det.documents[0].query == "Q?"


def test_short_marked_document_is_not_compressed_and_not_part_of_the_query():
    det = detect([{"role": "user", "content": "<document>tiny doc</document> question here"}])
    assert det.documents == []
    assert det.query == "question here"


def test_long_system_message_without_markers_is_a_document_as_a_whole():
    msgs = [{"role": "system", "content": LONG}, {"role": "user", "content": "What about 7?"}]
    det = detect(msgs)
    [d] = det.documents
    assert (d.kind, d.start, d.end, d.query) == ("system", 0, len(LONG), "What about 7?")


def test_system_threshold_is_separate():
    msgs = [{"role": "system", "content": LONG}, {"role": "user", "content": "q?"}]
    assert detect(msgs, system_min=1000).documents == []


def test_long_user_part_is_a_document_and_short_part_is_the_query():
    msgs = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": LONG},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "text", "text": "Which sentence mentions 12?"},
            ],
        }
    ]
    det = detect(msgs)
    [d] = det.documents
    assert d.loc == TextLoc(0, 0) and d.kind == "user_part"
    assert d.query == "Which sentence mentions 12?"


def test_user_parts_can_be_turned_off():
    msgs = [
        {"role": "user", "content": [{"type": "text", "text": LONG}, {"type": "text", "text": "q"}]}
    ]
    assert detect(msgs, user_parts=False).documents == []


def test_single_unmarked_user_string_keeps_its_question_paragraph():
    content = f"Answer from the text below.\n\n{LONG}\n\nWhich sentence is number 12?"
    det = detect([{"role": "user", "content": content}])
    [d] = det.documents
    assert d.text.strip() == LONG
    assert "Which sentence" not in d.text and "Answer from" not in d.text
    assert d.query == "Answer from the text below.\nWhich sentence is number 12?"


def test_document_without_any_question_has_no_query():
    det = detect([{"role": "user", "content": f"<document>{LONG}</document>"}])
    [d] = det.documents
    assert d.query is None


def test_earlier_turn_documents_keep_their_own_turn_question():
    msgs = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": f"<document>{LONG}</document> first question?"},
        {"role": "assistant", "content": "answer one"},
        {"role": "user", "content": f"<document>{LONG} extra</document> second question?"},
    ]
    det = detect(msgs)
    assert [(d.turn, d.query) for d in det.documents] == [
        (0, "first question?"),
        (1, "second question?"),
    ]
    assert det.query == "second question?"


def test_question_in_a_following_user_message_of_the_same_turn():
    msgs = [
        {"role": "user", "content": f"<document>{LONG}</document>"},
        {"role": "user", "content": "the question?"},
    ]
    [d] = detect(msgs).documents
    assert d.query == "the question?"


def test_assistant_and_tool_messages_are_never_documents():
    msgs = [
        {"role": "user", "content": "q?"},
        {"role": "assistant", "content": LONG, "tool_calls": []},
        {"role": "tool", "tool_call_id": "x", "content": f"<document>{LONG}</document>"},
    ]
    assert detect(msgs).documents == []


def test_texts_lists_every_text_string_in_order():
    msgs = [
        {"role": "system", "content": "s"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {}}],
        },
        {"role": "assistant", "content": None},
    ]
    assert [t for _, t in detect(msgs).texts] == ["s", "a"]


def test_tokens_count_every_text_once():
    calls: list[str] = []

    def counting(text: str) -> int:
        calls.append(text)
        return len(text.split())

    msgs = [
        {"role": "system", "content": "Policy. " + LONG},
        {"role": "user", "content": f"x <document>{LONG}</document> y?"},
        {"role": "assistant", "content": "an answer"},
        {"role": "user", "content": [{"type": "text", "text": LONG + "\n\nWhat now?"}]},
    ]
    det = find_documents(
        msgs,
        markers=("document",),
        threshold_tokens=50,
        system_min_tokens=50,
        compress_user_parts=True,
        count=counting,
    )
    texts = [t for _, t in det.texts]
    assert det.tokens == sum(len(t.split()) for t in texts)
    assert all(calls.count(t) == 1 for t in texts)  # the unmarked long texts are not recounted


def test_detection_is_deterministic():
    msgs = [{"role": "user", "content": f"x <document>{LONG}</document> y?"}]
    assert detect(msgs).documents == detect(msgs).documents
