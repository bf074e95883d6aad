"""The training stream: every task mixed with fixed weights, deterministic for a seed.

Weights (sum 1.0), chosen so the skills that carry the RULER/InfiniteBench-style evaluation
(needles, variable tracking, KV, multi-hop supporting facts) dominate, with ~16% keyword and
~12% paragraph granularity as the paper's multi-granularity data:

| task               | weight | granularity / prompt |
| ------------------ | ------ | -------------------- |
| niah_single        | 0.10   | sentence / needle    |
| niah_multikey      | 0.12   | sentence / needle    |
| niah_multivalue    | 0.07   | sentence / needle    |
| niah_multiquery    | 0.07   | sentence / needle    |
| vt                 | 0.10   | sentence / fact      |
| hotpot_sentence    | 0.20   | sentence / fact      |
| squad_sentence     | 0.06   | sentence / fact      |
| kv                 | 0.10   | keyword / kv         |
| squad_keyword      | 0.06   | keyword / keyword    |
| hotpot_paragraph   | 0.07   | paragraph            |
| squad_paragraph    | 0.05   | paragraph            |
| vt_slice           | 0      | sentence / fact      |
| code_qa            | 0      | sentence / fact (codeqa.py)   |
| json_lookup        | 0      | sentence / fact (records.py)  |
| log_lookup         | 0      | sentence / fact (logs.py)     |
| md_table           | 0      | sentence / fact (tables.py)   |
| niah_sources       | 0      | needles in SQuAD/HotpotQA/code/markdown haystacks |
| kv_sources         | 0      | a small KV object in those haystacks |
| vt_sources         | 0      | VT chains in those haystacks |

The last seven (issue 18) are off by default, like `vt_slice`.

`vt_slice` (one window of a long VT document: lone links of the chain) is off by default so
the first stage's stream stays as it was; later stages turn it on with `cprs train --mix`.

Windows hold gold with probability POSITIVE_RATE (0.62); the rest hold only haystack and
distractors (other keys' needles, other chains, other paragraphs) with gold = [], because
under window-parallel inference most windows of a long document hold nothing relevant.
No extractive-summary task: without summarisation data there is no honest gold for it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from functools import partial

from . import codeqa, kv, logs, niah, qa, records, tables
from .example import Example
from .haystacks import SOURCES

POSITIVE_RATE = 0.62
# A KV window is mostly UUIDs: ~1.7 chars per token against ~4 for prose. Its character
# target is scaled so that it holds about as many tokens as the other tasks' windows.
CHAR_SCALE = {"kv": 0.45}
# Code, JSON, logs and tables run ~1.5-3.3 chars per token (measured with the critic's
# tokenizer on these generators), so their windows are scaled the same way.
CHAR_SCALE |= {"code_qa": 0.8, "json_lookup": 0.35, "log_lookup": 0.33, "md_table": 0.55}
CHAR_SCALE |= {"niah_sources": 0.85, "vt_sources": 0.7, "kv_sources": 0.7}

Generator = Callable[..., Example]


def _sourced(make: Generator, rng: random.Random, target_chars: int, **kw) -> Example:
    """`make` over a haystack other than the essays (training split), the source drawn first."""
    source = rng.choice(SOURCES[1:])
    return make(rng, target_chars, haystack=source, split="train", **kw)


def _niah_any(rng: random.Random, target_chars: int, **kw) -> Example:
    return niah.make_niah(rng, target_chars, variant=rng.choice(niah.VARIANTS), **kw)


TASKS: dict[str, tuple[float, Generator]] = {
    "niah_single": (0.10, partial(niah.make_niah, variant="single")),
    "niah_multikey": (0.12, partial(niah.make_niah, variant="multikey")),
    "niah_multivalue": (0.07, partial(niah.make_niah, variant="multivalue")),
    "niah_multiquery": (0.07, partial(niah.make_niah, variant="multiquery")),
    "vt": (0.10, niah.make_vt),
    "vt_slice": (0.0, partial(niah.make_vt, window_slice=True)),
    "hotpot_sentence": (0.20, qa.make_hotpot_sentence),
    "squad_sentence": (0.06, qa.make_squad_sentence),
    "kv": (0.10, kv.make_kv),
    "squad_keyword": (0.06, qa.make_squad_keyword),
    "hotpot_paragraph": (0.07, qa.make_hotpot_paragraph),
    "squad_paragraph": (0.05, qa.make_squad_paragraph),
    # issue 18's document types and haystack sources: off by default (the stream of the
    # stages trained before them stays as it was), turned on with `cprs train --mix`
    "code_qa": (0.0, codeqa.make_code_qa),
    "json_lookup": (0.0, records.make_json_lookup),
    "log_lookup": (0.0, logs.make_log_lookup),
    "md_table": (0.0, tables.make_md_table),
    "niah_sources": (0.0, partial(_sourced, _niah_any)),
    "kv_sources": (0.0, partial(_sourced, partial(kv.make_kv, embedded=True))),
    "vt_sources": (0.0, partial(_sourced, niah.make_vt)),
}


def make_example(task: str, rng: random.Random, target_chars: int, **kw) -> Example:
    """One example of `task` (a TASKS key); keyword arguments go to its generator."""
    return TASKS[task][1](rng, target_chars, **kw)


def training_examples(
    seed: int,
    target_chars: int | Callable[[random.Random], int] = 2000,
    *,
    start: int = 0,
    weights: dict[str, float] | None = None,
) -> Iterator[Example]:
    """An endless, deterministic stream of training examples (train split only).

    Example i depends only on (seed, i): `start=i` resumes a stream exactly where it was.
    `target_chars` is a size in characters, or a function of the example's rng returning
    one (e.g. `lambda r: r.randint(1200, 2800)` for 300-700-token windows at ~4 chars/token).
    `weights` overrides some task weights (0 drops a task). KV examples get CHAR_SCALE["kv"]
    of the target (same tokens, denser text).
    """
    table = {name: w for name, (w, _) in TASKS.items()}
    table.update(weights or {})
    names = [n for n, w in table.items() if w > 0]
    probs = [table[n] for n in names]
    i = start
    while True:
        rng = random.Random(f"cprs-train:{seed}:{i}")
        name = rng.choices(names, probs)[0]
        size = target_chars(rng) if callable(target_chars) else target_chars
        size = int(size * CHAR_SCALE.get(name, 1.0))
        ex = make_example(name, rng, size, positive=rng.random() < POSITIVE_RATE)
        ex.meta["i"] = i
        yield ex
        i += 1
