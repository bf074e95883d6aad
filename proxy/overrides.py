"""Per-request control: `x-cprs-*` headers and a body object `cprs` (the SDKs' `extra_body`).

    x-cprs-compress        off | on     off: handled like the A/B control arm (sent as is)
    x-cprs-budget-tokens   int >= 1     keep at most this many tokens per document
    x-cprs-target-ratio    float >= 1   keep about 1/ratio of each document
    x-cprs-granularity     keyword | sentence | paragraph
    x-cprs-prompt          a cprs_engine.prompts.LIBRARY name
    x-cprs-max-wait-ms     int >= 0     the latency budget, where the policy has one
    x-cprs-elision         auto | none | marker   gap markers in the compressed text

The body object takes the same names without the prefix and with underscores
(`{"cprs": {"compress": "off", "budget_tokens": 500}}`); a header wins over the same field in
the body. `cprs` is removed from the body before it is forwarded (headers are never forwarded).
The overrides apply to a per-request copy of the policy: budget and ratio replace each other,
granularity or prompt replace the policy's rules. A policy with `allow_overrides: false` answers
403 to any of them; a bad value is a 400 naming the header or field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cprs_engine.prompts import GRANULARITIES, LIBRARY
from policies.schema import Policy
from proxy.errors import InvalidRequest, ProxyError

HEADER_PREFIX = "x-cprs-"
BODY_FIELD = "cprs"


class OverridesForbidden(ProxyError):
    status = 403
    type = "permission_error"
    code = "overrides_not_allowed"


def _int(low: int) -> Callable[[Any], int]:
    def parse(v: Any) -> int:
        n = int(v) if isinstance(v, str) and v.strip().lstrip("-").isdigit() else v
        if isinstance(n, bool) or not isinstance(n, int) or n < low:
            raise ValueError(f"an integer >= {low}")
        return n

    return parse


def _ratio(v: Any) -> float:
    try:
        x = float(v) if not isinstance(v, bool) else None
    except (TypeError, ValueError):
        x = None
    if x is None or not x >= 1 or x == float("inf"):
        raise ValueError("a number >= 1")
    return x


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(v: Any) -> str:
        if not isinstance(v, str) or v.strip().lower() not in options:
            raise ValueError("one of " + ", ".join(options))
        return v.strip().lower()

    return parse


def _prompt(v: Any) -> str:
    if not isinstance(v, str) or v.strip() not in LIBRARY:
        raise ValueError("one of " + ", ".join(sorted(LIBRARY)))
    return v.strip()


# field -> parser; the header is x-cprs-<field with - for _>
FIELDS: dict[str, Callable[[Any], Any]] = {
    "compress": _choice(("on", "off")),
    "budget_tokens": _int(1),
    "target_ratio": _ratio,
    "granularity": _choice(tuple(GRANULARITIES)),
    "prompt": _prompt,
    "max_wait_ms": _int(0),
    "elision": _choice(("auto", "none", "marker")),
}


@dataclass(frozen=True)
class Overrides:
    values: dict[str, Any]

    @property
    def compress_off(self) -> bool:
        return self.values.get("compress") == "off"

    def apply(self, policy: Policy) -> Policy:
        """The per-request policy (the shared one is never changed)."""
        update = {k: v for k, v in self.values.items() if k in Policy.model_fields}
        if "budget_tokens" in self.values:  # the one given replaces the policy's other
            update["target_ratio"] = None
        elif "target_ratio" in self.values:
            update["budget_tokens"] = None
        if "granularity" in update or "prompt" in update:
            update["rules"] = []
        return policy.model_copy(update=update) if update else policy


def header_name(name: str) -> str:
    return HEADER_PREFIX + name.replace("_", "-")


def parse_overrides(
    headers: Mapping[str, str], body: dict | None, policy: Policy
) -> tuple[Overrides, dict | None]:
    """(the request's overrides, the body without `cprs`); raises a 400 or 403 naming the source."""
    raw: dict[str, tuple[Any, str]] = {}
    cprs = body.get(BODY_FIELD) if body is not None else None
    if body is not None and BODY_FIELD in body:
        if not isinstance(cprs, dict):
            raise InvalidRequest("`cprs` must be an object", param=BODY_FIELD, code="invalid_type")
        for k, v in cprs.items():
            if k not in FIELDS:
                known = ", ".join(FIELDS)
                raise InvalidRequest(
                    f"unknown field cprs.{k}; known: {known}",
                    param=f"cprs.{k}",
                    code="invalid_value",
                )
            raw[k] = (v, f"cprs.{k}")
        body = {k: v for k, v in body.items() if k != BODY_FIELD}
    for k in FIELDS:
        name = header_name(k)
        if name in headers:
            raw[k] = (headers[name], name)
    if raw and not policy.allow_overrides:
        where = ", ".join(sorted(src for _, src in raw.values()))
        raise OverridesForbidden(
            f"the policy of this API key does not allow per-request overrides ({where})",
            param=sorted(src for _, src in raw.values())[0],
        )
    values = {}
    for k, (v, src) in raw.items():
        try:
            values[k] = FIELDS[k](v)
        except (ValueError, TypeError) as exc:
            raise InvalidRequest(
                f"{src} must be {exc}, got {v!r}", param=src, code="invalid_value"
            ) from exc
    return Overrides(values), body
