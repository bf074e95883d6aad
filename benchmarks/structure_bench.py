"""Does structure-keeping decoding (and its gap markers) help a reader? Measured without an LLM.

    python -m benchmarks.structure_bench [--files 60] [--lines 8] [--seed 0] [--spans-from R.json]

Part 1, code: real Python files of the installed packages; random lines are "kept" (as a
critic's spans would be: the line's text without its indentation), and each is decoded three
ways: `prose` (today's sentence decoding, the only one before document types), `code` (lines
with indentation and enclosing openers, no marker) and `code+marker` (a `...` line in every
gap). Per variant:
- parses: the share of outputs `ast.parse` accepts (a syntax-valid excerpt reads as code);
- misleading joins: of the joins between two output lines that were not neighbours in the
  input (blank lines aside), the share with no marker between them: there a reader sees two
  lines as contiguous code that were not;
- indented: the share of kept lines that come back whole, indentation and all;
- enclosed: the share of kept lines whose every enclosing def/class signature line (the whole
  signature) and if/for/while/with opener (by `ast`) is in the output;
- openers: the same, counting only each opener's first line (`def name(`, `if x:`);
- tokens: output tokens (o200k) per kept line.
Part 2, JSON: random spans on generated API-like documents, pretty and minified; the share of
outputs that parse, prose decoding vs the JSON path (documents where the spans touched no
value, so nothing is kept, are left out).
Part 3 (`--spans-from`): the spans of a `cprs compress --json` result over a Python file taken
as the critic's, decoded by each variant: output tokens, the cost of the context.
"""

from __future__ import annotations

import argparse
import ast
import glob
import json
import random
import sys
from pathlib import Path

from cprs_engine import decoding, structure, units
from cprs_engine.result import Span


def python_files(
    n: int, seed: int, *, min_chars: int = 3_000, max_chars: int = 100_000
) -> list[tuple[str, str, ast.AST]]:
    """`n` real Python sources of the installed packages, parseable and of `min_chars` to
    `max_chars` characters, chosen by seed: (path, text, syntax tree)."""
    files = sorted(
        p for d in Path(sys.prefix).glob("lib/python3*/site-packages")
        for p in glob.glob(f"{d}/**/*.py", recursive=True)
    )  # fmt: skip
    rng = random.Random(seed)
    rng.shuffle(files)
    out = []
    for f in files:
        try:
            text = Path(f).read_text(encoding="utf-8")
            if not min_chars <= len(text) <= max_chars:
                continue
            out.append((f, text, ast.parse(text)))
        except (UnicodeDecodeError, SyntaxError, ValueError, OSError):
            continue
        if len(out) == n:
            break
    return out


