"""Needle-in-a-haystack and variable-tracking examples (RULER-style) in the Paul Graham haystack.

Sentence granularity, paper §2.3 ("training data inspired by the Needle in a Haystack task").
Variants (`make_niah(variant=...)`):
- single: one needle for the queried key.
- multikey: the queried key's needle plus needles for other keys (distractors, not gold).
- multivalue: several needles for the queried key, all gold.
- multiquery: the query names 2-3 keys; every needle of those keys is gold.
Keys are word pairs ("abandon-ledger"), 7-digit numbers or UUIDs; values are words,
7-digit numbers or UUIDs. `positive=False` builds a window without any queried needle
(distractor needles still appear) so the critic learns to keep nothing, as most windows of
a long document hold nothing relevant at inference.

Variable tracking: chains "VAR ABCDE = 12345.", "VAR FGHIJ = VAR ABCDE.", ...; the query asks
for the variables assigned 12345; gold = every statement of that chain present in the
context. Distractor chains (other values) appear whole, or as a prefix from their head, so
"VAR X = VAR Y" alone in a window is always part of the queried chain: under window-parallel
inference a window cannot see where an untraceable link leads, and keeping it is the only
choice that keeps recall.
"""

from __future__ import annotations

import random
import string
import uuid

from cprs_engine.prompts import LIBRARY

from .example import NEEDLE_TYPES, Example, from_prompt, haystack_slice, needle_prompt_text
from .haystacks import fill, weave_into
from .sources import Corpora, load_corpora
from .text import Builder

NEEDLE_TEMPLATES = (
    "One of the special magic {type} for {key} is: {value}.",  # RULER's; the eval uses it only
    "The special magic {singular} for {key} is: {value}.",
    "One of the special magic {type} for {key} is {value}.",
    "Remember: one of the special magic {type} for {key} is: {value}.",
    "A special magic {singular} for {key} is: {value}.",
)
QUERY_TEMPLATES = (
    "What are all the special magic {type} for {key} mentioned in the provided text?",  # RULER
    "What is the special magic {singular} for {key}?",
    "Find the special magic {type} for {key} in the document.",
)
VARIANTS = ("single", "multikey", "multivalue", "multiquery")


def random_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _key(rng: random.Random, corpora: Corpora, kind: str) -> str:
    if kind == "numbers":
        return str(rng.randint(1_000_000, 9_999_999))
    if kind == "uuids":
        return random_uuid(rng)
    return f"{rng.choice(corpora.vocab)}-{rng.choice(corpora.vocab)}"


def _value(rng: random.Random, corpora: Corpora, kind: str) -> str:
    return _key(rng, corpora, kind) if kind != "words" else rng.choice(corpora.vocab)


def _join_keys(keys: list[str]) -> str:
    return keys[0] if len(keys) == 1 else ", ".join(keys[:-1]) + " and " + keys[-1]


def make_niah(
    rng: random.Random,
    target_chars: int,
    *,
    variant: str = "single",
    positive: bool = True,
    value_type: str | None = None,
    key_type: str | None = None,
    n_distractors: int | None = None,
    n_values: int | None = None,
    n_queries: int | None = None,
    train_templates: bool = True,
    corpora: Corpora | None = None,
    haystack: str = "essays",
    split: str = "train",
) -> Example:
    """A needle example of about `target_chars` characters (haystack + needles).

    `train_templates=False` uses RULER's needle and query templates only (evaluation).
    `haystack` names the filler's source (haystacks.SOURCES) and `split` its side.
    """
    assert variant in VARIANTS, f"unknown variant {variant!r}"
    c = corpora or load_corpora()
    vtype = value_type or rng.choice(list(NEEDLE_TYPES))
    ktype = key_type or rng.choices(["words", "numbers", "uuids"], [0.6, 0.2, 0.2])[0]
    n_q = (n_queries or rng.randint(2, 3)) if variant == "multiquery" else 1
    n_v = (n_values or rng.randint(2, 4)) if variant == "multivalue" else 1
    if n_distractors is None:
        n_distractors = {"multikey": rng.randint(1, 3), "multiquery": rng.randint(0, 1)}.get(
            variant, 1 if rng.random() < 0.2 else 0
        )
    keys = list(dict.fromkeys(_key(rng, c, ktype) for _ in range(n_q + n_distractors)))
    queried, others = keys[:n_q], keys[n_q:]
    ti = rng.randrange(len(NEEDLE_TEMPLATES)) if train_templates else 0
    qi = rng.randrange(len(QUERY_TEMPLATES)) if train_templates else 0
    fmt = {"type": vtype, "singular": NEEDLE_TYPES[vtype]}

    def needle(key: str) -> tuple[str, str]:
        value = _value(rng, c, vtype)
        return NEEDLE_TEMPLATES[ti].format(key=key, value=value, **fmt), value

    gold = [needle(k) for k in queried for _ in range(n_v)]
    if positive and len(gold) > 1 and train_templates and rng.random() < 0.3:
        gold = rng.sample(gold, rng.randint(1, len(gold) - 1))  # a window holding only some
    if not positive:
        gold = []
    distract = [needle(k) for k in others]
    inserts = [(t, True, v) for t, v in gold] + [(t, False, v) for t, v in distract]
    rng.shuffle(inserts)
    n_hay = target_chars - sum(len(t) + 1 for t, _, _ in inserts)
    drawn: list = []
    filler, cuts = _filler(rng, c, haystack, split, n_hay, drawn)
    b = Builder()
    weave_into(rng, haystack, filler, cuts, [[(t, g)] for t, g, _ in inserts], b)
    context, spans = b.build()
    query = QUERY_TEMPLATES[qi].format(key=_join_keys(queried), **fmt)
    p = LIBRARY["needle"]
    text = (
        needle_prompt_text(rng, vtype)
        if train_templates
        else p.text.format(type_needle_v=vtype, key="the key", value="the value")
    )
    meta = {"source": _source(haystack), "facts": [v for _, g, v in inserts if g], "keys": queried}
    meta |= {"drawn": drawn} if drawn else {}
    return from_prompt(p, text, query, context, spans, f"niah_{variant}", meta)


