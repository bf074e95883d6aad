"""`POST /v1/messages` (Anthropic) in process: native forwarding on anthropic/* routes, documents
in text/document/tool_result blocks, cache_control breakpoints, and Anthropic-shaped errors."""

from __future__ import annotations

import copy
import json

import httpx
from cprs_doubles import NEEDLE, QUESTION, haystack
from proxy_helpers import call

DOC = haystack(300)
TOOL_DOC = haystack(300, needle="The weather station logged the passcode 7316 for Paris.", seed=3)
ANT_KEY = "sk-ant-SECRET-999"
SSE = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1"}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"Hi"}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)


def ant_config(**policy) -> dict:
    return {
        "models": [
            {"name": "claude", "model": "anthropic/claude-sonnet-4-5",
             "api_base": "http://anthropic.test", "api_key": ANT_KEY},
        ],
        "tenants": [{"name": "acme", "api_keys": ["sk-acme"]}],
        "policies": {"default": {"threshold_tokens": 300, **policy}},
    }  # fmt: skip


def record(backend) -> list[httpx.Request]:
    seen: list[httpx.Request] = []

    def respond(request: httpx.Request, body: dict):
        seen.append(request)
        if body.get("stream"):
            return httpx.Response(200, content=SSE, headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json={"id": "msg_1", "type": "message", "content": [
            {"type": "text", "text": "ok"}], "vendor_extra": 1})  # fmt: skip

    backend.respond = respond
    return seen


def body(**extra) -> dict:
    out = {
        "model": "claude",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "Answer from the document.",
                    "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": DOC},
                 "title": "log", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": QUESTION},
            ]},
        ],
        "top_k": 5,
    }  # fmt: skip
    out.update(extra)
    return out


HEADERS = {"x-api-key": "sk-acme", "anthropic-version": "2023-06-01", "anthropic-beta": "b-1"}


def test_document_block_is_compressed_natively_and_nothing_else_changes(make_app, backend):
    seen = record(backend)
    app, engine = make_app(ant_config())
    sent = body()
    original = copy.deepcopy(sent)
    r = call(app, "POST", "/v1/messages", json=sent, headers=HEADERS)
    assert r.status_code == 200, r.text
    assert r.headers["x-cprs-compressed"] == "true" and r.json()["vendor_extra"] == 1
    assert str(seen[0].url) == "http://anthropic.test/v1/messages"
    h = seen[0].headers
    assert (h["x-api-key"], h["anthropic-version"], h["anthropic-beta"]) == (
        ANT_KEY,
        "2023-06-01",
        "b-1",
    )
    assert "authorization" not in h
    want = copy.deepcopy(original)
    want["model"] = "claude-sonnet-4-5"
    want["messages"][0]["content"][0]["source"]["data"] = NEEDLE
    assert backend.bodies[-1] == want and sent == original
    assert engine.calls[0]["query"] == QUESTION


