"""Budgets count the backend's tokens, end to end: the real chat route, the real LocalEngine and
Compressor (a tiny random critic that keeps every sentence, so the budget alone decides), and a
recording backend. `target_ratio: 10` sends at most a tenth of the document's tiktoken tokens."""

from __future__ import annotations

import asyncio
import math
import re
import time

import httpx
import pytest
from cprs_doubles import QUESTION, haystack
from proxy_helpers import BACKEND_KEY, Backend, base_config

from cprs_engine.checkpoint import tiny_random
from cprs_engine.compressor import Compressor
from proxy.app import create_app
from proxy.config import EngineSettings, config_from_dict
from proxy.engine import LocalEngine
from proxy.tokens import TokenCounter

# cl100k_base counts this text at ~1.4x the critic's (Qwen2) tokens: a budget cut in the
# critic's tokens would send ~1.4x what the backend bills.
ZH = "".join(f"第{i}号仓库的管理员在星期{i % 7}检查了货物的数量和质量。" for i in range(80))


@pytest.fixture(scope="module")
def tiny_critic():
    model, tokenizer = tiny_random("qwen2", seed=1)
    return Compressor(model, tokenizer, window_tokens=64, windows_per_pass=4, keep_threshold=1e-6)


async def through_proxy(cfg: dict, body: dict, compressor, monkeypatch) -> tuple:
    monkeypatch.setattr(Compressor, "load", classmethod(lambda cls, *a, **kw: compressor))
    engine = LocalEngine(EngineSettings())
    await engine.start()
    deadline = time.monotonic() + 30
    while not engine.ready()[0]:
        assert time.monotonic() < deadline, engine.ready()
        await asyncio.sleep(0.01)
    backend = Backend()
    app = create_app(
        config_from_dict(cfg), engine=engine, upstream_transport=httpx.MockTransport(backend)
    )
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as client:
            r = await client.post("/v1/chat/completions", json=body)
    finally:
        await engine.close()
    return r, backend


@pytest.mark.parametrize(
    ("model", "document"),
    [("gpt-4o", haystack(300)), ("deepseek-chat", ZH)],
    ids=["o200k-english", "cl100k-chinese"],
)
def test_target_ratio_sends_at_most_a_tenth_of_the_backends_tokens(
    tiny_critic, monkeypatch, model, document
):
    route = {"name": model, "model": f"openai/{model}", "api_base": "http://backend.test/v1"}
    cfg = base_config(
        models=[{**route, "api_key": BACKEND_KEY}],
        policies={"default": {"threshold_tokens": 300, "target_ratio": 10}},
    )
    body = {
        "model": model,
        "messages": [{"role": "user", "content": f"<document>{document}</document>\n{QUESTION}"}],
    }
    r, backend = asyncio.run(through_proxy(cfg, body, tiny_critic, monkeypatch))
    assert r.status_code == 200, r.text
    assert r.headers["x-cprs-compressed"] == "true"
    count = TokenCounter(model).count
    sent = re.fullmatch(
        r"<document>(.*)</document>\n" + re.escape(QUESTION),
        backend.bodies[-1]["messages"][0]["content"],
        re.S,
    )
    assert sent is not None
    budget = math.ceil(count(document) / 10)
    assert 0 < count(sent.group(1)) <= budget + 1  # a tenth, give or take one token
    saved = int(r.headers["x-cprs-original-tokens"]) - int(r.headers["x-cprs-compressed-tokens"])
    assert saved == count(document) - count(sent.group(1))
