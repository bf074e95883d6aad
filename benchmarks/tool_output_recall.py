"""Recall of a document sent as a tool output vs the same document sent as a user message.

Each reserved evaluation case (cprs_engine.data.evalset) is put in a chat request twice: once as
`<document>…</document>` in the user message before the question, once as the `role: tool`
answer to an assistant tool call after the question. `proxy.detect.find_documents` finds the
document and its query in each (the question; the question plus `name(arguments)` of the call),
the shipped critic compresses it for that query, and the gold facts' recall is measured as
`cprs eval` does. Two tool calls: one that says nothing about the question
(`read_document({"id": "doc-1"})`) and a search call that carries it.

    python -m benchmarks.tool_output_recall --tasks hotpotqa,squad,niah_single --n 3 --length 8192
"""

from __future__ import annotations

import argparse
import json
import platform
import time

from cprs_engine.data.evalset import eval_case
from cprs_engine.evaluate import DEFAULT_SEED, recall

from cprs_engine.compressor import Compressor
from proxy.detect import find_documents

CALLS = {
    "tool_plain": lambda q: ("read_document", json.dumps({"id": "doc-1"})),
    "tool_search": lambda q: ("search_documents", json.dumps({"query": q})),
}


def requests(question: str, doc: str) -> dict[str, list[dict]]:
    out = {"user": [{"role": "user", "content": f"<document>{doc}</document>\n{question}"}]}
    for name, make in CALLS.items():
        fn, args = make(question)
        out[name] = [
            {"role": "user", "content": question},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": fn, "arguments": args}}]},
            {"role": "tool", "tool_call_id": "c1", "content": doc},
        ]  # fmt: skip
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--tasks", default="hotpotqa,squad,niah_single")
    p.add_argument("--n", type=int, default=3)
    p.add_argument("--length", type=int, default=8192)
    args = p.parse_args()
    comp = Compressor.load()
    count = comp.count_tokens
    rows = []
    for task in args.tasks.split(","):
        for k in range(args.n):
            ex = eval_case(task, args.length, DEFAULT_SEED, k, count)
            for variant, messages in requests(ex.query, ex.context).items():
                det = find_documents(
                    messages, markers=["document"], threshold_tokens=1000, system_min_tokens=1000,
                    compress_user_parts=True, count=count, tool_outputs=True,
                )  # fmt: skip
                (doc,) = det.documents
                assert doc.text == ex.context, variant
                t = time.perf_counter()
                res = comp.compress(doc.query, doc.text, granularity=ex.granularity)
                rows.append({
                    "task": task, "case": k, "variant": variant, "recall": recall(ex.meta["facts"], res.compressed),
                    "ratio": count(doc.text) / max(count(res.compressed), 1), "s": time.perf_counter() - t,
                })  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
    print(f"\nmachine: {platform.processor() or platform.machine()}, critic {comp.engine_version}")
    print("| variant | cases | mean recall | mean ratio |\n| --- | --- | --- | --- |")
    for variant in ("user", *CALLS):
        rs = [r for r in rows if r["variant"] == variant]
        mean = sum(r["recall"] for r in rs) / len(rs)
        ratio = sum(r["ratio"] for r in rs) / len(rs)
        print(f"| {variant} | {len(rs)} | {mean:.3f} | {ratio:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
