"""JSON field lookup: generated records and API-like payloads, and the lines that answer.

Layouts: a pretty-printed array of records (indent 2), an API response wrapping the array
(`{"data": {"items": [...]}, "pagination": {...}}`), and JSON Lines (one record a line).
Questions: "Which record has `email` = "x"?" and "What is the `status` of the order with
`order_id` 40211?". Every key value (ids) and every asked value is unique in the document.

Gold lines: in the pretty layouts the record's identifying line and the asked field's line
(`"order_id": 40211`, `"status": "shipped"`: the line without its trailing comma); in JSON
Lines the record's whole line. Recall facts are the gold lines that occur once in the
document (a `"status": "shipped"` line recurs, so finding one proves nothing; the key line
never recurs). `positive=False`: the asked record is absent (another id).
"""

from __future__ import annotations

import json
import random

from cprs_engine.prompts import LIBRARY

from . import lines as L
from .example import Example, from_prompt
from .sources import load_corpora

SCHEMAS = {
    "users": ("user_id", ["name", "email", "role", "team", "created_at", "active"]),
    "orders": ("order_id", ["customer", "sku", "quantity", "total", "status", "placed_at"]),
    "events": ("event_id", ["type", "source_ip", "service", "timestamp", "severity"]),
    "devices": ("serial", ["model", "firmware", "location", "owner", "last_seen"]),
}
# fields whose values are unique per record (the "which record has X = v" questions)
UNIQUE = {"email", "sku", "source_ip", "owner", "name"}
QUERIES = {
    "which": (
        'Which record has {field} = "{value}"?',
        'Find the record whose "{field}" is {value}.',
        "Which {kind} entry has the {field} {value}?",
    ),
    "what": (
        "What is the {field} of the {kind} record with {key} {id}?",
        'Look up "{field}" for {key} = {id}.',
        "For {key} {id}, what is its {field}?",
    ),
}


def _value(rng: random.Random, field: str, i: int, words: tuple[str, ...]) -> object:
    w = lambda: rng.choice(words)  # noqa: E731
    day = f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    return {
        "name": f"{w().title()} {w().title()}-{i}",
        "email": f"{w()}.{w()}{i}@example.{rng.choice(['com', 'org', 'net'])}",
        "role": rng.choice(["admin", "viewer", "editor", "owner", "billing"]),
        "team": w(),
        "created_at": f"{day}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z",
        "active": rng.random() < 0.7,
        "customer": f"{w()}-{w()}",
        "sku": f"{w()[:3].upper()}-{i:04d}-{rng.randint(10, 99)}",
        "quantity": rng.randint(1, 40),
        "total": round(rng.uniform(3, 900), 2),
        "status": rng.choice(["pending", "shipped", "delivered", "cancelled", "refunded"]),
        "placed_at": day,
        "type": rng.choice(["login", "logout", "upload", "delete", "share", "export"]),
        "source_ip": f"10.{i // 250 % 250}.{i % 250}.{rng.randint(1, 254)}",
        "service": rng.choice(["auth", "billing", "search", "storage", "gateway"]),
        "timestamp": f"{day}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{i % 60:02d}Z",
        "severity": rng.choice(["low", "medium", "high", "critical"]),
        "model": rng.choice(["X100", "X200", "Pro 5", "Edge 2", "Mini"]),
        "firmware": f"{rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 99)}",
        "location": w(),
        "owner": f"{w()}_{w()}_{i}",
        "last_seen": day,
    }[field]


def make_json_lookup(
    rng: random.Random,
    target_chars: int,
    *,
    positive: bool = True,
    split: str = "train",  # synthetic: both sides are fresh draws (kept for a uniform call)
    train_templates: bool = True,
) -> Example:
    """A JSON document of about `target_chars` and a field question; gold = answering lines."""
    words = load_corpora().vocab
    kind = rng.choice(list(SCHEMAS))
    key, fields = SCHEMAS[kind]
    layout = rng.choice(["array", "api", "jsonl"])
    base = rng.randint(10_000, 90_000)
    per = 30 + 22 * len(fields) if layout != "jsonl" else 20 + 18 * len(fields)
    n = max(3, target_chars // per)
    ids = [base + 7 * i + rng.randint(0, 6) for i in range(n)]
    if key == "serial":
        ids = [f"SN-{x:06d}" for x in ids]
    records = [{key: ids[i]} | {f: _value(rng, f, i, words) for f in fields} for i in range(n)]
    at = rng.randrange(n)
    asked = records[at]
    qkind = rng.choice(["which", "what"]) if train_templates else ("which", "what")[at % 2]
    field = rng.choice([f for f in fields if f in UNIQUE] if qkind == "which" else fields)
    if qkind == "which" and field not in UNIQUE:
        qkind = "what"
    if not positive:
        records.pop(at)
    text = _render(layout, records)
    wording = QUERIES[qkind][rng.randrange(3) if train_templates else 0]
    query = wording.format(
        field=field, value=asked[field], kind=kind.rstrip("s"), key=key, id=json.dumps(asked[key])
    )
    src = text.split("\n")
    gold = _gold_lines(src, layout, asked, key, field) if positive else set()
    context, spans = L.build([(x, i in gold) for i, x in enumerate(src)], trim=",")
    bodies = [x.strip().rstrip(",") for x in src]
    # a line such as `"status": "shipped"` recurs: only lines unique in the document count
    facts = [bodies[i] for i in sorted(gold) if bodies.count(bodies[i]) == 1]
    p = LIBRARY["fact"]
    meta = {"source": "synthetic", "facts": facts, "layout": layout, "type": "json"}
    return from_prompt(p, p.text, query, context, spans, "json_lookup", meta)


def _render(layout: str, records: list[dict]) -> str:
    if layout == "jsonl":
        return "\n".join(json.dumps(r) for r in records)
    body: object = records
    if layout == "api":
        body = {
            "data": {"items": records, "count": len(records)},
            "pagination": {"page": 1, "per_page": len(records), "next": None},
        }
    return json.dumps(body, indent=2)


def _gold_lines(src: list[str], layout: str, asked: dict, key: str, field: str) -> set[int]:
    """The asked record's line (JSON Lines), or its key line and the asked field's line."""
    if layout == "jsonl":
        return {src.index(json.dumps(asked))}
    head = f"{json.dumps(key)}: {json.dumps(asked[key])}"
    at = next(i for i, x in enumerate(src) if x.strip().rstrip(",") == head)
    want = f"{json.dumps(field)}: {json.dumps(asked[field])}"
    j = next(i for i in range(at, len(src)) if src[i].strip().rstrip(",") == want)
    return {at, j}
