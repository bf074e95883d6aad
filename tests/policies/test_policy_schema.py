"""Schema validation: every bad policy is rejected with the offending key path in the message."""

import pytest

from policies import Names, Policy, PolicyError, budget_for, validate_policies

# The names a loader passes in (the proxy passes the engine's; see tests/proxy/test_proxy_config).
NAMES = Names(granularities=("keyword", "sentence", "paragraph"), prompts=("fact", "kv", "needle"))


def _problems(raw: dict) -> dict[str, str]:
    with pytest.raises(PolicyError) as info:
        validate_policies(raw, names=NAMES)
    return dict(info.value.problems)


def test_unknown_prompt_names_the_known_ones():
    problems = _problems(
        {"p": {"rules": [{"when": {"marker": "d"}, "granularity": "keyword", "prompt": "x"}]}}
    )
    assert problems == {"policies.p.rules.0.prompt": "unknown prompt 'x'; known: fact, kv, needle"}


def test_without_names_only_the_shape_of_a_name_is_checked():
    p = validate_policies({"p": {"granularity": "chapter", "prompt": "x"}})["p"]
    assert (p.granularity, p.prompt) == ("chapter", "x")
    assert "policies.p.granularity" in dict(_problems({"p": {"granularity": ""}}))


def test_minimal_policy_takes_defaults_and_its_name_from_the_key():
    p = validate_policies({"acme": {}})["acme"]
    assert p.name == "acme"
    assert (p.threshold_tokens, p.granularity, p.failure_mode) == (4000, "sentence", "open")
    assert p.ab.control_percent == 0 and p.ab.key == "api_key"
    assert p.markers == ["document"] and p.effective_system_min_tokens == 4000


def test_unknown_key_names_the_path():
    problems = _problems({"acme": {"treshold_tokens": 10, "ab": {"control_pct": 5}}})
    assert problems == {
        "policies.acme.treshold_tokens": "unknown key",
        "policies.acme.ab.control_pct": "unknown key",
    }


def test_unknown_key_inside_a_rule_condition():
    problems = _problems(
        {"p": {"rules": [{"when": {"model": "gpt-*", "modle": "x"}, "granularity": "keyword"}]}}
    )
    assert list(problems) == ["policies.p.rules.0.when.modle"]


def test_budget_and_ratio_are_mutually_exclusive():
    problems = _problems({"p": {"budget_tokens": 500, "target_ratio": 10}})
    assert len(problems) == 1
    ((path, msg),) = problems.items()
    assert path == "policies.p"
    assert "mutually exclusive" in msg
    # each alone is fine
    assert validate_policies({"p": {"budget_tokens": 500}})["p"].budget_tokens == 500
    assert validate_policies({"p": {"target_ratio": 10}})["p"].target_ratio == 10


def test_bad_regex_is_a_load_error_with_its_path():
    problems = _problems(
        {"p": {"rules": [{"when": {"query_regex": "(unclosed"}, "granularity": "sentence"}]}}
    )
    msg = problems["policies.p.rules.0.when.query_regex"]
    assert "invalid regex" in msg and "(unclosed" in msg


@pytest.mark.parametrize(
    "raw,path",
    [
        ({"granularity": "word"}, "policies.p.granularity"),
        (
            {"rules": [{"when": {"marker": "document"}, "granularity": "chapter"}]},
            "policies.p.rules.0.granularity",
        ),
    ],
)
def test_bad_granularity(raw, path):
    msg = _problems({"p": raw})[path]
    assert "keyword" in msg and "sentence" in msg and "paragraph" in msg


@pytest.mark.parametrize("pct", [-0.1, 100.5, 1000])
def test_control_percent_out_of_range(pct):
    problems = _problems({"p": {"ab": {"control_percent": pct}}})
    assert list(problems) == ["policies.p.ab.control_percent"]


@pytest.mark.parametrize("pct", [0, 0.5, 30, 100])
def test_control_percent_in_range(pct):
    assert validate_policies({"p": {"ab": {"control_percent": pct}}})["p"].ab.control_percent == pct


@pytest.mark.parametrize(
    "raw,path",
    [
        ({"ab": {"key": "cookie"}}, "policies.p.ab.key"),
        ({"ab": {"key": "header", "header": "bad header"}}, "policies.p.ab.header"),
        ({"failure_mode": "sometimes"}, "policies.p.failure_mode"),
        ({"prompt": "no-such-prompt"}, "policies.p.prompt"),
        ({"threshold_tokens": -1}, "policies.p.threshold_tokens"),
        ({"target_ratio": 0.5}, "policies.p.target_ratio"),
        ({"budget_tokens": 0}, "policies.p.budget_tokens"),
        ({"markers": ["<doc>"]}, "policies.p.markers"),
        ({"markers": []}, "policies.p.markers"),
        ({"rules": [{"when": {}, "granularity": "keyword"}]}, "policies.p.rules.0.when"),
        ({"rules": [{"granularity": "keyword"}]}, "policies.p.rules.0.when"),
        ({"name": "other"}, "policies.p.name"),
    ],
)
def test_other_invalid_values_name_their_path(raw, path):
    assert path in _problems({"p": raw})


def test_all_problems_are_reported_at_once_in_the_message():
    with pytest.raises(PolicyError) as info:
        validate_policies({"a": {"granularity": "x"}, "b": {"oops": 1}, "c": []}, names=NAMES)
    text = str(info.value)
    for path in ("policies.a.granularity", "policies.b.oops", "policies.c"):
        assert path in text


def test_policies_must_be_a_mapping():
    with pytest.raises(PolicyError, match="mapping"):
        validate_policies([{"name": "x"}])


def test_policy_is_immutable():
    p = validate_policies({"p": {}})["p"]
    with pytest.raises(ValueError):
        p.threshold_tokens = 1


def test_budget_for():
    p = Policy(name="p")
    assert budget_for(p, 10_000) is None
    assert budget_for(Policy(name="p", budget_tokens=300), 10_000) == 300
    ratio = Policy(name="p", target_ratio=20)
    assert budget_for(ratio, 10_000) == 500
    assert budget_for(ratio, 10_001) == 501  # ceil
    assert budget_for(ratio, 5) == 1  # never zero


def test_allowed_models_globs():
    p = Policy(name="p", allowed_models=["gpt-4o*", "claude-*"])
    assert p.allows_model("gpt-4o-mini") and p.allows_model("Claude-3-opus")
    assert not p.allows_model("deepseek-chat")
    assert Policy(name="p").allows_model("anything")
    assert not Policy(name="p", allowed_models=[]).allows_model("gpt-4o")


def test_system_min_tokens_override():
    p = Policy(name="p", threshold_tokens=4000, system_min_tokens=8000)
    assert p.effective_system_min_tokens == 8000
