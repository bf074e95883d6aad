"""The whole product on the shipped critic: SDK -> proxy (in-process engine) -> fake backend."""

import time

import httpx
import pytest
from proxy_int_helpers import proxy_config, running_proxy

from cprs_engine.training.data.sources import load_corpora
from proxy.config import EngineSettings
from proxy.engine import LocalEngine
from proxy.tokens import TokenCounter

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NEEDLE = "One of the special magic numbers for amber-falcon is: 6401823."
QUESTION = "What is the special magic number for amber-falcon mentioned in the provided text?"


def document() -> str:
    hay = load_corpora().haystack[200_000:240_000]
    i = hay.index(". ", len(hay) // 2) + 2
    return hay[:i] + NEEDLE + " " + hay[i:]


def test_the_backend_gets_the_needle_and_the_question_in_far_fewer_tokens(fake_backend, sdk):
    doc = document()
    cfg = proxy_config(fake_backend.url, engine={"timeout_s": 300})
    with running_proxy(cfg, LocalEngine(EngineSettings(timeout_s=300))) as (url, _):
        deadline = time.time() + 240
        while httpx.get(url + "/readyz").status_code != 200:
            assert time.time() < deadline, "the shipped critic did not load"
            time.sleep(0.5)
        content = f"<document>{doc}</document>\n{QUESTION}"
        raw = sdk(url, timeout=300).chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": content}], temperature=0
        )
    assert raw.headers["x-cprs-compressed"] == "true"
    sent = fake_backend.received[-1]["body"]["messages"][0]["content"]
    assert NEEDLE in sent and sent.endswith(QUESTION)
    counter = TokenCounter("gpt-4o")
    assert counter.count(sent) * 10 < counter.count(content)
    assert sent.startswith("<document>")
    inner = sent[len("<document>") : sent.index("</document>")]
    assert all(line in doc for line in inner.split("\n") if line)
