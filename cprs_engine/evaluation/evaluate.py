"""`cprs eval`: recall, compression ratio and latency of the critic against RAG and BM25.

Cases (cprs_engine/training/data/evalset.py): the reserved slices (HotpotQA items >= 6000, the last 7
SQuAD articles) and fresh synthetic needles/KV/VT under a seed namespace training never uses,
built as whole documents of 8K/32K/128K tokens.

Metrics, per task, length and method:
- recall: the share of a case's gold facts found in the compressed text, both sides with
  whitespace runs collapsed to one space. Facts: the needle/KV value string (niah, kv), each
  chain statement without its final period (vt), each supporting sentence (hotpotqa), the
  answer sentence(s) (squad). `all` is the share of cases with every fact found.
- ratio: context tokens / compressed tokens (compressed tokens floored at 1).
- latency: seconds per document, and context tokens per second.
Baselines see exactly the critic's output size for the same case (`budget` = CPRS's output
tokens; see baselines.py for how they fit it), so they never get more room than the critic.
Tokens are counted with the critic's own tokenizer (`Compressor.count_tokens`); in a
baselines-only run (no `cprs` in --methods) with tiktoken cl100k_base from litellm's files.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from cprs_engine.evaluation.sections import cpu_model, markers, replace_section

TASKS = ("niah_single", "niah_multikey", "niah_multivalue", "kv", "vt", "hotpotqa", "squad")
# issue 18: document types with gold lines, and the needle tasks in other haystack sources
# (`<task>@<source>`; the plain needle tasks are the essays source). Not in the default list
# (`make bench-eval` keeps its runtime); `--tasks types`, `--tasks sources` or by name.
TYPE_TASKS = ("code_qa", "json_lookup", "log_lookup", "md_table")
HAYSTACK_SOURCES = ("squad", "hotpot", "code", "markdown")
NEEDLE_TASKS = ("niah_single", "niah_multikey", "niah_multivalue", "kv", "vt")
SOURCE_TASKS = tuple(f"{t}@{s}" for s in HAYSTACK_SOURCES for t in NEEDLE_TASKS)
ALL_TASKS = TASKS + TYPE_TASKS + SOURCE_TASKS
GROUPS = {
    "default": TASKS,
    "types": TYPE_TASKS,
    "sources": NEEDLE_TASKS + SOURCE_TASKS,
    "all": ALL_TASKS,
}
METHODS = ("cprs", "rag", "bm25")
DEFAULT_SEED = 90_210  # evaluation namespace: "cprs-eval:<seed>:...", never used by training
SECTION = "eval"  # the BENCHMARKS.md section `--write` replaces by default


START, END = markers(SECTION)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default=None, help="critic directory (default: the shipped one)")
    p.add_argument("--lengths", default="8192,32768,131072", help="document lengths in tokens")
    p.add_argument(
        "--samples",
        default=None,
        help="cases per task per length: N, or one per length (default 3 up to 8K, else 1)",
    )
    p.add_argument(
        "--tasks",
        default=",".join(TASKS),
        help=f"task names or groups ({', '.join(GROUPS)}); tasks: {', '.join(ALL_TASKS)}",
    )
    p.add_argument("--methods", default=",".join(METHODS), help="subset of cprs,rag,bm25")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument(
        "--budget", type=int, default=512, help="baseline budget when cprs is not run (tokens)"
    )
    p.add_argument(
        "--rag-full-chunks",
        action="store_true",
        help="embed whole chunks (mean of 256-piece parts) instead of their first 256 pieces",
    )
    p.add_argument("--window-tokens", type=int, default=None, help="override the critic's window")
    p.add_argument("--windows-per-pass", type=int, default=None, help="override rho")
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "int8"],
        default=None,
        help="critic precision (default auto: bf16 autocast where the CPU has native bf16)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the critic's blocks (CPU: faster after a one-time compile of ~1 minute)",
    )
    p.add_argument("--write", metavar="BENCHMARKS.md", default=None, help="update its eval section")
    p.add_argument(
        "--section",
        default=SECTION,
        help="the marked section --write replaces (default: eval); another name keeps a "
        "second run, such as a larger sample of one task, beside the main table",
    )
    p.add_argument("--json", metavar="OUT.json", default=None, help="write every row and summary")


def expand_tasks(spec: str) -> list[str]:
    """`--tasks`: names and group names (GROUPS), in order, each task once."""
    out: list[str] = []
    for name in (t.strip() for t in spec.split(",")):
        out += GROUPS.get(name, (name,)) if name else ()
    return list(dict.fromkeys(out))


def normalize(text: str) -> str:
    return " ".join(text.split())


def recall(facts: list[str], compressed: str) -> float:
    """Share of `facts` contained in `compressed` (whitespace-normalised); 1.0 if no facts."""
    if not facts:
        return 1.0
    hay = normalize(compressed)
    return sum(normalize(f) in hay for f in facts) / len(facts)


def samples_per_length(spec: str | None, lengths: list[int]) -> list[int]:
    """`--samples`: one number for all lengths, or a list aligned with them (last repeats)."""
    if spec is None:
        return [3 if n <= 8192 else 1 for n in lengths]
    vals = [int(v) for v in spec.split(",") if v.strip()]
    assert vals and all(v >= 0 for v in vals), "--samples must be non-negative integers"
    return [vals[min(i, len(vals) - 1)] for i in range(len(lengths))]


def aggregate(rows: list[dict]) -> dict:
    """Over per-case rows (recall, ratio, context_tokens, output_tokens): mean recall, the share
    of cases with every fact, the mean of the ratios and the pooled ratio (all context tokens
    over all output tokens).

    The mean of per-case ratios is what one request sees on average; the pooled ratio is what
    a stream of such requests saves. A few documents compressed far more than the rest lift
    the mean, not the pooled ratio, so the reports give both."""
    return {
        "recall": sum(r["recall"] for r in rows) / len(rows),
        "all": sum(r["recall"] == 1.0 for r in rows) / len(rows),
        "ratio": sum(r["ratio"] for r in rows) / len(rows),
        "pooled_ratio": sum(r["context_tokens"] for r in rows)
        / max(sum(r["output_tokens"] for r in rows), 1),
    }


def summarize(rows: list[dict]) -> list[dict]:
    """Per (task, length, method): `aggregate`, mean seconds and overall tokens/s."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["task"], r["length"], r["method"])].append(r)
    out = []
    for (task, length, method), rs in groups.items():
        secs = sum(r["seconds"] for r in rs)
        out.append(
            {"task": task, "length": length, "method": method, "cases": len(rs)}
            | aggregate(rs)
            | {
                "seconds": secs / len(rs),
                "tokens_per_s": sum(r["context_tokens"] for r in rs) / max(secs, 1e-9),
            }
        )
    return sorted(out, key=lambda s: (s["length"], ALL_TASKS.index(s["task"]), s["method"]))


