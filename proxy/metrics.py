"""Prometheus metrics, one registry per app (no globals), labelled by tenant, model and arm.

The `model` label is the route name a request matched (for a glob route, the client's model
name only if it is short and plain), so a client cannot blow up label cardinality with junk.
"""

from __future__ import annotations

import re

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_BASE = ("tenant", "model", "arm")
_STAGE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_RATIO_BUCKETS = (1, 1.5, 2, 3, 5, 10, 20, 50, 100, 200, 500)
_PLAIN = re.compile(r"^[A-Za-z0-9._:/-]{1,64}$")


def model_label(name: str | None) -> str:
    return name if name and _PLAIN.match(name) else "other"


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple, object] = {}
        self.requests = Counter(
            "cprs_requests", "chat requests", (*_BASE, "status", "compressed"), registry=r
        )
        self.tokens_in = Counter(
            "cprs_tokens_in", "prompt text tokens as the client sent them", _BASE, registry=r
        )
        self.tokens_out = Counter(
            "cprs_tokens_out", "prompt text tokens sent to the backend", _BASE, registry=r
        )
        self.ratio = Histogram(
            "cprs_compression_ratio",
            "original / sent tokens, compressed requests",
            ("tenant", "model"),
            buckets=_RATIO_BUCKETS,
            registry=r,
        )
        self.stage = Histogram(
            "cprs_stage_seconds",
            "latency per stage: detect, cache, engine, upstream (first byte for streams), total",
            (*_BASE, "stage"),
            buckets=_STAGE_BUCKETS,
            registry=r,
        )
        self.cache = Counter(
            "cprs_cache_lookups",
            "compression cache results per document",
            ("tenant", "result"),
            registry=r,
        )
        self.cache_errors = Counter(
            "cprs_cache_errors", "cache backend errors (all fail open)", ("kind",), registry=r
        )
        self.engine_errors = Counter(
            "cprs_engine_errors",
            "compression failures (timeout, failure, invalid, missing_query)",
            ("tenant", "kind"),
            registry=r,
        )
        self.upstream_errors = Counter(
            "cprs_upstream_errors",
            "backend errors by status",
            ("tenant", "model", "status"),
            registry=r,
        )
        self.documents = Counter(
            "cprs_documents",
            "documents found at or above the threshold",
            ("tenant", "outcome"),
            registry=r,
        )
        self.followups = Counter(
            "cprs_followups",
            "requests in which a document from an earlier turn met a new question, by mode",
            ("tenant", "mode"),
            registry=r,
        )
        self.followup_tokens = Counter(
            "cprs_followup_tokens",
            "tokens that follow-up excerpt blocks added to requests (tiktoken)",
            ("tenant",),
            registry=r,
        )
        self.skipped = Counter(
            "cprs_documents_skipped",
            "documents sent uncompressed, by reason (as in x-cprs-skipped)",
            ("tenant", "reason"),
            registry=r,
        )
        self.background_depth = Gauge(
            "cprs_background_queue_depth", "compressions running with nobody waiting", registry=r
        )
        self.background_jobs = Counter(
            "cprs_background_jobs",
            "background compressions: done, failed, dropped",
            ("result",),
            registry=r,
        )
        self.predicted_seconds = Counter(
            "cprs_background_predicted_seconds",
            "engine time predicted for finished jobs",
            registry=r,
        )
        self.actual_seconds = Counter(
            "cprs_background_actual_seconds", "engine time taken by the same jobs", registry=r
        )
        self.in_flight = Gauge("cprs_requests_in_flight", "chat requests being served", registry=r)
        self.reloads = Counter("cprs_config_reloads", "config reloads", ("result",), registry=r)

    def child(self, metric, *labels: str):
        """`metric.labels(*labels)`, remembered: prometheus_client validates the values and
        takes a lock on every `labels` call, and every request makes six of them. The values
        are already bounded (tenants, routes, arms, statuses), as prometheus_client's own
        table of children is."""
        key = (metric, labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def cache_error(self, kind: str) -> None:
        """The cache's on_error hook."""
        self.cache_errors.labels(kind).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
