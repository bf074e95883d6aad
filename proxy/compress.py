"""Compress the documents a detection found, through the cache, under the policy's failure mode.

Per document: policy rules pick granularity/prompt (per document, so a marker-specific rule
applies to that document only), the cache is asked (single flight per key), and on a miss the
engine runs under `engine.timeout_s`. Any failure (timeout, engine error, engine refusing the
input, no question found) leaves that document as it was when failure_mode is open, and raises
an OpenAI-format error when it is closed. A compression that is empty or not shorter than the
original is not applied either: the backend then sees the document as the client sent it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from cprs_engine.errors import ContextTooLong, CPRSError, InvalidInput
from cprs_engine.prompts import resolve
from policies.rules import choose
from policies.schema import FailureMode, Policy, budget_for
from proxy.cache import cache_key
from proxy.detect import Document
from proxy.errors import CompressionFailed, CompressionTimeout, DocumentTooLong, MissingQuery
from proxy.metrics import Metrics, model_label
from proxy.rewrite import Replacement
from proxy.state import AppState
from proxy.tokens import TokenCounter


@dataclass
class Compression:
    replacements: list[Replacement] = field(default_factory=list)
    saved_tokens: int = 0  # document tokens removed (tiktoken)
    cache: str = "off"  # hit | miss | off, for the header and the log
    engine_s: float = 0.0
    cache_s: float = 0.0


async def compress_documents(
    state: AppState,
    metrics: Metrics,
    docs: list[Document],
    *,
    tenant: str,
    policy: Policy,
    model: str,
    counter: TokenCounter,
) -> Compression:
    out = Compression()
    if not docs:
        return out
    results = await asyncio.gather(
        *(
            _one(state, metrics, d, tenant=tenant, policy=policy, model=model, unit=counter.unit)
            for d in docs
        ),
        return_exceptions=True,
    )
    statuses = []
    for doc, res in zip(docs, results, strict=True):
        if isinstance(res, BaseException):
            if not isinstance(res, Exception):
                raise res
            kind = _kind(res)
            metrics.engine_errors.labels(tenant, kind).inc()
            metrics.documents.labels(tenant, kind).inc()
            if policy.failure_mode == FailureMode.CLOSED:
                raise _closed_error(res) from res
            continue
        text, status, engine_s, total_s = res
        out.engine_s += engine_s
        out.cache_s += max(0.0, total_s - engine_s)
        if status != "off":
            statuses.append(status)
            metrics.cache.labels(tenant, status).inc()
        sent = counter.count(text) if text.strip() else None
        if sent is None or sent >= doc.tokens:
            metrics.documents.labels(tenant, "not_shorter").inc()
            continue
        metrics.documents.labels(tenant, "compressed").inc()
        out.replacements.append(Replacement(doc, text))
        out.saved_tokens += doc.tokens - sent
    if statuses:
        out.cache = "miss" if "miss" in statuses else "hit"
    return out


async def _one(
    state: AppState,
    metrics: Metrics,
    doc: Document,
    *,
    tenant: str,
    policy: Policy,
    model: str,
    unit: str,
) -> tuple[str, str, float, float]:
    """(compressed text, cache status, engine seconds, total seconds) for one document.
    A budget counts the backend's tokens (`unit`, the tiktoken encoding `doc.tokens` was
    counted in), and the engine cuts in that same unit."""
    if doc.query is None:
        raise MissingQuery(
            "A document in the request must be compressed, but no question was found outside it "
            "(put the question in the last user message, outside the document markers)."
        )
    choice = choose(
        policy, model=model, query=doc.query, markers={doc.marker} if doc.marker else set()
    )
    prompt = resolve(choice.granularity, prompt=choice.prompt, instruction=choice.instruction)
    budget = budget_for(policy, doc.tokens)
    budget_unit = unit if budget is not None else None
    engine = state.engine
    key = cache_key(
        tenant=tenant,
        engine_version=engine.engine_version,
        query=doc.query,
        context=doc.text,
        granularity=prompt.granularity,
        prompt_text=prompt.text,
        budget_tokens=budget,
        budget_unit=budget_unit,
    )
    timing = {"engine": 0.0}

    async def compute():
        t = time.perf_counter()
        try:
            async with asyncio.timeout(state.config.engine.timeout_s):
                return await engine.compress(
                    doc.query,
                    doc.text,
                    granularity=prompt.granularity,
                    prompt=choice.prompt,
                    instruction=choice.instruction,
                    budget_tokens=budget,
                    budget_unit=budget_unit,
                )
        finally:
            timing["engine"] = time.perf_counter() - t

    t0 = time.perf_counter()
    result, status = await state.cache.get_or_compute(key, compute, state.cache_ttl(policy))
    total = time.perf_counter() - t0
    if result.ratio > 0:
        metrics.ratio.labels(tenant, model_label(model)).observe(result.ratio)
    return result.compressed, status, timing["engine"], total


def _kind(exc: Exception) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, MissingQuery):
        return "missing_query"
    if isinstance(exc, InvalidInput):
        return "invalid"
    return "failure"


def _closed_error(exc: Exception):
    if isinstance(exc, MissingQuery):
        return exc
    if isinstance(exc, TimeoutError):
        return CompressionTimeout("compression timed out and the policy's failure_mode is closed")
    if isinstance(exc, ContextTooLong):
        return DocumentTooLong(f"the document is too long to compress: {exc.message}")
    if isinstance(exc, CPRSError):
        return CompressionFailed(f"compression failed ({exc.code}): {exc.message}")
    return CompressionFailed(f"compression failed: {type(exc).__name__}")
