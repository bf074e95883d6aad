"""Token counting with tiktoken, offline.

Thresholds, headers, metrics and the request log all count in the backend's own tokens as far
as tiktoken knows them: o200k_base for the gpt-4o family and the o-series, cl100k_base for
everything else (a fair, stable proxy for Claude/Qwen/DeepSeek counts). The encoding files come
from litellm's wheel, so nothing reaches the network: TIKTOKEN_CACHE_DIR is pointed there before
tiktoken loads an encoding (`find_spec` locates litellm without importing it).
"""

from __future__ import annotations

import importlib.util
import os
import re
import threading
from functools import lru_cache

_O200K = re.compile(r"(^|/)(gpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|o1|o3|o4|chatgpt-4o)", re.IGNORECASE)


def tiktoken_cache_dir() -> str | None:
    """litellm's bundled tiktoken files, or None when litellm is not installed."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or spec.origin is None:
        return None
    return os.path.join(os.path.dirname(spec.origin), "litellm_core_utils", "tokenizers")


def configure_offline() -> None:
    """Set the env litellm and tiktoken need to never reach the network. Idempotent."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    if "TIKTOKEN_CACHE_DIR" not in os.environ:
        d = tiktoken_cache_dir()
        if d:
            os.environ["TIKTOKEN_CACHE_DIR"] = d


def encoding_name(model: str) -> str:
    return "o200k_base" if _O200K.search(model or "") else "cl100k_base"


_lock = threading.Lock()


@lru_cache(maxsize=4)
def _encoding(name: str):
    configure_offline()
    import tiktoken

    with _lock:
        return tiktoken.get_encoding(name)


class TokenCounter:
    """Counts tokens for one model's encoding. Cheap to create; encodings are shared."""

    def __init__(self, model: str = ""):
        self.encoding = encoding_name(model)

    def count(self, text: str) -> int:
        if not text:
            return 0
        return len(_encoding(self.encoding).encode_ordinary(text))
