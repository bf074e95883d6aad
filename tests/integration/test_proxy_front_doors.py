"""Every front door with the real SDKs: the OpenAI SDK's Responses API, embeddings and files, and
the Anthropic SDK's Messages API (native and translated), each against a recording fake backend
of that protocol. Only document text may differ between what the client sent and what the
backend got."""

from __future__ import annotations

import copy
import json

import anthropic
import httpx
import pytest
from cprs_doubles import NEEDLE, QUESTION, FakeAnthropic, haystack
from fake_protocols import FakeOpenAI, response_events, sse
from proxy_int_helpers import proxy_config, running_proxy, served

from proxy.tokens import TokenCounter

pytestmark = [
    pytest.mark.integration,
    # litellm's Anthropic types trip a pydantic UserWarning on first use; not ours to fix
    pytest.mark.filterwarnings("ignore:.*ReadOnly.*:UserWarning"),
]

DOC = haystack(1200)  # ~14k tokens
TOOL_NEEDLE = "The weather station logged the passcode 7316 for Paris."
TOOL_DOC = haystack(1200, needle=TOOL_NEEDLE, seed=3)


@pytest.fixture
def openai_backend():
    yield from served(FakeOpenAI())


@pytest.fixture
def anthropic_backend():
    yield from served(FakeAnthropic())


def claude_config(anthropic_url: str, openai_url: str) -> dict:
    cfg = proxy_config(openai_url)
    cfg["models"].append({"name": "claude", "model": "anthropic/claude-sonnet-4-5",
                          "api_base": anthropic_url, "api_key": "sk-ant-777"})  # fmt: skip
    return cfg


def responses_input() -> list[dict]:
    return [
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": f"<document>{DOC}</document>"},
            {"type": "input_text", "text": QUESTION}]},
        {"type": "function_call", "call_id": "c1", "name": "weather_log",
         "arguments": json.dumps({"city": "Paris", "field": "passcode"})},
        {"type": "function_call_output", "call_id": "c1", "output": TOOL_DOC},
    ]  # fmt: skip


def test_responses_create_compresses_documents_and_tool_outputs_only(openai_backend, sdk):
    with running_proxy(proxy_config(openai_backend.url)) as (url, engine):
        raw = sdk(url).responses.with_raw_response.create(
            model="gpt-4o", instructions="Answer from the document.", input=responses_input(),
            previous_response_id="resp_0", store=True, temperature=0,
            extra_body={"vendor_flag": {"x": [1, 2]}},
        )  # fmt: skip
    resp = raw.parse()
    assert resp.output_text.startswith("echo ") and resp.model_extra["vendor_extra"] == {
        "kept": True
    }
    got = openai_backend.received[-1]
    assert got["path"] == "/v1/responses"
    want = {"model": "gpt-4o", "instructions": "Answer from the document.", "input": responses_input(),
            "previous_response_id": "resp_0", "store": True, "temperature": 0,
            "vendor_flag": {"x": [1, 2]}}  # fmt: skip
    want["input"][0]["content"][0]["text"] = f"<document>{NEEDLE}</document>"
    want["input"][2]["output"] = TOOL_NEEDLE
    assert got["body"] == want
    assert (raw.headers["x-cprs-compressed"], raw.headers["x-cprs-arm"]) == ("true", "compress")
    assert got["headers"]["authorization"] == "Bearer sk-backend-777"
    assert len(engine.calls) == 2


def test_responses_stream_is_relayed_byte_for_byte(openai_backend, sdk):
    with running_proxy(proxy_config(openai_backend.url)) as (url, _):
        events = list(
            sdk(url).responses.create(model="gpt-4o", input=responses_input(), stream=True)
        )
        with httpx.stream("POST", url + "/v1/responses", headers={"authorization": "Bearer sk-acme"},
                          json={"model": "gpt-4o", "input": responses_input(), "stream": True}) as r:  # fmt: skip
            raw = b"".join(r.iter_bytes())
            assert r.headers["x-cprs-compressed"] == "true"
    assert [e.type for e in events] == [n for n, _ in response_events({"model": "gpt-4o"})]
    assert (
        "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Hello there"
    )
    assert raw == sse(response_events(openai_backend.received[-1]["body"]))


def test_embeddings_and_files_pass_through(openai_backend, sdk):
    cfg = proxy_config(openai_backend.url)
    cfg["models"].append({"name": "text-embedding-*", "model": "openai/text-embedding-*",
                          "api_base": openai_backend.url + "/v1", "api_key": "sk-backend-777"})  # fmt: skip
    with running_proxy(cfg) as (url, _):
        client = sdk(url)
        emb = client.embeddings.with_raw_response.create(
            model="text-embedding-3-small", input=["a", "b"], dimensions=2
        )
        uploaded = client.files.create(file=("data.jsonl", b'{"a": 1}\n' * 500), purpose="batch")
    assert len(emb.parse().data) == 2 and not any(k.startswith("x-cprs") for k in emb.headers)
    sent_emb, sent_file = openai_backend.received[-2:]
    assert sent_emb["path"] == "/v1/embeddings"
    assert {k: v for k, v in sent_emb["body"].items() if k != "encoding_format"} == {
        "model": "text-embedding-3-small", "input": ["a", "b"], "dimensions": 2}  # fmt: skip
    assert sent_emb["headers"]["authorization"] == "Bearer sk-backend-777"
    assert sent_file["path"] == "/v1/files" and sent_file["raw"].count(b'{"a": 1}\n') == 500
    assert uploaded.id == "file-1" and uploaded.bytes == len(sent_file["raw"])


