"""`POST /v1/responses` in process: documents in every place the Responses API carries text,
tool outputs, streaming relayed byte for byte, and routes that are not OpenAI-format."""

from __future__ import annotations

import copy
import json

import httpx
from cprs_doubles import NEEDLE, QUESTION, haystack
from proxy_helpers import BACKEND_KEY, base_config, call

DOC = haystack(300)
TOOL_DOC = haystack(300, needle="The weather station logged the passcode 7316 for Paris.", seed=3)


def responses_answer(body: dict) -> dict:
    return {"id": "resp_1", "object": "response", "model": body["model"], "output": [],
            "vendor_extra": {"kept": True}}  # fmt: skip


def record_urls(backend) -> list[str]:
    urls: list[str] = []

    def respond(request: httpx.Request, body: dict):
        urls.append(str(request.url))
        if body.get("stream"):
            return httpx.Response(200, content=SSE, headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json=responses_answer(body))

    backend.respond = respond
    return urls


SSE = (
    b'event: response.created\ndata: {"type":"response.created","response":{"id":"resp_1"}}\n\n'
    b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"Hi"}\n\n'
    b'event: response.completed\ndata: {"type":"response.completed","response":{"id":"resp_1"}}\n\n'
)


def items_body(**extra) -> dict:
    body = {
        "model": "gpt-4o",
        "instructions": "You are terse.",
        "input": [
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": f"<document>{DOC}</document>"},
                {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
                {"type": "input_text", "text": QUESTION},
            ]},
        ],
        "previous_response_id": "resp_0",
        "store": True,
        "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object"}}],
        "vendor_field": {"nested": [1, None]},
    }  # fmt: skip
    body.update(extra)
    return body


def test_message_item_document_is_compressed_and_everything_else_is_identical(make_app, backend):
    urls = record_urls(backend)
    app, engine = make_app()
    sent = items_body()
    original = copy.deepcopy(sent)
    r = call(app, "POST", "/v1/responses", json=sent)
    assert r.status_code == 200, r.text
    assert r.headers["x-cprs-compressed"] == "true" and r.headers["x-cprs-arm"] == "compress"
    assert urls == ["http://backend.test/v1/responses"]
    got = backend.bodies[-1]
    want = copy.deepcopy(original)
    want["input"][0]["content"][0]["text"] = f"<document>{NEEDLE}</document>"
    assert got == want and list(got) == list(sent)
    assert engine.calls[0]["query"] == QUESTION
    assert r.json()["vendor_extra"] == {"kept": True}
    assert backend.headers[-1]["authorization"] == f"Bearer {BACKEND_KEY}"


def test_input_string_and_long_instructions_are_documents(make_app, backend):
    record_urls(backend)
    app, engine = make_app()
    r = call(app, "POST", "/v1/responses",
             json={"model": "gpt-4o", "instructions": DOC, "input": QUESTION})  # fmt: skip
    assert r.status_code == 200 and r.headers["x-cprs-compressed"] == "true"
    assert backend.bodies[-1] == {"model": "gpt-4o", "instructions": NEEDLE, "input": QUESTION}
    r = call(app, "POST", "/v1/responses",
             json={"model": "gpt-4o", "input": f"<document>{DOC}</document>\n{QUESTION}"})  # fmt: skip
    assert backend.bodies[-1]["input"] == f"<document>{NEEDLE}</document>\n{QUESTION}"


def test_function_call_output_is_compressed_for_the_question_and_the_call(make_app, backend):
    record_urls(backend)
    app, engine = make_app()
    args = json.dumps({"city": "Paris", "field": "passcode"})
    sent = {
        "model": "gpt-4o",
        "input": [
            {"role": "user", "content": "Which passcode did the station log?"},
            {"type": "function_call", "call_id": "c1", "name": "weather_log", "arguments": args},
            {"type": "function_call_output", "call_id": "c1", "output": TOOL_DOC},
            {"type": "reasoning", "id": "rs_1", "summary": []},
        ],
    }
    r = call(app, "POST", "/v1/responses", json=sent)
    assert r.status_code == 200 and r.headers["x-cprs-compressed"] == "true"
    got = backend.bodies[-1]
    assert got["input"][2] == {"type": "function_call_output", "call_id": "c1",
                               "output": "The weather station logged the passcode 7316 for Paris."}  # fmt: skip
    assert [got["input"][i] for i in (0, 1, 3)] == [sent["input"][i] for i in (0, 1, 3)]
    assert engine.calls[0]["query"] == f"Which passcode did the station log?\nweather_log({args})"
    off = {"policies": {"default": {"threshold_tokens": 300, "compress_tool_outputs": False}}}
    app, engine = make_app(base_config(**off))
    call(app, "POST", "/v1/responses", json=sent)
    assert backend.bodies[-1] == sent and engine.calls == []


def test_streaming_events_are_relayed_byte_for_byte(make_app, backend):
    urls = record_urls(backend)
    app, _ = make_app()
    r = call(app, "POST", "/v1/responses", json=items_body(stream=True))
    assert r.status_code == 200 and r.content == SSE
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["x-cprs-compressed"] == "true" and urls[-1].endswith("/v1/responses")
    assert backend.bodies[-1]["stream"] is True


def test_bad_bodies_get_openai_errors_naming_the_field(make_app, backend):
    app, _ = make_app()
    for body, param in (
        ({"input": "hi"}, "model"),
        ({"model": "gpt-4o"}, "input"),
        ({"model": "gpt-4o", "input": 3}, "input"),
        ({"model": "gpt-4o", "input": ["x"]}, "input[0]"),
        ({"model": "gpt-4o", "input": "hi", "instructions": 1}, "instructions"),
        ({"model": "gpt-4o", "input": "hi", "stream": "yes"}, "stream"),
    ):
        r = call(app, "POST", "/v1/responses", json=body)
        assert r.status_code == 400 and r.json()["error"]["param"] == param, (body, r.text)
    assert backend.bodies == []


def test_backend_errors_come_back_with_their_status(make_app, backend):
    backend.respond = lambda req, body: httpx.Response(
        404, json={"error": {"message": "Previous response not found", "type": "invalid_request_error",
                             "param": "previous_response_id", "code": None}})  # fmt: skip
    app, _ = make_app()
    r = call(app, "POST", "/v1/responses", json=items_body())
    assert r.status_code == 404 and r.json()["error"]["param"] == "previous_response_id"


def test_the_request_log_names_the_front_door(make_app, backend, tmp_path):
    record_urls(backend)
    log = tmp_path / "requests.jsonl"
    app, _ = make_app(base_config(log={"requests_path": str(log)}))
    assert call(app, "POST", "/v1/responses", json=items_body()).status_code == 200
    assert call(app, "POST", "/v1/chat/completions", json={"model": "gpt-4o", "messages": [
        {"role": "user", "content": "hi"}]}).status_code == 200  # fmt: skip
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["endpoint"] for r in lines] == ["responses", "chat"]
    assert lines[0]["compressed"] is True
