"""Granularity rules: conditions, first match wins, defaults otherwise."""

from policies import choose, validate_policies


def _policy(**kw):
    return validate_policies({"p": kw})["p"]


POLICY = _policy(
    granularity="sentence",
    prompt="fact",
    rules=[
        {"when": {"model": "gpt-4o-mini*"}, "granularity": "keyword", "prompt": "kv"},
        {"when": {"query_regex": "(?i)summar"}, "granularity": "paragraph"},
        {
            "when": {"marker": "contract", "model": "claude-*"},
            "granularity": "paragraph",
            "instruction": "Keep clauses.",
        },
        {"when": {"query_regex": r"\bneedle\b"}, "granularity": "sentence", "prompt": "needle"},
    ],
)


def test_no_rule_matches_gives_policy_defaults():
    c = choose(POLICY, model="gpt-4o", query="what is x?", markers={"document"})
    assert (c.granularity, c.prompt, c.instruction, c.rule_index) == (
        "sentence",
        "fact",
        None,
        None,
    )


def test_model_glob_rule():
    c = choose(POLICY, model="gpt-4o-mini-2024", query="q", markers=set())
    assert (c.granularity, c.prompt, c.rule_index) == ("keyword", "kv", 0)


def test_model_glob_is_case_insensitive_and_anchored():
    assert choose(POLICY, model="GPT-4o-Mini", query="q", markers=set()).rule_index == 0
    assert choose(POLICY, model="my-gpt-4o-mini", query="q", markers=set()).rule_index is None


def test_first_match_wins_over_later_rules():
    # matches rule 0 (model) and rule 1 (regex): rule 0 wins
    c = choose(POLICY, model="gpt-4o-mini", query="Summarize this", markers=set())
    assert c.rule_index == 0
    # only rule 1
    c = choose(POLICY, model="gpt-4o", query="Summarize this", markers=set())
    assert (c.granularity, c.rule_index) == ("paragraph", 1)


def test_matching_rule_does_not_inherit_policy_prompt():
    c = choose(POLICY, model="gpt-4o", query="please summarise", markers=set())
    assert c.prompt is None and c.granularity == "paragraph"


def test_all_conditions_of_a_rule_must_match():
    assert choose(POLICY, model="claude-3", query="q", markers={"contract"}).rule_index == 2
    assert choose(POLICY, model="claude-3", query="q", markers={"document"}).rule_index is None
    assert choose(POLICY, model="gpt-4o", query="q", markers={"contract"}).rule_index is None
    c = choose(POLICY, model="claude-3", query="q", markers={"contract", "document"})
    assert c.instruction == "Keep clauses."


def test_regex_is_a_search_not_a_full_match():
    c = choose(POLICY, model="x", query="find the needle in here", markers=set())
    assert (c.prompt, c.rule_index) == ("needle", 3)
    assert choose(POLICY, model="x", query="needles", markers=set()).rule_index is None


def test_no_rules():
    p = _policy(granularity="keyword")
    assert choose(p, model="m", query="q", markers=set()).granularity == "keyword"