def markdown_table(summary: list[dict], methods: list[str]) -> str:
    """One row per (length, task): each method's recall and mean ratio, the critic's pooled
    ratio, and its speed."""
    by = {(s["length"], s["task"], s["method"]): s for s in summary}
    head = ["length", "task", "cases"]
    for m in methods:
        head += [f"{m} recall", f"{m} ratio"] + (["cprs pooled ratio"] if m == "cprs" else [])
    head += [f"{m} s/doc" for m in methods]
    if "cprs" in methods:
        head.append("cprs tok/s")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    keys = sorted(
        {(s["length"], s["task"]) for s in summary}, key=lambda k: (k[0], ALL_TASKS.index(k[1]))
    )
    for length, task in keys:
        cells = [f"{length // 1024}K", task, str(by[(length, task, methods[0])]["cases"])]
        for m in methods:
            s = by.get((length, task, m))
            cells += [f"{s['recall']:.1%}", f"{s['ratio']:.1f}x"] if s else ["-", "-"]
            if m == "cprs":
                cells.append(f"{s['pooled_ratio']:.1f}x" if s else "-")
        for m in methods:
            s = by.get((length, task, m))
            cells.append(f"{s['seconds']:.1f}" if s else "-")
        if "cprs" in methods:
            s = by.get((length, task, "cprs"))
            cells.append(f"{s['tokens_per_s']:,.0f}" if s else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def command_line(args: argparse.Namespace) -> str:
    """The run as a `cprs eval` line with every option spelled out (reproducible as is)."""
    parts = ["cprs", "eval"]
    for key, value in sorted(vars(args).items()):
        if key.startswith("_") or key == "command" or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        parts += [flag] if value is True else [flag, shlex.quote(str(value))]
    return " ".join(parts)


def machine() -> str:
    cpu = cpu_model()
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu}, {n} cores"


def report(summary: list[dict], methods: list[str], info: dict) -> str:
    tasks = list(dict.fromkeys(s["task"] for s in summary))
    only = f": {', '.join(tasks)}" if tasks and len(tasks) < len(TASKS) else ""
    if set(tasks) - set(TASKS):
        only = ": document types and haystack sources"
    return "\n".join(
        [
            f"## Compression evaluation (`cprs eval`){only}",
            "",
            f"- command: `{info['command']}`",
            f"- machine: {info['machine']}",
            f"- date: {info['date']}",
            f"- checkpoint: {info['checkpoint']}",
            f"- tokens counted with: {info['counter']}",
            f"- RAG embeds: {info['rag']}",
            "",
            markdown_table(summary, methods),
            "",
            "recall = share of gold facts (needle/KV values, VT statements, HotpotQA supporting "
            "sentences, SQuAD answer sentences) contained in the output, whitespace-normalised; "
            "ratio = the mean over cases of context tokens / output tokens; pooled ratio = all "
            "cases' context tokens / all their output tokens; RAG (MiniLM, 600-token chunks) "
            "and BM25 get the critic's output size for each case as their budget (last chunk "
            "cut to fit). "
            "Cases: reserved HotpotQA items >= 6000, the last 7 SQuAD articles, fresh synthetic "
            "needles (cprs_engine/training/data/evalset.py).",
            *([TYPES_NOTE] if set(tasks) - set(TASKS) else []),
        ]
    )


