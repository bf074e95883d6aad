"""`cprs eval`: the recall metric, budget equalisation of the baselines, the report section."""

from __future__ import annotations

import argparse
import json
import re

import pytest

from cprs_engine.evaluation import evaluate
from cprs_engine.evaluation.baselines import TokenView, bm25_scores, chunk, select
from cprs_engine.evaluation.sections import markers, replace_section
from cprs_engine.training.data.evalset import EVAL_TASKS, eval_case


def words_view() -> TokenView:
    """A toy tokenizer: one token per whitespace-separated word."""
    return TokenView(lambda t: [m.span() for m in re.finditer(r"\S+", t)])


def test_recall_normalises_whitespace_and_counts_each_fact():
    facts = ["One of the special magic numbers for x is: 1234567.", "VAR AB = 5"]
    text = "noise\nOne of the special  magic numbers\nfor x is: 1234567. more"
    assert evaluate.recall(facts, text) == 0.5
    assert evaluate.recall(facts, text + " VAR AB = 5.") == 1.0
    assert evaluate.recall(facts, "") == 0.0
    assert evaluate.recall([], "anything") == 1.0


def test_samples_per_length():
    assert evaluate.samples_per_length(None, [8192, 32768, 131072]) == [3, 1, 1]
    assert evaluate.samples_per_length("4", [8192, 32768]) == [4, 4]
    assert evaluate.samples_per_length("5,2", [1, 2, 3]) == [5, 2, 2]


def test_chunks_cover_the_text_in_order():
    view = words_view()
    text = " ".join(f"w{i}" for i in range(25))
    chunks = chunk(text, view, 10)
    assert [n for _, _, n in chunks] == [10, 10, 5]
    assert "".join(text[s:e] for s, e, _ in chunks) == text


def test_select_cuts_the_last_chunk_to_the_budget_and_keeps_document_order():
    view = words_view()
    text = " ".join(f"w{i}" for i in range(30))
    chunks = chunk(text, view, 10)  # w0-9, w10-19, w20-29
    out = select(text, chunks, [0.1, 0.5, 0.9], 14, view)
    assert view.count(out) == 14  # not rounded up to 20
    # best chunk (w20-29) whole, then the first 4 words of the next best, in document order
    assert out.split() == [f"w{i}" for i in range(10, 14)] + [f"w{i}" for i in range(20, 30)]
    assert select(text, chunks, [1, 2, 3], 0, view) == ""
    assert view.count(select(text, chunks, [3, 2, 1], 100, view)) == 30


def test_select_never_exceeds_the_budget_with_a_real_tokenizer():
    view = TokenView.tiktoken()
    ex = eval_case("hotpotqa", 3000, 1, 0, view.count)
    chunks = chunk(ex.context, view, 600)
    scores = bm25_scores(ex.query, [ex.context[s:e] for s, e, _ in chunks])
    for budget in (1, 37, 599, 600, 601, 1234):
        out = select(ex.context, chunks, scores, budget, view)
        assert 0 < view.count(out) <= budget
        assert budget - view.count(out) <= 3  # the budget is used, not wasted


def test_bm25_ranks_the_matching_passage_first():
    passages = ["the cat sat on the mat", "stock prices fell sharply", "a dog and a cat"]
    scores = bm25_scores("where did the cat sit on the mat", passages)
    assert max(range(3), key=lambda i: scores[i]) == 0


def test_minilm_scores_semantic_match_higher():
    from cprs_engine.evaluation.baselines import MiniLM

    m = MiniLM()
    s = m.scores(
        "Which animal purred on the sofa?",
        ["The kitten was purring on the couch.", "Quarterly revenue beat expectations."],
    )
    assert s[0] > s[1]


class _Oracle:
    """A compressor test double that keeps exactly the gold spans: it lets the harness be
    tested (budgets, ordering, recall = 1) without a trained critic."""

    def compress(self, query, context, **kw):
        class R:
            pass

        r = R()
        r.compressed = "\n".join(context[s:e] for s, e in self.spans)
        return r


def test_run_case_gives_baselines_the_critics_budget():
    view = TokenView.tiktoken()
    ex = eval_case("niah_multivalue", 3000, 2, 0, view.count)
    oracle = _Oracle()
    oracle.spans = ex.spans
    rows = evaluate.run_case(ex, ["bm25", "cprs"], oracle, view, budget=999)
    assert [r["method"] for r in rows] == ["cprs", "bm25"]
    cprs, bm25 = rows
    assert cprs["recall"] == 1.0
    assert cprs["budget"] == cprs["output_tokens"] == bm25["budget"]
    assert bm25["output_tokens"] <= cprs["output_tokens"]
    assert bm25["ratio"] >= cprs["ratio"]


