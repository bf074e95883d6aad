"""Unit-level fixtures: the app in process, the backend as a recording MockTransport."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from cprs_doubles import QueryWordEngine
from proxy_helpers import Backend, base_config

from proxy.app import create_app
from proxy.config import config_from_dict


@pytest.fixture
def backend() -> Backend:
    return Backend()


@pytest.fixture
def make_app(backend: Backend):
    """make_app(config_dict=None, engine=None) -> (app, engine)."""

    def make(cfg: dict | None = None, *, engine: Any = None, **kw: Any):
        engine = engine or QueryWordEngine()
        app = create_app(
            config_from_dict(cfg or base_config()),
            engine=engine,
            upstream_transport=httpx.MockTransport(backend),
            **kw,
        )
        return app, engine

    return make
