"""Issue 18's data: code/JSON/log/markdown line tasks, haystack sources, the package split.

What must hold for training and evaluation to mean anything: every gold span is a whole line
of its document (indentation and a JSON trailing comma outside), each recall fact is in the
gold, examples are a function of their seed, and evaluation code and markdown come from
packages training never reads."""

from __future__ import annotations

import itertools
import random

import pytest

from cprs_engine.evaluation import evaluate
from cprs_engine.training.data import codeqa, logs, records, tables
from cprs_engine.training.data.evalset import EVAL_TASKS, eval_case
from cprs_engine.training.data.haystacks import SOURCES, fill
from cprs_engine.training.data.mix import TASKS, training_examples
from cprs_engine.training.data.packages import code_files, markdown_files, split_of
from cprs_engine.training.data.sources import (
    HOTPOT_RESERVED_FROM,
    SQUAD_RESERVED_LAST,
    load_corpora,
)

LINE_TASKS = {
    "code_qa": codeqa.make_code_qa,
    "json_lookup": records.make_json_lookup,
    "log_lookup": logs.make_log_lookup,
    "md_table": tables.make_md_table,
}
NEW_MIX = ("code_qa", "json_lookup", "log_lookup", "md_table")
NEW_MIX += ("niah_sources", "kv_sources", "vt_sources")


def _whole_line(context: str, s: int, e: int) -> bool:
    """context[s:e] is a line but for leading spaces and trailing spaces or one comma."""
    start = context.rfind("\n", 0, s) + 1
    end = context.find("\n", e)
    end = len(context) if end < 0 else end
    return not context[start:s].strip() and context[e:end].strip() in ("", ",")


@pytest.mark.parametrize("task", sorted(LINE_TASKS))
@pytest.mark.parametrize("split", ["train", "eval"])
def test_line_task_gold_is_whole_lines_and_holds_the_facts(task, split):
    for k in range(6):
        ex = LINE_TASKS[task](random.Random(f"{task}{k}"), 3000, split=split)
        ex.check()
        assert ex.spans and ex.meta["facts"], (task, k)
        for s, e in ex.spans:
            assert _whole_line(ex.context, s, e), (task, k, ex.context[s:e])
        gold = ex.gold_texts()
        assert all(f in gold for f in ex.meta["facts"]), (task, k)
        # a fact occurs once in the document: finding it in an output means the answer
        assert all(ex.context.count(f) == 1 for f in ex.meta["facts"]), (task, k)
        neg = LINE_TASKS[task](random.Random(f"{task}{k}"), 3000, split=split, positive=False)
        assert neg.spans == [] and neg.meta["facts"] == []


@pytest.mark.parametrize("task", sorted(LINE_TASKS))
def test_line_tasks_are_deterministic(task):
    a = LINE_TASKS[task](random.Random("same"), 2500)
    b = LINE_TASKS[task](random.Random("same"), 2500)
    c = LINE_TASKS[task](random.Random("other"), 2500)
    assert (a.query, a.context, a.spans) == (b.query, b.context, b.spans)
    assert (a.query, a.context) != (c.query, c.context)


def test_code_questions_come_from_the_syntax_tree():
    src = """
import os

DEFAULT_TIMEOUT = 30.5
MAX = 5


class TooManyRedirects(Exception):
    pass


class Client:
    def send(self, request):
        if request.follow:
            return self._follow_redirects(request)
        return self._send_single(request)

    def check(self, n):
        if n > 20:
            raise TooManyRedirects("more than 20 redirects")
        raise ValueError("no")

    def host(self):
        return os.environ.get("PROXY_HOST", "localhost")

    def a(self):
        return None or self

    def b(self):
        return None or self
"""
    qs = {(q.kind, q.name): q.lines for q in codeqa.questions(src)}
    lines = src.split("\n")
    assert [lines[i].strip() for i in qs[("returns", "Client.send")]] == [
        "return self._follow_redirects(request)",
        "return self._send_single(request)",
    ]
    assert lines[qs[("raises", "TooManyRedirects")][0]].strip().startswith("raise TooMany")
    assert ("raises", "ValueError") not in qs  # builtin: raised everywhere
    assert lines[qs[("env", "PROXY_HOST")][0]].strip().startswith("return os.environ.get")
    assert lines[qs[("constant", "DEFAULT_TIMEOUT")][0]] == "DEFAULT_TIMEOUT = 30.5"
    assert ("constant", "MAX") not in qs  # too short a name to ask about
    assert ("returns", "Client.a") not in qs  # its line recurs in `b`
    assert codeqa.questions("def broken(:\n") == []


def test_package_split_is_by_name_and_disjoint():
    train, evals = code_files("train"), code_files("eval")
    assert train and evals
    tp, ep = {f.package for f in train}, {f.package for f in evals}
    assert not tp & ep
    assert all(split_of(p) == "train" for p in tp) and all(split_of(p) == "eval" for p in ep)
    assert split_of("httpx2") == split_of("httpx")  # a renamed fork goes with its original
    assert not {f.path for f in train} & {f.path for f in evals}
    mtrain, meval = markdown_files("train"), markdown_files("eval")
    assert mtrain and meval and not {f.package for f in mtrain} & {f.package for f in meval}
    assert not any("_vendor" in f.path for f in (*train, *evals))
    assert not any(f.package.startswith("cprs") for f in (*train, *mtrain))


def _sides():
    c = load_corpora()
    eval_files = {f.path for f in (*code_files("eval"), *markdown_files("eval"))}
    cut = len(c.squad) - SQUAD_RESERVED_LAST
    return eval_files, cut


def test_training_stream_of_new_tasks_stays_on_the_training_side():
    eval_files, cut = _sides()
    weights = {name: (1.0 if name in NEW_MIX else 0.0) for name in TASKS}
    seen = set()
    for ex in itertools.islice(training_examples(3, 2000, weights=weights), 160):
        for kind, what in ex.meta.get("drawn", []):
            seen.add(kind)
            if kind == "hotpot":
                assert what < HOTPOT_RESERVED_FROM
            elif kind == "squad":
                assert what < cut
            else:
                assert what not in eval_files, what
        if "file" in ex.meta:
            assert ex.meta["file"] not in eval_files
    assert seen >= {"hotpot", "squad", "code", "markdown"}


@pytest.mark.parametrize("source", SOURCES[1:])
def test_eval_haystacks_draw_only_the_evaluation_side(source):
    eval_files, cut = _sides()
    drawn: list = []
    text, cuts = fill(random.Random(source), source, "eval", 20_000, used=drawn)
    assert 15_000 < len(text) <= 20_000 and drawn
    assert all(0 < c <= len(text) for c in cuts)
    for kind, what in drawn:
        if kind == "hotpot":
            assert what >= HOTPOT_RESERVED_FROM
        elif kind == "squad":
            assert what >= cut
        else:
            assert what in eval_files


def test_needles_in_code_and_markdown_are_lines_of_their_own():
    for task in ("niah_multikey@code", "vt@markdown"):
        ex = eval_case(task, 3000, 1, 0, lambda t: len(t) // 3)
        for s, e in ex.spans:
            assert _whole_line(ex.context, s, e), ex.context[s:e]


def test_task_groups_expand_in_order():
    assert evaluate.expand_tasks("types") == list(evaluate.TYPE_TASKS)
    got = evaluate.expand_tasks("kv,sources,kv@code")
    assert got[0] == "kv" and got.count("kv@code") == 1 and "vt@hotpot" in got
    assert set(evaluate.ALL_TASKS) == set(EVAL_TASKS)
