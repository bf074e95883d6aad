"""`cprs eval-followups`: conversations about one document, sent through the proxy turn by turn
as a chat client sends them (the whole history each time), under each `followups` mode.

Each conversation (cprs_engine/data/conversations.py: reserved SQuAD articles, reserved HotpotQA
items) asks 3 questions about one document; then an off-topic turn asks nothing about it. The
proxy runs in process with the shipped critic (`LocalEngine`) and a recording fake backend, so
what is measured is exactly what a backend would receive. Per turn:

- recall: the share of the question's gold facts found in all the message text the backend got
  (whitespace-normalised, as `cprs eval`), beside the recall of a fresh one-turn request with
  the same question and document;
- prefix: whether the messages before the latest user message are byte-identical to the
  previous turn's request (what providers' prompt caches need);
- tokens: `x-cprs-compressed-tokens`, the tiktoken tokens of all the message text sent, beside
  the fresh request's.
Every mode and the fresh requests share one compression cache: a compression is computed once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

MODES = ("stable", "append", "requery")
OFF_TOPIC = "Thanks! Unrelated: can you suggest a name for my new cat?"
ANSWER = "Here is what the document says."
SECTION = "eval-followups"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lengths", default="8192,32768", help="document lengths in tokens")
    p.add_argument("--samples", default="7,3", help="conversations per source per length")
    p.add_argument("--sources", default="squad,hotpotqa")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--seed", type=int, default=4242)
    p.add_argument("--checkpoint", default=None, help="critic directory (default: the shipped one)")
    p.add_argument("--write", metavar="BENCHMARKS.md", default=None)
    p.add_argument("--json", metavar="OUT.json", default=None)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from cprs_engine.evaluation.evaluate import command_line, machine
    from cprs_engine.evaluation.sections import replace_section
    from cprs_engine.training.data.conversations import make_conversation
    from proxy.cache import CompressionCache
    from proxy.config import EngineSettings
    from proxy.engine import LocalEngine
    from proxy.tokens import TokenCounter, configure_offline

    configure_offline()
    engine = LocalEngine(EngineSettings(checkpoint=args.checkpoint, timeout_s=3600))
    await engine.start()
    while not engine.ready()[0]:
        if engine._error:  # noqa: SLF001 - the loader's own report
            print(f"error: {engine._error}", file=sys.stderr)
            return 1
        await asyncio.sleep(0.2)
    cache = CompressionCache.from_settings(None, max_memory_entries=100_000)
    variants = _variants(args)
    counter = TokenCounter("gpt-4o")
    lengths = [int(x) for x in args.lengths.split(",")]
    samples = [int(x) for x in args.samples.split(",")]
    rows: list[dict] = []
    for length, n in zip(lengths, samples + samples[-1:] * len(lengths), strict=False):
        for source in args.sources.split(","):
            for k in range(n):
                conv = make_conversation(source, length, args.seed, k, counter.count)
                t0 = time.perf_counter()
                got = await conversation_rows(conv, engine, cache, variants)
                for r in got:
                    r |= {"length": length, "source": source, "case": k}
                rows += got
                print(
                    f"{length // 1024}K {source} #{k}: {time.perf_counter() - t0:.0f}s", flush=True
                )
    await engine.close()
    summary = summarize(rows)
    info = {
        "command": command_line(args).replace("cprs eval", "cprs eval-followups", 1),
        "machine": machine(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "engine": engine.engine_version,
    }
    text = report(summary, info)
    print("\n" + text)
    if args.write:
        replace_section(args.write, SECTION, text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"info": info, "summary": summary, "rows": rows}))
    return 0


def _variants(args: argparse.Namespace) -> list[tuple[str, dict]]:
    """(label, policy) per mode."""
    return [(mode, {"followups": mode}) for mode in args.modes.split(",")]


def _app(policy: dict, engine, cache, backend):
    from proxy.app import create_app
    from proxy.config import config_from_dict

    cfg = {
        "models": [
            {"name": "m", "model": "openai/m", "api_base": "http://backend/v1", "api_key": "k"}
        ],
        # wait for every compression: measure what compression gives, not this machine's load
        "policies": {"default": {"threshold_tokens": 1000, "max_wait_ms": None, **policy}},
        "engine": {"timeout_s": 3600},
    }
    return create_app(
        config_from_dict(cfg),
        engine=engine,
        cache=cache,
        upstream_transport=httpx.MockTransport(backend),
    )


class _Backend:
    def __init__(self) -> None:
        self.bodies: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(request.content))
        msg = {"role": "assistant", "content": ANSWER}
        return httpx.Response(
            200,
            json={
                "id": "x",
                "object": "chat.completion",
                "choices": [{"index": 0, "message": msg, "finish_reason": "stop"}],
            },
        )


async def _send(app, body: dict, backend: _Backend) -> tuple[dict, httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://proxy", timeout=3600) as c:
        r = await c.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    return backend.bodies[-1], r


def message_text(body: dict) -> str:
    """All message text of a chat body, joined."""
    out = []
    for m in body["messages"]:
        c = m.get("content")
        if isinstance(c, str):
            out.append(c)
        elif isinstance(c, list):
            out += [p.get("text", "") for p in c if isinstance(p, dict)]
    return "\n".join(out)


def _raw(messages: list) -> bytes:
    return json.dumps(messages, ensure_ascii=False, separators=(",", ":")).encode()


async def conversation_rows(conv, engine, cache, variants) -> list[dict]:
    from cprs_engine.evaluation.evaluate import recall
    from proxy.tokens import TokenCounter

    count = TokenCounter("gpt-4o").count

    backend = _Backend()
    first = f"<document>{conv.context}</document>\n"
    fresh = {}
    app = _app({}, engine, cache, backend)
    for i, t in enumerate(conv.turns):
        body = {"model": "m", "messages": [{"role": "user", "content": first + t.question}]}
        sent, r = await _send(app, body, backend)
        fresh[i] = (
            recall(list(t.facts), message_text(sent)),
            int(r.headers["x-cprs-compressed-tokens"]),
        )
    rows = []
    questions = [t.question for t in conv.turns] + [OFF_TOPIC]
    for label, policy in variants:
        app = _app(policy, engine, cache, backend)
        messages: list[dict] = []
        prev: list | None = None
        excerpts_before = 0
        for i, q in enumerate(questions):
            if i:
                messages.append({"role": "assistant", "content": ANSWER})
            messages.append({"role": "user", "content": (first if i == 0 else "") + q})
            sent, r = await _send(app, {"model": "m", "messages": list(messages)}, backend)
            same = prev is not None and _raw(sent["messages"][: len(prev)]) == _raw(prev)
            tokens = int(r.headers["x-cprs-compressed-tokens"])
            cached = count(message_text({"messages": prev})) if same else 0
            row = {
                "mode": label,
                "turn": i + 1,
                "off_topic": i >= len(conv.turns),
                "tokens": tokens,
                # what a provider's prompt cache cannot serve: all after the identical prefix
                "uncached_tokens": max(tokens - cached, 0),
                # the header counts every turn's excerpt; this turn added the difference
                "excerpt_tokens": int(r.headers.get("x-cprs-followup-tokens", 0)) - excerpts_before,
                "prefix_identical": None if prev is None else same,
            }
            if i < len(conv.turns):
                facts = list(conv.turns[i].facts)
                row |= {
                    "recall": recall(facts, message_text(sent)),
                    "fresh_recall": fresh[i][0],
                    "fresh_tokens": fresh[i][1],
                }
            rows.append(row)
            prev = sent["messages"]
            excerpts_before += row["excerpt_tokens"]
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    """Per (length, mode): first-turn and follow-up recall against fresh requests, prefix
    identity, and tokens per follow-up turn against fresh."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["length"], r["mode"]), []).append(r)
    out = []
    for (length, mode), rs in sorted(groups.items()):
        follow = [r for r in rs if r["turn"] > 1 and not r["off_topic"]]
        first = [r for r in rs if r["turn"] == 1]
        later = [r for r in rs if r["prefix_identical"] is not None]
        off = [r for r in rs if r["off_topic"]]
        out.append(
            {
                "length": length,
                "mode": mode,
                "conversations": len(first),
                "first_recall": _mean(r["recall"] for r in first),
                "followup_recall": _mean(r["recall"] for r in follow),
                "fresh_recall": _mean(r["fresh_recall"] for r in follow),
                "prefix_identical": _mean(float(r["prefix_identical"]) for r in later),
                "tokens_vs_fresh": _mean(r["tokens"] / r["fresh_tokens"] for r in follow),
                "uncached_vs_fresh": _mean(
                    r["uncached_tokens"] / r["fresh_tokens"] for r in follow
                ),
                "max_tokens_vs_fresh": max(r["tokens"] / r["fresh_tokens"] for r in follow),
                "followup_tokens": _mean(r["tokens"] for r in follow),
                "fresh_tokens": _mean(r["fresh_tokens"] for r in follow),
                "off_topic_excerpt_tokens": _mean(r["excerpt_tokens"] for r in off),
            }
        )
    return out


