"""Property-based fuzzing of request bodies (hypothesis), against the app in process.

Two properties, over random bodies (random messages, roles, content parts, documents in markers,
unknown fields with any JSON values, odd model names and stream flags) and over random bytes:

1. The proxy never answers 500 (nor anything but a status it documents), and every error is
   OpenAI-shaped.
2. When a request passes, the body the backend receives equals the client's in everything but
   the text inside document markers (compared as parsed JSON, field by field).
"""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import pytest
from cprs_doubles import QUESTION, QueryWordEngine, haystack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from proxy_helpers import Backend, base_config

from proxy.app import create_app
from proxy.config import config_from_dict

pytestmark = pytest.mark.reliability
EXAMPLES = 300
DOCUMENTED = {200, 400, 401, 404, 413}
INNER = re.compile(r"(<document(?:\s[^<>]*)?>)(.*?)(</document\s*>)", re.DOTALL)
DOCS = [haystack(n, seed=n) for n in (120, 400, 900)]

json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30)  # fmt: skip
json_value = st.recursive(
    json_leaf,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=20,
)
any_text = st.text(max_size=60) | st.sampled_from(
    ["", " ", "\x00", "</document>", "<document>", "\u202e"]
)


def rarely(draw) -> bool:
    """True about one time in twelve: most bodies are valid, so most reach the backend."""
    return draw(st.integers(0, 11)) == 0


@st.composite
def content(draw):
    kind = draw(st.sampled_from(["text", "doc", "doc", "parts", "none"]))
    if rarely(draw):
        return draw(json_value)
    if kind == "text":
        return draw(any_text)
    if kind == "doc":
        doc = draw(st.sampled_from(DOCS))
        attrs = draw(st.sampled_from(["", ' title="x"']))
        question = draw(st.sampled_from([QUESTION, "", "why?"]))
        return f"{draw(any_text)}<document{attrs}>{doc}</document>\n{question}"
    if kind == "parts":
        part = st.one_of(
            st.builds(lambda t: {"type": "text", "text": t}, any_text),
            st.builds(
                lambda d: {"type": "text", "text": f"<document>{d}</document> {QUESTION}"},
                st.sampled_from(DOCS),
            ),
            st.just({"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}),
        )
        return draw(st.lists(part, max_size=4))
    return None


@st.composite
def message(draw):
    if rarely(draw):
        return draw(json_value)
    msg = {"role": draw(st.sampled_from(["user", "user", "system", "assistant", "developer", "x"]))}
    msg["content"] = draw(content())
    if draw(st.booleans()):
        msg[draw(st.sampled_from(["name", "tool_call_id", "extra"]))] = draw(json_value)
    return msg


@st.composite
def chat_body(draw):
    body = {}
    if not rarely(draw):
        body["model"] = "gpt-4o" if not rarely(draw) else draw(json_value | st.just("gpt-9"))
    if not rarely(draw):
        body["messages"] = (
            draw(st.lists(message(), min_size=1, max_size=5))
            if not rarely(draw)
            else draw(json_value)
        )
    extra = st.sampled_from(["stream", "temperature", "tools", "x_y", "user", "n", "metadata"])
    for key in draw(st.lists(extra, max_size=3, unique=True)):
        if key == "stream" and not rarely(draw):
            body[key] = draw(st.booleans())
        else:
            body[key] = draw(json_value)
    return body


def _app_and_backend():
    backend = Backend()
    sse = b'data: {"id":"c","choices":[]}\n\ndata: [DONE]\n\n'
    backend.respond = lambda req, body: (
        httpx.Response(200, content=sse, headers={"content-type": "text/event-stream"})
        if body.get("stream") is True
        else None
    )
    policy = {"threshold_tokens": 300, "compress_user_parts": False, "system_min_tokens": 10**9}
    cfg = base_config(policies={"default": policy})
    app = create_app(
        config_from_dict(cfg),
        engine=QueryWordEngine(),
        upstream_transport=httpx.MockTransport(backend),
    )
    return app, backend


async def _post(app, content: bytes) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as c:
        return await c.post(
            "/v1/chat/completions", content=content, headers={"content-type": "application/json"}
        )


def _outside_documents(value):
    """The value with every document's inner text blanked (what the proxy may change)."""
    if isinstance(value, str):
        return INNER.sub(lambda m: m.group(1) + "…" + m.group(3), value)
    if isinstance(value, list):
        return [_outside_documents(v) for v in value]
    if isinstance(value, dict):
        return {k: _outside_documents(v) for k, v in value.items()}
    return value


def _check(app, backend, raw: bytes, stats: dict) -> httpx.Response:
    before = len(backend.bodies)
    r = asyncio.run(_post(app, raw))
    stats[r.status_code] = stats.get(r.status_code, 0) + 1
    assert r.status_code in DOCUMENTED, (r.status_code, r.text[:300])
    if r.status_code != 200:
        err = r.json()["error"]
        assert isinstance(err["message"], str) and isinstance(err["type"], str)
        assert len(backend.bodies) == before
    return r


@pytest.fixture(scope="module")
def stats(figures):
    s = {"structured": {}, "raw": {}, "changed_documents": 0}
    yield s
    figures["fuzz"] = {
        k: ({str(c): n for c, n in v.items()} if isinstance(v, dict) else v) for k, v in s.items()
    }


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=chat_body())
def test_random_bodies_never_500_and_only_document_text_changes(body, stats):
    app, backend = _app_and_backend()
    raw = json.dumps(body).encode()
    r = _check(app, backend, raw, stats["structured"])
    if r.status_code == 200 and not body.get("stream"):
        sent = backend.bodies[-1]
        assert _outside_documents(sent) == _outside_documents(json.loads(raw))
        assert list(sent) == list(body)  # same keys, same order
        stats["changed_documents"] += sent != json.loads(raw)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_random_and_mutated_bytes_never_500(data, stats):
    app, backend = _app_and_backend()
    valid = json.dumps(
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    ).encode()
    kind = data.draw(st.sampled_from(["bytes", "mutate", "splice"]))
    if kind == "bytes":
        raw = data.draw(st.binary(max_size=200))
    elif kind == "mutate":
        i = data.draw(st.integers(0, len(valid) - 1))
        raw = valid[:i] + data.draw(st.binary(min_size=1, max_size=4)) + valid[i + 1 :]
    else:
        i = data.draw(st.integers(0, len(valid)))
        raw = (
            valid[:i]
            + data.draw(
                st.sampled_from([b"[" * 300, b"NaN", b"\\ud800", b'"', b"\xed\xa0\x80", b"1e400"])
            )
            + valid[i:]
        )
    _check(app, backend, raw, stats["raw"])
