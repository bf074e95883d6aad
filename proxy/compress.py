"""Compress the documents a detection found, through the cache, within the policy's budget.

Per document (`compress_one`, which takes the query as an argument): policy rules pick
granularity/prompt (per document, so a marker-specific rule applies to that document only), the
cache is asked (single flight per key), and on a miss the request waits for the engine at most
the policy's `max_wait_ms` (proxy/background.py): a document the engine predicts to take longer
is not waited for at all, and a compression not done in time goes on in the background and
fills the cache for the next request (`background_fill`). A failure_mode: closed policy waits up
to `engine.timeout_s`, as a compression it cannot do without.

Any document left uncompressed carries a reason, for the `x-cprs-skipped` header, the request
log and the metrics: over_budget, timeout, engine_loading, engine_error, no_query, not_shorter
(the compression was empty or not shorter than the original; the backend then sees the document
as the client sent it). An engine failure leaves that document as it was when failure_mode is
open, and raises an OpenAI-format error when it is closed.

A document from an earlier turn that a later turn asks something new about is handled by the
policy's `followups` (proxy/followups.py): `requery` compresses it for all its questions,
`append` also compresses it for each later question and returns the excerpt blocks to put in
those turns' question messages, `stable` does neither. Follow-up compressions go through the
same cache, budget and failure handling; one not done within the budget adds no excerpt to
this request (it fills the cache, and the next request carries it).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from cprs_engine.errors import ContextTooLong, CPRSError, InvalidInput
from cprs_engine.prompts import resolve
from cprs_engine.result import CompressionResult
from policies.rules import choose
from policies.schema import Elision, FailureMode, Followups, Policy, budget_for, wait_seconds
from proxy.background import wait
from proxy.cache import cache_key
from proxy.detect import Detection, Document, Question
from proxy.errors import CompressionFailed, CompressionTimeout, DocumentTooLong, MissingQuery
from proxy.followups import excerpt_block, new_pieces, requery_text
from proxy.metrics import Metrics, model_label
from proxy.rewrite import Replacement
from proxy.state import AppState
from proxy.tokens import TokenCounter


@dataclass
class Compression:
    replacements: list[Replacement] = field(default_factory=list)
    results: list[CompressionResult | None] = field(default_factory=list)  # one per replacement
    saved_tokens: int = 0  # document tokens removed (tiktoken)
    cache: str = "off"  # hit | miss | pending | off, for the header and the log
    skipped: list[str] = field(default_factory=list)  # one reason per uncompressed document
    engine_s: float = 0.0
    cache_s: float = 0.0
    excerpts: dict[int, list[str]] = field(default_factory=dict)  # message -> excerpt blocks
    excerpt_tokens: int = 0  # tokens the excerpt blocks add (tiktoken)
    followup: str | None = (
        None  # appended | requeried | stable: an earlier document, a new question
    )
    statuses: list[str] = field(default_factory=list)  # every lookup's cache status


_FOLLOWUP_HEADER = {
    Followups.APPEND: "appended",
    Followups.REQUERY: "requeried",
    Followups.STABLE: "stable",
}


@dataclass(frozen=True)
class Outcome:
    """One document: its compressed text, or None and why not."""

    text: str | None
    cache: str  # hit | miss | pending | off
    skipped: str | None = None
    engine_s: float = 0.0
    total_s: float = 0.0
    result: CompressionResult | None = None  # with spans and timings, when there is one


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
    earlier = {i for i, d in enumerate(docs) if _new_questions(d, detection)}
    queries = [
        requery_text(d, detection) if i in earlier and mode == Followups.REQUERY else d.query
        for i, d in enumerate(docs)
    ]
    results = await asyncio.gather(
        *(
            compress_one(
                state, metrics, d, q, tenant=tenant, policy=policy, model=model, unit=counter.unit
            )
            for d, q in zip(docs, queries, strict=True)
        ),
        return_exceptions=True,
    )
    views: dict[int, CompressionResult] = {}
    for i, (doc, res) in enumerate(zip(docs, results, strict=True)):
        got = _settle(res, out, state, metrics, tenant=tenant, policy=policy)
        skipped = got.skipped
        if got.text is not None:
            sent = counter.count(got.text) if got.text.strip() else None
            if sent is not None and sent < doc.tokens:
                metrics.documents.labels(tenant, "compressed").inc()
                out.replacements.append(Replacement(doc, got.text))
                out.results.append(got.result)
                out.saved_tokens += doc.tokens - sent
                if got.result is not None:
                    views[i] = got.result
                continue
            skipped = "not_shorter"
            metrics.documents.labels(tenant, "not_shorter").inc()
        if skipped is not None:
            out.skipped.append(skipped)
            metrics.skipped.labels(tenant, skipped).inc()
    if earlier:
        out.followup = _FOLLOWUP_HEADER[mode]
        metrics.followups.labels(tenant, out.followup).inc()
    if mode == Followups.APPEND:
        appending = [(docs[i], views[i]) for i in sorted(earlier) if i in views]
        await _append_excerpts(
            state, metrics, appending, detection, out,
            tenant=tenant, policy=policy, model=model, unit=counter.unit,
        )  # fmt: skip
        if out.excerpts:
            added = "\n\n".join(b for blocks in out.excerpts.values() for b in blocks)
            out.excerpt_tokens = counter.count(added)
            metrics.followup_tokens.labels(tenant).inc(out.excerpt_tokens)
    for status in ("pending", "miss", "hit"):
        if status in out.statuses:
            out.cache = status
            break
    return out


def _new_questions(doc: Document, detection: Detection) -> list[Question]:
    """The later turns' questions that differ from the document's own, in order."""
    if doc.query is None:
        return []
    return [q for q in detection.later_questions(doc.turn) if q.text != doc.query]


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
    unit: str,
) -> None:
    """For each document and each later question, in conversation order: the spans that the
    question's compression adds to what the conversation already shows (see proxy.followups)."""
    jobs = [(d, q) for d, _ in appending for q in _new_questions(d, detection)]
    results = await asyncio.gather(
        *(
            compress_one(
                state, metrics, d, q.text, tenant=tenant, policy=policy, model=model, unit=unit
            )
            for d, q in jobs
        ),
        return_exceptions=True,
    )
    by_job = dict(zip(((id(d), q.turn) for d, q in jobs), results, strict=True))
    for doc, view in appending:
        covered = [(s.start, s.end) for s in view.spans]
        for q in _new_questions(doc, detection):
            res = by_job[(id(doc), q.turn)]
            got = _settle(res, out, state, metrics, tenant=tenant, policy=policy, document=False)
            if got.result is None:
                continue
            pieces = new_pieces(got.result.spans, covered)
            if not pieces:
                continue
            covered.extend((p.start, p.end) for p in pieces)
            block = excerpt_block(
                pieces, marker=policy.excerpt_marker, granularity=got.result.granularity
            )
            out.excerpts.setdefault(q.message, []).append(block)


