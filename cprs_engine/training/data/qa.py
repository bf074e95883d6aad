"""Query-aware examples from annotated QA data: SQuAD 2.0 and HotpotQA (paper §2.3, "existing
QA datasets containing annotated supporting facts", and MRC data for keywords).

Each generator takes `split` ("train" never reaches the reserved slices, see sources.py):
- make_squad_keyword: gold = the annotated answer span (first annotation); negatives are
  SQuAD 2.0's unanswerable questions over their own paragraph, or answerable questions over
  paragraphs of other articles.
- make_squad_sentence: gold = the sentence(s) holding the annotated answer (the paper's
  keyword-to-sentence conversion), with the `fact` prompt.
- make_squad_paragraph: gold = the paragraph holding the answer, `paragraph` prompt.
- make_hotpot_sentence: gold = the supporting-fact sentences, `fact` prompt.
- make_hotpot_paragraph: gold = the supporting paragraphs (title line + text), `paragraph` prompt.
The context is whole paragraphs ("\n\n"-separated): the gold ones at random places among
distractors (the item's own non-supporting paragraphs, other items/articles of the same split,
and Paul Graham essay chunks), filled to about `target_chars`. The gold units are never cut,
so a context can exceed `target_chars` by the part of a gold paragraph that did not fit;
distractors are cut at sentence ends. `positive=False` leaves out every gold unit (gold = []).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from cprs_engine.prompts import LIBRARY

from .example import Example, from_prompt, haystack_slice
from .sources import Corpora, load_corpora
from .text import Builder, split_sentences

Unit = list[tuple[str, bool]]  # a paragraph as (text, is_gold) pieces, joined by nothing


def _sentence_pieces(text: str) -> Unit:
    """A paragraph as sentence pieces, inter-sentence whitespace kept as its own pieces."""
    text = text.strip()
    out: Unit = []
    pos = 0
    for s, e in split_sentences(text):
        if s > pos:
            out.append((text[pos:s], False))
        out.append((text[s:e], False))
        pos = e
    return out


def _title_line(title: str, style: int) -> str:
    """Three ways a paragraph shows its title: a bare line, `Title: ...`, or not at all."""
    return [f"{title}\n", f"Title: {title}\n", ""][style]


def _hotpot_unit(item: dict, p: int, gold_sents: set[int], whole_gold: bool, style: int) -> Unit:
    title, sents = item["context"][p]
    head = _title_line(title, style)
    if whole_gold:
        text = (head + "".join(sents)).strip()
        return [(text, True)]
    out: Unit = [(head, False)] if head else []
    for i, s in enumerate(sents):
        lead = len(s) - len(s.lstrip())
        body = s.strip()
        if not body:
            continue
        if out and (lead or not out[-1][0][-1:].isspace()):
            out.append((s[:lead] or " ", False))
        out.append((body, i in gold_sents))
    return out


def _supporting(item: dict) -> dict[int, set[int]]:
    """Paragraph index -> supporting sentence indices (out-of-range annotations dropped)."""
    titles = {t: i for i, (t, _) in enumerate(item["context"])}
    out: dict[int, set[int]] = {}
    for title, sent in item["supporting_facts"]:
        p = titles.get(title)
        if p is not None and 0 <= sent < len(item["context"][p][1]):
            out.setdefault(p, set()).add(sent)
    return out


def _fillers(
    rng: random.Random,
    c: Corpora,
    split: str,
    source: str,
    used: dict[str, list[int]],
    style: int,
    skip_titles: frozenset[str] = frozenset(),
    skip_squad: frozenset[tuple[int, int]] = frozenset(),
) -> Iterator[Unit]:
    """Endless distractor paragraphs: other HotpotQA items' or SQuAD articles' paragraphs of
    `split` (their indices recorded in `used["hotpot"|"squad"]`), or essay chunks.

    A gold paragraph must never come back as a distractor (contradictory labels): HotpotQA
    paragraphs titled like a supporting one (items share Wikipedia paragraphs) and the SQuAD
    (article, paragraph) pairs in `skip_squad` ((article, -1) skips a whole article) are left out.
    """
    hot = c.hotpot_items(split)
    squad = c.squad_articles(split)
    while True:
        r = rng.random()
        if r < 0.3:
            text, _ = haystack_slice(rng, c, rng.randint(300, 900))
            yield _sentence_pieces(text)
        elif source == "hotpot" or (source == "mixed" and r < 0.65):
            i, item = rng.choice(hot)
            p = rng.randrange(len(item["context"]))
            if item["context"][p][0] in skip_titles:
                continue
            used["hotpot"].append(i)
            yield _hotpot_unit(item, p, set(), False, style)
        else:
            i, art = rng.choice(squad)
            p = rng.randrange(len(art["paragraphs"]))
            if (i, p) in skip_squad or (i, -1) in skip_squad:
                continue
            used["squad"].append(i)
            yield _sentence_pieces(art["paragraphs"][p]["context"])


def _assemble(
    rng: random.Random, target_chars: int, gold: list[Unit], first: list[Unit], more: Iterator[Unit]
) -> tuple[str, list[tuple[int, int]]]:
    """Gold units at random places among distractors (`first` ones preferred), ~target_chars."""
    sep = 2
    room = target_chars - sum(sum(len(t) for t, _ in u) + sep for u in gold)
    distract: list[Unit] = []
    pool = iter(first)
    for _ in range(10_000):
        if room <= 40:
            break
        u = next(pool, None) or next(more)
        size = sum(len(t) for t, _ in u) + sep
        while u and size > room:  # cut at a sentence end
            size -= len(u.pop()[0])
        while u and u[-1][0].isspace():
            size -= len(u.pop()[0])
        if u:
            distract.append(u)
            room -= size
        else:
            room -= 40  # nothing of this one fits; try a shorter one a few times
    units = distract[:]
    for u in gold:
        units.insert(rng.randint(0, len(units)), u)
    b = Builder()
    for k, u in enumerate(units):
        if k:
            b.add("\n\n")
        for text, g in u:
            b.add(text, gold=g)
    return b.build()


def _squad_pick(rng: random.Random, c: Corpora, split: str, answerable: bool):
    arts = c.squad_articles(split)
    while True:
        ai, art = rng.choice(arts)
        pi = rng.randrange(len(art["paragraphs"]))
        para = art["paragraphs"][pi]
        qas = [q for q in para["qas"] if q["is_impossible"] != answerable and q["answers"]]
        if not answerable:
            qas = [q for q in para["qas"] if q["is_impossible"]]
        if qas:
            return ai, art, pi, para, rng.choice(qas)


def _squad(
    rng: random.Random,
    target_chars: int,
    mode: str,
    positive: bool,
    split: str,
    corpora: Corpora | None,
) -> Example:
    c = corpora or load_corpora()
    style = rng.randrange(3)
    unanswerable = not positive and mode == "keyword" and rng.random() < 0.5
    ai, art, pi, para, qa = _squad_pick(rng, c, split, answerable=not unanswerable)
    text = para["context"]
    used: dict[str, list[int]] = {"hotpot": [], "squad": [ai]}
    gold: list[Unit] = []
    facts: list[str] = []
    if unanswerable:
        gold = [_sentence_pieces(text)]  # its own paragraph, nothing gold
    elif positive:
        ans = qa["answers"][0]
        s = ans["answer_start"]
        e = s + len(ans["text"])
        assert text[s:e] == ans["text"], "SQuAD answer_start does not match the answer text"
        lead = len(text[s:e]) - len(text[s:e].lstrip())
        s, e = s + lead, s + lead + len(text[s:e].strip())
        if mode == "keyword":
            unit = [(text[:s], False), (text[s:e], True), (text[e:].rstrip(), False)]
            unit = [(t.lstrip(), g) if i == 0 else (t, g) for i, (t, g) in enumerate(unit)]
            gold = [[p for p in unit if p[0]]]
            facts = [text[s:e]]
        elif mode == "sentence":
            unit = []
            for (t, _), (ss, se) in zip(_sentence_pieces(text), _offsets(text), strict=True):
                hit = ss < e and s < se and not t.isspace()
                unit.append((t, hit))
                if hit:
                    facts.append(t)
            gold = [unit]
        else:
            gold = [[(text.strip(), True)]]
            facts = [text.strip()]
    same = [
        _sentence_pieces(p["context"])
        for k, p in enumerate(art["paragraphs"])
        if k != pi and rng.random() < 0.5
    ]
    rng.shuffle(same)
    skip = frozenset({(ai, pi)})
    if not positive and not unanswerable:
        same = []  # an answerable question over other articles' text only
        skip = frozenset({(ai, -1)})
    more = _fillers(rng, c, split, "squad", used, style, skip_squad=skip)
    context, spans = _assemble(rng, target_chars, gold, same, more)
    p = LIBRARY[{"keyword": "keyword", "sentence": "fact", "paragraph": "paragraph"}[mode]]
    meta = {"source": "squad", "index": ai, "indices": used, "facts": facts}
    return from_prompt(p, p.text, qa["question"], context, spans, f"squad_{mode}", meta)


def _offsets(text: str) -> list[tuple[int, int]]:
    """Char ranges (in `text.strip()`) of the pieces `_sentence_pieces(text)` returns."""
    out, pos = [], 0
    for t, _ in _sentence_pieces(text):
        out.append((pos, pos + len(t)))
        pos += len(t)
    lead = len(text) - len(text.lstrip())
    return [(s + lead, e + lead) for s, e in out]


def make_squad_keyword(rng, target_chars, *, positive=True, split="train", corpora=None):
    return _squad(rng, target_chars, "keyword", positive, split, corpora)


def make_squad_sentence(rng, target_chars, *, positive=True, split="train", corpora=None):
    return _squad(rng, target_chars, "sentence", positive, split, corpora)


def make_squad_paragraph(rng, target_chars, *, positive=True, split="train", corpora=None):
    return _squad(rng, target_chars, "paragraph", positive, split, corpora)


def _hotpot(
    rng: random.Random,
    target_chars: int,
    mode: str,
    positive: bool,
    split: str,
    corpora: Corpora | None,
    all_paragraphs: bool,
) -> Example:
    c = corpora or load_corpora()
    style = rng.randrange(3) if not all_paragraphs else 0
    while True:
        idx, item = rng.choice(c.hotpot_items(split))
        sup = _supporting(item)
        if sup:
            break
    gold_ps = sorted(sup)
    if positive and not all_paragraphs and len(gold_ps) > 1 and rng.random() < 0.3:
        gold_ps = [rng.choice(gold_ps)]  # a window holding one hop only
    if not positive:
        gold_ps = []
    gold = [_hotpot_unit(item, p, sup[p], mode == "paragraph", style) for p in gold_ps]
    facts = [t for u in gold for t, g in u if g]
    rest = [p for p in range(len(item["context"])) if p not in sup]
    rng.shuffle(rest)
    if not all_paragraphs:
        rest = rest[: rng.randint(0, len(rest))]
    first = [_hotpot_unit(item, p, set(), False, style) for p in rest]
    used: dict[str, list[int]] = {"hotpot": [idx], "squad": []}
    if all_paragraphs:  # evaluation: every paragraph of the item, scattered; not cut
        gold += first
        first = []
    titles = frozenset(item["context"][p][0] for p in sup)
    more = _fillers(rng, c, split, "mixed", used, style, skip_titles=titles)
    context, spans = _assemble(rng, target_chars, gold, first, more)
    p = LIBRARY["fact" if mode == "sentence" else "paragraph"]
    meta = {"source": "hotpot", "index": idx, "indices": used, "facts": facts}
    return from_prompt(p, p.text, item["question"], context, spans, f"hotpot_{mode}", meta)


def make_hotpot_sentence(
    rng, target_chars, *, positive=True, split="train", corpora=None, all_paragraphs=False
):
    return _hotpot(rng, target_chars, "sentence", positive, split, corpora, all_paragraphs)


def make_hotpot_paragraph(
    rng, target_chars, *, positive=True, split="train", corpora=None, all_paragraphs=False
):
    return _hotpot(rng, target_chars, "paragraph", positive, split, corpora, all_paragraphs)
