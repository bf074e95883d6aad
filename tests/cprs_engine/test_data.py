"""The data generators: exact gold spans, the reserved evaluation slices, determinism."""

from __future__ import annotations

import itertools
import random
import re

import pytest

from cprs_engine.training.data import TASKS, load_corpora, make_example, training_examples
from cprs_engine.training.data.niah import make_niah, make_vt
from cprs_engine.training.data.sources import HOTPOT_RESERVED_FROM, SQUAD_RESERVED_LAST
from cprs_engine.training.data.text import Builder, split_sentences


def test_split_sentences_handles_glued_sentences_and_abbreviations():
    text = "It was Mr. Smith. He paid 3.5 dollars.Then he left!  Why?[6]\n\nNew para"
    got = [text[s:e] for s, e in split_sentences(text)]
    assert got == [
        "It was Mr. Smith.",
        "He paid 3.5 dollars.",
        "Then he left!",
        "Why?[6]",
        "New para",
    ]


def test_builder_records_exact_spans():
    b = Builder()
    b.add("abc ")
    b.add("GOLD", gold=True)
    b.add(" tail")
    context, spans = b.build()
    assert [context[s:e] for s, e in spans] == ["GOLD"]
    with pytest.raises(AssertionError):
        b.add(" untrimmed ", gold=True)


@pytest.mark.parametrize("task", sorted(TASKS))
@pytest.mark.parametrize("positive", [True, False])
def test_every_task_gives_exact_in_bounds_spans(task, positive):
    for k in range(5):
        ex = make_example(task, random.Random(f"{task}{k}"), 2000, positive=positive)
        ex.check()
        if not positive:
            assert ex.spans == [], task
            continue
        assert ex.spans, task
        for s, e in ex.spans:
            assert 0 <= s < e <= len(ex.context)
        # the recall facts are inside the gold text
        gold = " ".join(ex.gold_texts())
        for fact in ex.meta["facts"]:
            assert fact in gold


def test_niah_gold_is_the_queried_needle_only():
    ex = make_niah(
        random.Random(7), 3000, variant="multikey", n_distractors=3, value_type="numbers"
    )
    assert len(ex.spans) == 1
    (needle,) = ex.gold_texts()
    assert ex.meta["keys"][0] in needle and ex.meta["keys"][0] in ex.query
    assert ex.context.count("special magic") >= 4  # the distractors are there too


def test_niah_multivalue_all_values_gold():
    ex = make_niah(random.Random(8), 3000, variant="multivalue", n_values=3, train_templates=False)
    assert len(ex.spans) == 3
    assert all(v in ex.context for v in ex.meta["facts"])


def test_vt_gold_is_the_whole_chain_when_requested():
    ex = make_vt(random.Random(3), 4000, hops=4, n_distractor_chains=2, train_templates=False)
    gold = ex.gold_texts()
    assert len(gold) == 5
    assert gold[0].endswith(f"= {ex.meta['value']}.")
    assert ex.context.count("VAR ") > 5


@pytest.mark.parametrize("seed", range(12))
def test_vt_slice_untraceable_links_are_gold_and_traceable_ones_are_not(seed):
    ex = make_vt(random.Random(seed), 2500, window_slice=True, positive=seed % 3 != 0)
    assert ex.task == "vt_slice"
    gold = set(ex.gold_texts())
    assert len(gold) <= 2 and (len(gold) > 0) == (seed % 3 != 0)
    statements = re.findall(r"VAR (\w+) = (VAR (\w+)|\d+)\.", ex.context)
    defined_by_distractor = {}
    for name, rhs, ref in statements:
        text = f"VAR {name} = {rhs}."
        if text in gold:
            continue
        # a distractor statement is the head of its chain or follows one inside the window
        assert not ref or ref in defined_by_distractor, text
        defined_by_distractor[name] = rhs
    assert all(str(ex.meta["value"]) not in v for v in defined_by_distractor.values())


def test_stream_weights_override_the_mix():
    exs = list(itertools.islice(training_examples(0, 1200, weights={"vt_slice": 50.0}), 40))
    assert sum(x.task == "vt_slice" for x in exs) >= 30
    base = [x.task for x in itertools.islice(training_examples(0, 1200), 40)]
    assert base != [x.task for x in exs]


