"""`cprs train`: the mix option, and a later stage that starts from a saved delta."""

from __future__ import annotations

import argparse
import json

import pytest

from cprs_engine.training import train
from cprs_engine.training.trainer import Trainer, lr_scale


def test_parse_mix_reads_task_weights():
    assert train.parse_mix("vt_slice=0.2, hotpot_sentence=0.3") == {
        "vt_slice": 0.2,
        "hotpot_sentence": 0.3,
    }
    for bad in ("nope=1", "vt", "vt=-1"):
        with pytest.raises(argparse.ArgumentTypeError):
            train.parse_mix(bad)


def test_lr_scale_warms_up_then_decays_to_zero_at_decay_to():
    assert lr_scale(100, 100, 50, None) == pytest.approx(1 / 50)
    assert lr_scale(149, 100, 50, None) == 1.0
    assert lr_scale(10_000, 100, 50, None) == 1.0  # constant without a decay
    # decay from the warmup's end (step 150) to 0 at step 350
    assert lr_scale(150, 100, 50, 350) == 1.0
    assert lr_scale(250, 100, 50, 350) == pytest.approx(0.5)
    assert lr_scale(349, 100, 50, 350) == pytest.approx(1 / 200)
    assert lr_scale(350, 100, 50, 350) == 0.0
    assert lr_scale(120, 100, 50, 350) == pytest.approx(21 / 50)  # warmup still rules


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    train.add_arguments(p)
    return p.parse_args(["--batch", "2", "--val-examples", "3", "--threads", "2", *argv])


@pytest.mark.slow
def test_a_stage_from_a_delta_continues_its_counts_with_a_fresh_optimizer(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    small = ("--layers", "3", "--bidirectional-start", "2", "--train-from", "1")
    Trainer(_args("--out", str(first), "--max-steps", "2", *small), first).fit()
    meta = json.loads((first / "critic.json").read_text())
    assert meta["steps"] == 2 and meta["examples"] == 4

    args = _args(
        "--out",
        str(second),
        "--init-from",
        str(first),
        "--max-steps",
        "3",
        "--mix",
        "vt_slice=1",
        "--decay-to",
        "5",
        "--lr",
        "5e-5",
        "--head-lr",
        "7e-4",
    )
    trainer = Trainer(args, second)
    assert (args.layers, args.bidirectional_start, args.train_from) == (3, 2, 1)
    assert trainer.step == trainer.opt_start == 2 and trainer.example_index == 4
    assert not trainer.opt.state  # fresh optimizer
    trainer.fit()
    meta = json.loads((second / "critic.json").read_text())
    assert meta["steps"] == 3 and meta["examples"] == 6
    assert [s["from_step"] for s in meta["stages"]] == [0, 2]
    assert meta["stages"][1]["mix"] == {"vt_slice": 1.0}
    assert meta["stages"][1]["decay_to"] == 5
    metrics = json.loads((second / "metrics.json").read_text())
    assert "vt_slice" in metrics["val_window_recall_by_task"]  # validation uses the mix

    # resuming the second stage keeps its mix and stage list
    resumed = Trainer(_args("--out", str(second), "--max-steps", "4"), second)
    assert resumed.args.mix == {"vt_slice": 1.0} and len(resumed.stages) == 2
    assert resumed.args.decay_to == 5  # the schedule is kept too
    assert (resumed.args.lr, resumed.args.head_lr) == (5e-5, 7e-4)  # and the stage's rates
    assert resumed.opt_start == 2 and resumed.opt.state
    resumed.close()
