"""`cprs tune`: choose a critic's `weak_threshold` by measurement, on training data only.

The threshold (`decoding.extend_weak`) trades compression for recall of the sentences next to
the ones the critic keeps. It depends on how a given critic is calibrated, so it lives in that
critic's `critic.json` and is chosen again after every training stage (`cprs train` writes a
critic.json without one: a new critic decodes by its argmax tags until tuned).

Documents: whole HotpotQA documents built like the evaluation's (every paragraph of an item,
scattered among distractors, at `--length` tokens), but from the TRAINING items (< 6000), so
the reserved evaluation slice is never looked at. The critic has trained on windows of these
items, so their recall runs above the evaluation's; the trade-off between thresholds is what
this measures. Each document is scored once and decoded at every threshold.

Rule: the threshold with the best mean recall among those whose mean compression ratio is at
least `--min-ratio`; ties go to the higher ratio. "off" (argmax tags only) is a candidate.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

OFF = "off"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default=None, help="critic directory (default: the shipped one)")
    p.add_argument("--docs", type=int, default=30, help="documents to tune on")
    p.add_argument("--length", type=int, default=8192, help="document length in tokens")
    p.add_argument(
        "--thresholds",
        default="0.5,0.4,0.3,0.2,0.15,0.1,0.07,0.05,0.03",
        help="candidates in (0, 1]",
    )
    p.add_argument(
        "--min-ratio",
        type=float,
        default=22.0,
        help="lowest acceptable mean compression ratio (default: the 20x HotpotQA target + 10%%)",
    )
    p.add_argument("--seed", type=int, default=0, help="document seed (cprs-eval:<seed>:...)")
    p.add_argument("--write", action="store_true", help="store the choice in critic.json")


def measure(comp, docs, thresholds: list[float | None]) -> list[dict]:
    """Mean recall, share of documents with every fact, and mean ratio per threshold."""
    from cprs_engine.evaluate import recall

    scored = []
    for k, ex in enumerate(docs):
        scored.append(
            comp.score(ex.query, ex.context, prompt=ex.prompt_name, instruction=ex.prompt)
        )
        print(f"scored {k + 1}/{len(docs)}", file=sys.stderr, flush=True)
    rows = []
    for t in thresholds:
        results = [comp.decode(s, weak_threshold=t) for s in scored]
        recalls = [
            recall(ex.meta["facts"], r.compressed) for ex, r in zip(docs, results, strict=True)
        ]
        rows.append(
            {
                "threshold": OFF if t is None else t,
                "recall": sum(recalls) / len(recalls),
                "all": sum(x == 1.0 for x in recalls) / len(recalls),
                "ratio": sum(r.ratio for r in results) / len(results),
                "min_ratio": min(r.ratio for r in results),
            }
        )
    return rows


def choose(rows: list[dict], min_ratio: float) -> dict:
    ok = [r for r in rows if r["ratio"] >= min_ratio] or [r for r in rows if r["threshold"] == OFF]
    return max(ok, key=lambda r: (round(r["recall"], 6), r["ratio"]))


def run(args: argparse.Namespace) -> int:
    from cprs_engine.compressor import Compressor
    from cprs_engine.data.evalset import eval_case

    thresholds: list[float | None] = [None] + [float(x) for x in args.thresholds.split(",") if x]
    if any(not 0.0 < t <= 1.0 for t in thresholds if t is not None):
        raise SystemExit("--thresholds must lie in (0, 1]")
    comp = Compressor.load(args.checkpoint)
    docs = [
        eval_case("hotpotqa", args.length, args.seed, k, comp.count_tokens, split="train")
        for k in range(args.docs)
    ]
    rows = measure(comp, docs, thresholds)
    best = choose(rows, args.min_ratio)
    print("| weak_threshold | recall | all facts | mean ratio | lowest ratio |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        mark = " (chosen)" if r is best else ""
        print(
            f"| {r['threshold']}{mark} | {r['recall']:.1%} | {r['all']:.0%} | "
            f"{r['ratio']:.1f}x | {r['min_ratio']:.1f}x |"
        )
    if args.write:
        path = Path(args.checkpoint or _default_dir()) / "critic.json"
        if not path.exists():
            raise SystemExit(f"{path} is missing: only a delta critic stores a weak_threshold")
        meta = json.loads(path.read_text())
        meta.pop("weak_threshold", None)
        if best["threshold"] != OFF:
            meta["weak_threshold"] = best["threshold"]
        path.write_text(json.dumps(meta, indent=1) + "\n")
        print(f"wrote weak_threshold={best['threshold']} to {path}")
    return 0


def _default_dir() -> Path:
    from cprs_engine.checkpoint import DEFAULT_CHECKPOINT

    return DEFAULT_CHECKPOINT