def test_stream_is_deterministic_and_resumable():
    a = list(itertools.islice(training_examples(11, 1500), 12))
    b = list(itertools.islice(training_examples(11, 1500), 12))
    c = list(itertools.islice(training_examples(11, 1500, start=7), 5))
    d = list(itertools.islice(training_examples(12, 1500), 12))
    key = [(x.task, x.query, x.context, x.spans) for x in a]
    assert key == [(x.task, x.query, x.context, x.spans) for x in b]
    assert key[7:] == [(x.task, x.query, x.context, x.spans) for x in c]
    assert key != [(x.task, x.query, x.context, x.spans) for x in d]


def test_stream_mixes_tasks_and_negatives():
    exs = list(itertools.islice(training_examples(0, lambda r: r.randint(1200, 2800)), 300))
    tasks = {x.task for x in exs}
    assert len(tasks) >= 9
    empty = sum(not x.spans for x in exs) / len(exs)
    assert 0.25 < empty < 0.55
    assert {x.granularity for x in exs} == {"keyword", "sentence", "paragraph"}


def test_loaders_split_the_reserved_slices():
    c = load_corpora()
    train_h = [i for i, _ in c.hotpot_items("train")]
    eval_h = [i for i, _ in c.hotpot_items("eval")]
    assert max(train_h) == HOTPOT_RESERVED_FROM - 1 and min(eval_h) == HOTPOT_RESERVED_FROM
    assert max(eval_h) == len(c.hotpot) - 1
    train_s = [i for i, _ in c.squad_articles("train")]
    eval_s = [i for i, _ in c.squad_articles("eval")]
    assert eval_s == list(range(len(c.squad) - SQUAD_RESERVED_LAST, len(c.squad)))
    assert not set(train_s) & set(eval_s)
    with pytest.raises(ValueError):
        c.hotpot_items("test")


def _reserved_texts():
    c = load_corpora()
    eval_s = c.squad_articles("eval")
    paras = {p["context"].strip()[:80] for _, a in eval_s for p in a["paragraphs"]}
    questions = {q["question"] for _, a in eval_s for p in a["paragraphs"] for q in p["qas"]}
    questions |= {it["question"] for _, it in c.hotpot_items("eval")}
    return paras, questions


def test_training_stream_never_touches_reserved_items():
    paras, questions = _reserved_texts()
    cut = len(load_corpora().squad) - SQUAD_RESERVED_LAST
    for ex in itertools.islice(training_examples(5, 2500), 400):
        src = ex.meta.get("source")
        used = ex.meta.get("indices", {"hotpot": [], "squad": []})
        assert all(i < HOTPOT_RESERVED_FROM for i in used["hotpot"])
        assert all(i < cut for i in used["squad"])
        if src == "hotpot":
            assert ex.meta["index"] < HOTPOT_RESERVED_FROM
        if src == "squad":
            assert ex.meta["index"] < cut
        assert ex.query not in questions
        assert not any(p in ex.context for p in paras)


def test_eval_split_draws_only_reserved_items():
    c = load_corpora()
    rng = random.Random(0)
    for _ in range(5):
        h = make_example("hotpot_sentence", rng, 20000, split="eval", all_paragraphs=True)
        assert h.meta["index"] >= HOTPOT_RESERVED_FROM
        assert all(i >= HOTPOT_RESERVED_FROM for i in h.meta["indices"]["hotpot"])
        assert all(i >= len(c.squad) - SQUAD_RESERVED_LAST for i in h.meta["indices"]["squad"])
        s = make_example("squad_sentence", rng, 20000, split="eval")
        assert s.meta["index"] >= len(c.squad) - SQUAD_RESERVED_LAST


def test_gold_paragraphs_never_reappear_as_distractors():
    for k in range(30):
        rng = random.Random(f"dup{k}")
        for task in ("hotpot_paragraph", "squad_paragraph"):
            ex = make_example(task, rng, 6000)
            for g in ex.gold_texts():
                body = g.split("\n", 1)[-1][:120]  # past the title line
                assert ex.context.count(body) == 1, (task, body)
