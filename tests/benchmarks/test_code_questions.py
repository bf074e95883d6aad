"""benchmarks/code_questions.py without a model: its cases can be scored as they claim."""

from __future__ import annotations

from benchmarks import code_questions as cq


def test_every_case_is_planned_or_reported_skipped():
    docs, skipped = cq.plan()
    planned = {(d.case, d.variant) for d in docs}
    for i, case in enumerate(cq.CASES):
        for variant in cq.VARIANTS:
            if (i, variant) not in planned:
                assert any(f"case {i}" in s or case.path in s for s in skipped), (i, variant)
    for d in docs:
        assert d.files[d.case % 3 if d.variant == "among 3" else 0] == cq.CASES[d.case].path
        assert len({cq.package(f) for f in d.files}) == len(d.files)  # other packages only
        assert len(d.text) <= cq.MAX_DOC_CHARS
        for f in d.files:
            assert f"# {f}\n" in d.text


def test_gold_lines_occur_exactly_once_in_their_file():
    for case in cq.CASES:
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


def test_cases_are_distinct_and_all_kinds_are_present():
    assert len(set(cq.CASES)) == len(cq.CASES)
    assert len({(c.path, c.question) for c in cq.CASES}) == len(cq.CASES)
    assert {c.kind for c in cq.CASES} == set(cq.KINDS)
