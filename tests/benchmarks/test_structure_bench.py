"""benchmarks/structure_bench.py on a few files: its measures mean what they say."""

from __future__ import annotations

from benchmarks import structure_bench as sb


def test_the_join_counter_sees_gaps_and_markers():
    lines = ["def f():", "    a = 1", "    b = 2", "    c = 3"]
    assert sb.joins("def f():\n    a = 1\n    c = 3", lines) == (1, 1)  # a gap, unmarked
    assert sb.joins("def f():\n    a = 1\n    ...\n    c = 3", lines) == (1, 0)
    assert sb.joins("def f():\n    a = 1\n    b = 2", lines) == (0, 0)  # contiguous


def test_code_part_on_a_few_files():
    r = sb.code_part(4, 4, 1)
    assert r["_docs"]["files"] == 4
    assert r["code+marker"]["misleading_joins"] < r["code"]["misleading_joins"] == 1.0
    assert r["code"]["indented"] == 1.0 and r["code"]["openers"] == 1.0
    assert r["prose"]["tokens_per_kept_line"] < r["code"]["tokens_per_kept_line"]
