"""Tooling that makes a critic, apart from the runtime that serves one: `train.py` (the `train`
command and its schedule), `trainer.py` (the training loop, its checkpoints and validation) and
`data/` (the offline training and evaluation corpora, paper §2.3). Serving never imports it."""