def _filler(
    rng: random.Random, c: Corpora, haystack: str, split: str, n_chars: int, drawn: list
) -> tuple[str, list[int]]:
    """The essays exactly as before (the trained stages' data stream), other sources by
    haystacks.fill (what it drew goes to `drawn`, and to the example's meta)."""
    if haystack == "essays":
        return haystack_slice(rng, c, n_chars)
    return fill(rng, haystack, split, n_chars, c, drawn)


def _source(haystack: str) -> str:
    """meta["source"]: "haystack" for the essays (as before), "haystack:<source>" else."""
    return "haystack" if haystack == "essays" else f"haystack:{haystack}"


def _var_name(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_uppercase, k=5))


def _chain(rng: random.Random, value: int, hops: int, used: set[str]) -> list[str]:
    names: list[str] = []
    while len(names) < hops + 1:
        n = _var_name(rng)
        if n not in used:
            used.add(n)
            names.append(n)
    out = [f"VAR {names[0]} = {value}."]
    out += [f"VAR {names[i + 1]} = VAR {names[i]}." for i in range(hops)]
    return out


def make_vt(
    rng: random.Random,
    target_chars: int,
    *,
    positive: bool = True,
    hops: int | None = None,
    n_distractor_chains: int | None = None,
    train_templates: bool = True,
    window_slice: bool = False,
    corpora: Corpora | None = None,
    haystack: str = "essays",
    split: str = "train",
) -> Example:
    """A variable-tracking example (RULER's VT) with statements woven into the haystack.

    `window_slice=True` builds what one window of a long VT document looks like: only one or
    two statements of the queried chain, often without its head ("VAR X = 12345."), and the
    distractor chains cut to a prefix that starts at their head, so every distractor
    statement can be traced to another value inside the window and every untraceable
    "VAR X = VAR Y" is gold.
    """
    c = corpora or load_corpora()
    hops = rng.randint(1, 4) if hops is None else hops
    if n_distractor_chains is None:
        n_distractor_chains = rng.randint(0, 2) if positive else rng.randint(0, 2) or 1
    values = rng.sample(range(10_000, 100_000), 1 + n_distractor_chains)
    used: set[str] = set()
    gold = _chain(rng, values[0], hops, used) if positive else []
    if gold and window_slice:
        gold = [gold[i] for i in sorted(rng.sample(range(len(gold)), rng.randint(1, 2)))]
    elif gold and train_templates and rng.random() < 0.3:
        keep = sorted(rng.sample(range(len(gold)), rng.randint(1, len(gold))))
        gold = [gold[i] for i in keep]
    # whole chains (prefixes under window_slice), each kept in order; chains interleave
    others = [_chain(rng, v, rng.randint(1, 4), used) for v in values[1:]]
    if window_slice:
        others = [ch[: rng.randint(1, len(ch))] for ch in others]
    chains = [[(s, True) for s in gold]] + [[(s, False) for s in ch] for ch in others]
    inserts: list[tuple[str, bool]] = []
    heads = [0] * len(chains)
    while any(h < len(ch) for h, ch in zip(heads, chains, strict=True)):
        i = rng.choice([i for i, ch in enumerate(chains) if heads[i] < len(ch)])
        inserts.append(chains[i][heads[i]])
        heads[i] += 1
    n_hay = target_chars - sum(len(s) + 1 for s, _ in inserts)
    drawn: list = []
    filler, cuts = _filler(rng, c, haystack, split, n_hay, drawn)
    b = Builder()
    weave_into(rng, haystack, filler, cuts, [[ins] for ins in inserts], b)
    context, spans = b.build()
    q = (
        rng.choice(
            [
                "Find all variables that are assigned the value {v} in the text above.",
                "Which variables are assigned the value {v}?",
                "Find all variables that are assigned the value {v}.",
            ]
        )
        if train_templates
        else "Find all variables that are assigned the value {v} in the text above."
    )
    p = LIBRARY["fact"]
    meta = {"source": _source(haystack), "facts": [s for s, g in inserts if g], "value": values[0]}
    meta |= {"drawn": drawn} if drawn else {}
    task = "vt_slice" if window_slice else "vt"
    return from_prompt(p, p.text, q.format(v=values[0]), context, spans, task, meta)


__all__ = ["Example", "make_niah", "make_vt", "random_uuid", "VARIANTS"]
