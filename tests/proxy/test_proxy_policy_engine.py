"""The policy -> engine path: what a policy chooses reaches `Engine.compress` argument for
argument (the double records every one), through the real chat route."""

from __future__ import annotations

import math

import pytest
from cprs_doubles import QUESTION, haystack
from proxy_helpers import base_config, call

from proxy.tokens import TokenCounter

DOC = haystack(300)


def send(make_app, policy: dict, *, model: str = "gpt-4o", marker: str = "document"):
    app, engine = make_app(base_config(policies={"default": {"threshold_tokens": 300, **policy}}))
    body = {
        "model": model,
        "messages": [{"role": "user", "content": f"<{marker}>{DOC}</{marker}>\n{QUESTION}"}],
    }
    r = call(app, "POST", "/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    [seen] = engine.calls
    assert seen["query"] == QUESTION and seen["context"] == DOC
    return seen


def options(seen: dict) -> dict:
    keys = ("granularity", "prompt", "instruction", "budget_tokens", "budget_unit")
    return {k: seen[k] for k in keys}


def test_defaults_send_the_sentence_granularity_and_nothing_else(make_app):
    seen = send(make_app, {})
    assert options(seen) == {
        "granularity": "sentence",
        "prompt": None,
        "instruction": None,
        "budget_tokens": None,
        "budget_unit": None,
    }


def test_a_matching_rule_picks_granularity_and_prompt(make_app):
    rules = [
        {"when": {"model": "claude-*"}, "granularity": "paragraph"},
        {"when": {"model": "gpt-4o*"}, "granularity": "keyword", "prompt": "kv"},
    ]
    seen = send(make_app, {"granularity": "paragraph", "rules": rules})
    assert (seen["granularity"], seen["prompt"], seen["instruction"]) == ("keyword", "kv", None)


def test_a_marker_rule_applies_to_that_document(make_app):
    rules = [{"when": {"marker": "contract"}, "granularity": "paragraph", "prompt": "paragraph"}]
    policy = {"rules": rules, "markers": ["document", "contract"]}
    assert send(make_app, policy, marker="contract")["prompt"] == "paragraph"
    assert send(make_app, policy, marker="document")["prompt"] is None


def test_a_named_prompt_reaches_the_engine_with_its_granularity(make_app):
    seen = send(make_app, {"prompt": "needle"})
    assert (seen["granularity"], seen["prompt"]) == ("sentence", "needle")


def test_an_instruction_reaches_the_engine(make_app):
    seen = send(make_app, {"instruction": "Keep every sentence with a code in it."})
    assert seen["instruction"] == "Keep every sentence with a code in it."
    assert seen["granularity"] == "sentence"


def test_budget_tokens_reaches_the_engine_in_the_backends_tokens(make_app):
    seen = send(make_app, {"budget_tokens": 57})
    assert (seen["budget_tokens"], seen["budget_unit"]) == (57, "tiktoken:o200k_base")


@pytest.mark.parametrize("ratio", [10, 20.5])
def test_target_ratio_becomes_a_budget_of_the_documents_tokens(make_app, ratio):
    doc_tokens = TokenCounter("gpt-4o").count(DOC)
    seen = send(make_app, {"target_ratio": ratio})
    assert seen["budget_tokens"] == math.ceil(doc_tokens / ratio)
    assert seen["budget_unit"] == "tiktoken:o200k_base"  # gpt-4o's encoding, as counted


def test_the_elision_key_reaches_the_engine_and_shows_in_what_the_backend_gets(make_app, backend):
    """`elision: marker` goes to the engine (the double joins with the engine's prose marker
    when asked) and into the cache key; the default sends nothing, so keys do not move."""
    from proxy.cache import cache_key

    doc = DOC + " The blue vault opens at dawn."  # a second sentence the query matches

    def forwarded(policy: dict) -> tuple[dict, str]:
        cfg = base_config(policies={"default": {"threshold_tokens": 300, **policy}})
        app, engine = make_app(cfg)
        body = {
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": f"<document>{doc}</document>\n{QUESTION}"}],
        }
        assert call(app, "POST", "/v1/chat/completions", json=body).status_code == 200
        return engine.calls[-1], backend.bodies[-1]["messages"][0]["content"]

    seen, sent = forwarded({"elision": "marker"})
    assert seen["elision"] == "marker" and "\n…\n" in sent
    seen, sent = forwarded({})
    assert seen["elision"] is None and "\n…\n" not in sent and "vault opens" in sent
    assert forwarded({"elision": "none"})[0]["elision"] == "none"
    key = dict(tenant="t", engine_version="v", query="q", context="c", granularity="sentence",
               prompt_text="p", budget_tokens=None, secret=b"s")  # fmt: skip
    assert cache_key(**key) == cache_key(**key, elision=None) != cache_key(**key, elision="marker")


def test_an_unknown_elision_fails_the_policy_load():
    from pydantic import ValidationError

    from policies.schema import Policy

    assert Policy(name="p", elision="marker").elision == "marker"
    with pytest.raises(ValidationError):
        Policy(name="p", elision="dots")


def test_an_elision_override_header_reaches_the_engine(make_app):
    app, engine = make_app(base_config(policies={"default": {"threshold_tokens": 300}}))
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": f"<document>{DOC}</document>\n{QUESTION}"}]}  # fmt: skip
    r = call(app, "POST", "/v1/chat/completions", json=body, headers={"x-cprs-elision": "marker"})
    assert r.status_code == 200 and engine.calls[-1]["elision"] == "marker"
    r = call(app, "POST", "/v1/chat/completions", json=body, headers={"x-cprs-elision": "dots"})
    assert r.status_code == 400
