"""Pick the granularity, control prompt and instruction for one request from a policy's rules."""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass

from policies.schema import Policy


@dataclass(frozen=True)
class Choice:
    """What to compress with. `rule_index` is the matching rule's position, None for the default."""

    granularity: str
    prompt: str | None
    instruction: str | None
    rule_index: int | None = None


def choose(policy: Policy, *, model: str, query: str, markers: Set[str]) -> Choice:
    """First rule whose condition matches wins; else the policy's own defaults.

    A matching rule is taken whole: its prompt/instruction are not mixed with the policy's
    defaults, so a `keyword` rule never inherits a sentence-level default prompt.
    """
    found = frozenset(markers)
    for i, rule in enumerate(policy.rules):
        if rule.when.matches(model=model, query=query, markers=found):
            return Choice(rule.granularity, rule.prompt, rule.instruction, i)
    return Choice(policy.granularity, policy.prompt, policy.instruction, None)
