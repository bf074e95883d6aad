"""Front doors on routes that need translation: litellm's own Responses and Messages support.

`call` hands a client body to a litellm entry point (`litellm.aresponses`, the Anthropic
`messages.acreate`) with the route's model, base URL, key and timeout; fields litellm would read
as its own settings are dropped, as for chat (upstream._litellm_kwargs). `dump` and `events`
turn its answer back into the door's JSON body or SSE events (`event: <type>` + `data:`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from proxy.errors import from_exception
from proxy.routing import Backend
from proxy.upstream import _litellm, _secrets


async def call(fn: Callable[..., Any], backend: Backend, body: dict, **settings: Any) -> Any:
    _, control = _litellm()
    kwargs = {
        k: v
        for k, v in body.items()
        if k != "model" and k not in control and not k.startswith(("litellm", "aws_", "vertex_"))
    }
    try:
        return await fn(
            model=backend.litellm_model, api_base=backend.api_base, api_key=backend.api_key,
            timeout=backend.timeout_s, **settings, **kwargs,
        )  # fmt: skip
    except Exception as exc:
        raise from_exception(exc, _secrets(backend)) from exc


def dump(obj: Any) -> str:
    data = obj.model_dump(exclude_none=True) if hasattr(obj, "model_dump") else dict(obj)
    data.pop("_hidden_params", None)
    return json.dumps(data, ensure_ascii=False)


async def events(resp: Any, backend: Backend) -> AsyncIterator[bytes]:
    """litellm's stream: SSE bytes as they are, event objects framed with their `type`."""
    try:
        async for event in resp:
            if isinstance(event, bytes | str):
                yield event.encode() if isinstance(event, str) else event
                continue
            data = dump(event)
            kind = json.loads(data).get("type", "message")
            yield f"event: {kind}\ndata: {data}\n\n".encode()
    except Exception as exc:
        raise from_exception(exc, _secrets(backend)) from exc