TYPES_NOTE = (
    "\nDocument types and sources (issue 18): `code_qa` (what a function returns, where an "
    "exception is raised or an environment variable read, a constant's value, over Python "
    "files of the evaluation packages), `json_lookup` (generated records and API payloads), "
    "`log_lookup` (synthetic service logs: the first error, a request's lines, a service's "
    "error), `md_table` (a row of a generated table in evaluation-package markdown); their "
    "facts are the gold lines (stripped). `<task>@<source>`: the needle task in a haystack "
    "of the reserved SQuAD articles, reserved HotpotQA items, evaluation-package code or "
    "markdown (KV: a small JSON object woven in). The evaluation packages are a "
    "name-hashed quarter of the installed ones, never in training "
    "(cprs_engine/training/data/packages.py)."
)


def run_case(ex, methods: list[str], comp, view, budget: int, embedder=None) -> list[dict]:
    """Every method on one case; the critic runs first and its output size becomes the
    baselines' budget (`budget` is used only when the critic is not among `methods`)."""
    from cprs_engine.evaluation.baselines import retrieve

    facts = ex.meta["facts"]
    ctx_tokens = view.count(ex.context)
    rows = []
    for method in sorted(methods, key=lambda m: m != "cprs"):
        t0 = time.perf_counter()
        if method == "cprs":
            res = comp.compress(
                ex.query,
                ex.context,
                granularity=ex.granularity,
                prompt=ex.prompt_name,
                instruction=ex.prompt,
            )
            out = res.compressed
            budget = view.count(out)
        else:
            out = retrieve(method, ex.query, ex.context, budget, view, embedder=embedder)
        secs = time.perf_counter() - t0
        out_tokens = view.count(out)
        rows.append(
            {
                "method": method,
                "context_tokens": ctx_tokens,
                "output_tokens": out_tokens,
                "budget": budget,
                "ratio": ctx_tokens / max(out_tokens, 1),
                "recall": recall(facts, out),
                "facts": len(facts),
                "seconds": secs,
                "tokens_per_s": ctx_tokens / max(secs, 1e-9),
            }
        )
    return rows


def run(args: argparse.Namespace) -> int:
    from cprs_engine.evaluation.baselines import MiniLM, TokenView
    from cprs_engine.training.data.evalset import eval_case

    lengths = [int(x) for x in args.lengths.split(",") if x.strip()]
    tasks = expand_tasks(args.tasks)
    methods = [m for m in args.methods.split(",") if m.strip()]
    bad = [t for t in tasks if t not in ALL_TASKS] + [m for m in methods if m not in METHODS]
    if bad or not methods:
        print(f"unknown task/method: {', '.join(bad) or '(none given)'}", file=sys.stderr)
        return 2
    counts = samples_per_length(args.samples, lengths)

    comp = None
    if "cprs" in methods:
        from cprs_engine.compressor import Compressor
        from cprs_engine.errors import CheckpointNotFound

        opts = {
            k: v
            for k, v in (
                ("window_tokens", args.window_tokens),
                ("windows_per_pass", args.windows_per_pass),
                ("precision", args.precision),
                ("compile", args.compile or None),
            )
            if v is not None
        }
        try:
            comp = Compressor.load(args.checkpoint, **opts)
        except CheckpointNotFound as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 1
        view = TokenView.from_hf(comp.tokenizer)
        counter, ckpt = (
            "the critic's tokenizer",
            f"{args.checkpoint or 'default'} ({comp.engine_version})",
        )
    else:
        view = TokenView.tiktoken("cl100k_base")
        counter, ckpt = "tiktoken cl100k_base (baselines only)", "none (baselines only)"
    embedder = MiniLM(full_chunks=args.rag_full_chunks) if "rag" in methods else None

    rows: list[dict] = []
    total = sum(counts) * len(tasks)
    done = 0
    for length, n in zip(lengths, counts, strict=True):
        for task in tasks:
            for k in range(n):
                ex = eval_case(task, length, args.seed, k, view.count)
                done += 1
                for row in run_case(ex, methods, comp, view, args.budget, embedder):
                    row |= {"task": task, "length": length, "case": k}
                    rows.append(row)
                    print(
                        f"[{done}/{total}] {length // 1024}K {task} #{k} {row['method']}: "
                        f"recall {row['recall']:.2f} ratio {row['ratio']:.1f}x "
                        f"{row['seconds']:.1f}s ({row['tokens_per_s']:,.0f} tok/s)",
                        flush=True,
                    )
    summary = summarize(rows)
    info = {
        "command": command_line(args),
        "machine": machine(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "checkpoint": ckpt,
        "counter": counter,
        "rag": "whole chunks (mean of 256-piece parts)"
        if args.rag_full_chunks
        else "each chunk's first 256 word pieces (sentence-transformers default)",
    }
    text = report(summary, methods, info)
    print("\n" + text)
    if args.write:
        replace_section(args.write, args.section, text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)  # runs/ on a fresh clone
        Path(args.json).write_text(
            json.dumps({"info": info, "summary": summary, "rows": rows}, indent=1)
        )
    return 0
