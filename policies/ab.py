"""Deterministic A/B bucketing: the same key under the same policy always lands in the same arm.

bucket = first 8 bytes of sha256(f"{policy.name}:{key_value}") mod 10000; the request goes to the
uncompressed `control` arm when bucket < control_percent * 100. Hashing the policy name in means
one key lands independently across policies. Nothing here is random and nothing is stored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Literal

from policies.schema import ABKey, Policy

Arm = Literal["compress", "control"]
BUCKETS = 10_000
ANONYMOUS = "anonymous"


def bucket(policy_name: str, key_value: str) -> int:
    """The key's bucket in [0, 10000) under a policy."""
    digest = hashlib.sha256(f"{policy_name}:{key_value}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def key_value(
    policy: Policy, *, api_key: str | None, user: str | None, headers: Mapping[str, str]
) -> str:
    """The value requests are bucketed on: the configured key, else the API key, else anonymous."""
    ab = policy.ab
    chosen: str | None = None
    if ab.key == ABKey.USER:
        chosen = user if isinstance(user, str) else None
    elif ab.key == ABKey.HEADER:
        chosen = _header(headers, ab.header)
    for candidate in (chosen, api_key):
        if candidate:
            return candidate
    return ANONYMOUS


def assign_arm(
    policy: Policy, *, api_key: str | None, user: str | None, headers: Mapping[str, str]
) -> Arm:
    """`control` (send uncompressed) or `compress` for this request."""
    pct = policy.ab.control_percent
    if pct <= 0:
        return "compress"
    if pct >= 100:
        return "control"
    value = key_value(policy, api_key=api_key, user=user, headers=headers)
    return "control" if bucket(policy.name, value) < pct * (BUCKETS / 100) else "compress"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive lookup that works for plain dicts as well as starlette's Headers."""
    value = headers.get(name)
    if value is None:
        for k, v in headers.items():
            if k.lower() == name:
                value = v
                break
    return value.strip() if isinstance(value, str) and value.strip() else None
