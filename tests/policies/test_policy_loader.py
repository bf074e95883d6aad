"""Loading policy files, including the shipped default."""

import pytest

from policies import PolicyError, default_policies, load_policy_file
from policies.loader import validate_policies


def test_default_yaml_loads_with_the_documented_defaults():
    policies = default_policies()
    assert set(policies) == {"default"}
    p = policies["default"]
    assert p.threshold_tokens == 4000
    assert p.granularity == "sentence"
    assert p.failure_mode == "open"
    assert p.ab.control_percent == 0
    assert p.budget_tokens is None and p.target_ratio is None


def test_default_yaml_equals_the_schema_defaults():
    """The shipped file documents the defaults; it must not drift from them."""
    assert default_policies()["default"] == validate_policies({"default": {}})["default"]


def test_load_file_ok(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(
        "policies:\n"
        "  legal:\n"
        "    granularity: paragraph\n"
        "    target_ratio: 10\n"
        "    rules:\n"
        "      - when: {model: 'gpt-4o*', query_regex: '(?i)clause'}\n"
        "        granularity: sentence\n"
        "        prompt: fact\n"
    )
    p = load_policy_file(f)["legal"]
    assert p.granularity == "paragraph" and p.target_ratio == 10
    assert p.rules[0].when.model == "gpt-4o*" and p.rules[0].prompt == "fact"


def test_load_file_error_names_file_and_path(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text(
        "policies:\n  x:\n    rules:\n      - when: {query_regex: '[a-'}\n        granularity: keyword\n"
    )
    with pytest.raises(PolicyError) as info:
        load_policy_file(f)
    assert str(f) in str(info.value)
    assert "policies.x.rules.0.when.query_regex" in str(info.value)


@pytest.mark.parametrize(
    "text,needle",
    [
        ("policies: [1, 2\n", "<yaml>"),
        ("default: {}\n", "policies"),
        ("policies: {}\nextra: 1\n", "extra"),
        ("", "policies"),
    ],
)
def test_load_file_structural_errors(tmp_path, text, needle):
    f = tmp_path / "p.yaml"
    f.write_text(text)
    with pytest.raises(PolicyError) as info:
        load_policy_file(f)
    assert needle in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy_file(tmp_path / "absent.yaml")


def test_empty_policy_body_is_all_defaults(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("policies:\n  quiet:\n")
    assert load_policy_file(f)["quiet"].threshold_tokens == 4000


def test_default_yaml_leaves_cache_ttl_unset_so_the_proxy_setting_applies():
    assert "cache_ttl_seconds" not in default_policies()["default"].model_fields_set
