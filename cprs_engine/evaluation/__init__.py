"""Tooling that measures a critic, apart from the runtime: `evaluate.py` (`eval`: recall, ratio
and latency against the baselines), `tune.py` (`tune`: the decoding thresholds),
`baselines.py` (RAG and BM25 at the critic's budget) and `sections.py` (the marked sections of
BENCHMARKS.md that `eval` and the benchmarks write). Serving never imports it."""
