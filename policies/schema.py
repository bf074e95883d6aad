"""Policy schema: what a tenant's compression policy may say, validated into frozen pydantic models.

Policies are data (YAML), so every model forbids unknown keys: a typo such as `treshold_tokens`
fails the load with the key path instead of silently keeping a default. Regexes compile at load
time, so a bad pattern is a load error, never a request-time one.

    Policy
    ├── granularity / prompt / instruction    the default choice
    ├── elision: auto | none | marker         markers between non-adjacent kept spans
    ├── rules: [GranularityRule]              first match wins (see policies.rules)
    │     └── when: Condition                 model glob, document marker, query regex (all given must match)
    ├── budget_tokens | target_ratio          at most one of the two
    ├── failure_mode: open | closed           what an engine failure does to the request
    ├── followups: append | requery | stable  how an earlier turn's document serves a new question
    ├── max_wait_ms / background_fill         how long a request waits for a cache miss, and
    │                                         whether the compression then goes on without it
    ├── allowed_models: [glob] | None
    ├── compress_tool_outputs / allow_overrides   tool results as documents; per-request control
    └── ab: ABConfig                          share of traffic routed uncompressed, and the bucketing key

Granularity and prompt names belong to the engine, which policies do not import: whoever loads
policies passes the engine's names in (`Names`, as the validation context; the proxy does it in
proxy/config.py), and an unknown name is then a load error with its key path.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum
from fnmatch import fnmatchcase

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

_MARKER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_MAX_REGEX_CHARS = 1000


@dataclass(frozen=True)
class Names:
    """The engine's vocabulary a policy may name, passed in by the loader's caller."""

    granularities: tuple[str, ...]
    prompts: tuple[str, ...]


class Elision(StrEnum):
    """Gap markers in the compressed text (the engine's doctypes.ELISIONS)."""

    AUTO = "auto"
    NONE = "none"
    MARKER = "marker"


class FailureMode(StrEnum):
    """What happens when the engine fails: `open` forwards the original request, `closed` errors."""

    OPEN = "open"
    CLOSED = "closed"


class Followups(StrEnum):
    """How a document from an earlier turn serves the question of a later turn.

    `append`: the document stays as it was sent on its own turn (byte-identical prefix); the
    spans that a compression for the new question adds are put in the latest user message as an
    excerpt block. `requery`: the document is compressed in place for all the questions asked
    since it was sent. `stable`: the document keeps the view compressed for its first question.
    """

    APPEND = "append"
    REQUERY = "requery"
    STABLE = "stable"


class ABKey(StrEnum):
    """Which request attribute buckets a request into an A/B arm."""

    API_KEY = "api_key"
    USER = "user"  # the OpenAI request's `user` field
    HEADER = "header"  # a request header, named by ABConfig.header


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ABConfig(_Strict):
    """Share of requests routed to the uncompressed control arm, bucketed deterministically."""

    control_percent: float = Field(0.0, ge=0, le=100)
    key: ABKey = ABKey.API_KEY
    header: str = "x-cprs-ab-key"

    @field_validator("header")
    @classmethod
    def _header_name(cls, v: str) -> str:
        v = v.strip().lower()
        if not v or not re.fullmatch(r"[a-z0-9!#$%&'*+.^_`|~-]+", v):
            raise ValueError(f"not a valid HTTP header name: {v!r}")
        return v


class Condition(_Strict):
    """When a rule applies. Every field given must match; at least one must be given."""

    model: str | None = None  # fnmatch glob on the client's model name, case-insensitive
    query_regex: str | None = None  # re.search on the query text
    marker: str | None = None  # a document marker that was found in the request
    _regex: re.Pattern[str] | None = PrivateAttr(default=None)

    @field_validator("query_regex")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if len(v) > _MAX_REGEX_CHARS:
            raise ValueError(f"regex longer than {_MAX_REGEX_CHARS} characters")
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"invalid regex {v!r}: {exc}") from exc
        return v

    @model_validator(mode="after")
    def _not_empty(self) -> Condition:
        if self.model is None and self.query_regex is None and self.marker is None:
            raise ValueError(
                "empty condition matches everything; give model, query_regex or marker "
                "(or set the policy's default granularity instead)"
            )
        if self.query_regex is not None:
            self._regex = re.compile(self.query_regex)
        return self

    def matches(self, *, model: str, query: str, markers: set[str] | frozenset[str]) -> bool:
        if self.model is not None and not fnmatchcase(model.lower(), self.model.lower()):
            return False
        if self.marker is not None and self.marker not in markers:
            return False
        return not (self._regex is not None and self._regex.search(query) is None)


class GranularityRule(_Strict):
    """If `when` matches, compress at this granularity (with this prompt/instruction)."""

    when: Condition
    granularity: str = Field(min_length=1)  # one of Names.granularities
    prompt: str | None = None  # one of Names.prompts (the engine's prompt library)
    instruction: str | None = None  # free text replacing the control prompt's text

    @field_validator("granularity", "prompt")
    @classmethod
    def _known_name(cls, v: str | None, info: ValidationInfo) -> str | None:
        return _check_name(v, info)


