"""Per-request control (x-cprs-* headers, the `cprs` body object) and tool outputs in chat."""

from __future__ import annotations

import json

import pytest
from cprs_doubles import NEEDLE, QUESTION, haystack
from proxy_helpers import base_config, call

from policies.schema import Policy
from proxy.errors import InvalidRequest
from proxy.overrides import OverridesForbidden, parse_overrides

DOC = haystack(300)


def chat(**extra) -> dict:
    body = {"model": "gpt-4o",
            "messages": [{"role": "user", "content": f"<document>{DOC}</document>\n{QUESTION}"}]}  # fmt: skip
    body.update(extra)
    return body


def test_compress_off_is_the_control_arm_and_nothing_cprs_is_forwarded(make_app, backend):
    app, engine = make_app()
    r = call(app, "POST", "/v1/chat/completions", json=chat(), headers={"x-cprs-compress": "off"})
    assert r.headers["x-cprs-arm"] == "control" and r.headers["x-cprs-compressed"] == "false"
    assert backend.bodies[-1] == chat() and engine.calls == []
    r = call(app, "POST", "/v1/chat/completions", json=chat(cprs={"compress": "off"}, seed=1))
    assert r.headers["x-cprs-arm"] == "control" and backend.bodies[-1] == chat(seed=1)
    assert not any(k.startswith("x-cprs") for k in backend.headers[-1])
    metrics = call(app, "GET", "/metrics").text
    assert 'arm="control"' in metrics


def test_granularity_and_budget_reach_the_engine_and_headers_win(make_app, backend):
    app, engine = make_app()
    r = call(app, "POST", "/v1/chat/completions",
             json=chat(cprs={"granularity": "keyword", "budget_tokens": 50}),
             headers={"x-cprs-granularity": "paragraph"})  # fmt: skip
    assert r.status_code == 200 and engine.calls[-1]["granularity"] == "paragraph"
    assert "cprs" not in backend.bodies[-1]
    assert (
        backend.bodies[-1]["messages"][0]["content"] == f"<document>{NEEDLE}</document>\n{QUESTION}"
    )


def test_overrides_build_a_per_request_policy():
    policy = Policy(name="p", target_ratio=10, rules=[
        {"when": {"model": "gpt-*"}, "granularity": "keyword"}])  # fmt: skip
    ov, body = parse_overrides(
        {"x-cprs-budget-tokens": "64", "x-cprs-max-wait-ms": "0"},
        {"model": "m", "cprs": {"granularity": "sentence", "prompt": "fact"}},
        policy,
    )
    assert body == {"model": "m"}
    got = ov.apply(policy)
    assert (got.budget_tokens, got.target_ratio, got.granularity, got.rules) == (
        64,
        None,
        "sentence",
        [],
    )
    assert ov.values["max_wait_ms"] == 0 and policy.target_ratio == 10  # the shared one unchanged
    ratio, _ = parse_overrides(
        {"x-cprs-target-ratio": "4.5"}, None, Policy(name="p", budget_tokens=9)
    )
    assert (ratio.apply(Policy(name="p", budget_tokens=9)).budget_tokens, ratio.values) == (
        None, {"target_ratio": 4.5})  # fmt: skip


@pytest.mark.parametrize(
    "headers, body, param",
    [
        ({"x-cprs-compress": "maybe"}, None, "x-cprs-compress"),
        ({"x-cprs-budget-tokens": "0"}, None, "x-cprs-budget-tokens"),
        ({"x-cprs-budget-tokens": "1.5"}, None, "x-cprs-budget-tokens"),
        ({"x-cprs-target-ratio": "0.5"}, None, "x-cprs-target-ratio"),
        ({"x-cprs-target-ratio": "nan"}, None, "x-cprs-target-ratio"),
        ({"x-cprs-granularity": "word"}, None, "x-cprs-granularity"),
        ({"x-cprs-prompt": "nope"}, None, "x-cprs-prompt"),
        ({"x-cprs-max-wait-ms": "-1"}, None, "x-cprs-max-wait-ms"),
        ({}, {"cprs": {"budget_tokens": True}}, "cprs.budget_tokens"),
        ({}, {"cprs": {"colour": "red"}}, "cprs.colour"),
        ({}, {"cprs": "off"}, "cprs"),
    ],
)
def test_bad_values_are_400s_naming_the_header_or_field(headers, body, param):
    with pytest.raises(InvalidRequest) as err:
        parse_overrides(headers, body, Policy(name="p"))
    assert err.value.param == param


def test_bad_values_answer_in_each_front_doors_format(make_app, backend):
    app, _ = make_app()
    r = call(app, "POST", "/v1/chat/completions", json=chat(), headers={"x-cprs-target-ratio": "x"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "x-cprs-target-ratio"
    r = call(app, "POST", "/v1/messages", json={"model": "gpt-4o", "max_tokens": 5,
             "messages": [{"role": "user", "content": "hi"}], "cprs": {"compress": 1}})  # fmt: skip
    assert r.status_code == 400 and r.json()["type"] == "error"
    assert r.json()["error"]["message"].startswith("cprs.compress")
    assert backend.bodies == []


def test_a_policy_can_forbid_overrides(make_app, backend):
    cfg = base_config(policies={"default": {"threshold_tokens": 300, "allow_overrides": False}})
    app, _ = make_app(cfg)
    r = call(app, "POST", "/v1/chat/completions", json=chat(), headers={"x-cprs-compress": "off"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "overrides_not_allowed"
    with pytest.raises(OverridesForbidden):
        parse_overrides(
            {}, {"cprs": {}} | {"cprs": {"compress": "on"}}, Policy(name="p", allow_overrides=False)
        )
    r = call(app, "POST", "/v1/chat/completions", json=chat(), headers={"x-cprs-ab-key": "u1"})
    assert r.status_code == 200  # the A/B bucketing header is not an override


def test_long_tool_message_in_chat_is_a_document_queried_by_question_and_call(make_app, backend):
    tool_doc = haystack(
        300, needle="The weather station logged the passcode 7316 for Paris.", seed=3
    )
    args = json.dumps({"city": "Paris"})
    messages = [
        {"role": "user", "content": "Which passcode did the station log?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c9", "type": "function", "function": {"name": "weather_log", "arguments": args}}]},
        {"role": "tool", "tool_call_id": "c9", "content": tool_doc},
    ]  # fmt: skip
    app, engine = make_app()
    r = call(app, "POST", "/v1/chat/completions", json={"model": "gpt-4o", "messages": messages})
    assert r.headers["x-cprs-compressed"] == "true"
    got = backend.bodies[-1]["messages"]
    assert got[:2] == messages[:2]
    assert got[2] == {
        **messages[2],
        "content": "The weather station logged the passcode 7316 for Paris.",
    }
    assert engine.calls[0]["query"] == f"Which passcode did the station log?\nweather_log({args})"
    r = call(app, "POST", "/v1/chat/completions", json={"model": "gpt-4o", "messages": messages},
             headers={"x-cprs-compress": "off"})  # fmt: skip
    assert backend.bodies[-1]["messages"] == messages
