"""Log error lookup: synthetic service logs, and the line(s) that answer (issue 18).

A log is a run of timestamped lines (`2026-03-14T09:26:53.120Z INFO  [gateway] ...`) from a
few services, with request ids, mostly INFO and DEBUG, some WARN, a few ERROR. Questions:

| kind    | question (one wording)                          | gold lines                     |
| ------- | ----------------------------------------------- | ------------------------------ |
| first   | Which error came first in this log?             | the earliest ERROR line        |
| request | Show the log lines for request req-3f9a01c2.    | every line of that request (2-4) |
| service | When did the billing service log `TimeoutError`? | that one ERROR line            |

Every line carries a unique timestamp, so each gold line occurs once. `positive=False`
asks about a request id or an error that the log does not hold; a `first` question has no
negative (any log with an error answers it).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from cprs_engine.prompts import LIBRARY

from . import lines as L
from .example import Example, from_prompt

SERVICES = ("gateway", "auth", "billing", "search", "storage", "worker", "scheduler")
ERRORS = (
    "TimeoutError: upstream {host} did not answer within {ms} ms",
    "ConnectionResetError: connection to {host} reset by peer",
    "KeyError: 'customer_id' missing in payload",
    "PermissionError: user {user} may not write bucket {bucket}",
    "ValueError: invalid currency code '{code}'",
    'IntegrityError: duplicate key value violates unique constraint "orders_pkey"',
    "OSError: [Errno 28] No space left on device: '/var/data/{bucket}'",
    "RuntimeError: worker {n} exceeded memory limit ({mb} MiB)",
)
INFO = (
    "{method} {path} {status} {ms}ms",
    "cache {hit} for key {bucket}:{n}",
    "job {n} scheduled on queue {bucket}",
    "user {user} signed in from 10.{n}.{m}.{o}",
    "flushed {n} metrics to collector",
)
WARN = (
    "slow query on {bucket} took {ms} ms",
    "retrying {host} (attempt {m} of 5)",
    "rate limit near for user {user}: {n} requests/min",
)
QUERIES = {
    "first": (
        "Which error came first in this log?",
        "What was the first error logged?",
        "Find the earliest ERROR line.",
    ),
    "request": (
        "Show the log lines for request {rid}.",
        "What happened to request {rid}?",
        "Which lines mention request id {rid}?",
    ),
    "service": (
        "When did the {service} service log {exc}?",
        "Find the {exc} error from {service}.",
        "Which line reports the {service} {exc}?",
    ),
}


def _fill(rng: random.Random, template: str) -> str:
    return template.format(
        host=rng.choice(["db-1", "db-2", "payments.internal", "s3.local", "redis-0"]),
        ms=rng.randint(5, 30000),
        user=f"u{rng.randint(1000, 99999)}",
        bucket=rng.choice(["invoices", "avatars", "exports", "sessions", "orders"]),
        code=rng.choice(["XBT", "EURO", "usd", "JP¥"]),
        n=rng.randint(1, 999),
        m=rng.randint(1, 5),
        o=rng.randint(1, 254),
        mb=rng.choice([512, 1024, 2048]),
        method=rng.choice(["GET", "POST", "PUT", "DELETE"]),
        path=rng.choice(["/api/v1/orders", "/api/v1/users/me", "/healthz", "/api/v2/search"]),
        status=rng.choice([200, 200, 200, 201, 204, 304, 404]),
        hit=rng.choice(["hit", "miss"]),
    )


def make_log_lookup(
    rng: random.Random,
    target_chars: int,
    *,
    positive: bool = True,
    split: str = "train",  # synthetic: both sides are fresh draws (kept for a uniform call)
    train_templates: bool = True,
) -> Example:
    """A log of about `target_chars` and an error/request question; gold = answering lines."""
    kind = (
        rng.choice(list(QUERIES))
        if train_templates
        else ("first", "request", "service")[rng.randrange(3)]
    )
    t = datetime(2026, rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23), tzinfo=UTC)
    rids = [f"req-{rng.getrandbits(32):08x}" for _ in range(max(4, target_chars // 400))]
    lines: list[tuple[str, str, str, str]] = []  # (level, service, request id, message)
    size = 0
    while size < target_chars:
        r = rng.random()
        level = "ERROR" if r < 0.03 else "WARN" if r < 0.12 else "DEBUG" if r < 0.3 else "INFO"
        pool = {"ERROR": ERRORS, "WARN": WARN}.get(level, INFO)
        msg = _fill(rng, rng.choice(pool))
        rid = rng.choice(rids)
        lines.append((level, rng.choice(SERVICES), rid, msg))
        size += 60 + len(msg)
    # the asked-about lines, placed after the first tenth so earlier windows hold noise
    rid, service, exc = rng.choice(rids), rng.choice(SERVICES), rng.choice(ERRORS)
    exc_name = exc.split(":")[0]
    if kind == "request":
        lines = [x for x in lines if x[2] != rid]
        for _ in range(rng.randint(2, 4) if positive else 0):
            at = rng.randint(len(lines) // 10, len(lines))
            lvl = rng.choice(["INFO", "INFO", "WARN", "ERROR"])
            msg = _fill(rng, rng.choice({"ERROR": ERRORS, "WARN": WARN}.get(lvl, INFO)))
            lines.insert(at, (lvl, rng.choice(SERVICES), rid, msg))
    elif kind == "service":
        lines = [x for x in lines if not (x[1] == service and x[3].startswith(exc_name))]
        if positive:
            at = rng.randint(len(lines) // 10, len(lines))
            lines.insert(at, ("ERROR", service, rng.choice(rids), _fill(rng, exc)))
    elif not any(x[0] == "ERROR" for x in lines):
        at = rng.randint(len(lines) // 10, len(lines))
        lines.insert(at, ("ERROR", rng.choice(SERVICES), rng.choice(rids), _fill(rng, exc)))
    text_lines = []
    gold: set[int] = set()
    first_error = None
    for i, (level, svc, req, msg) in enumerate(lines):
        t += timedelta(milliseconds=rng.randint(3, 4000))
        stamp = t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
        text_lines.append(f"{stamp} {level:<5} [{svc}] request_id={req} {msg}")
        if level == "ERROR" and first_error is None:
            first_error = i
        if (kind == "request" and req == rid) or (
            kind == "service" and svc == service and msg.startswith(exc_name) and level == "ERROR"
        ):
            gold.add(i)
    if kind == "first" and positive and first_error is not None:
        gold = {first_error}
    elif kind == "first":
        gold = set()  # a negative window of a `first` question: no error in it at all
        text_lines = [x for x in text_lines if " ERROR " not in x]
    context, spans = L.build([(x, i in gold) for i, x in enumerate(text_lines)])
    wording = QUERIES[kind][rng.randrange(3) if train_templates else 0]
    query = wording.format(rid=rid, service=service, exc=exc_name)
    facts = [text_lines[i] for i in sorted(gold)]
    p = LIBRARY["fact"]
    meta = {"source": "synthetic", "facts": facts, "kind": kind, "type": "log"}
    return from_prompt(p, p.text, query, context, spans, "log_lookup", meta)
