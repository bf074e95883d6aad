"""`cprs tune`: choose a critic's decoding settings by measurement, on training data only.

Three settings trade compression for recall, and all depend on how a given critic is
calibrated, so they live in that critic's `critic.json` and are chosen again after every
training stage (`cprs train` writes a critic.json without them: a new critic decodes its
argmax tags in contiguous windows until tuned):
- `linked_windows`: windows of linked pieces (linking.py) instead of contiguous ones; tried
  only when asked (`--windows contiguous,linked`), since no critic so far gained by it;
- `keep_threshold`: the support at which any token counts as kept (`decoding.lower_tags`);
- `weak_threshold`: the support at which a kept sentence's neighbour joins it
  (`decoding.extend_weak`).

Documents: whole HotpotQA documents built like the evaluation's (every paragraph of an item,
scattered among distractors, at `--length` tokens), but from the TRAINING items (< 6000), so
the reserved evaluation slice is never looked at; 30 from each of two seeds by default (one
set of 30 varies by several points of recall from the next). The critic has trained on
windows of these items, so their recall runs above the evaluation's; the trade-off between
settings is what this measures. Each document is scored once per window kind and decoded at
every pair of thresholds.

Rule: the setting with the best mean recall among those whose mean compression ratio is at
least `--min-ratio`; ties go to the higher ratio. "off" (argmax tags only, contiguous windows)
is a candidate.

`--per-prompt`: thresholds for each control prompt apart (the needle prompt wants no neighbour
extension where the fact prompt needs it). Documents of every `--tasks` task are built from the
development data (HotpotQA/SQuAD training slices; synthetic needles under the tune seeds, never
the evaluation's seed), grouped by the prompt their task uses, and each prompt gets the rule
above over its own documents, at its own `--min-ratios` (e.g. `needle=50`). `--write` stores
them as critic.json's "prompts": {name: {"keep_threshold": x | null, "weak_threshold": ...}}
(null: off for that prompt, whatever the global setting), leaving the global settings as they
are; the critic's own window kind is used.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

OFF = "off"
SETTINGS = ("linked_windows", "keep_threshold", "weak_threshold")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default=None, help="critic directory (default: the shipped one)")
    p.add_argument("--docs", type=int, default=30, help="documents per seed")
    p.add_argument("--length", type=int, default=8192, help="document length in tokens")
    p.add_argument(
        "--keep-thresholds",
        default="0.5,0.4,0.3,0.2,0.15,0.1",
        help="keep_threshold candidates in (0, 1]",
    )
    p.add_argument(
        "--weak-thresholds",
        default="0.3,0.2,0.1,0.07,0.05,0.03,0.01",
        help="weak_threshold candidates in (0, 1]",
    )
    p.add_argument(
        "--windows",
        default="contiguous",
        help="window kinds to try: contiguous, linked or both (contiguous,linked)",
    )
    p.add_argument(
        "--min-ratio",
        type=float,
        default=22.0,
        help="lowest acceptable mean compression ratio (default: the 20x HotpotQA target + 10%%)",
    )
    p.add_argument(
        "--seeds", default="0,1", help="document seeds (cprs-eval:<seed>:...), --docs each"
    )
    p.add_argument("--write", action="store_true", help="store the choice in critic.json")
    p.add_argument(
        "--per-prompt",
        action="store_true",
        help="choose keep/weak thresholds for each control prompt of --tasks apart",
    )
    p.add_argument(
        "--tasks",
        default="hotpotqa,niah_single,niah_multikey,niah_multivalue,vt",
        help="with --per-prompt: the document kinds (cprs eval task names) to tune on",
    )
    p.add_argument(
        "--min-ratios",
        default="",
        help="with --per-prompt: a prompt's own lowest mean ratio, e.g. needle=50,fact=22",
    )


def measure(comp, docs, keeps: list[float | None], weaks: list[float | None]) -> list[dict]:
    """`evaluate.aggregate` (recall, documents with every fact, mean and pooled ratio) and the
    lowest ratio per (keep, weak) pair, with `comp`'s own kind of windows."""
    from cprs_engine.evaluation.evaluate import aggregate, recall

    scored = []
    for k, ex in enumerate(docs):
        scored.append(
            comp.score(ex.query, ex.context, prompt=ex.prompt_name, instruction=ex.prompt)
        )
        print(f"scored {k + 1}/{len(docs)}", file=sys.stderr, flush=True)
    rows = []
    for keep in keeps:
        for weak in weaks:
            results = [comp.decode(s, keep_threshold=keep, weak_threshold=weak) for s in scored]
            cases = [
                {
                    "recall": recall(ex.meta["facts"], r.compressed),
                    "ratio": r.ratio,
                    "context_tokens": r.input_tokens,
                    "output_tokens": r.output_tokens,
                }
                for ex, r in zip(docs, results, strict=True)
            ]
            rows.append(
                {
                    "linked_windows": comp.linked_windows,
                    "keep_threshold": OFF if keep is None else keep,
                    "weak_threshold": OFF if weak is None else weak,
                    "min_ratio": min(r.ratio for r in results),
                }
                | aggregate(cases)
            )
    return rows


