"""Engine precisions A/B, in one process, interleaved: for a machine other work keeps busy.

    python -m benchmarks.precision_ab [--tokens 8192] [--rounds 4] [--threads 1]
                                      [--precisions bf16-percall,bf16,int8,bf16+compile,int8+compile]
                                      [--write BENCHMARKS.md]

`make bench-engine` runs each precision in its own process, minutes apart; when other processes
share the cores, its rows are as much a reading of the load as of the engine. Here every
precision scores the same windows of the same document (`Compressor._score`, the forward
passes alone) in turn, round after round, in one process, and the figure kept is each one's
least process CPU time over the rounds: the run least disturbed. With `--threads 1` no
OpenMP thread spins waiting for a descheduled sibling, so CPU time is work done.
Precision names are engine_bench's (`bf16-percall`: the bf16 engine before issue 17).
Agreement with the first precision is reported too: boundary tags equal, largest score gap.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from benchmarks import _report
from benchmarks._docs import QUERY, document, hf_truncate

SECTION = "precision-ab"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.precision_ab", description=__doc__)
    p.add_argument("--tokens", type=int, default=8192)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--precisions", default="bf16-percall,bf16,int8,bf16+compile,int8+compile")
    p.add_argument("--write", metavar="FILE", help="replace the --section section of FILE")
    p.add_argument("--section", default=SECTION, help=f"marked section (default {SECTION})")
    args = p.parse_args(argv)

    import numpy as np
    import torch

    from benchmarks.engine_bench import load_shape
    from cprs_engine import prompts

    torch.set_num_threads(args.threads)
    info = _report.machine(args.threads)
    names = args.precisions.split(",")
    comps = {n: load_shape("default", n)[0] for n in names}
    first = comps[names[0]]
    doc = document(args.tokens, hf_truncate(first.tokenizer))
    ids, _, prefix, windows = first.prepare(QUERY, doc, prompts.resolve(None).text)
    tag = prompts.resolve(None).tag
    warm = {}
    for n, c in comps.items():  # compiles here, for the +compile ones
        t0 = time.process_time()
        c._score(ids, prefix, windows[:4], tag)
        c._score(ids, prefix, windows[-3:], tag)
        warm[n] = time.process_time() - t0
    cpu: dict[str, list[float]] = {n: [] for n in names}
    wall: dict[str, list[float]] = {n: [] for n in names}
    loads, outs = [], {}
    for _ in range(args.rounds):
        for n, c in comps.items():
            t0, c0 = time.perf_counter(), time.process_time()
            outs[n] = c._score(ids, prefix, windows, tag)
            cpu[n].append(time.process_time() - c0)
            wall[n].append(time.perf_counter() - t0)
        loads.append(os.getloadavg()[0])
    base = min(cpu[names[0]])
    rows = []
    for n in names:
        tags, _, scores = outs[n]
        rows.append(
            [n, f"{min(cpu[n]):.2f}", f"{statistics.median(cpu[n]):.2f}"]
            + [f"{len(ids) / min(cpu[n]):,.0f}", f"{base / min(cpu[n]):.2f}×"]
            + [f"{min(wall[n]):.2f}", f"{warm[n]:.0f}"]
            + [f"{100 * np.mean(tags == outs[names[0]][0]):.2f}%"]
            + [f"{np.abs(scores - outs[names[0]][2]).max():.3f}"]
        )
    headers = ["precision", "least CPU s", "median CPU s", "tokens per CPU s", "× first"]
    headers += ["least wall s", "warm-up CPU s", "tags equal to first", "max score gap"]
    text = "\n".join(
        [
            "## Engine precisions, A/B in one process (issue 17)",
            "",
            f"- Date: {_report.today()}",
            f"- Machine: {_report.machine_text(info)}",
            f"- Command: `{_report.command_line('benchmarks.precision_ab', argv)}`",
            f"- Work: the shipped critic's forward passes over one {len(ids):,}-token document "
            f"({len(windows)} windows of ≤ {first.window_tokens} tokens, "
            f"{first.windows_per_pass} per pass, {len(prefix)}-token prefix), {args.rounds} rounds, "
            f"precisions interleaved; 1-min load {min(loads):.2f}–{max(loads):.2f} during the rounds.",
            "",
            _report.table(headers, rows),
        ]
    )
    _report.publish(text, args.write, args.section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