def _settle(
    res: Outcome | BaseException,
    out: Compression,
    state: AppState,
    metrics: Metrics,
    *,
    tenant: str,
    policy: Policy,
    document: bool = True,
) -> Outcome:
    """One `compress_one` outcome, with its timings and cache status recorded in `out`. A raised
    failure becomes an Outcome without text (and its reason) when the policy fails open, and
    the client's error when it fails closed. `document=False`: a follow-up's compression, not
    counted as a document of its own."""
    if isinstance(res, BaseException):
        if not isinstance(res, Exception):
            raise res
        kind = _kind(res)
        metrics.engine_errors.labels(tenant, kind).inc()
        if document:
            metrics.documents.labels(tenant, kind).inc()
        if policy.failure_mode == FailureMode.CLOSED:
            raise _closed_error(res) from res
        consulted = state.cache.enabled and kind != "missing_query"
        res = Outcome(None, "miss" if consulted else "off", _reason(state, res))
    out.engine_s += res.engine_s
    out.cache_s += max(0.0, res.total_s - res.engine_s)
    if res.cache != "off":
        out.statuses.append(res.cache)
        metrics.cache.labels(tenant, res.cache).inc()
    return res


async def compress_one(
    state: AppState,
    metrics: Metrics,
    doc: Document,
    query: str | None,
    *,
    tenant: str,
    policy: Policy,
    model: str,
    unit: str,
) -> Outcome:
    """One document against `query`: from the cache, or the engine within the policy's budget.
    A budget counts the backend's tokens (`unit`, the tiktoken encoding `doc.tokens` was
    counted in), and the engine cuts in that same unit.
    Raises the engine's errors (and MissingQuery); the caller applies the failure mode."""
    if query is None:
        raise MissingQuery(
            "A document in the request must be compressed, but no question was found outside it "
            "(put the question in the last user message, outside the document markers)."
        )
    choice = choose(policy, model=model, query=query, markers={doc.marker} if doc.marker else set())
    prompt = resolve(choice.granularity, prompt=choice.prompt, instruction=choice.instruction)
    budget = budget_for(policy, doc.tokens)
    budget_unit = unit if budget is not None else None
    elision = None if policy.elision == Elision.AUTO else str(policy.elision)
    engine = state.engine
    key = cache_key(
        tenant=tenant,
        engine_version=engine.engine_version,
        query=query,
        context=doc.text,
        granularity=prompt.granularity,
        prompt_text=prompt.text,
        budget_tokens=budget,
        secret=state.cache.key_secret,
        budget_unit=budget_unit,
        elision=elision,
    )
    timing = {"engine": 0.0}
    settings = state.config.engine
    closed = policy.failure_mode == FailureMode.CLOSED
    wait_s = settings.timeout_s if closed else wait_seconds(policy, settings.timeout_s)
    predict_s = getattr(engine, "predict_s", None)

    async def run(control) -> CompressionResult:
        t = time.perf_counter()
        try:
            return await engine.compress(
                query,
                doc.text,
                granularity=prompt.granularity,
                prompt=choice.prompt,
                instruction=choice.instruction,
                budget_tokens=budget,
                budget_unit=budget_unit,
                control=control,
                **({"elision": elision} if elision else {}),
            )
        finally:
            timing["engine"] = time.perf_counter() - t

    t0 = time.perf_counter()
    got = await wait(
        state.background,
        state.cache,
        key,
        run,
        ttl=state.cache_ttl(policy),
        wait_s=wait_s,
        fill=policy.background_fill and not closed,
        cap_s=settings.timeout_s,
        predict=lambda: None if closed or predict_s is None else predict_s(len(doc.text)),
    )
    total = time.perf_counter() - t0
    if got.result is None:
        if closed:
            raise TimeoutError("compression not done within engine.timeout_s")
        return Outcome(None, got.cache, got.skipped, min(timing["engine"], total), total)
    if got.result.ratio > 0:
        metrics.ratio.labels(tenant, model_label(model)).observe(got.result.ratio)
    engine_s = min(timing["engine"], total)
    return Outcome(got.result.compressed, got.cache, None, engine_s, total, got.result)


def _reason(state: AppState, exc: Exception) -> str:
    """The x-cprs-skipped reason for a document whose compression raised `exc`."""
    if isinstance(exc, MissingQuery):
        return "no_query"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if not state.engine.ready()[0]:
        return "engine_loading"
    return "engine_error"


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