def enclosing(tree: ast.AST, line: int, *, first_only: bool = False) -> set[int]:
    """Lines of every def/class header and block opener whose body holds `line` (with
    `first_only`, the header's first line: `def name(`)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(node, ast.stmt) or not isinstance(body, list) or not body:
            continue
        last = max(getattr(s, "end_lineno", 0) or 0 for s in body)
        if not body[0].lineno <= line <= last:
            continue
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out.update(range(node.lineno, node.lineno + 1 if first_only else body[0].lineno))
        elif isinstance(node, ast.If | ast.For | ast.While | ast.With):
            out.add(node.lineno)
    return out


def prose_decode(spans: list[Span], text: str) -> str:
    return decoding.join(decoding.merge(decoding.expand(spans, text, "sentence"), text), "sentence")


def variants(spans: list[Span], text: str) -> dict[str, str]:
    return {
        "prose": prose_decode(spans, text),
        "code": structure.decode(spans, text, "code", "sentence", mark=False)[0],
        "code+marker": structure.decode(spans, text, "code", "sentence", mark=True)[0],
    }


def joins(out: str, lines: list[str]) -> tuple[int, int]:
    """(non-adjacent joins, of them without a marker line between)."""
    where: dict[str, list[int]] = {}
    for k, ln in enumerate(lines):
        where.setdefault(ln.rstrip(), []).append(k)
    got = [ln for ln in out.split("\n") if ln.strip()]
    gaps = unmarked = 0
    prev, marked = None, False
    for ln in got:
        if ln.strip() in ("...", "…"):
            marked = True
            continue
        pos = where.get(ln.rstrip())
        if pos and prev is not None:
            nxt = min((p for p in pos if p > prev), default=None)
            if nxt is not None:
                between = lines[prev + 1 : nxt]
                if any(x.strip() for x in between):
                    gaps += 1
                    unmarked += not marked
                prev = nxt
        elif pos:
            prev = pos[0]
        marked = False
    return gaps, unmarked


def code_part(n_files: int, n_lines: int, seed: int) -> dict[str, dict[str, float]]:
    count = units.counter("tiktoken:o200k_base", len)
    rng = random.Random(seed)
    stats = {v: dict(parses=0, gaps=0, unmarked=0, whole=0, enclosed=0, named=0, tokens=0) for v in
             ("prose", "code", "code+marker")}  # fmt: skip
    docs = kept_total = 0
    for _, text, tree in python_files(n_files, seed):
        lines = text.split("\n")
        cand = [
            k for k, ln in enumerate(lines, 1) if ln.strip() and not ln.lstrip().startswith("#")
        ]
        kept = sorted(rng.sample(cand, min(n_lines, len(cand))))
        spans, offset = [], [0]
        for ln in lines:
            offset.append(offset[-1] + len(ln) + 1)
        for k in kept:
            ln = lines[k - 1]
            a = offset[k - 1] + len(ln) - len(ln.lstrip())
            b = offset[k - 1] + len(ln.rstrip())
            spans.append(Span(a, b, text[a:b], 0.5))
        spans = decoding.merge(spans, text, max_gap_chars=-1)
        docs += 1
        kept_total += len(kept)
        for name, out in variants(spans, text).items():
            st = stats[name]
            try:
                ast.parse(out)
                st["parses"] += 1
            except (SyntaxError, ValueError):
                pass
            g, u = joins(out, lines)
            st["gaps"] += g
            st["unmarked"] += u
            out_lines = {x.rstrip() for x in out.split("\n")}
            for k in kept:
                st["whole"] += lines[k - 1].rstrip() in out_lines
                need = [h for h in enclosing(tree, k) if lines[h - 1].strip()
                        and not lines[h - 1].lstrip().startswith(("#", "@"))]  # fmt: skip
                st["enclosed"] += all(lines[h - 1].rstrip() in out_lines for h in need)
                st["named"] += all(
                    lines[h - 1].rstrip() in out_lines for h in enclosing(tree, k, first_only=True)
                )
            st["tokens"] += count(out)
    return {
        name: {
            "parses": st["parses"] / docs,
            "misleading_joins": st["unmarked"] / max(st["gaps"], 1),
            "indented": st["whole"] / kept_total,
            "enclosed": st["enclosed"] / kept_total,
            "openers": st["named"] / kept_total,
            "tokens_per_kept_line": st["tokens"] / kept_total,
        }
        for name, st in stats.items()
    } | {"_docs": {"files": docs, "kept_lines": kept_total}}


def json_part(seed: int, n: int = 40) -> dict[str, float]:
    rng = random.Random(seed)
    parsed = {"prose": 0, "json": 0}
    total = 0
    for d in range(n):
        doc = {
            "object": "list",
            "data": [
                {"id": f"item_{d}_{i}", "name": f"thing {i}", "price": round(rng.random() * 100, 2),
                 "tags": rng.sample(["a", "b", "c", "d"], 2), "owner": {"email": f"u{i}@x.org"}}
                for i in range(rng.randint(5, 40))
            ],
            "has_more": bool(d % 2),
        }  # fmt: skip
        text = json.dumps(doc, indent=None if d % 2 else 2)
        starts = sorted(rng.sample(range(len(text) - 10), 3))
        spans = decoding.merge(
            [Span(a, a + 8, text[a : a + 8], 0.5) for a in starts], text, max_gap_chars=-1
        )
        outs = {
            "prose": prose_decode(spans, text),
            "json": structure.decode(spans, text, "json", "sentence")[0],
        }
        if not outs["json"]:  # the spans held only brackets and whitespace: nothing kept
            continue
        total += 1
        for k, out in outs.items():
            try:
                json.loads(out)
                parsed[k] += 1
            except ValueError:
                pass
    return {k: v / total for k, v in parsed.items()} | {"documents": total}


def spans_part(path: str, result_path: str) -> dict[str, int]:
    text = Path(path).read_text(encoding="utf-8")
    res = json.loads(Path(result_path).read_text())
    spans = [Span(s["start"], s["end"], s["text"], s["score"]) for s in res["spans"]]
    count = units.counter("tiktoken:o200k_base", len)
    return {"document": count(text)} | {k: count(v) for k, v in variants(spans, text).items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--files", type=int, default=60)
    p.add_argument("--lines", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--spans-from", help="a `cprs compress --json` result over --source")
    p.add_argument("--source", help="the Python file that result compressed")
    args = p.parse_args(argv)
    report = {"code": code_part(args.files, args.lines, args.seed), "json": json_part(args.seed)}
    if args.spans_from:
        report["spans_from"] = spans_part(args.source, args.spans_from)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
