"""Evaluation cases: full long documents of a set token length, from the reserved slices and
fresh synthetic needles (a seed namespace the training stream never uses).

| task            | built by                                   | recall facts                  |
| --------------- | ------------------------------------------ | ----------------------------- |
| niah_single     | 1 needle (RULER template), no distractors  | the value                     |
| niah_multikey   | 1 queried needle + 3 other keys' needles   | the value                     |
| niah_multivalue | 4 needles for the queried key              | each value                    |
| kv              | one JSON object of UUID pairs (InfiniteBench) | the value                  |
| vt              | 1 chain of 4 hops (RULER default), spread  | each statement (no final ".") |
| hotpotqa        | reserved item's 10 paragraphs + distractors | each supporting sentence     |
| squad           | reserved article's paragraph + distractors | the answer sentence(s)        |
| code_qa         | eval-package sources (codeqa.py)           | the answering line(s)         |
| json_lookup     | generated records / payloads (records.py)  | the record's answering lines  |
| log_lookup      | a synthetic service log (logs.py)          | the answering log line(s)     |
| md_table        | tables in eval-package markdown (tables.py) | the answering row            |
| <needle task>@<source> | the needle tasks above (KV as a small object woven in) in a haystack of SQuAD, HotpotQA, code or markdown (haystacks.py) | as above |

Every haystack and file of an evaluation case comes from the reserved or evaluation side:
the reserved SQuAD articles and HotpotQA items, the evaluation packages (packages.py).

Needle values are 7-digit numbers or UUIDs (never words: a common word would be "recalled"
by chance). Documents are sized with the caller's token counter: built once at ~4 chars per
token (1.7 for KV), counted, then rebuilt from the same seed at the corrected size, which
lands within a few percent of the asked length.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import partial

from . import codeqa, kv, logs, niah, qa, records, tables
from .example import Example
from .haystacks import SOURCES

EVAL_TASKS: dict[str, tuple[float, Callable[..., Example]]] = {
    # task: (chars per token guess, generator with the eval settings)
    "niah_single": (4.0, partial(niah.make_niah, variant="single", n_distractors=0)),
    "niah_multikey": (4.0, partial(niah.make_niah, variant="multikey", n_distractors=3)),
    "niah_multivalue": (4.0, partial(niah.make_niah, variant="multivalue", n_values=4)),
    "kv": (1.7, partial(kv.make_kv, embedded=False)),
    "vt": (4.0, partial(niah.make_vt, hops=4, n_distractor_chains=0)),
    "hotpotqa": (4.0, partial(qa.make_hotpot_sentence, split="eval", all_paragraphs=True)),
    "squad": (4.0, partial(qa.make_squad_sentence, split="eval")),
}
_SYNTHETIC = {"niah_single", "niah_multikey", "niah_multivalue", "kv", "vt"}
# issue 18: document types (chars per token measured with the critic's tokenizer) ...
TYPE_TASKS: dict[str, tuple[float, Callable[..., Example]]] = {
    "code_qa": (3.2, codeqa.make_code_qa),
    "json_lookup": (1.6, records.make_json_lookup),
    "log_lookup": (1.9, logs.make_log_lookup),
    "md_table": (2.8, tables.make_md_table),
}
# ... and the needle tasks in each haystack source but the essays
NEEDLE_TASKS = ("niah_single", "niah_multikey", "niah_multivalue", "kv", "vt")
SOURCE_CPT = {"squad": 4.2, "hotpot": 4.2, "code": 3.2, "markdown": 3.4}
for _src in SOURCES[1:]:
    for _task in NEEDLE_TASKS:
        _gen = EVAL_TASKS[_task][1]
        if _task == "kv":
            _gen = partial(kv.make_kv, embedded=True)
        EVAL_TASKS[f"{_task}@{_src}"] = (SOURCE_CPT[_src], partial(_gen, haystack=_src))
        _SYNTHETIC.add(f"{_task}@{_src}")
EVAL_TASKS |= TYPE_TASKS


def _build(task: str, seed: str, chars: int, split: str) -> Example:
    rng = random.Random(seed)
    kw: dict = {}
    if task in _SYNTHETIC:
        kw["train_templates"] = False
        if "@" in task:
            kw["split"] = split
    else:
        kw["split"] = split
    if task in TYPE_TASKS:
        kw["train_templates"] = False
    if task.startswith("niah"):
        kw |= {"value_type": rng.choice(["numbers", "uuids"]), "key_type": "words"}
    return EVAL_TASKS[task][1](rng, chars, **kw)


def eval_case(
    task: str,
    length_tokens: int,
    seed: int,
    k: int,
    count_tokens: Callable[[str], int],
    *,
    split: str = "eval",
) -> Example:
    """Case `k` of `task` at about `length_tokens` tokens (as `count_tokens` counts them).

    `split="train"` builds the same kind of document from the training slices of HotpotQA and
    SQuAD, for tuning decoding (`cprs tune`) without looking at the reserved ones."""
    tag = f"cprs-eval:{seed}:{task}:{length_tokens}:{k}"
    chars = int(length_tokens * EVAL_TASKS[task][0])
    ex = _build(task, tag, chars, split)
    n = count_tokens(ex.context)
    if abs(n - length_tokens) > 0.02 * length_tokens:
        ex = _build(task, tag, int(chars * length_tokens / max(n, 1)), split)
    ex.meta["length_tokens"] = length_tokens
    ex.meta["context_tokens"] = count_tokens(ex.context)
    if task.split("@")[0] == "vt":
        ex.meta["facts"] = [f.rstrip(".") for f in ex.meta["facts"]]
    return ex.check()