class Policy(_Strict):
    """One tenant-facing compression policy. Defaults are the shipped behaviour."""

    name: str = Field(min_length=1)
    threshold_tokens: int = Field(4000, ge=0)  # documents shorter than this pass untouched
    granularity: str = Field("sentence", min_length=1)  # one of Names.granularities
    prompt: str | None = None
    instruction: str | None = None
    # Between non-adjacent kept spans: `auto` = the document type's default (a `...` line for
    # code and logs, nothing for prose, markdown and JSON), `none`, or `marker` (always).
    elision: Elision = Elision.AUTO
    rules: list[GranularityRule] = Field(default_factory=list)
    budget_tokens: int | None = Field(None, ge=1)  # keep at most this many document tokens
    target_ratio: float | None = Field(None, ge=1)  # 20 -> keep ~1/20 of the document's tokens
    failure_mode: FailureMode = FailureMode.OPEN
    followups: Followups = Followups.APPEND
    excerpt_marker: str = "document-excerpt"  # the tag around an appended follow-up excerpt
    # On a cache miss, wait at most this long for the compression (0 = never wait, null = up
    # to engine.timeout_s); a document predicted to take longer is not waited for at all.
    max_wait_ms: int | None = Field(10000, ge=0)
    background_fill: bool = True  # a compression not waited for goes on and fills the cache
    cache_ttl_seconds: int = Field(86400, ge=0)  # 0 = do not cache
    allowed_models: list[str] | None = None  # globs; None = every configured model
    ab: ABConfig = Field(default_factory=ABConfig)
    markers: list[str] = Field(default_factory=lambda: ["document"], min_length=1)
    system_min_tokens: int | None = Field(None, ge=1)  # None = threshold_tokens
    compress_user_parts: bool = True
    compress_tool_outputs: bool = (
        True  # long tool results (chat, Responses, Messages) are documents
    )
    allow_overrides: bool = True  # clients may steer compression per request (x-cprs-*, `cprs`)

    @field_validator("granularity", "prompt")
    @classmethod
    def _known_name(cls, v: str | None, info: ValidationInfo) -> str | None:
        return _check_name(v, info)

    @field_validator("markers")
    @classmethod
    def _marker_names(cls, v: list[str]) -> list[str]:
        for m in v:
            if not _MARKER_RE.match(m):
                raise ValueError(f"marker {m!r} is not a tag name (letters, digits, _ . -)")
        return v

    @field_validator("excerpt_marker")
    @classmethod
    def _excerpt_marker_name(cls, v: str) -> str:
        if not _MARKER_RE.match(v):
            raise ValueError(f"excerpt_marker {v!r} is not a tag name (letters, digits, _ . -)")
        return v

    @field_validator("allowed_models")
    @classmethod
    def _non_empty_globs(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and any(not g.strip() for g in v):
            raise ValueError("empty model glob")
        return v

    @model_validator(mode="after")
    def _budget_xor_ratio(self) -> Policy:
        if self.budget_tokens is not None and self.target_ratio is not None:
            raise ValueError("budget_tokens and target_ratio are mutually exclusive; give one")
        return self

    @property
    def effective_system_min_tokens(self) -> int:
        """Token count at which a system message counts as a document."""
        return self.threshold_tokens if self.system_min_tokens is None else self.system_min_tokens

    def allows_model(self, model: str) -> bool:
        """Whether a client may use `model` under this policy (globs, case-insensitive)."""
        if self.allowed_models is None:
            return True
        return any(fnmatchcase(model.lower(), g.lower()) for g in self.allowed_models)


def budget_for(policy: Policy, doc_tokens: int) -> int | None:
    """The token budget for a document of `doc_tokens` tokens, or None for no budget."""
    if policy.budget_tokens is not None:
        return policy.budget_tokens
    if policy.target_ratio is not None:
        return max(1, math.ceil(doc_tokens / policy.target_ratio))
    return None


def wait_seconds(policy: Policy, timeout_s: float) -> float:
    """How long a request under `policy` waits for a compression, never over `timeout_s`."""
    if policy.max_wait_ms is None:
        return timeout_s
    return min(policy.max_wait_ms / 1000, timeout_s)


def _check_name(v: str | None, info: ValidationInfo) -> str | None:
    """A granularity or prompt name against the `Names` in the validation context, if any."""
    names = (info.context or {}).get("names")
    if v is None or names is None:
        return v
    if info.field_name == "granularity" and v not in names.granularities:
        raise ValueError(
            f"unknown granularity {v!r}; expected one of {', '.join(names.granularities)}"
        )
    if info.field_name == "prompt" and v not in names.prompts:
        raise ValueError(f"unknown prompt {v!r}; known: {', '.join(sorted(names.prompts))}")
    return v
