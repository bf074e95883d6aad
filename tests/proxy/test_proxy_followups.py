"""Follow-up questions about a document from an earlier turn: the policy's `followups` modes,
through the chat route (the recording engine double and a MockTransport backend)."""

from __future__ import annotations

import copy
import json

from cprs_doubles import NEEDLE, QUESTION, QueryWordEngine, haystack
from proxy_helpers import base_config, call

from cprs_engine.errors import EngineFailure

SECOND = "The orchid code for the green gate is 4409."
SECOND_Q = "What is the orchid code for the green gate?"
_FILLER = haystack(300).split(". ")
DOC = ". ".join(_FILLER[:80] + [SECOND.rstrip(".")] + _FILLER[80:])
THIRD = "The copper key for the north tower is 5521."
THIRD_Q = "Where is the copper key for the north tower?"
DOC = DOC.replace(_FILLER[200], THIRD.rstrip("."), 1)
OFF_TOPIC = "Thanks, nice work!"


def config(mode: str | None = None, **policy) -> dict:
    p = {"threshold_tokens": 300, **policy}
    if mode is not None:
        p["followups"] = mode
    return base_config(policies={"default": p})


def turn(n: int, questions: list[str] | None = None, *, parts: bool = False) -> dict:
    """The conversation a chat client sends on turn `n` (1-based): the document with the first
    question, then one assistant answer and one user question per later turn."""
    qs = questions or [QUESTION, SECOND_Q, THIRD_Q]
    first = f"<document>{DOC}</document>\n{qs[0]}"
    messages = [
        {"role": "system", "content": "Answer from the document."},
        {"role": "user", "content": [{"type": "text", "text": first}] if parts else first},
    ]
    for k in range(1, n):
        messages.append({"role": "assistant", "content": f"Answer {k}."})
        messages.append({"role": "user", "content": qs[k]})
    return {"model": "gpt-4o", "messages": messages, "temperature": 0}


def send(app, body: dict):
    return call(app, "POST", "/v1/chat/completions", json=body)


def raw(messages: list) -> bytes:
    return json.dumps(messages, ensure_ascii=False, separators=(",", ":")).encode()


def test_append_keeps_the_prefix_and_adds_the_new_spans_to_the_latest_question(make_app, backend):
    app, engine = make_app(config("append"))
    r1 = send(app, turn(1))
    assert r1.headers["x-cprs-compressed"] == "true" and "x-cprs-followup" not in r1.headers
    r2 = send(app, turn(2))
    first, second = backend.bodies
    assert SECOND not in json.dumps(first)
    n = len(first["messages"])
    assert raw(second["messages"][:n]) == raw(first["messages"])  # the prompt-cache prefix
    latest = second["messages"][-1]["content"]
    assert latest == f"<document-excerpt>\n{SECOND}\n</document-excerpt>\n\n{SECOND_Q}"
    assert r2.headers["x-cprs-followup"] == "appended"
    assert int(r2.headers["x-cprs-followup-tokens"]) > 0
    assert [c["query"] for c in engine.calls] == [QUESTION, SECOND_Q]
    # everything but the excerpt and the document text is as the client sent it
    assert second["messages"][2:-1] == turn(2)["messages"][2:-1]
    assert {k: v for k, v in second.items() if k != "messages"} == {
        "model": "gpt-4o",
        "temperature": 0,
    }


def test_every_turn_reproduces_the_previous_request_byte_for_byte(make_app, backend):
    app, _ = make_app(config("append"))
    for n in (1, 2, 3):
        send(app, turn(n))
    for before, after in zip(backend.bodies, backend.bodies[1:], strict=False):
        k = len(before["messages"])
        assert raw(after["messages"][:k]) == raw(before["messages"])


def test_the_excerpt_is_the_same_after_a_restart_with_a_cold_cache(make_app, backend):
    warm, _ = make_app(config("append"))
    for n in (1, 2, 3):
        send(warm, turn(n))
    cold, engine = make_app(config("append"))  # a new process: nothing cached
    send(cold, turn(3))
    assert raw(backend.bodies[-1]["messages"]) == raw(backend.bodies[2]["messages"])
    assert len(engine.calls) == 3  # the view, and each later question once
    latest = backend.bodies[-1]["messages"][-1]["content"]
    assert latest == f"<document-excerpt>\n{THIRD}\n</document-excerpt>\n\n{THIRD_Q}"


def test_a_span_an_earlier_excerpt_showed_is_not_repeated(make_app, backend):
    app, _ = make_app(config("append"))
    both = "And the orchid code and the copper key?"
    send(app, turn(3, [QUESTION, SECOND_Q, both]))
    latest = backend.bodies[-1]["messages"][-1]["content"]
    assert latest == f"<document-excerpt>\n{THIRD}\n</document-excerpt>\n\n{both}"


def test_a_follow_up_the_view_already_answers_adds_nothing(make_app, backend):
    app, _ = make_app(config("append"))
    r = send(app, turn(2, [QUESTION, "Again: what is the secret passcode for the blue vault?"]))
    assert r.headers["x-cprs-followup"] == "appended"
    assert r.headers["x-cprs-followup-tokens"] == "0"
    assert backend.bodies[-1]["messages"][-1]["content"].startswith("Again:")


def test_a_question_not_about_the_document_adds_nothing(make_app, backend):
    app, engine = make_app(config("append"))
    r = send(app, turn(2, [QUESTION, OFF_TOPIC]))
    assert engine.calls[-1]["query"] == OFF_TOPIC
    assert r.headers["x-cprs-followup-tokens"] == "0"
    assert backend.bodies[-1]["messages"][-1] == {"role": "user", "content": OFF_TOPIC}


