"""Load and validate policy files into `Policy` models.

A policy file is YAML with a top-level `policies:` mapping of name -> policy (the same shape as
the `policies:` section of the proxy config, which calls `validate_policies` on it). Validation
errors are collected into one `PolicyError` whose message names every offending key path, e.g.
`policies.default.rules.0.when.query_regex: invalid regex '(': missing ), ...`.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from policies.schema import Names, Policy

DEFAULT_FILE = "default.yaml"


class PolicyError(ValueError):
    """Policies failed to load. `problems` lists (key path, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]], source: str | None = None):
        self.problems = problems
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  {path}: {msg}" for path, msg in problems)
        super().__init__(f"invalid policy configuration{where}:\n{lines}")


def validate_policies(
    raw: Any, *, source: str | None = None, names: Names | None = None
) -> dict[str, Policy]:
    """Validate a mapping of policy name -> raw policy dict; with `names`, granularity and
    prompt names must be among them (the proxy passes the engine's).

    A policy's `name` defaults to its mapping key; giving a different one is an error, so the
    name a tenant refers to is the name that is logged and hashed for A/B bucketing.
    """
    if not isinstance(raw, Mapping):
        raise PolicyError(
            [("policies", f"expected a mapping of name -> policy, got {_kind(raw)}")], source
        )
    problems: list[tuple[str, str]] = []
    out: dict[str, Policy] = {}
    for name, body in raw.items():
        path = f"policies.{name}"
        if not isinstance(name, str) or not name:
            problems.append((path, "policy names must be non-empty strings"))
            continue
        if body is None:
            body = {}
        if not isinstance(body, Mapping):
            problems.append((path, f"expected a mapping, got {_kind(body)}"))
            continue
        body = dict(body)
        if body.setdefault("name", name) != name:
            problems.append((f"{path}.name", f"{body['name']!r} differs from the key {name!r}"))
            continue
        try:
            out[name] = Policy.model_validate(body, context={"names": names})
        except ValidationError as exc:
            problems.extend(_problems(path, exc))
    if problems:
        raise PolicyError(problems, source)
    return out


def load_policy_file(path: str | Path, *, names: Names | None = None) -> dict[str, Policy]:
    """Read a YAML policy file (`policies: {name: {...}}`) and validate it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError([("<file>", f"cannot read: {exc.strerror or exc}")], str(path)) from exc
    return _parse(text, str(path), names)


def default_policies(*, names: Names | None = None) -> dict[str, Policy]:
    """The shipped policies (policies/default.yaml, read as package data)."""
    text = resources.files("policies").joinpath(DEFAULT_FILE).read_text(encoding="utf-8")
    return _parse(text, f"policies/{DEFAULT_FILE}", names)


def _parse(text: str, source: str, names: Names | None = None) -> dict[str, Policy]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError([("<yaml>", str(exc).replace("\n", " "))], source) from exc
    if not isinstance(doc, Mapping) or "policies" not in doc:
        raise PolicyError([("<root>", "expected a top-level `policies:` mapping")], source)
    extra = sorted(str(k) for k in doc if k != "policies")
    if extra:
        raise PolicyError([(k, "unknown top-level key") for k in extra], source)
    return validate_policies(doc["policies"], source=source, names=names)


def _problems(prefix: str, exc: ValidationError) -> list[tuple[str, str]]:
    out = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        path = f"{prefix}.{loc}" if loc else prefix
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        out.append((path, msg))
    return out


def _kind(v: Any) -> str:
    return "nothing" if v is None else type(v).__name__
