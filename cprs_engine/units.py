"""Budget units: what the tokens of a `budget_tokens` are counted in.

    critic                the critic tokenizer's tokens (the default; `cprs compress --budget`)
    tiktoken:<encoding>   a backend's tokens as tiktoken counts them (o200k_base, cl100k_base,
                          p50k_base): the tokens a user pays for. The proxy sends its budgets in
                          this unit, so `target_ratio: 10` keeps at most a tenth of the tokens
                          the backend would have billed for the document.

The budget is cut exactly in its unit (`decoding.decode` counts with the unit's counter), so no
exchange rate between two tokenizers is guessed. tiktoken reads its encoding files from the ones
bundled in litellm's wheel (TIKTOKEN_CACHE_DIR, when unset), never from the network.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Callable
from functools import lru_cache

from cprs_engine.errors import InvalidInput, UnknownBudgetUnit

CRITIC = "critic"
TIKTOKEN = "tiktoken:"
ENCODINGS = ("o200k_base", "cl100k_base", "p50k_base")  # the files litellm's wheel carries


def tiktoken_unit(encoding: str) -> str:
    """The unit name for a tiktoken encoding, e.g. `tiktoken:o200k_base`."""
    return TIKTOKEN + encoding


def check_budget(budget_tokens: int | None, budget_unit: str | None) -> None:
    """A budget is None or a positive integer, in a known unit."""
    if budget_tokens is not None and (not isinstance(budget_tokens, int) or budget_tokens < 1):
        raise InvalidInput("budget_tokens must be a positive integer", param="budget_tokens")
    check(budget_unit)


def check(unit: str | None) -> None:
    """Raise UnknownBudgetUnit (400, param `budget_unit`) unless `unit` is a known unit."""
    if unit is None or unit == CRITIC:
        return
    if unit.startswith(TIKTOKEN) and unit.removeprefix(TIKTOKEN) in ENCODINGS:
        return
    known = ", ".join([CRITIC, *map(tiktoken_unit, ENCODINGS)])
    raise UnknownBudgetUnit(f"unknown budget unit {unit!r}; expected one of {known}")


def counter(unit: str | None, critic: Callable[[str], int]) -> Callable[[str], int]:
    """The token counter of `unit`; `critic` (the critic tokenizer's count) for the default."""
    check(unit)
    if unit is None or unit == CRITIC:
        return critic
    encoding = tiktoken_encoding(unit.removeprefix(TIKTOKEN))

    def count(text: str) -> int:
        return len(encoding.encode_ordinary(text)) if text else 0

    return count


def tiktoken_files() -> str | None:
    """litellm's bundled tiktoken files, or None when litellm is not installed (`find_spec`
    locates it without importing it)."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or spec.origin is None:
        return None
    return os.path.join(os.path.dirname(spec.origin), "litellm_core_utils", "tokenizers")


_lock = threading.Lock()


@lru_cache(maxsize=4)
def tiktoken_encoding(name: str):
    """A tiktoken encoding, loaded once, offline."""
    if "TIKTOKEN_CACHE_DIR" not in os.environ and (files := tiktoken_files()):
        os.environ["TIKTOKEN_CACHE_DIR"] = files
    import tiktoken

    with _lock:
        return tiktoken.get_encoding(name)
