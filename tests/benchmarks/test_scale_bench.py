"""make bench-scale's untimed parts: its documents, its proxy config and its summary."""

from __future__ import annotations

import pytest

from benchmarks import scale_bench
from benchmarks._docs import NEEDLE
from proxy.config import config_from_dict


def test_documents_are_unique_carry_the_needle_and_have_the_asked_length():
    docs = scale_bench.Documents(300)
    texts = [docs(i) for i in range(20)]
    assert len(set(texts)) == 20
    assert all(NEEDLE in t for t in texts)
    lengths = [len(docs.enc.encode(t)) for t in texts]
    assert all(300 <= n <= 300 + 30 for n in lengths), lengths  # + the needle and request line


def test_the_proxy_config_is_valid_and_compresses_every_document_or_fails():
    cfg = config_from_dict(
        scale_bench.proxy_config("http://127.0.0.1:1", ["http://e0", "http://e1"], "p:")
    )
    policy = cfg.policies["scale"]
    assert policy.failure_mode == "closed" and policy.threshold_tokens <= 500
    assert cfg.engine.mode == "remote" and cfg.engine.urls == ["http://e0", "http://e1"]
    assert cfg.cache.key_prefix == "p:" and cfg.cache.redis_url.startswith("redis://127.0.0.1")


def test_summary_counts_failures_and_rates():
    records = [
        {"t": 0, "latency_s": 1.0, "ok": True, "compressed": True, "error": None},
        {"t": 1, "latency_s": 3.0, "ok": True, "compressed": False, "error": None,
         "skipped": "not_shorter"},
        {"t": 2, "latency_s": 2.0, "ok": False, "compressed": False, "error": "503"},
    ]  # fmt: skip
    s = scale_bench.summarize(records, seconds=10, doc_tokens=100)
    assert s["cache_hits"] == 0
    assert (s["requests"], s["ok"], s["failed"], s["compressed"]) == (3, 2, 1, 1)
    assert s["req_per_s"] == pytest.approx(0.2) and s["doc_tokens_per_s"] == pytest.approx(10)
    assert s["errors"] == ["503"] and s["skipped"] == ["not_shorter"]
    assert s["p50_s"] == 3.0


def test_the_reading_says_where_the_cpu_went():
    row = {"engines": 2, "proxies": 1, "killed": True, "wall_s": 10.0, "req_per_s": 1.0,
           "failed": 0, "cpu_s": {"engines": 15.0, "proxies": 3.0, "fake backend": 0.5,
                                  "load generator": 1.5}}  # fmt: skip
    first = {**row, "engines": 1, "killed": False, "req_per_s": 0.5}
    text = scale_bench.reading({"machine": {"cores": 2}, "rows": [first, row]})
    assert (
        "With 2 engine(s): 1.00 req/s (2.00x the first row), 0 failed with one engine killed"
        in text
    )
    assert "used 100% of the 2 cores (20 CPU s in 10 s), the engines 75% of it" in text
