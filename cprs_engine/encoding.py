"""One tokenization of a long document, into numpy arrays, in bounded memory.

A fast tokenizer's `Encoding` keeps tokens, ids, offsets, masks and word ids as per-token
objects: several hundred bytes a token, for the whole document at once. Here the document is
tokenized in chunks of about `chunk_chars` characters, and each chunk's ids and char offsets go
straight into int32/int64 arrays (20 bytes a token) before the next chunk is read.

Chunks are cut only where a byte-level BPE tokenizer (GPT-2 pre-tokenizer regex, as SmolLM2's
and Qwen's) must end a pre-token anyway: at a single space with a non-space character on each
side. Every pre-token alternative that can hold whitespace after its first character holds
only whitespace, so no pre-token runs from a non-space character across the space; the space
starts the next one (" word"). BPE merges never cross pre-tokens and added tokens hold no
spaces, so the chunked ids and offsets equal the whole-text ones exactly (tested on both shipped
tokenizers). A text with no such space (CJK without spaces, one giant token run) is one chunk.
"""

from __future__ import annotations

import numpy as np

CHUNK_CHARS = 65_536


def cut_points(text: str, chunk_chars: int = CHUNK_CHARS) -> list[int]:
    """Char positions, at least `chunk_chars` apart, of single spaces between non-spaces."""
    if chunk_chars < 1:
        raise ValueError(f"chunk_chars must be >= 1, got {chunk_chars}")
    cuts: list[int] = []
    pos = chunk_chars
    while pos < len(text):
        i = text.find(" ", pos)
        while i != -1 and (i + 1 >= len(text) or text[i - 1].isspace() or text[i + 1].isspace()):
            i = text.find(" ", i + 1)
        if i == -1:
            break
        cuts.append(i)
        pos = i + chunk_chars
    return cuts


def encode(tokenizer, text: str, chunk_chars: int = CHUNK_CHARS) -> tuple[np.ndarray, np.ndarray]:
    """(ids int32 (n,), char offsets int64 (n, 2)) of `text`, no special tokens added."""
    bounds = [0, *cut_points(text, chunk_chars), len(text)]
    ids, offsets = [], []
    for a, b in zip(bounds, bounds[1:], strict=False):
        enc = tokenizer(text[a:b], add_special_tokens=False, return_offsets_mapping=True)
        ids.append(np.asarray(enc["input_ids"], dtype=np.int32))
        offsets.append(np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2) + a)
    return np.concatenate(ids), np.concatenate(offsets)


def count(tokenizer, text: str, chunk_chars: int = CHUNK_CHARS) -> int:
    """len(ids) of `encode(tokenizer, text)`, chunk by chunk, holding no per-token array: a
    compressed text can be most of a million-token document."""
    bounds = [0, *cut_points(text, chunk_chars), len(text)]
    return sum(
        len(tokenizer(text[a:b], add_special_tokens=False)["input_ids"])
        for a, b in zip(bounds, bounds[1:], strict=False)
    )
