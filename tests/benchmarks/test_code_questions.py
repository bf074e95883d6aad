"""benchmarks/code_questions.py without a model: its cases can be scored as they claim."""

from __future__ import annotations

import pytest

from benchmarks import code_questions as cq

SETS = pytest.mark.parametrize("cases", [cq.CASES, cq.CASES_B], ids=["a", "b"])


@SETS
def test_every_case_is_planned_or_reported_skipped(cases):
    docs, skipped = cq.plan(cases)
    planned = {(d.case, d.variant) for d in docs}
    for i, case in enumerate(cases):
        for variant in cq.VARIANTS:
            if (i, variant) not in planned:
                assert any(f"case {i}" in s or case.path in s for s in skipped), (i, variant)
    paths = {c.path for c in cases}
    for d in docs:
        assert d.files[d.case % 3 if d.variant == "among 3" else 0] == cases[d.case].path
        assert len({cq.package(f) for f in d.files}) == len(d.files)  # other packages only
        assert set(d.files) <= paths  # partners from the same set
        assert len(d.text) <= cq.MAX_DOC_CHARS
        for f in d.files:
            assert f"# {f}\n" in d.text


@SETS
def test_gold_lines_occur_exactly_once_in_their_file(cases):
    for case in cases:
        text = cq.read(case.path)
        if text is None:
            continue  # reported skipped by plan()
        assert 1 <= len(case.gold) <= 3, case
        assert all(g == g.strip() and g for g in case.gold), case
        assert cq.gold_problem(case.gold, text) is None, case


def test_gold_problem_reports_missing_and_repeated_lines():
    text = "def f():\n    return 1\n\ndef g():\n    return 1\n"
    assert cq.gold_problem(("def f():",), text) is None
    assert "0 line(s)" in cq.gold_problem(("return 2",), text)
    assert "2 line(s)" in cq.gold_problem(("return 1",), text)


@SETS
def test_cases_are_distinct_and_all_kinds_are_present(cases):
    assert len(set(cases)) == len(cases)
    assert len({(c.path, c.question) for c in cases}) == len(cases)
    assert {c.kind for c in cases} == set(cq.KINDS)


def test_set_b_is_independent_of_set_a():
    assert not {c.path for c in cq.CASES} & {c.path for c in cq.CASES_B}
    assert not {cq.package(c.path) for c in cq.CASES} & {cq.package(c.path) for c in cq.CASES_B}
    assert not {c.question for c in cq.CASES} & {c.question for c in cq.CASES_B}


def test_set_option_picks_cases_and_section():
    assert cq.SETS["a"] is cq.CASES and cq.SETS["b"] is cq.CASES_B
    assert cq.SETS["all"] == cq.CASES + cq.CASES_B
    assert [cq.section_of(s) for s in ("a", "b", "all")] == [
        "code-questions",
        "code-questions-b",
        "code-questions-all",
    ]
