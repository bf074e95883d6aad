"""Compress the documents a detection found, through the cache, under the policy's failure mode.

Per document: policy rules pick granularity/prompt (per document, so a marker-specific rule
applies to that document only), the cache is asked (single flight per key), and on a miss the
engine runs under `engine.timeout_s`. Any failure (timeout, engine error, engine refusing the
input, no question found) leaves that document as it was when failure_mode is open, and raises
an OpenAI-format error when it is closed. A compression that is empty or not shorter than the
original is not applied either: the backend then sees the document as the client sent it.

A document from an earlier turn that a later turn asks something new about is handled by the
policy's `followups` (proxy/followups.py): `requery` compresses it for all its questions,
`append` also compresses it for each later question and returns the excerpt blocks to put in
those turns' question messages, `stable` does neither. Follow-up compressions go through the
same cache and the same failure handling.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from cprs_engine.errors import ContextTooLong as EngineContextTooLong
from cprs_engine.errors import CPRSError, InvalidInput
from cprs_engine.prompts import resolve
from cprs_engine.result import CompressionResult
from policies.rules import choose
from policies.schema import FailureMode, Followups, Policy, budget_for
from proxy.cache import cache_key
from proxy.detect import Detection, Document, Question
from proxy.errors import CompressionFailed, CompressionTimeout, ContextTooLong, MissingQuery
from proxy.followups import excerpt_block, new_pieces, requery_text
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
    excerpts: dict[int, list[str]] = field(default_factory=dict)  # message -> excerpt blocks
    excerpt_tokens: int = 0  # tokens the excerpt blocks add (tiktoken)
    followup: str | None = (
        None  # appended | requeried | stable: an earlier document met a new question
    )
    statuses: list[str] = field(default_factory=list)


_FOLLOWUP_HEADER = {
    Followups.APPEND: "appended",
    Followups.REQUERY: "requeried",
    Followups.STABLE: "stable",
}


async def compress_documents(
    state: AppState,
    metrics: Metrics,
    detection: Detection,
    *,
    tenant: str,
    policy: Policy,
    model: str,
    counter: TokenCounter,
) -> Compression:
    out = Compression()
    docs = detection.documents
    if not docs:
        return out
    mode = policy.followups
    earlier = {i for i, d in enumerate(docs) if _meets_new_question(d, detection)}
    queries = [
        requery_text(d, detection) if i in earlier and mode == Followups.REQUERY else d.query
        for i, d in enumerate(docs)
    ]
    results = await asyncio.gather(
        *(
            _one(state, metrics, d, q, tenant=tenant, policy=policy, model=model)
            for d, q in zip(docs, queries, strict=True)
        ),
        return_exceptions=True,
    )
    views: dict[int, CompressionResult] = {}
    for i, (doc, res) in enumerate(zip(docs, results, strict=True)):
        result = _settle(res, out, metrics, tenant=tenant, policy=policy)
        if result is None:
            continue
        text = result.compressed
        sent = counter.count(text) if text.strip() else None
        if sent is None or sent >= doc.tokens:
            metrics.documents.labels(tenant, "not_shorter").inc()
            continue
        metrics.documents.labels(tenant, "compressed").inc()
        out.replacements.append(Replacement(doc, text))
        out.saved_tokens += doc.tokens - sent
        views[i] = result
    if earlier:
        out.followup = _FOLLOWUP_HEADER[mode]
        metrics.followups.labels(tenant, out.followup).inc()
    if mode == Followups.APPEND:
        appending = [(docs[i], views[i]) for i in sorted(earlier) if i in views]
        await _append_excerpts(
            state, metrics, appending, detection, out, tenant=tenant, policy=policy, model=model
        )
        if out.excerpts:
            added = "\n\n".join(b for blocks in out.excerpts.values() for b in blocks)
            out.excerpt_tokens = counter.count(added)
            metrics.followup_tokens.labels(tenant).inc(out.excerpt_tokens)
    if out.statuses:
        out.cache = "miss" if "miss" in out.statuses else "hit"
    return out


def _new_questions(doc: Document, detection: Detection) -> list[Question]:
    """The later turns' questions that differ from the document's own, in order."""
    if doc.query is None:
        return []
    return [q for q in detection.later_questions(doc.turn) if q.text != doc.query]


def _meets_new_question(doc: Document, detection: Detection) -> bool:
    """A document from an earlier turn that a later turn asks something new about."""
    return bool(_new_questions(doc, detection))


async def _append_excerpts(
    state: AppState,
    metrics: Metrics,
    appending: list[tuple[Document, CompressionResult]],
    detection: Detection,
    out: Compression,
    *,
    tenant: str,
    policy: Policy,
    model: str,
) -> None:
    """For each document and each later question, in conversation order: the spans that the
    question's compression adds to what the conversation already shows (see proxy.followups)."""
    jobs = [(d, q) for d, _ in appending for q in _new_questions(d, detection)]
    results = await asyncio.gather(
        *(
            _one(state, metrics, d, q.text, tenant=tenant, policy=policy, model=model)
            for d, q in jobs
        ),
        return_exceptions=True,
    )
    by_job = dict(zip(((id(d), q.turn) for d, q in jobs), results, strict=True))
    for doc, view in appending:
        covered = [(s.start, s.end) for s in view.spans]
        for q in _new_questions(doc, detection):
            result = _settle(by_job[(id(doc), q.turn)], out, metrics, tenant=tenant, policy=policy)
            if result is None:
                continue
            pieces = new_pieces(result.spans, covered)
            if not pieces:
                continue
            covered.extend((p.start, p.end) for p in pieces)
            block = excerpt_block(
                pieces, marker=policy.excerpt_marker, granularity=result.granularity
            )
            out.excerpts.setdefault(q.message, []).append(block)


