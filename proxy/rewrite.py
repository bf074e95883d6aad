"""Replace document text inside the client's parsed request, and nothing else.

The body the backend receives is the client's own parsed JSON object with only the compressed
document ranges swapped: other messages, tools, images, unknown fields and their order stay as
the client sent them. The client's object is never mutated (only the path to a changed string is
copied), so the original stays available for fail-open and for the control arm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from proxy.detect import Document, TextLoc


@dataclass(frozen=True)
class Replacement:
    document: Document
    text: str  # what goes where document.text was


def apply(body: dict, replacements: Sequence[Replacement]) -> dict:
    """A copy of `body` with each document's character range replaced."""
    if not replacements:
        return body
    by_loc: dict[TextLoc, list[Replacement]] = {}
    for r in replacements:
        by_loc.setdefault(r.document.loc, []).append(r)
    out = dict(body)
    messages = list(body["messages"])
    out["messages"] = messages
    for loc, reps in by_loc.items():
        msg = dict(messages[loc.message])
        messages[loc.message] = msg
        if loc.part is None:
            msg["content"] = _splice(msg["content"], reps)
        else:
            content = list(msg["content"])
            part = dict(content[loc.part])
            part["text"] = _splice(part["text"], reps)
            content[loc.part] = part
            msg["content"] = content
    return out


def _splice(text: str, reps: list[Replacement]) -> str:
    reps = sorted(reps, key=lambda r: r.document.start)
    pieces, pos = [], 0
    for r in reps:
        d = r.document
        assert d.start >= pos, f"overlapping documents at {d.loc}: {d.start} < {pos}"
        assert text[d.start : d.end] == d.text, f"document text moved at {d.loc}"
        pieces.append(text[pos : d.start])
        pieces.append(r.text)
        pos = d.end
    pieces.append(text[pos:])
    return "".join(pieces)


def with_model(body: dict, model: str) -> dict:
    """The body with the backend's model name, keeping the key's position."""
    if body.get("model") == model:
        return body
    return {k: (model if k == "model" else v) for k, v in body.items()}
