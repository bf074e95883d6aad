"""Training and evaluation data for the token critic (paper §2.3), built offline.

Public API: `Example`, `training_examples(seed, target_chars, *, start=0, weights=None)`,
`make_example(task, rng, target_chars, **kw)`, `TASKS`, and `load_corpora()`.
"""

from .example import Example
from .mix import TASKS, make_example, training_examples
from .sources import load_corpora

__all__ = ["Example", "TASKS", "load_corpora", "make_example", "training_examples"]