def test_tool_result_is_compressed_for_the_question_and_the_tool_use(make_app, backend):
    record(backend)
    app, engine = make_app(ant_config())
    sent = body(
        messages=[
            {"role": "user", "content": "Which passcode did the station log?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "tu_1", "name": "weather_log", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "tu_1", "content": [{"type": "text", "text": TOOL_DOC}],
                 "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "Now answer."}]},
        ]
    )  # fmt: skip
    r = call(app, "POST", "/v1/messages", json=sent, headers=HEADERS)
    assert r.status_code == 200 and r.headers["x-cprs-compressed"] == "true"
    got = backend.bodies[-1]["messages"]
    want = copy.deepcopy(sent["messages"])
    want[2]["content"][0]["content"][0]["text"] = (
        "The weather station logged the passcode 7316 for Paris."
    )
    assert got == want
    assert (
        engine.calls[0]["query"]
        == 'Which passcode did the station log?\nweather_log({"city": "Paris"})'
    )


def test_follow_up_excerpt_keeps_every_breakpoint_and_the_prefix(make_app, backend):
    record(backend)
    app, _ = make_app(ant_config())
    turn1 = body()
    call(app, "POST", "/v1/messages", json=turn1, headers=HEADERS)
    first = backend.bodies[-1]
    turn2 = body(messages=[
        *turn1["messages"],
        {"role": "assistant", "content": "It is 7316."},
        {"role": "user", "content": [{"type": "text", "text": "Which river near town 5?",
                                      "cache_control": {"type": "ephemeral"}}]},
    ])  # fmt: skip
    call(app, "POST", "/v1/messages", json=turn2, headers=HEADERS)
    second = backend.bodies[-1]
    # every byte up to the first request's last breakpoint is the same on the second turn
    assert second["system"] == first["system"]
    assert second["messages"][0] == first["messages"][0]
    marks = [b for m in second["messages"] if isinstance(m["content"], list)
             for b in m["content"] if "cache_control" in b]  # fmt: skip
    assert len(marks) == 2 and marks[-1]["text"] == "Which river near town 5?"
    excerpt, question = second["messages"][2]["content"]
    assert excerpt["text"].startswith("<document-excerpt>") and "cache_control" not in excerpt
    assert question == turn2["messages"][2]["content"][0]


def test_streaming_is_relayed_as_it_arrives(make_app, backend):
    record(backend)
    app, _ = make_app(ant_config())
    r = call(app, "POST", "/v1/messages", json=body(stream=True), headers=HEADERS)
    assert r.status_code == 200 and r.content == SSE
    assert backend.bodies[-1]["stream"] is True


def test_bearer_auth_works_and_errors_use_anthropics_shape(make_app, backend):
    record(backend)
    app, _ = make_app(ant_config())
    r = call(app, "POST", "/v1/messages", json=body(),
             headers={"authorization": "Bearer sk-acme"})  # fmt: skip
    assert r.status_code == 200
    r = call(app, "POST", "/v1/messages", json=body(), headers={"x-api-key": "nope"})
    assert r.status_code == 401
    assert r.json() == {"type": "error", "error": {"type": "authentication_error",
                                                   "message": "Incorrect API key provided."}}  # fmt: skip
    for bad, param in (({"model": 3}, "model"), ({"messages": []}, "messages"),
                       ({"system": 5}, "system"), ({"stream": "y"}, "stream")):  # fmt: skip
        r = call(app, "POST", "/v1/messages", json=body(**bad), headers=HEADERS)
        err = r.json()
        assert r.status_code == 400 and err["type"] == "error", r.text
        assert err["error"]["type"] == "invalid_request_error"
        assert err["error"]["message"].startswith(param)
    r = call(app, "POST", "/v1/messages", json=body(model="gpt-x"), headers=HEADERS)
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"


def test_backend_error_in_anthropic_shape_comes_back_as_is(make_app, backend):
    err = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    backend.respond = lambda req, b: httpx.Response(529, json=err)
    app, _ = make_app(ant_config())
    r = call(app, "POST", "/v1/messages", json=body(), headers=HEADERS)
    assert r.status_code == 529 and r.json() == err
    assert ANT_KEY not in json.dumps(r.json())


def test_a_stream_that_breaks_ends_with_an_anthropic_error_event(make_app, backend):
    class Broken(httpx.AsyncByteStream):
        async def __aiter__(self):
            yield SSE[:40]
            raise httpx.ReadError("backend went away")

    backend.respond = lambda req, b: httpx.Response(
        200, stream=Broken(), headers={"content-type": "text/event-stream"}
    )
    app, _ = make_app(ant_config())
    r = call(app, "POST", "/v1/messages", json=body(stream=True), headers=HEADERS)
    head, event = r.content.split(b"\n\n", 1)[0], r.content.split(b"\n\n")[-2]
    assert head == SSE[:40]
    name, data = event.split(b"\n", 1)
    assert name == b"event: error"
    assert json.loads(data.removeprefix(b"data: "))["type"] == "error"