def is_off(r: dict) -> bool:
    return not r["linked_windows"] and r["keep_threshold"] == r["weak_threshold"] == OFF


def choose(rows: list[dict], min_ratio: float) -> dict:
    ok = [r for r in rows if r["ratio"] >= min_ratio] or [r for r in rows if is_off(r)]
    return max(ok, key=lambda r: (round(r["recall"], 6), r["ratio"]))


def _candidates(spec: str) -> list[float | None]:
    out: list[float | None] = [None] + [float(x) for x in spec.split(",") if x]
    if any(not 0.0 < t <= 1.0 for t in out if t is not None):
        raise SystemExit("thresholds must lie in (0, 1]")
    return out


def table(rows: list[dict], best: dict) -> str:
    """One line per (windows, keep_threshold), one column per weak_threshold:
    recall / mean ratio; the chosen cell in bold."""
    weaks = list(dict.fromkeys(r["weak_threshold"] for r in rows))
    lines = [
        "| windows | keep_threshold | " + " | ".join(f"weak {w}" for w in weaks) + " |",
        "| --- | --- |" + " --- |" * len(weaks),
    ]
    for key in dict.fromkeys((r["linked_windows"], r["keep_threshold"]) for r in rows):
        cells = []
        for r in (r for r in rows if (r["linked_windows"], r["keep_threshold"]) == key):
            cell = f"{r['recall']:.1%} / {r['ratio']:.1f}x"
            cells.append(f"**{cell}**" if r is best else cell)
        kind = "linked" if key[0] else "contiguous"
        lines.append(f"| {kind} | {key[1]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def min_ratios(spec: str, default: float) -> dict[str, float]:
    """`needle=50,fact=22` -> {prompt: ratio}; prompts not named use `default` (`get`)."""
    out = {}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        name, _, value = part.partition("=")
        if not value:
            raise SystemExit(f"--min-ratios takes prompt=ratio pairs, got {part!r}")
        out[name.strip()] = float(value)
    return out


def dev_docs(tasks: list[str], length: int, seeds: list[int], n: int, count_tokens) -> list:
    """Development documents: the tasks' documents from the training slices, under the tune
    seeds (never the evaluation's own seed, whose synthetic needles are the eval's)."""
    from cprs_engine.evaluation.evaluate import DEFAULT_SEED
    from cprs_engine.training.data.evalset import EVAL_TASKS, eval_case

    if DEFAULT_SEED in seeds:
        raise SystemExit(f"seed {DEFAULT_SEED} is the evaluation's; tune on other seeds")
    unknown = [t for t in tasks if t not in EVAL_TASKS]
    if unknown:
        raise SystemExit(f"unknown tasks {unknown}; known: {', '.join(EVAL_TASKS)}")
    return [
        eval_case(task, length, seed, k, count_tokens, split="train")
        for task in tasks
        for seed in seeds
        for k in range(n)
    ]


def tune_per_prompt(comp, docs, keeps, weaks, ratios: dict[str, float], default: float) -> dict:
    """{prompt: (rows, chosen row)}: each prompt's documents decoded at every pair."""
    by_prompt: dict[str, list] = {}
    for ex in docs:
        by_prompt.setdefault(ex.prompt_name, []).append(ex)
    out = {}
    for name in sorted(by_prompt):
        rows = measure(comp, by_prompt[name], keeps, weaks)
        out[name] = (rows, choose(rows, ratios.get(name, default)))
    return out


def write_prompt_thresholds(path: Path, chosen: dict[str, dict]) -> dict:
    """critic.json's "prompts" entries for the chosen rows (others kept); returns the file's
    new content. "off" is stored as null, which turns that threshold off for the prompt."""
    meta = json.loads(path.read_text())
    table = dict(meta.get("prompts", {}))
    for name, row in chosen.items():
        table[name] = {
            key: (None if row[key] == OFF else row[key])
            for key in ("keep_threshold", "weak_threshold")
        }
    meta["prompts"] = table
    path.write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def run_per_prompt(args: argparse.Namespace, keeps, weaks, seeds: list[int]) -> int:
    from cprs_engine.compressor import Compressor

    comp = Compressor.load(args.checkpoint)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    docs = dev_docs(tasks, args.length, seeds, args.docs, comp.count_tokens)
    results = tune_per_prompt(
        comp, docs, keeps, weaks, min_ratios(args.min_ratios, args.min_ratio), args.min_ratio
    )
    for name, (rows, best) in results.items():
        print(f"\n## prompt {name}\n\n{table(rows, best)}")
        print(
            f"chosen for {name}: keep_threshold {best['keep_threshold']}, weak_threshold "
            f"{best['weak_threshold']}: recall {best['recall']:.1%}, mean ratio "
            f"{best['ratio']:.1f}x (pooled {best['pooled_ratio']:.1f}x)"
        )
    if args.write:
        path = _critic_json(args)
        meta = write_prompt_thresholds(path, {n: best for n, (_, best) in results.items()})
        print(f"wrote prompts {json.dumps(meta['prompts'])} to {path}")
    return 0


def run(args: argparse.Namespace) -> int:
    from cprs_engine.compressor import Compressor
    from cprs_engine.training.data.evalset import eval_case

    keeps, weaks = _candidates(args.keep_thresholds), _candidates(args.weak_thresholds)
    kinds = [k.strip() for k in args.windows.split(",") if k.strip()]
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    if getattr(args, "per_prompt", False):
        return run_per_prompt(args, keeps, weaks, seeds)
    if not kinds or any(k not in ("contiguous", "linked") for k in kinds):
        raise SystemExit("--windows takes contiguous, linked or both")
    rows: list[dict] = []
    docs = []
    for kind in kinds:
        comp = Compressor.load(args.checkpoint, linked_windows=kind == "linked")
        docs = docs or [  # the same documents for every kind, built once
            eval_case("hotpotqa", args.length, seed, k, comp.count_tokens, split="train")
            for seed in seeds
            for k in range(args.docs)
        ]
        rows += measure(comp, docs, keeps, weaks)
    best = choose(rows, args.min_ratio)
    print(table(rows, best))
    print(
        f"chosen: {'linked' if best['linked_windows'] else 'contiguous'} windows, "
        f"keep_threshold {best['keep_threshold']}, weak_threshold {best['weak_threshold']}: "
        f"recall {best['recall']:.1%}, all facts in {best['all']:.0%} of documents, "
        f"mean ratio {best['ratio']:.1f}x (lowest {best['min_ratio']:.1f}x, "
        f"pooled {best['pooled_ratio']:.1f}x)"
    )
    if args.write:
        path = _critic_json(args)
        meta = json.loads(path.read_text())
        for key in SETTINGS:
            meta.pop(key, None)
            if best[key] not in (OFF, False):
                meta[key] = best[key]
        path.write_text(json.dumps(meta, indent=1) + "\n")
        print(f"wrote {', '.join(f'{k}={best[k]}' for k in SETTINGS)} to {path}")
    return 0


def _critic_json(args: argparse.Namespace) -> Path:
    """The critic.json `--write` updates; only a delta critic has one."""
    path = Path(args.checkpoint or _default_dir()) / "critic.json"
    if not path.exists():
        raise SystemExit(f"{path} is missing: only a delta critic stores decoding settings")
    return path


def _default_dir() -> Path:
    from cprs_engine.checkpoint import DEFAULT_CHECKPOINT

    return DEFAULT_CHECKPOINT
