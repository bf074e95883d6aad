"""Providers that need translation go through litellm: here Anthropic, against a local fake."""

from __future__ import annotations

import pytest
from cprs_doubles import NEEDLE, QUESTION, FakeAnthropic, ServerThread, haystack
from proxy_int_helpers import running_proxy

pytestmark = [
    pytest.mark.integration,
    # litellm's Anthropic types trip a pydantic UserWarning on first use; not ours to fix
    pytest.mark.filterwarnings("ignore:.*ReadOnly.*:UserWarning"),
]


def test_anthropic_route_compresses_translates_and_streams(sdk):
    fake = FakeAnthropic()
    with ServerThread(fake.app()) as backend:
        cfg = {
            "models": [
                {
                    "name": "claude",
                    "model": "anthropic/claude-3-5-sonnet-latest",
                    "api_base": backend.url,
                    "api_key": "sk-ant-777",
                }
            ],
            "policies": {"default": {"threshold_tokens": 300}},
            "server": {"reload_interval_s": 0},
        }
        with running_proxy(cfg) as (url, _):
            c = sdk(url, "anything")
            raw = c.chat.completions.with_raw_response.create(
                model="claude",
                messages=[
                    {"role": "system", "content": "Be brief."},
                    {
                        "role": "user",
                        "content": f"<document>{haystack(300)}</document>\n{QUESTION}",
                    },
                ],
                max_tokens=50,
                extra_body={
                    "top_k": 3,
                    "api_base": "http://evil.example",
                    "mock_response": "pwned",
                },
            )
            stream = c.chat.completions.create(
                model="claude",
                messages=[{"role": "user", "content": "hi"}],
                max_tokens=20,
                stream=True,
            )
            text = "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)
    resp = raw.parse()
    assert resp.choices[0].message.content == "Hi from claude" and resp.usage.total_tokens == 13
    assert raw.headers["x-cprs-compressed"] == "true"
    sent = fake.received[0]
    assert sent["headers"]["x-api-key"] == "sk-ant-777"
    user_text = sent["body"]["messages"][0]["content"][0]["text"]
    assert NEEDLE in user_text and QUESTION in user_text and len(user_text) < 300
    assert sent["body"]["top_k"] == 3 and sent["body"]["system"][0]["text"] == "Be brief."
    assert "api_base" not in sent["body"] and "mock_response" not in sent["body"]
    assert text == "Hello world"
