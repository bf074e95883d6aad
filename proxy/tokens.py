"""Token counting with tiktoken, offline.

Thresholds, headers, metrics and the request log all count in the backend's own tokens as far
as tiktoken knows them: o200k_base for the gpt-4o family and the o-series, cl100k_base for
everything else (a fair, stable proxy for Claude/Qwen/DeepSeek counts). The encoding files come
from litellm's wheel, so nothing reaches the network: TIKTOKEN_CACHE_DIR is pointed there before
tiktoken loads an encoding (cprs_engine/units.py, which counts budgets in the same unit).
"""

from __future__ import annotations

import os
import re

from cprs_engine.units import tiktoken_encoding, tiktoken_files, tiktoken_unit

_O200K = re.compile(r"(^|/)(gpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|o1|o3|o4|chatgpt-4o)", re.IGNORECASE)


def configure_offline() -> None:
    """Set the env litellm and tiktoken need to never reach the network. Idempotent."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    if "TIKTOKEN_CACHE_DIR" not in os.environ:
        d = tiktoken_files()
        if d:
            os.environ["TIKTOKEN_CACHE_DIR"] = d


def encoding_name(model: str) -> str:
    return "o200k_base" if _O200K.search(model or "") else "cl100k_base"


class TokenCounter:
    """Counts tokens for one model's encoding. Cheap to create; encodings are shared."""

    def __init__(self, model: str = ""):
        self.encoding = encoding_name(model)
        self.unit = tiktoken_unit(self.encoding)  # the engine cuts budgets in this unit

    def count(self, text: str) -> int:
        if not text:
            return 0
        return len(tiktoken_encoding(self.encoding).encode_ordinary(text))
