"""The benchmarks' untimed parts: section writing, statistics, documents, the fake backend and
the proxy config they generate. Nothing here measures time."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from benchmarks import _report, _services
from benchmarks._docs import NEEDLE, document
from benchmarks.fake_backend import ANSWER, create_app


def test_replace_section_creates_replaces_and_keeps_the_rest(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    _report.replace_section(path, "engine-bench", "first")
    assert path.read_text().startswith("# Benchmarks")
    _report.replace_section(path, "eval", "eval body")
    _report.replace_section(path, "engine-bench", "second\nrun")
    text = path.read_text()
    assert "first" not in text
    assert "<!-- engine-bench:start -->\nsecond\nrun\n<!-- engine-bench:end -->" in text
    assert "<!-- eval:start -->\neval body\n<!-- eval:end -->" in text
    before = text
    _report.replace_section(path, "engine-bench", "second\nrun")
    assert path.read_text() == before  # idempotent: nothing else moves


def test_replace_section_refuses_unbalanced_markers(tmp_path):
    path = tmp_path / "B.md"
    path.write_text("# B\n\n<!-- proxy-bench:start -->\nhalf a section\n")
    with pytest.raises(ValueError, match="unbalanced"):
        _report.replace_section(path, "proxy-bench", "x")


def test_percentile_interpolates():
    xs = [float(i) for i in range(1, 101)]
    assert _report.percentile(xs, 50) == pytest.approx(50.5)
    assert _report.percentile(xs, 99) == pytest.approx(99.01)
    assert _report.percentile([3.0], 99) == 3.0
    assert _report.percentile([5.0, 1.0], 0) == 1.0


def test_linear_fit_recovers_a_line_and_flags_a_curve():
    xs = [8192.0, 32768.0, 131072.0]
    a, b, r2 = _report.linear_fit(xs, [2e-4 * x + 0.5 for x in xs])
    assert a == pytest.approx(2e-4) and b == pytest.approx(0.5) and r2 == pytest.approx(1.0)
    _, _, r2_curve = _report.linear_fit([1.0, 2.0, 3.0, 4.0], [1.0, 4.0, 9.0, 40.0])
    assert r2_curve < 0.9


def test_document_has_one_needle_and_about_n_tokens():
    def words(text, n):  # a whitespace "tokenizer"
        return " ".join(text.split()[:n])

    doc = document(500, words)
    assert doc.count(NEEDLE) == 1
    assert 500 <= len(doc.split()) <= 500 + len(NEEDLE.split())
    big = document(800_000, words)  # longer than the haystack: it repeats
    assert len(big.split()) >= 800_000


def test_fake_backend_answers_plain_and_streamed():
    async def go():
        transport = httpx.ASGITransport(app=create_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://fake") as client:
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            plain = await client.post("/v1/chat/completions", json=body)
            stream = await client.post("/v1/chat/completions", json=body | {"stream": True})
            return plain, stream

    resp, streamed = asyncio.run(go())
    assert resp.status_code == 200
    assert resp.json()["choices"][0]["message"]["content"] == ANSWER
    events = [e.removeprefix("data: ") for e in streamed.text.split("\n\n") if e]
    assert events[-1] == "[DONE]"
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert text == ANSWER


def test_generated_proxy_config_is_valid():
    from proxy.config import config_from_dict

    keys = {"compress": "sk-a", "control": "sk-b"}
    for redis_url in (None, "redis://127.0.0.1:6379/0"):
        raw = _services.cprs_config(
            "http://127.0.0.1:1/v1",
            keys=keys,
            checkpoint=None,
            redis_url=redis_url,
            key_prefix="cprs-bench:x:",
        )
        cfg = config_from_dict(raw)
        assert cfg.policies["bench-control"].ab.control_percent == 100
        assert cfg.policies["bench"].failure_mode == "closed"
        assert cfg.cache.redis_url == redis_url


def _engine_row(n: int, secs: float, run_peak: float) -> dict:
    return {
        "shape": "tiny",
        "desc": "synthetic",
        "input_tokens": n,
        "output_tokens": 10,
        "timings": {"tokenize": 0.1, "model": secs * 0.9, "decode": secs * 0.1, "total": secs},
        "repeat": 1,
        "windows": n // 512,
        "prefix_tokens": 50,
        "window_tokens": 512,
        "windows_per_pass": 4,
        "flops_per_token": 1e6,
        "rss_loaded_mb": 400.0,
        "load_peak_mb": 450.0,
        "run_peak_mb": run_peak,
        "threads": 2,
        "matmul_gflops": 100.0,
    }


def test_engine_reading_follows_the_numbers():
    from benchmarks._engine_report import render

    info = _report.machine(with_torch=False) | {"loadavg_1m": 0.0}
    ns = [8192, 32768, 131072]
    linear = render([_engine_row(n, 1e-3 * n + 0.2, 500.0) for n in ns], "cmd", info)
    assert "time grows linearly" in linear and "stays flat" in linear
    assert "busy" not in linear
    curved = render(
        [_engine_row(n, 1e-9 * n * n, 500.0 + n / 100) for n in ns], "cmd", info | {"cores": 2}
    )
    assert "does not grow as a straight line" in curved and "grows with length" in curved


def test_server_cpu_is_read_per_process():
    import os

    from benchmarks.proxy_bench import cpu_s

    start = cpu_s(os.getpid())
    sum(i * i for i in range(300_000))  # some CPU of our own
    assert cpu_s(os.getpid()) > start
    assert cpu_s(None) == 0.0


def test_proxy_report_subtracts_the_backend():
    from benchmarks._proxy_report import render
    from benchmarks.proxy_bench import Target

    def t(name, ms):
        x = Target(name, "u", {}, b"")
        x.times = [m / 1000 for m in ms]
        return x

    res = {
        "args": {"requests": 3, "rounds": 1, "warmup": 0, "throughput_requests": 3}
        | {"concurrency": 16, "doc_tokens": 6000},
        "cache": "in-process LRU",
        "engine": {"engine": "x"},
        "passthrough": [t("backend alone", [1, 1, 1]), t("cprs-proxy", [3, 3, 3])],
        "rps": {"backend alone": (900.0, 0), "cprs-proxy": (300.0, 0)},
        "cached": None,
    }
    facts = {"ours": {"litellm": "1.106.2", "uvloop": False}}
    text = render(res, "cmd", _report.machine(with_torch=False), facts)
    assert "| cprs-proxy | 3.00 | 3.00 | +2.00 | +2.00 | – | 300 | 0 |" in text
    res["passthrough"][1].cpu_s = 0.0006  # over its 3 requests
    text = render(res, "cmd", _report.machine(with_torch=False), facts)
    assert "| cprs-proxy | 3.00 | 3.00 | +2.00 | +2.00 | 200 | 300 | 0 |" in text
    assert "Not measured: the engine was not ready (x)" in text


def test_engine_rows_compare_with_the_first_precision_at_each_length():
    from benchmarks._engine_report import render, speedups

    def row(precision, n, secs):
        return _engine_row(n, secs, 500.0) | {"shape": f"default {precision}", "target_tokens": n}

    rows = [row("bf16-percall", 8192, 4.0), row("int8", 8192, 2.0)]
    rows += [row("bf16-percall", 32768, 16.0), row("int8", 32768, 10.0)]
    assert speedups(rows) == ["", "2.00×", "", "1.60×"]
    text = render(rows, "cmd", _report.machine(with_torch=False) | {"loadavg_1m": 0.0})
    assert "| 2.00× |" in text and "| 1.60× |" in text


def test_precision_names_of_the_engine_bench():
    from benchmarks.engine_bench import split_precision

    assert split_precision("int8+compile") == ("int8", True, True)
    assert split_precision("bf16-percall") == ("bf16", False, False)
    assert split_precision("auto") == ("auto", False, True)
    with pytest.raises(SystemExit):
        split_precision("bf16+fast")