def _mean(values) -> float:
    vals = list(values)
    return sum(vals) / len(vals) if vals else float("nan")


def report(summary: list[dict], info: dict) -> str:
    head = (
        "| length | mode | conversations | turn-1 recall | follow-up recall | fresh recall "
        "| prefix identical | follow-up tokens | fresh tokens | mean ratio | max ratio "
        "| uncached ratio | off-topic excerpt tokens |"
    )
    lines = [head, "|" + "---|" * 13]
    for s in summary:
        lines.append(
            f"| {s['length'] // 1024}K | {s['mode']} | {s['conversations']} | {s['first_recall']:.1%} "
            f"| {s['followup_recall']:.1%} | {s['fresh_recall']:.1%} | {s['prefix_identical']:.0%} "
            f"| {s['followup_tokens']:,.0f} | {s['fresh_tokens']:,.0f} | {s['tokens_vs_fresh']:.2f}x "
            f"| {s['max_tokens_vs_fresh']:.2f}x | {s['uncached_vs_fresh']:.2f}x "
            f"| {s['off_topic_excerpt_tokens']:.0f} |"
        )
    return "\n".join(
        [
            "## Follow-up questions (`cprs eval-followups`)",
            "",
            f"- command: `{info['command']}`",
            f"- machine: {info['machine']}",
            f"- date: {info['date']}",
            f"- engine: {info['engine']}",
            "",
            *lines,
            "",
            "Conversations of 3 questions about one document (reserved SQuAD articles: questions "
            "on different paragraphs; reserved HotpotQA: 3 items' paragraphs in one document), "
            "each turn sent with the whole history, then one off-topic turn. Recall = share of "
            "the question's gold sentences in all the message text the backend received; fresh = "
            "the same question and document as a new one-turn request. Prefix identical = share "
            "of turns whose messages before the latest user message are byte-identical to the "
            "previous request's. Tokens = tiktoken (o200k) tokens of all message text sent on a "
            "follow-up turn (turns 2-3), against the fresh request; ratio = follow-up / fresh; "
            "uncached = the tokens after the byte-identical prefix (what a provider's prompt "
            "cache cannot serve) / fresh. "
            "Off-topic excerpt tokens = what the off-topic turn's excerpt added.",
        ]
    )
