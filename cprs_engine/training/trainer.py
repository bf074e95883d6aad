"""The training loop of `train` (see train.py for the recipe and the options): build the
critic from the base, encode examples into boundary and tag labels, step, save a resumable
state and the shipped delta, and validate on held-out windows."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

BASE = "smollm2-135m-instruct-q4_1"
REPRODUCE = (
    "for each stage in order: the first with `cprs train --out DIR --fresh`, a later one with "
    "`cprs train --out DIR --init-from DIR --mix MIX` (with `--decay-to N` where the stage "
    "lists decay_to) after removing DIR/train_state.pt; "
    "resume each (same command, no --fresh/--init-from) until its next stage's from_step"
)
LR, HEAD_LR = 1e-4, 1e-3  # the defaults of --lr and --head-lr
FIRST_STAGE = {"from_step": 0, "mix": None, "optimizer": "fresh"}  # when none were recorded


def lr_scale(step: int, opt_start: int, warmup: int, decay_to: int | None) -> float:
    """The learning rate's multiplier at `step`: a linear warmup over `warmup` steps from the
    optimizer's first step, then 1, or with `decay_to` a straight line from 1 at the warmup's
    end down to 0 at step `decay_to`."""
    scale = min(1.0, (step - opt_start + 1) / warmup)
    if decay_to is not None:
        top = opt_start + warmup
        scale *= min(1.0, max(0.0, (decay_to - step) / max(decay_to - top, 1)))
    return scale


class Trainer:
    """The training run: built in steps (arguments fixed by a resume or a stage's start, the
    model, the tag rows, the optimizer, then the saved state), then `fit()`."""

    def __init__(self, args, out: Path):
        self.args, self.out = args, out
        out.mkdir(parents=True, exist_ok=True)
        saved, init = self._fix_arguments()
        self._build_model()
        self._find_tags()
        self._build_optimizer()
        self.step, self.example_index, self.elapsed_before = 0, 0, 0.0
        self.stages: list[dict] = []
        self.opt_start = 0  # the step this optimizer's state (and warmup) began at
        if init:
            self._start_stage(init)
        if saved:
            self._restore(saved)
        if not self.stages:
            self.stages = [dict(FIRST_STAGE, mix=args.mix)]
            if args.decay_to is not None:
                self.stages[0]["decay_to"] = args.decay_to
        self.log_file = open(out / "train_log.jsonl", "a")  # noqa: SIM115 - open for the run
        self.log({"event": "start", "resume": bool(saved), "step": self.step, "args": vars(args)})

    def _fix_arguments(self) -> tuple[dict | None, dict | None]:
        """(the saved state to resume, the critic.json of a delta to start a stage from): the
        architecture is fixed by the first run, so both override the command line's."""
        import torch

        args = self.args
        state_file = self.out / "train_state.pt"
        resume = state_file.exists() and not args.fresh
        saved = torch.load(state_file, weights_only=False) if resume else None
        init = None
        if saved:
            for k in ("layers", "bidirectional_start", "train_from", "seed"):
                setattr(args, k, saved["args"][k])
            if args.mix is None:
                args.mix = saved["args"].get("mix")
            if args.decay_to is None:
                args.decay_to = saved["args"].get("decay_to")
            for k in ("lr", "head_lr"):  # a stage's own rates, unless the command gives new ones
                if getattr(args, k) is None:
                    setattr(args, k, saved["args"].get(k))
        if args.lr is None:
            args.lr = LR
        if args.head_lr is None:
            args.head_lr = HEAD_LR
        elif args.init_from:
            init = json.loads((Path(args.init_from) / "critic.json").read_text())
            args.layers, args.bidirectional_start = init["num_layers"], init["bidirectional_start"]
            args.train_from, args.seed = init["train_from"], init["seed"]
        return saved, init

    def _build_model(self) -> None:
        """The cut base model, frozen but for the trainable set (layers from `train_from`, the
        final norm, `cls_head`)."""
        import torch

        from cprs_engine.checkpoint import smollm2_base
        from cprs_engine.modeling import CriticConfig, CriticModel

        base_state, hf, self.tok_dir = smollm2_base(self.args.layers)
        self.cfg = CriticConfig.from_hf(hf, bidirectional_start=self.args.bidirectional_start)
        torch.manual_seed(self.args.seed)
        model = CriticModel(self.cfg)
        model.lm_head.weight = model.model.embed_tokens.weight  # tied, frozen
        missing, _ = model.load_state_dict(base_state, strict=False)
        assert set(missing) <= {"lm_head.weight", "cls_head.weight", "cls_head.bias"}, missing
        for p in model.parameters():
            p.requires_grad_(False)
        self.trainable = {n: p for n, p in model.named_parameters() if self._is_trainable(n)}
        for p in self.trainable.values():
            p.requires_grad_(True)
        self.model = model.train()

    def _find_tags(self) -> None:
        """The tokenizer, and the LM-head rows of the tag words (every prompt's, then outside)."""
        import torch
        from transformers import AutoTokenizer

        from cprs_engine.prompts import LIBRARY, OUTSIDE_TAG

        self.tok = AutoTokenizer.from_pretrained(self.tok_dir)
        tags = sorted({p.tag for p in LIBRARY.values()}) + [OUTSIDE_TAG]
        self.tag_names = tags
        self.tag_ids = torch.tensor(
            [self.tok.convert_tokens_to_ids(self.tok.tokenize(t)[0]) for t in tags]
        )
        assert len(set(self.tag_ids.tolist())) == len(tags), "tag words must map to distinct rows"

    def _build_optimizer(self) -> None:
        import torch

        head = [p for n, p in self.trainable.items() if n.startswith("cls_head")]
        body = [p for n, p in self.trainable.items() if not n.startswith("cls_head")]
        self.opt = torch.optim.AdamW(
            [{"params": body, "lr": self.args.lr}, {"params": head, "lr": self.args.head_lr}],
            betas=(0.9, 0.95),
            weight_decay=0.0,
        )

    def _start_stage(self, init: dict) -> None:
        """A new stage from a shipped delta: its tensors and counts, a fresh optimizer."""
        from safetensors.torch import load_file

        args = self.args
        delta = load_file(str(Path(args.init_from) / "delta.safetensors"))
        assert set(delta) == set(self.trainable), "the delta's tensors must be the trainable set"
        self.model.load_state_dict({k: v.float() for k, v in delta.items()}, strict=False)
        self.step = self.opt_start = init["steps"]
        self.example_index = init["examples"]
        self.elapsed_before = float(init["train_seconds"])
        self.stages = init.get("stages") or [FIRST_STAGE]
        stage = {"from_step": self.step, "mix": args.mix, "optimizer": "fresh"}
        if args.decay_to is not None:
            stage["decay_to"] = args.decay_to
        self.stages.append(stage)

    def _restore(self, saved: dict) -> None:
        """Resume a run: trained tensors, optimizer, counters and the random state."""
        import torch

        self.model.load_state_dict(saved["trainable"], strict=False)
        self.opt.load_state_dict(saved["optimizer"])
        self.step = saved["step"]
        self.example_index = saved["example_index"]
        self.elapsed_before = saved["elapsed"]
        torch.set_rng_state(saved["torch_rng"])
        self.opt_start = saved.get("opt_start", 0)
        self.stages = saved.get("stages") or [FIRST_STAGE]

    def _is_trainable(self, name: str) -> bool:
        if name.startswith("cls_head") or name.startswith("model.norm"):
            return True
        parts = name.split(".")
        return parts[:2] == ["model", "layers"] and int(parts[2]) >= self.args.train_from

    def log(self, record: dict) -> None:
        record = {"time": round(time.time(), 1), **record}
        self.log_file.write(json.dumps(record, default=str) + "\n")
        self.log_file.flush()
        print(json.dumps(record, default=str), flush=True)

    # ---------------------------------------------------------------- data -> tensors
    def encode(self, ex, max_context: int):
        """(input_ids, boundary labels, tag labels, prefix length) for one example."""
        from cprs_engine.compressor import build_prefix
        from cprs_engine.modeling import B_TAG, E_TAG, I_TAG, O_TAG

        prefix = self.tok.encode(build_prefix(ex.prompt, ex.query), add_special_tokens=False)
        enc = self.tok(ex.context, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"][:max_context], enc["offset_mapping"][:max_context]
        bio = [O_TAG] * len(ids)
        for s, e in ex.spans:
            inside = [i for i, (a, b) in enumerate(offsets) if a < e and b > s]
            if not inside:
                continue
            for i in inside:
                bio[i] = I_TAG
            bio[inside[-1]] = E_TAG
            bio[inside[0]] = B_TAG
        tag_index = self.tag_names.index(ex.tag)
        outside_index = len(self.tag_names) - 1
        lm = [outside_index if b == O_TAG else tag_index for b in bio]
        return prefix + ids, bio, lm, len(prefix)

    def batch(self, rng: random.Random):
        import torch

        from cprs_engine.modeling import O_TAG
        from cprs_engine.training.data.mix import training_examples

        stream = training_examples(
            self.args.seed,
            lambda r: r.randint(800, 2400),
            start=self.example_index,
            weights=self.args.mix,
        )
        rows = [self.encode(next(stream), self.args.window_tokens) for _ in range(self.args.batch)]
        self.example_index += self.args.batch
        T = max(len(r[0]) for r in rows)
        ids = torch.full((len(rows), T), self.tok.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros((len(rows), T), dtype=torch.long)
        bio = torch.full((len(rows), T), -100, dtype=torch.long)
        lm = torch.full((len(rows), T), -100, dtype=torch.long)
        for r, (x, b, m, P) in enumerate(rows):
            ids[r, : len(x)] = torch.tensor(x)
            mask[r, : len(x)] = 1
            keep = [lab != O_TAG or rng.random() < self.args.o_keep for lab in b]
            bio[r, P : len(x)] = torch.tensor(
                [lab if k else -100 for lab, k in zip(b, keep, strict=True)]
            )
            lm[r, P : len(x)] = torch.tensor(
                [lab if k else -100 for lab, k in zip(m, keep, strict=True)]
            )
        return ids, mask, bio, lm

    # ---------------------------------------------------------------- loop
    def loss(self, ids, mask, bio, lm):
        import torch.nn.functional as F

        hidden = self.model(ids, mask, grad_from_layer=self.args.train_from)  # (B, T, C)
        cls = self.model.boundary_logits(hidden)  # (B, T, 4)
        tag = self.model.tag_logits(hidden, self.tag_ids)  # (B, T, K)
        cls_loss = F.cross_entropy(cls.flatten(0, 1), bio.flatten(), ignore_index=-100)
        lm_loss = F.cross_entropy(tag.flatten(0, 1), lm.flatten(), ignore_index=-100)
        return cls_loss + lm_loss, cls_loss, lm_loss

    def fit(self) -> None:
        import torch

        args = self.args
        rng = random.Random(f"cprs-mask:{args.seed}:{self.step}")
        start = time.time()
        last_save = start
        tokens = 0
        while True:
            elapsed = time.time() - start
            if elapsed > args.minutes * 60 or (args.max_steps and self.step >= args.max_steps):
                break
            if args.decay_to is not None and self.step >= args.decay_to:
                break
            scale = lr_scale(self.step, self.opt_start, args.warmup, args.decay_to)
            for g, base in zip(self.opt.param_groups, (args.lr, args.head_lr), strict=True):
                g["lr"] = base * scale
            ids, mask, bio, lm = self.batch(rng)
            with torch.autocast(ids.device.type, torch.bfloat16, enabled=args.autocast == "bf16"):
                loss, cls_loss, lm_loss = self.loss(ids, mask, bio, lm)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.trainable.values(), 1.0)
            self.opt.step()
            self.step += 1
            tokens += int(mask.sum())
            if self.step % 10 == 0:
                self.log(
                    {
                        "step": self.step,
                        "loss": round(loss.item(), 4),
                        "cls_loss": round(cls_loss.item(), 4),
                        "lm_loss": round(lm_loss.item(), 4),
                        "tokens_per_s": round(tokens / (time.time() - start), 1),
                        "examples": self.example_index,
                    }
                )
            if time.time() - last_save > args.save_minutes * 60:
                self.save(time.time() - start, validate=False)
                last_save = time.time()
        self.save(time.time() - start, validate=True)
        self.close()

    def close(self) -> None:
        self.log_file.close()

    # ---------------------------------------------------------------- persistence
    def save(self, run_elapsed: float, *, validate: bool) -> None:
        import torch
        from safetensors.torch import save_file

        args, out = self.args, self.out
        trainable = {n: p.detach().clone() for n, p in self.trainable.items()}
        state = {
            "args": vars(args),
            "trainable": trainable,
            "optimizer": self.opt.state_dict(),
            "step": self.step,
            "example_index": self.example_index,
            "elapsed": self.elapsed_before + run_elapsed,
            "torch_rng": torch.get_rng_state(),
            "opt_start": self.opt_start,
            "stages": self.stages,
        }
        torch.save(state, out / "train_state.pt.tmp")
        os.replace(out / "train_state.pt.tmp", out / "train_state.pt")
        save_file(
            {n: t.to(torch.float16).contiguous() for n, t in trainable.items()},
            str(out / "delta.safetensors"),
            metadata={"base": BASE, "step": str(self.step)},
        )
        meta = {
            "base": BASE,
            "num_layers": args.layers,
            "bidirectional_start": args.bidirectional_start,
            "train_from": args.train_from,
            "window_tokens": args.window_tokens,
            "windows_per_pass": args.windows_per_pass,
            "tags": self.tag_names,
            "seed": args.seed,
            "steps": self.step,
            "examples": self.example_index,
            "train_seconds": round(self.elapsed_before + run_elapsed),
            "stages": self.stages,
            "reproduce": REPRODUCE,
        }
        (out / "critic.json").write_text(json.dumps(meta, indent=1) + "\n")
        self.log({"event": "save", "step": self.step, "elapsed": round(meta["train_seconds"])})
        if validate:
            metrics = self.validate()
            metrics.update(
                steps=self.step, examples=self.example_index, train_seconds=meta["train_seconds"]
            )
            (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
            self.log({"event": "validate", **metrics})

    def validate(self) -> dict:
        """Held-out windows (a seed no run trains on): token and gold-span recall, precision."""
        import torch

        from cprs_engine.modeling import O_TAG
        from cprs_engine.training.data.mix import training_examples

        self.model.eval()
        stream = training_examples(
            10_000 + self.args.seed, lambda r: r.randint(800, 2400), weights=self.args.mix
        )
        per_task: dict[str, list[int]] = {}
        tp = fp = fn = 0
        with torch.inference_mode():
            for _ in range(self.args.val_examples):
                ex = next(stream)
                ids, bio, _, P = self.encode(ex, self.args.window_tokens)
                hidden = self.model(torch.tensor([ids]))
                pred = self.model.boundary_logits(hidden)[0, P:].argmax(-1).tolist()
                gold = [b != O_TAG for b in bio]
                got = [p != O_TAG for p in pred]
                tp += sum(g and p for g, p in zip(gold, got, strict=True))
                fp += sum(p and not g for g, p in zip(gold, got, strict=True))
                fn += sum(g and not p for g, p in zip(gold, got, strict=True))
                hit = per_task.setdefault(ex.task, [0, 0, 0])
                hit[2] += 1
                if any(gold):
                    hit[1] += 1
                    hit[0] += int(
                        sum(g and p for g, p in zip(gold, got, strict=True)) >= 0.5 * sum(gold)
                    )
        self.model.train()
        return {
            "val_token_precision": round(tp / max(tp + fp, 1), 4),
            "val_token_recall": round(tp / max(tp + fn, 1), 4),
            "val_window_recall_by_task": {
                t: round(h[0] / h[1], 3) if h[1] else None for t, h in sorted(per_task.items())
            },
            "val_examples": self.args.val_examples,
        }