def _settle(
    res: CompressionResult | BaseException | tuple,
    out: Compression,
    metrics: Metrics,
    *,
    tenant: str,
    policy: Policy,
) -> CompressionResult | None:
    """One `_one` outcome: its result (timings and cache status recorded in `out`), or None
    when it failed and the policy fails open; raises the client error when it fails closed."""
    if isinstance(res, BaseException):
        if not isinstance(res, Exception):
            raise res
        kind = _kind(res)
        metrics.engine_errors.labels(tenant, kind).inc()
        metrics.documents.labels(tenant, kind).inc()
        if policy.failure_mode == FailureMode.CLOSED:
            raise _closed_error(res) from res
        return None
    result, status, engine_s, total_s = res
    out.engine_s += engine_s
    out.cache_s += max(0.0, total_s - engine_s)
    if status != "off":
        out.statuses.append(status)
        metrics.cache.labels(tenant, status).inc()
    return result


async def _one(
    state: AppState,
    metrics: Metrics,
    doc: Document,
    query: str | None,
    *,
    tenant: str,
    policy: Policy,
    model: str,
) -> tuple[CompressionResult, str, float, float]:
    """(result, cache status, engine seconds, total seconds) for one document and question."""
    if query is None:
        raise MissingQuery(
            "A document in the request must be compressed, but no question was found outside it "
            "(put the question in the last user message, outside the document markers)."
        )
    choice = choose(policy, model=model, query=query, markers={doc.marker} if doc.marker else set())
    prompt = resolve(choice.granularity, prompt=choice.prompt, instruction=choice.instruction)
    budget = budget_for(policy, doc.tokens)
    engine = state.engine
    key = cache_key(
        tenant=tenant,
        engine_version=engine.engine_version,
        query=query,
        context=doc.text,
        granularity=prompt.granularity,
        prompt_text=prompt.text,
        budget_tokens=budget,
    )
    timing = {"engine": 0.0}

    async def compute():
        t = time.perf_counter()
        try:
            async with asyncio.timeout(state.config.engine.timeout_s):
                return await engine.compress(
                    query,
                    doc.text,
                    granularity=prompt.granularity,
                    prompt=choice.prompt,
                    instruction=choice.instruction,
                    budget_tokens=budget,
                )
        finally:
            timing["engine"] = time.perf_counter() - t

    t0 = time.perf_counter()
    result, status = await state.cache.get_or_compute(key, compute, state.cache_ttl(policy))
    total = time.perf_counter() - t0
    if result.ratio > 0:
        metrics.ratio.labels(tenant, model_label(model)).observe(result.ratio)
    return result, status, timing["engine"], total


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
    if isinstance(exc, EngineContextTooLong):
        return ContextTooLong(f"the document is too long to compress: {exc.message}")
    if isinstance(exc, CPRSError):
        return CompressionFailed(f"compression failed ({exc.code}): {exc.message}")
    return CompressionFailed(f"compression failed: {type(exc).__name__}")
