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
    cfg = proxy_config(
        fake_backend.url,
        engine={"timeout_s": 300},
        policies={"default": {"threshold_tokens": 300, "max_wait_ms": None}},  # wait it out
    )
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


SECOND = "The spare key to the boathouse is kept in locker 2917465."
SECOND_Q = "In which locker is the spare key to the boathouse kept?"


def _conversation_turn2(url: str, sdk, doc: str) -> None:
    first = f"<document>{doc}</document>\n{QUESTION}"
    for messages in (
        [{"role": "user", "content": first}],
        [
            {"role": "user", "content": first},
            {"role": "assistant", "content": "6401823"},
            {"role": "user", "content": SECOND_Q},
        ],
    ):
        raw = sdk(url, timeout=300).chat.completions.with_raw_response.create(
            model="gpt-4o", messages=messages, temperature=0
        )
        assert raw.headers["x-cprs-compressed"] == "true"


def _ready(url: str) -> None:
    deadline = time.time() + 240
    while httpx.get(url + "/readyz").status_code != 200:
        assert time.time() < deadline, "the shipped critic did not load"
        time.sleep(0.5)


def test_a_follow_up_finds_its_answer_and_a_cold_restart_sends_the_same_bytes(fake_backend, sdk):
    hay = load_corpora().haystack[300_000:322_000]
    i, j = hay.index(". ", 3_000) + 2, hay.index(". ", 17_000) + 2
    doc = hay[:i] + SECOND + " " + hay[i:j] + NEEDLE + " " + hay[j:]
    cfg = proxy_config(
        fake_backend.url,
        engine={"timeout_s": 300},
        policies={"default": {"threshold_tokens": 300, "max_wait_ms": None}},  # wait it out
    )
    for _ in range(2):  # the second proxy starts with a cold cache: every excerpt recomputed
        with running_proxy(cfg, LocalEngine(EngineSettings(timeout_s=300))) as (url, _):
            _ready(url)
            _conversation_turn2(url, sdk, doc)
    bodies = [r["body"]["messages"] for r in fake_backend.received]
    first, second, again_first, again_second = bodies
    assert first == again_first and second == again_second  # deterministic across restarts
    assert NEEDLE in first[0]["content"] and SECOND not in first[0]["content"]
    assert second[:1] == first  # the prompt-cache prefix is the first request, byte for byte
    latest = second[-1]["content"]
    assert latest.startswith("<document-excerpt>\n") and latest.endswith(SECOND_Q)
    assert SECOND in latest
    excerpt = latest[len("<document-excerpt>\n") : latest.index("\n</document-excerpt>")]
    assert all(line in doc and line not in first[0]["content"] for line in excerpt.split("\n"))
