"""Memory per context token, on a tiny random critic (shape, not speed: nothing is timed).

A million-token document must cost at most ~200 MB more than a 128K one (issue 17), i.e. well
under 240 bytes per added token for everything the engine holds. The model's activations do not
grow with the document (w x rho per pass); what does is the tokenization, the windows and the
per-token outputs. This measures what Python and numpy allocate at the peak of `score` (the
tokenizer's own per-chunk objects included) at two lengths and bounds the growth per token.
"""

import tracemalloc

from cprs_engine.checkpoint import tiny_random
from cprs_engine.compressor import Compressor

QUERY = "Which item does sentence 4242 talk about?"


def document(sentences: int) -> str:
    return " ".join(
        f"Sentence {i} talks about item {i * 7 % 1000} in a plain way." for i in range(sentences)
    )


def peak_bytes(comp: Compressor, text: str) -> tuple[int, int]:
    tracemalloc.start()
    try:
        scored = comp.score(QUERY, text)
        return tracemalloc.get_traced_memory()[1], len(scored.tags)
    finally:
        tracemalloc.stop()


def test_score_memory_grows_by_a_few_dozen_bytes_a_token():
    model, tok = tiny_random("qwen2", seed=0, layers=2, bidirectional_start=1)
    comp = Compressor(model, tok, window_tokens=512, windows_per_pass=4, precision="fp32")
    comp.score(QUERY, document(50))  # warm-up: lazy imports and caches are not the document's
    small, n_small = peak_bytes(comp, document(1_500))
    large, n_large = peak_bytes(comp, document(9_000))
    assert n_large > 5 * n_small > 0
    per_token = (large - small) / (n_large - n_small)
    # ids 4 + offsets 16 (twice while the chunks are joined) + outputs 9 + window arrays; the
    # windows alone were ~130 bytes a token before their arrays went int32 and chunked.
    assert per_token < 80, f"{per_token:.0f} bytes per added context token"