def anthropic_messages() -> list[dict]:
    return [
        {"role": "user", "content": [
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": DOC},
             "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": QUESTION}]},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "tu_1", "name": "weather_log", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "tu_1", "content": TOOL_DOC,
             "cache_control": {"type": "ephemeral"}}]},
    ]  # fmt: skip


def ant(url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key="sk-acme", max_retries=0, timeout=20)


def test_anthropic_messages_native_streamed_and_not(anthropic_backend, openai_backend):
    cfg = claude_config(anthropic_backend.url, openai_backend.url)
    system = [{"type": "text", "text": "Answer briefly.", "cache_control": {"type": "ephemeral"}}]
    with running_proxy(cfg) as (url, engine):
        client = ant(url)
        raw = client.messages.with_raw_response.create(
            model="claude", max_tokens=50, system=system, messages=anthropic_messages(), metadata={"user_id": "u1"},
            extra_body={"cprs": {"granularity": "sentence"}, "top_k": 3},
        )  # fmt: skip
        with client.messages.stream(
            model="claude", max_tokens=50, messages=anthropic_messages()
        ) as s:
            text = "".join(s.text_stream)
        client.close()
    msg = raw.parse()
    assert msg.content[0].text == "Hi from claude" and text == "Hello world"
    assert raw.headers["x-cprs-compressed"] == "true"
    first, second = anthropic_backend.received
    assert first["headers"]["x-api-key"] == "sk-ant-777"
    assert first["headers"]["anthropic-version"]  # the SDK's own, passed along
    want = anthropic_messages()
    want[0]["content"][0]["source"]["data"] = NEEDLE
    want[2]["content"][0]["content"] = TOOL_NEEDLE
    assert first["body"] == {"model": "claude-sonnet-4-5", "max_tokens": 50, "system": system,
                             "messages": want, "metadata": {"user_id": "u1"}, "top_k": 3}  # fmt: skip
    assert second["body"]["messages"] == want and second["body"]["stream"] is True
    queries = sorted(c["query"] for c in engine.calls)
    assert queries[1] == f'{QUESTION}\nweather_log({{"city": "Paris"}})'


def test_cache_breakpoint_prefix_is_identical_turn_after_turn(anthropic_backend, openai_backend):
    cfg = claude_config(anthropic_backend.url, openai_backend.url)
    convo = anthropic_messages()
    with running_proxy(cfg) as (url, _):
        client = ant(url)
        client.messages.create(model="claude", max_tokens=50, messages=convo)
        convo = [*convo, {"role": "assistant", "content": "It is 7316."},
                 {"role": "user", "content": "And which river near town 7?"}]  # fmt: skip
        client.messages.create(model="claude", max_tokens=50, messages=convo)
        client.close()
    first, second = (r["body"]["messages"] for r in anthropic_backend.received)
    # the last breakpoint of turn one is on messages[2]; everything up to it is the same bytes
    dump = lambda ms: json.dumps(ms[:3], ensure_ascii=False, separators=(",", ":"))  # noqa: E731
    assert dump(second) == dump(first)
    assert [b.get("cache_control") for b in second[2]["content"]] == [{"type": "ephemeral"}]


def test_anthropic_sdk_on_an_openai_format_route_is_translated(openai_backend, sdk):
    with running_proxy(proxy_config(openai_backend.url)) as (url, _):
        client = ant(url)
        msg = client.messages.create(
            model="gpt-4o", max_tokens=50,
            messages=[{"role": "user", "content": f"<document>{DOC}</document>\n{QUESTION}"}],
        )  # fmt: skip
        client.close()
    assert msg.content[0].text.startswith("echo ")
    sent = openai_backend.received[-1]["body"]
    assert sent["messages"][-1]["content"] == f"<document>{NEEDLE}</document>\n{QUESTION}"
    counter = TokenCounter("gpt-4o")
    assert counter.count(json.dumps(sent)) * 20 < counter.count(DOC)


def test_anthropic_errors_reach_the_sdk_as_its_own_exceptions(anthropic_backend, openai_backend):
    with running_proxy(claude_config(anthropic_backend.url, openai_backend.url)) as (url, _):
        bad = anthropic.Anthropic(base_url=url, api_key="wrong", max_retries=0)
        with pytest.raises(anthropic.AuthenticationError) as err:
            bad.messages.create(
                model="claude", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
            )
        assert err.value.body["error"]["type"] == "authentication_error"
        client = ant(url)
        with pytest.raises(anthropic.BadRequestError, match="x-cprs-budget-tokens"):
            client.messages.create(model="claude", max_tokens=5, messages=[{"role": "user", "content": "hi"}],
                                   extra_headers={"x-cprs-budget-tokens": "lots"})  # fmt: skip
        bad.close()
        client.close()
    assert copy.deepcopy(anthropic_backend.received) == []


def test_responses_on_an_anthropic_route_go_through_litellm(anthropic_backend, openai_backend, sdk):
    cfg = claude_config(anthropic_backend.url, openai_backend.url)
    content = f"<document>{DOC}</document>\n{QUESTION}"
    with running_proxy(cfg) as (url, _):
        client = sdk(url)
        resp = client.responses.create(model="claude", input=content, max_output_tokens=50)
        events = list(client.responses.create(model="claude", input="hi", stream=True))
    assert resp.output_text == "Hi from claude"
    sent = anthropic_backend.received[0]["body"]["messages"][0]["content"][0]["text"]
    assert sent == f"<document>{NEEDLE}</document>\n{QUESTION}"
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == "Hello world"