def test_eval_cases_hit_the_length_and_carry_facts():
    view = TokenView.tiktoken()
    for task in EVAL_TASKS:
        ex = eval_case(task, 4000, 3, 0, view.count)
        assert abs(ex.meta["context_tokens"] - 4000) <= 0.05 * 4000, task
        assert ex.meta["facts"] and evaluate.recall(ex.meta["facts"], ex.context) == 1.0, task


def test_the_section_writer_replaces_only_the_marked_block(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    replace_section(path, "eval", "first")
    path.write_text("# Bench\nintro\n\n" + path.read_text().split("\n", 2)[2] + "\ntail\n")
    replace_section(path, "eval", "second")
    text = path.read_text()
    assert "second" in text and "first" not in text
    assert text.startswith("# Bench\nintro") and text.rstrip().endswith("tail")
    assert text.count(evaluate.START) == 1 and text.count(evaluate.END) == 1
    replace_section(path, "eval-hotpotqa", "hotpot run")  # a second section beside it
    replace_section(path, "eval-hotpotqa", "hotpot rerun")
    text = path.read_text()
    assert "second" in text and "hotpot rerun" in text and "hotpot run\n" not in text
    assert text.count(markers("eval-hotpotqa")[0]) == 1
    assert text.count(evaluate.START) == 1 and evaluate.START == "<!-- eval:start -->"


def test_summary_and_table():
    rows = [
        {"task": "kv", "length": 8192, "method": m, "recall": r, "seconds": 2.0}
        | {"context_tokens": 8000, "output_tokens": out, "ratio": 8000 / out}
        for m, r, out in (("cprs", 1.0, 100), ("cprs", 0.5, 400), ("bm25", 0.0, 100))
    ]
    summary = evaluate.summarize(rows)
    by = {s["method"]: s for s in summary}
    assert by["cprs"]["recall"] == 0.75 and by["cprs"]["all"] == 0.5
    assert by["cprs"]["tokens_per_s"] == pytest.approx(4000)
    # 80x and 20x: the mean of the ratios is 50x, the pooled ratio 16,000 / 500 = 32x
    assert by["cprs"]["ratio"] == pytest.approx(50) and by["cprs"]["pooled_ratio"] == 32
    table = evaluate.markdown_table(summary, ["cprs", "bm25"])
    assert "| 8K | kv | 2 | 75.0% | 50.0x | 32.0x | 0.0% | 80.0x | 2.0 | 2.0 |" in table
    # the pooled column follows the critic wherever it stands among the methods
    assert "| 0.0% | 80.0x | 75.0% | 50.0x | 32.0x |" in evaluate.markdown_table(
        summary, ["bm25", "cprs"]
    )


def test_baselines_only_run_writes_report_and_json(tmp_path, capsys):
    p = argparse.ArgumentParser()
    evaluate.add_arguments(p)
    md, js = tmp_path / "B.md", tmp_path / "runs" / "out.json"  # runs/ not there yet
    args = p.parse_args(
        ["--methods", "bm25", "--lengths", "2048", "--samples", "1", "--tasks", "vt,squad"]
        + ["--budget", "300", "--write", str(md), "--json", str(js)]
    )
    assert evaluate.run(args) == 0
    data = json.loads(js.read_text())
    assert {r["task"] for r in data["rows"]} == {"vt", "squad"}
    assert all(r["output_tokens"] <= 300 for r in data["rows"])
    assert "| 2K | vt | 1 |" in md.read_text()
    assert "## Compression evaluation (`cprs eval`): vt, squad" in md.read_text()
    assert evaluate.START in md.read_text()  # the default section
    assert "[2/2]" in capsys.readouterr().out


def test_unknown_task_is_rejected():
    p = argparse.ArgumentParser()
    evaluate.add_arguments(p)
    assert evaluate.run(p.parse_args(["--tasks", "nope", "--methods", "bm25"])) == 2


def test_command_line_reproduces_the_arguments():
    p = argparse.ArgumentParser()
    evaluate.add_arguments(p)
    args = p.parse_args(["--tasks", "kv,vt", "--rag-full-chunks", "--samples", "2,1"])
    line = evaluate.command_line(args)
    assert line.startswith("cprs eval ")
    assert p.parse_args(line.split()[2:]) == args
