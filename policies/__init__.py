"""Compression policies: schema, loading, per-request rules and A/B bucketing. Plain data, no torch."""

from policies.ab import assign_arm, bucket
from policies.loader import PolicyError, default_policies, load_policy_file, validate_policies
from policies.rules import Choice, choose
from policies.schema import (
    ABConfig,
    ABKey,
    Condition,
    FailureMode,
    GranularityRule,
    Names,
    Policy,
    budget_for,
)

__all__ = [
    "ABConfig",
    "ABKey",
    "Choice",
    "Condition",
    "FailureMode",
    "GranularityRule",
    "Names",
    "Policy",
    "PolicyError",
    "assign_arm",
    "bucket",
    "budget_for",
    "choose",
    "default_policies",
    "load_policy_file",
    "validate_policies",
]