def test_list_content_gets_the_excerpt_as_its_first_part(make_app, backend):
    app, _ = make_app(config("append"))
    body = turn(2, parts=True)
    body["messages"][-1]["content"] = [{"type": "text", "text": SECOND_Q}]
    send(app, body)
    got = backend.bodies[-1]["messages"][-1]["content"]
    assert got[0] == {"type": "text", "text": f"<document-excerpt>\n{SECOND}\n</document-excerpt>"}
    assert got[1:] == body["messages"][-1]["content"]


def test_excerpt_marker_comes_from_the_policy(make_app, backend):
    app, _ = make_app(config("append", excerpt_marker="more-context"))
    send(app, turn(2))
    assert backend.bodies[-1]["messages"][-1]["content"].startswith("<more-context>\n")


def test_requery_compresses_in_place_for_every_question_so_far(make_app, backend):
    app, engine = make_app(config("requery"))
    r = send(app, turn(2))
    assert engine.calls[-1]["query"] == f"{QUESTION}\n{SECOND_Q}"
    assert r.headers["x-cprs-followup"] == "requeried"
    user = backend.bodies[-1]["messages"][1]["content"]
    assert NEEDLE in user and SECOND in user
    assert backend.bodies[-1]["messages"][-1] == {"role": "user", "content": SECOND_Q}


def test_stable_answers_from_the_first_view(make_app, backend):
    app, engine = make_app(config("stable"))
    send(app, turn(1))
    r = send(app, turn(2))
    assert r.headers["x-cprs-cache"] == "hit" and r.headers["x-cprs-followup"] == "stable"
    assert len(engine.calls) == 1
    assert SECOND not in json.dumps(backend.bodies[-1])


def test_a_system_document_meets_later_questions_too(make_app, backend):
    app, _ = make_app(config("append"))
    body = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": DOC},
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": "7316"},
            {"role": "user", "content": SECOND_Q},
        ],
    }
    r = send(app, body)
    assert r.headers["x-cprs-followup"] == "appended"
    assert backend.bodies[-1]["messages"][-1]["content"].startswith(
        f"<document-excerpt>\n{SECOND}\n"
    )
    assert SECOND not in backend.bodies[-1]["messages"][0]["content"]


def test_a_failed_follow_up_compression_fails_open(make_app, backend):
    class FailsSecond(QueryWordEngine):
        async def compress(self, query, context, **kw):
            if query == SECOND_Q:
                raise EngineFailure("boom")
            return await super().compress(query, context, **kw)

    app, _ = make_app(config("append"), engine=FailsSecond())
    r = send(app, turn(2))
    assert r.status_code == 200 and r.headers["x-cprs-compressed"] == "true"
    assert backend.bodies[-1]["messages"][-1] == {"role": "user", "content": SECOND_Q}


def test_followups_are_counted_and_logged(make_app, backend, tmp_path):
    log = tmp_path / "requests.jsonl"
    cfg = config("append")
    cfg["log"] = {"requests_path": str(log)}
    app, _ = make_app(cfg)
    r = send(app, turn(2))
    added = int(r.headers["x-cprs-followup-tokens"])
    metrics = call(app, "GET", "/metrics").text
    assert 'cprs_followups_total{mode="appended",tenant="default"} 1.0' in metrics
    assert f'cprs_followup_tokens_total{{tenant="default"}} {float(added)}' in metrics
    record = json.loads(log.read_text().splitlines()[-1])
    assert record["followup"] == "appended" and record["followup_tokens"] == added


def test_sent_tokens_count_the_excerpt(make_app, backend):
    app, _ = make_app(config("append"))
    with_excerpt = send(app, turn(2))
    app, _ = make_app(config("stable"))
    without = send(app, turn(2))
    added = int(with_excerpt.headers["x-cprs-followup-tokens"])
    assert int(with_excerpt.headers["x-cprs-compressed-tokens"]) == (
        int(without.headers["x-cprs-compressed-tokens"]) + added
    )


def test_the_default_policy_appends(make_app, backend):
    cfg = base_config()
    app, _ = make_app(cfg)
    r = send(app, copy.deepcopy(turn(2)))
    assert r.headers["x-cprs-followup"] == "appended"


def test_a_follow_up_over_budget_fills_the_cache_and_the_next_request_carries_it(make_app, backend):
    import asyncio

    import httpx

    class SlowSecond(QueryWordEngine):
        async def compress(self, query, context, **kw):
            if query == SECOND_Q:
                await asyncio.sleep(0.5)
            return await super().compress(query, context, **kw)

    cfg = config("append", max_wait_ms=50)
    cfg["engine"] = {"timeout_s": 5}
    app, engine = make_app(cfg, engine=SlowSecond())

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as c:
            try:
                await c.post("/v1/chat/completions", json=turn(1))
                pending = await c.post("/v1/chat/completions", json=turn(2))
                for _ in range(500):  # the background job fills the cache
                    if app.state.holder.current.background.depth == 0 and len(engine.calls) == 2:
                        break
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.6)
                filled = await c.post("/v1/chat/completions", json=turn(2))
                return pending, filled
            finally:
                await app.state.holder.close()

    pending, filled = asyncio.run(scenario())
    assert pending.headers["x-cprs-cache"] == "pending"
    assert pending.headers["x-cprs-compressed"] == "true"  # the view itself was a hit
    assert pending.headers["x-cprs-followup-tokens"] == "0"
    assert backend.bodies[1]["messages"][-1] == {"role": "user", "content": SECOND_Q}
    assert filled.headers["x-cprs-cache"] == "hit"
    assert backend.bodies[2]["messages"][-1]["content"].startswith(f"<document-excerpt>\n{SECOND}")
    assert [c["query"] for c in engine.calls] == [QUESTION, SECOND_Q]
