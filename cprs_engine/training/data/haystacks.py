"""Haystacks from several sources, for the needle, KV and variable-tracking tasks (issue 18).

Every needle haystack used to be Paul Graham's essays; a fact-dense encyclopedic page, a
source file or a README looks different to the critic, and the ratio it reaches differs
with them. Sources:

| source   | text                                                       | inserts go       |
| -------- | ---------------------------------------------------------- | ---------------- |
| essays   | the RULER essay haystack (`Corpora.haystack`)              | between sentences |
| squad    | paragraphs of the split's SQuAD articles                   | between sentences |
| hotpot   | paragraphs (title line + text) of the split's HotpotQA items | between sentences |
| code     | whole `.py` files of the split's packages, `# path` headers | on their own line |
| markdown | markdown documents of the split's packages                 | on their own line |

`split` follows sources.py and packages.py: "eval" reaches only the reserved SQuAD articles,
the reserved HotpotQA items and the evaluation packages; "train" never does.
"""

from __future__ import annotations

import random

from .example import haystack_slice, weave
from .packages import code_files, markdown_files
from .sources import Corpora, load_corpora
from .text import Builder, split_sentences

SOURCES = ("essays", "squad", "hotpot", "code", "markdown")
LINE_SOURCES = ("code", "markdown")


def _paragraphs(rng: random.Random, c: Corpora, source: str, split: str, used: list) -> str:
    if source == "squad":
        i, art = rng.choice(c.squad_articles(split))
        used.append(("squad", i))
        return rng.choice(art["paragraphs"])["context"].strip()
    i, item = rng.choice(c.hotpot_items(split))
    used.append(("hotpot", i))
    title, sents = rng.choice(item["context"])
    return f"{title}\n" + "".join(sents).strip()


def _file(rng: random.Random, source: str, split: str, used: list) -> str:
    files = code_files(split) if source == "code" else markdown_files(split)
    for _ in range(100):
        f = rng.choice(files)
        text = f.text.strip("\n")
        if text:
            used.append((source, f.path))
            head = f"# {f.path}\n" if source == "code" else ""
            return head + text + "\n"
    raise RuntimeError(f"no readable {source} file in split {split!r}")


def fill(
    rng: random.Random,
    source: str,
    split: str,
    n_chars: int,
    corpora: Corpora | None = None,
    used: list | None = None,
) -> tuple[str, list[int]]:
    """About `n_chars` of haystack from `source` and the offsets where an insert may go:
    sentence ends for prose (a space is added there), line starts for code and markdown.
    `used` collects what was drawn: ("squad", article), ("hotpot", item), (source, path)."""
    used = [] if used is None else used
    assert source in SOURCES, f"unknown haystack source {source!r}"
    c = corpora or load_corpora()
    if source == "essays":
        return haystack_slice(rng, c, n_chars)
    parts: list[str] = []
    size = 0
    while size < n_chars:
        if source in ("squad", "hotpot"):
            piece = _paragraphs(rng, c, source, split, used)
        else:
            piece = _file(rng, source, split, used)
        parts.append(piece)
        size += len(piece) + 2
    if source in LINE_SOURCES:
        text = "\n".join(parts)
        cut = text.rfind("\n", 0, max(n_chars, 1)) + 1 or len(text)
        text = text[:cut]
        cuts = [i + 1 for i, ch in enumerate(text) if ch == "\n" and i + 1 < len(text)]
        return text, cuts
    text = "\n\n".join(parts)
    sents = split_sentences(text)
    keep = [e for _, e in sents if e <= n_chars] or [sents[0][1]]
    text = text[: keep[-1]]
    return text, keep[:-1]


def weave_into(
    rng: random.Random,
    source: str,
    filler: str,
    cuts: list[int],
    inserts: list[list[tuple[str, bool]]],
    builder: Builder,
) -> None:
    """`example.weave` for any source: in code and markdown every insert is its own line."""
    if source not in LINE_SOURCES:
        weave(rng, filler, cuts, inserts, builder)
        return
    points = sorted(rng.choice([0, *cuts, len(filler)]) for _ in inserts)
    pos = 0
    for pieces, at in zip(inserts, points, strict=True):
        builder.add(filler[pos:at])
        if builder.tail() not in ("", "\n"):
            builder.add("\n")
        for text, gold in pieces:
            builder.add(text, gold=gold)
        builder.add("\n")
        pos = at
    if filler[pos:]:
        builder.add(filler[pos:])
