"""benchmarks/eval_compare.py: two eval runs side by side, the issue-18 targets per row."""

from __future__ import annotations

import json

from benchmarks import eval_compare


def _row(task, method, recall, pooled, cases=2):
    return {"task": task, "length": 8192, "method": method, "cases": cases} | {
        "recall": recall,
        "pooled_ratio": pooled,
    }


def _run(path, rows, name):
    info = {"checkpoint": name, "command": f"cprs eval ({name})", "date": "today"}
    path.write_text(json.dumps({"info": info, "summary": rows, "rows": []}))
    return str(path)


def test_targets_per_task_family():
    c = _row("code_qa", "cprs", 0.95, 12)
    assert eval_compare.met("code_qa", c, _row("code_qa", "rag", 0.5, 12), None) == "yes"
    # level with a baseline is not strictly above it
    assert eval_compare.met("code_qa", c, _row("code_qa", "rag", 0.95, 12), None) == "no"
    assert eval_compare.met("code_qa", _row("code_qa", "cprs", 0.95, 9), None, None) == "no"
    assert eval_compare.met("kv@code", _row("kv@code", "cprs", 1.0, 50), None, None) == "yes"
    assert eval_compare.met("kv@code", _row("kv@code", "cprs", 1.0, 49.9), None, None) == "no"
    assert eval_compare.met("squad", _row("squad", "cprs", 1.0, 9), None, None) == "-"


def test_table_puts_runs_side_by_side_and_writes_its_section(tmp_path):
    a = _run(tmp_path / "a.json", [_row("vt@code", "cprs", 1.0, 60)], "A")
    b = _run(
        tmp_path / "b.json",
        [_row("vt@code", "cprs", 0.5, 80), _row("vt@code", "bm25", 0.25, 80)],
        "B",
    )
    a2 = _run(tmp_path / "a2.json", [_row("kv", "cprs", 1.0, 70)], "A")
    md = tmp_path / "B.md"
    assert eval_compare.main([f"{a}+{a2}", b, "--names", "old,new", "--write", str(md)]) == 0
    text = md.read_text()
    assert "| 8K | vt@code | 2 | 100% | 60.0x | - | - | yes | 50% | 80.0x | - | 25% | no |" in text
    assert "| 8K | kv | 2 | 100% | 70.0x | - | - | yes | - | - | - | - | - |" in text
    assert "`cprs eval (A)` + `cprs eval (A)`" in text
    assert "<!-- eval-types-compare:start -->" in text and "checkpoint A" in text
