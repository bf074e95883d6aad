"""The proxy with remote engines: `cprs_engine.service` on loopback ports, one replica down."""

from __future__ import annotations

import httpx
import pytest
from cprs_doubles import NEEDLE, QUESTION, ServerThread, ServiceCompressor, free_port, haystack
from proxy_int_helpers import proxy_config

from cprs_engine.service import create_app as create_engine_app
from proxy.app import create_app
from proxy.config import config_from_dict

pytestmark = pytest.mark.integration


def test_remote_engine_replicas_compress_and_a_dead_one_is_skipped(fake_backend, sdk):
    engine = ServiceCompressor()
    with ServerThread(create_engine_app(lambda: engine)) as eng:
        dead = f"http://127.0.0.1:{free_port()}"
        cfg = proxy_config(fake_backend.url, engine={"mode": "remote", "urls": [dead, eng.url]})
        app = create_app(config_from_dict(cfg))
        with ServerThread(app) as px:
            c = sdk(px.url)
            for _ in range(3):
                raw = c.chat.completions.with_raw_response.create(
                    model="gpt-4o",
                    messages=[
                        {
                            "role": "user",
                            "content": f"<document>{haystack(400)}</document>\n{QUESTION}",
                        }
                    ],
                )
                assert raw.headers["x-cprs-compressed"] == "true"
            ready = httpx.get(px.url + "/readyz").json()
    assert ready["engine"] == "1/2 engine replicas healthy"
    assert ready["engine_version"] == "remote-test-v1"
    sent = fake_backend.received[-1]["body"]["messages"][0]["content"]
    assert sent == f"<document>{NEEDLE}</document>\n{QUESTION}"
    assert len(engine.inner.calls) == 1  # cached after the first, under the remote's version
