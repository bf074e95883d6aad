"""`POST /v1/compress`: compress ahead of time, so the chat request that follows hits the cache.

The way to warm the cache when a user uploads a document: same auth, tenant policy and cache as
`/v1/chat/completions`, and no backend call. Two body forms:

    {"model", "messages", "wait"?}     a chat body: the documents chat would compress, found and
                                       compressed the same way -> {"messages": rewritten, ...}
    {"query", "context", "model"?, "granularity"?, "wait"?}
                                       one document against one question (no threshold)
                                       -> {"compressed", "spans", ...}

`wait` (default true) waits for the compression up to `engine.timeout_s`; a compression still
running then is left to the background (cache: pending). `"wait": false` only starts the job
(deduplicated, in the bounded background queue) and answers 202 at once. Both answer per
document the cache status and, when it went uncompressed, why (the x-cprs-skipped reasons).
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from policies.schema import Policy
from proxy.chat import client_key, read_body
from proxy.compress import compress_documents
from proxy.detect import Detection, Document, TextLoc, find_for_policy
from proxy.errors import InvalidRequest, ModelNotFound
from proxy.followups import insert_excerpts
from proxy.metrics import Metrics
from proxy.rewrite import apply
from proxy.state import StateHolder
from proxy.tokens import TokenCounter
from proxy.validate import check_chat, parse_body

log = logging.getLogger(__name__)


async def handle_compress(request: Request, holder: StateHolder, metrics: Metrics):
    state = holder.current
    key = client_key(request)
    tenant, policy = state.authenticate(key)
    body = parse_body(await read_body(request, state.config.server.max_body_bytes))
    wait = body.get("wait", True)
    if not isinstance(wait, bool):
        raise InvalidRequest("'wait' must be a boolean.", param="wait")
    # wait: up to engine.timeout_s, the rest in the background; no wait: the background only
    policy = policy.model_copy(
        update={
            "max_wait_ms": None if wait else 0,
            "background_fill": policy.background_fill or not wait,
        }
    )
    if "messages" in body:
        out = await _messages(state, metrics, body, tenant=tenant, policy=policy, key=key)
    elif "context" in body:
        out = await _context(state, metrics, body, tenant=tenant, policy=policy, key=key)
    else:
        raise InvalidRequest(
            "Send a chat body {model, messages} or {query, context}.", param="messages"
        )
    return JSONResponse(out, status_code=200 if wait else 202)


def _model(state, policy: Policy, model: Any, *, required: bool) -> str:
    if model is None and not required:
        return ""
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' must be a non-empty string.", param="model")
    if state.router.match(model) is None or not policy.allows_model(model):
        raise ModelNotFound(f"The model `{model}` does not exist or you do not have access to it.")
    return model


def _counter(state, model: str, api_key: str | None) -> TokenCounter:
    """The tokenizer chat would count with for `model`, so documents get the same cache keys."""
    if not model:
        return TokenCounter("")
    backend = state.router.resolve(state.router.match(model), model, api_key)
    return TokenCounter(backend.model)


async def _messages(state, metrics, body: dict, *, tenant: str, policy: Policy, key) -> dict:
    check_chat(body)
    model = _model(state, policy, body["model"], required=True)
    counter = _counter(state, model, key)
    detection = find_for_policy(body["messages"], policy, counter.count)
    comp = await compress_documents(
        state, metrics, detection, tenant=tenant, policy=policy, model=model, counter=counter
    )
    return {
        "object": "compression",
        "messages": insert_excerpts(apply(body, comp.replacements), comp.excerpts)["messages"],
        "documents": len(detection.documents),
        "compressed": len(comp.replacements),
        "cache": comp.cache,
        "skipped": comp.skipped,
        "original_tokens": detection.tokens,
        "compressed_tokens": detection.tokens - comp.saved_tokens,
    }


async def _context(state, metrics, body: dict, *, tenant: str, policy: Policy, key) -> dict:
    query, context = body.get("query"), body.get("context")
    for name, value in (("query", query), ("context", context)):
        if not isinstance(value, str) or not value.strip():
            raise InvalidRequest(f"'{name}' must be a non-empty string.", param=name)
    granularity = body.get("granularity")
    if granularity is not None:
        if granularity not in ("keyword", "sentence", "paragraph"):
            raise InvalidRequest(
                "'granularity' must be keyword, sentence or paragraph.", param="granularity"
            )
        policy = policy.model_copy(update={"granularity": granularity, "rules": []})
    model = _model(state, policy, body.get("model"), required=False)
    counter = _counter(state, model, key)
    tokens = counter.count(context)
    doc = Document(TextLoc(0, None), 0, len(context), context, tokens, "context", None, query, 0)
    comp = await compress_documents(
        state, metrics, Detection([doc], query), tenant=tenant, policy=policy, model=model,
        counter=counter,
    )  # fmt: skip
    compressed = comp.replacements[0].text if comp.replacements else None
    result = comp.results[0] if comp.replacements else None
    return {
        "object": "compression",
        "compressed": compressed,
        "spans": [asdict(s) for s in result.spans] if result is not None else None,
        "cache": comp.cache,
        "skipped": comp.skipped,
        "original_tokens": tokens,
        "compressed_tokens": tokens - comp.saved_tokens,
    }
