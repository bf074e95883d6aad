"""Two `cprs eval --json` runs of the same cases side by side (issue 18): critic A against
critic B, each with its own RAG and BM25 rows at its own output size, and the issue's
targets checked per row.

    python -m benchmarks.eval_compare runs/eval-types-shipped.json runs/eval-types-new.json \
        --names shipped,critic-18 [--write BENCHMARKS.md --section eval-types-compare]

Targets (issue 18): needle/KV/VT tasks >= 98% recall at a pooled ratio >= 50x; code, JSON,
log and markdown tasks >= 90% recall at a pooled ratio >= 10x and strictly above both
baselines at the same budget. A row's cases must match between the runs (same seed,
lengths and samples), or the comparison says nothing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cprs_engine.evaluation.evaluate import ALL_TASKS, TYPE_TASKS
from cprs_engine.evaluation.sections import replace_section


def _index(spec: str) -> tuple[dict, dict]:
    """A run's summary rows by (task, length, method), and its info. `a.json+b.json`: one run
    made of several (the same checkpoint over different tasks); their commands are joined."""
    idx: dict = {}
    infos = []
    for path in spec.split("+"):
        data = json.loads(Path(path).read_text())
        idx |= {(s["task"], s["length"], s["method"]): s for s in data["summary"]}
        infos.append(data["info"])
    info = dict(infos[0], command="` + `".join(i["command"] for i in infos))
    return idx, info


def met(task: str, cprs: dict, rag: dict | None, bm25: dict | None) -> str:
    """ "yes"/"no" against the task's target (see the module docstring)."""
    if task.split("@")[0] in TYPE_TASKS:
        above = all(b is None or cprs["recall"] > b["recall"] for b in (rag, bm25))
        ok = cprs["recall"] >= 0.9 and cprs["pooled_ratio"] >= 10 and above
    elif task in ("hotpotqa", "squad"):
        return "-"
    else:
        ok = cprs["recall"] >= 0.98 and cprs["pooled_ratio"] >= 50
    return "yes" if ok else "no"


def table(runs: list[tuple[str, dict]]) -> str:
    keys = sorted(
        {(t, n) for _, idx in runs for (t, n, m) in idx if m == "cprs"},
        key=lambda k: (k[1], ALL_TASKS.index(k[0])),
    )
    head = ["length", "task", "cases"]
    for name, _ in runs:
        head += [f"{name} recall", f"{name} pooled", f"{name} RAG", f"{name} BM25", "target"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for task, n in keys:
        cells = [f"{n // 1024}K", task]
        cases = {idx[(task, n, "cprs")]["cases"] for _, idx in runs if (task, n, "cprs") in idx}
        cells.append("/".join(str(c) for c in sorted(cases)))
        for _, idx in runs:
            c = idx.get((task, n, "cprs"))
            if c is None:
                cells += ["-"] * 5
                continue
            rag, bm = idx.get((task, n, "rag")), idx.get((task, n, "bm25"))
            cells += [f"{c['recall']:.0%}", f"{c['pooled_ratio']:.1f}x"]
            cells += [f"{b['recall']:.0%}" if b else "-" for b in (rag, bm)]
            cells.append(met(task, c, rag, bm))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="cprs eval --json outputs (a+b: one run in parts)")
    p.add_argument("--names", default=None, help="a short name per run, comma-separated")
    p.add_argument("--write", default=None, help="BENCHMARKS.md to update")
    p.add_argument("--section", default="eval-types-compare")
    args = p.parse_args(argv)
    names = args.names.split(",") if args.names else [Path(r).stem for r in args.runs]
    loaded = [_index(r) for r in args.runs]
    runs = [(n, idx) for n, (idx, _) in zip(names, loaded, strict=True)]
    info = "\n".join(
        f"- {n}: checkpoint {i['checkpoint']}, `{i['command']}`, {i['date']}"
        for n, (_, i) in zip(names, loaded, strict=True)
    )
    text = "\n".join(
        [
            "### The critics side by side",
            "",
            info,
            "",
            table(runs),
            "",
            "recall and pooled ratio of the critic; RAG and BM25 recall at that critic's own "
            "output size per case; target: needle/KV/VT >= 98% at >= 50x pooled, code/JSON/"
            "log/markdown >= 90% at >= 10x pooled and above both baselines (issue 18).",
        ]
    )
    print(text)
    if args.write:
        replace_section(args.write, args.section, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
