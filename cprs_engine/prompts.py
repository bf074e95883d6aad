"""Control prompts: natural-language instructions that set the granularity of the compression.

Modelled on Table 4 of the QwenLong-CPRS paper. Each prompt carries the tag word whose
probability (against `outside`) the language-modelling head scores per token, and the
granularity the decoder expands spans to. Users pick a prompt by name or by granularity, or
override the text with free-form `instruction` (the granularity then still picks the tag and
the expansion). A critic may decode each named prompt with its own thresholds
(`check_thresholds`: critic.json's "prompts"; a free-form instruction uses the global ones).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from cprs_engine.errors import UnknownGranularity

GRANULARITIES = ("keyword", "sentence", "paragraph")
OUTSIDE_TAG = "outside"


@dataclass(frozen=True)
class ControlPrompt:
    name: str
    text: str
    granularity: str
    tag: str
    # Its extracts read alone (a needle's statement): decoding a structured type keeps whole
    # lines without the structure around them (no enclosing signatures or heading paths).
    standalone: bool = False


LIBRARY: dict[str, ControlPrompt] = {
    p.name: p
    for p in [
        ControlPrompt(
            "keyword",
            "You are an expert in information extraction. Extract the keywords, entities and "
            "short answer phrases from the document that answer the user's question.",
            "keyword",
            "keyword",
        ),
        ControlPrompt(
            "kv",
            "Extract the {key}:{value} pair for the key in the user's question from the document.",
            "keyword",
            "keyword",
        ),
        ControlPrompt(
            "needle",
            "Extract the 'needles' in the format of 'One of the special magic {type_needle_v} for "
            "{key} is: {value}.' from the document.",
            "sentence",
            "needle",
            standalone=True,
        ),
        ControlPrompt(
            "fact",
            "You are an expert in information extraction; your task is to extract sentences from "
            "the document as the supporting facts for answering the user's question.",
            "sentence",
            "fact",
        ),
        ControlPrompt(
            "summary",
            "Extract the sentences that carry the main points of the document, as an extractive "
            "summary.",
            "sentence",
            "summary",
        ),
        ControlPrompt(
            "paragraph",
            "Retrieve chunks or paragraphs from the document that are related to the user's query.",
            "paragraph",
            "paragraph",
        ),
    ]
}

# The prompt a granularity uses when no prompt is named.
DEFAULT_FOR: dict[str, str] = {"keyword": "keyword", "sentence": "fact", "paragraph": "paragraph"}


def resolve(
    granularity: str | None = None,
    *,
    prompt: str | None = None,
    instruction: str | None = None,
) -> ControlPrompt:
    """The control prompt for a request.

    `prompt` names a library entry; `granularity` picks that granularity's default; free-text
    `instruction` replaces the text and keeps the granularity's tag (and the prompt's name when
    `prompt` is given, else the name is "custom"). Nothing given: `sentence`.
    """
    if prompt is not None:
        if prompt not in LIBRARY:
            raise UnknownGranularity(
                f"unknown control prompt {prompt!r}; known: {', '.join(sorted(LIBRARY))}",
                param="prompt",
            )
        base = LIBRARY[prompt]
        if granularity is not None and granularity != base.granularity:
            _check(granularity)
            base = replace(base, granularity=granularity)
    else:
        granularity = granularity or "sentence"
        _check(granularity)
        base = LIBRARY[DEFAULT_FOR[granularity]]
    if instruction is not None and instruction.strip():
        # A named prompt reworded (the needle prompt with its placeholders filled) keeps its
        # name, so its own decoding thresholds (critic.json "prompts") still apply to it.
        name = base.name if prompt is not None else "custom"
        return replace(base, name=name, text=instruction.strip())
    return base


def standalone(name: str) -> bool:
    """Whether the named prompt's extracts read alone (`ControlPrompt.standalone`)."""
    return name in LIBRARY and LIBRARY[name].standalone


def _check(granularity: str) -> None:
    if granularity not in GRANULARITIES:
        raise UnknownGranularity(
            f"unknown granularity {granularity!r}; expected one of {', '.join(GRANULARITIES)}"
        )


def check_thresholds(table: dict) -> dict[str, dict[str, float | None]]:
    """critic.json's "prompts": {name: {"keep_threshold"?: x | null, "weak_threshold"?: ...}}."""
    out = {}
    for name, entry in table.items():
        if name not in LIBRARY or not isinstance(entry, dict):
            raise ValueError(f"prompt thresholds: unknown prompt {name!r} or not an object")
        own = {}
        for key, value in entry.items():
            if key not in ("keep_threshold", "weak_threshold"):
                raise ValueError(f"prompt thresholds for {name!r}: unknown key {key!r}")
            if value is not None and not 0.0 < float(value) <= 1.0:
                raise ValueError(f"{name}.{key} must be in (0, 1] or null, got {value}")
            own[key] = None if value is None else float(value)
        out[name] = own
    return out


def thresholds_tag(table: dict[str, dict[str, float | None]]) -> str:
    """The engine-version part naming per-prompt thresholds ("" when none): a cache key
    changes with them."""
    parts = []
    for name in sorted(table):
        for key in sorted(table[name]):
            v = table[name][key]
            parts.append(f"{name}{key[0]}{'off' if v is None else format(v, 'g')}")
    return ".p-" + "-".join(parts) if parts else ""
