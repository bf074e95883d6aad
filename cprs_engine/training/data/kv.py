"""KV retrieval examples (InfiniteBench's kv_retrieval): a JSON object of UUID keys to UUID
values; the query names one key.

Keyword granularity with the paper's kv prompt ("Extract the {key}:{value} pair for the key
in the user's question"). Gold = the whole pair `"<key>": "<value>"` (quotes included), as
the prompt asks for the pair; the evaluation counts recall by the value string alone.
Two layouts: the object alone filling the context (a window may start or end inside it,
as a window of a long JSON document does), or a small object woven into the haystack.
`positive=False`: the queried key is absent.
"""

from __future__ import annotations

import random

from cprs_engine.prompts import LIBRARY

from .example import Example, from_prompt, haystack_slice
from .haystacks import fill, weave_into
from .niah import random_uuid
from .sources import Corpora, load_corpora
from .text import Builder

QUERIES = (
    'Extract the value corresponding to the specified key in the JSON object. Key: "{key}"',
    "What is the value for the key {key}?",
    'Find the value associated with key "{key}" in the JSON data.',
)
PAIR_CHARS = len('"": "", ') + 2 * 36


def _pairs(rng: random.Random, n: int, gold_at: int | None) -> list[tuple[str, bool]]:
    out = []
    for i in range(n):
        out.append((f'"{random_uuid(rng)}": "{random_uuid(rng)}"', i == gold_at))
    return out


def _object(pairs: list[tuple[str, bool]], open_: bool, close: bool) -> list[tuple[str, bool]]:
    """Pieces of `{"k": "v", ...}`; the braces only where the object starts/ends here."""
    pieces: list[tuple[str, bool]] = [("{", False)] if open_ else []
    for i, (text, gold) in enumerate(pairs):
        pieces.append((text, gold))
        if i < len(pairs) - 1:
            pieces.append((", ", False))
    if close:
        pieces.append(("}", False))
    return pieces


def make_kv(
    rng: random.Random,
    target_chars: int,
    *,
    positive: bool = True,
    embedded: bool | None = None,
    train_templates: bool = True,
    corpora: Corpora | None = None,
    haystack: str = "essays",
    split: str = "train",
) -> Example:
    """A KV retrieval example of about `target_chars` characters. `haystack` and `split`:
    where an embedded object's filler comes from (haystacks.SOURCES)."""
    embedded = rng.random() < 0.3 if embedded is None else embedded
    b = Builder()
    drawn: list = []
    if embedded:
        c = corpora or load_corpora()
        n = rng.randint(2, 8)
        gold_at = rng.randrange(n) if positive else None
        pieces = _object(_pairs(rng, n, gold_at), True, True)
        n_hay = target_chars - n * PAIR_CHARS
        if haystack == "essays":
            filler, cuts = haystack_slice(rng, c, n_hay)
        else:
            filler, cuts = fill(rng, haystack, split, n_hay, c, drawn)
        weave_into(rng, haystack, filler, cuts, [pieces], b)
    else:
        n = max(1, target_chars // PAIR_CHARS)
        gold_at = rng.randrange(n) if positive else None
        whole = not train_templates or rng.random() < 0.3
        pieces = _object(
            _pairs(rng, n, gold_at), whole or rng.random() < 0.3, whole or rng.random() < 0.3
        )
        if train_templates and rng.random() < 0.5:
            pieces = [("JSON data:\n", False), *pieces]
        for text, gold in pieces:
            b.add(text, gold=gold)
    context, spans = b.build()
    if positive:
        pair = context[spans[0][0] : spans[0][1]]
        key, value = pair.split('": "')
        key, value = key.strip('"'), value.strip('"')
    else:
        key, value = random_uuid(rng), None
    q = rng.choice(QUERIES) if train_templates else QUERIES[0]
    p = LIBRARY["kv"]
    source = "synthetic" if not embedded or haystack == "essays" else f"haystack:{haystack}"
    meta = {"source": source, "facts": [value] if value else [], "key": key}
    meta |= {"drawn": drawn} if drawn else {}
    return from_prompt(p, p.text, q.format(key=key), context, spans, "kv", meta)


__all__ = ["Example", "make_kv"]
