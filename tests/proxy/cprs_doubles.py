"""Test doubles for the proxy: a deterministic extractive engine, a recording OpenAI-compatible
backend (a real HTTP server on a free loopback port), and a helper to run any ASGI app that way.

The engine double does a real extraction (sentences sharing a word with the query, as exact
substrings of the context) so compression is observable end to end; it is never used outside tests.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from cprs_engine.result import CompressionResult, Span

_STOP = {
    "what",
    "which",
    "when",
    "where",
    "does",
    "with",
    "that",
    "this",
    "from",
    "have",
    "about",
    "the",
}


class QueryWordEngine:
    """Keeps the sentences of the context that share a word (4+ letters) with the query.
    `calls` records every argument of every `compress`, so a setting dropped on the way from
    the policy to the engine fails a test."""

    def __init__(
        self, *, delay_s: float = 0.0, fail: Exception | None = None, version: str = "test-qw-1"
    ):
        self.engine_version = version
        self.delay_s = delay_s
        self.fail = fail
        self.calls: list[dict] = []

    def ready(self) -> tuple[bool, str]:
        return True, "test engine"

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def compress(
        self,
        query,
        context,
        *,
        granularity=None,
        prompt=None,
        instruction=None,
        budget_tokens=None,
        budget_unit=None,
        control=None,
        doc_type=None,
        elision=None,
    ):
        self.calls.append(
            {
                "query": query,
                "context": context,
                "context_chars": len(context),
                "granularity": granularity,
                "prompt": prompt,
                "instruction": instruction,
                "budget_tokens": budget_tokens,
                "budget_unit": budget_unit,
                "control": control,
                "doc_type": doc_type,
                "elision": elision,
            }
        )
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail is not None:
            raise self.fail
        words = {w for w in re.findall(r"[a-z0-9]{4,}", query.lower()) if w not in _STOP}
        spans = []
        for m in re.finditer(r"[^.!?\n]+[.!?]?", context):
            text = m.group(0)
            if words & set(re.findall(r"[a-z0-9]{4,}", text.lower())):
                spans.append(Span(m.start(), m.end(), text, 1.0))
        sep = "\n…\n" if elision == "marker" else "\n"  # the engine's prose marker
        compressed = sep.join(s.text.strip() for s in spans)
        n_in, n_out = len(context.split()), len(compressed.split())
        return CompressionResult(
            compressed, spans, n_in, n_out, n_in / max(n_out, 1), granularity or "sentence"
        )


class ServiceCompressor:
    """QueryWordEngine behind the engine scheduler's compressor interface (what `cprs engine
    serve` drives): one window per document, an empty forward pass, and the whole extraction
    when decoding, after `delay_s` (a slow or hanging replica)."""

    windows_per_pass = 1

    def __init__(self, *, delay_s: float = 0.0, version: str = "remote-test-v1") -> None:
        self.inner = QueryWordEngine()
        self.delay_s = delay_s
        self.engine_version = version

    def plan(self, query, context, **kw):
        import types

        return types.SimpleNamespace(
            query=query, context=context, kw=kw, ids=[0], prefix=[0], tag="t",
            windows=[[(0, 1)]], empty_outputs=lambda: None,
        )  # fmt: skip

    def score_pass(self, prefix, tag, rows):
        return None

    def scored(self, plan, outputs, model_s):
        return plan

    def decode(self, plan, *, budget_tokens, budget_unit=None):
        time.sleep(self.delay_s)
        return asyncio.run(
            self.inner.compress(
                plan.query, plan.context, budget_tokens=budget_tokens, budget_unit=budget_unit,
                **plan.kw,
            )
        )  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """Run an ASGI app with uvicorn on a free loopback port in a background thread."""

    def __init__(self, app: Any, port: int | None = None, **uvicorn_kwargs: Any):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=1,
            **uvicorn_kwargs,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 60  # a loaded 2-core machine warms litellm slowly
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@dataclass
class FakeBackend:
    """An OpenAI-compatible backend that records every request and answers as told.

    `mode`: "ok" | "error" (answer `error_status` with `error_body`) | "hang" (never answer) |
    "slow_stream" (one chunk per `chunk_delay_s`, for disconnect tests) | "drop" (close mid-stream).
    """

    mode: str = "ok"
    error_status: int = 500
    error_body: Any = None
    chunk_delay_s: float = 0.0
    received: list[dict] = field(default_factory=list)
    stream_cancelled: threading.Event = field(default_factory=threading.Event)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])

    async def _chat(self, request: Request) -> Response:
        raw = await request.body()
        body = json.loads(raw)
        self.received.append({"body": body, "headers": dict(request.headers), "raw": raw})
        if self.mode == "error":
            return JSONResponse(self.error_body, status_code=self.error_status)
        if self.mode == "hang":
            await asyncio.sleep(3600)
        if body.get("stream"):
            return StreamingResponse(self._chunks(body), media_type="text/event-stream")
        return JSONResponse(completion(body))

    async def _chunks(self, body: dict):
        try:
            for i, chunk in enumerate(stream_chunks(body)):
                if self.mode == "drop" and i == 2:
                    raise RuntimeError("backend died mid-stream")
                yield f"data: {json.dumps(chunk)}\n\n"
                if self.chunk_delay_s:
                    await asyncio.sleep(self.chunk_delay_s)
            yield "data: [DONE]\n\n"
        except asyncio.CancelledError:
            self.stream_cancelled.set()
            raise


def _last_user_text(body: dict) -> str:
    for msg in reversed(body["messages"]):
        if msg.get("role") == "user":
            c = msg.get("content")
            if isinstance(c, str):
                return c
            parts = c if isinstance(c, list) else []
            return " ".join(str(p.get("text", "")) for p in parts if isinstance(p, dict))
    return ""


def completion(body: dict) -> dict:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1700000000,
        "model": body["model"],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": f"echo {len(_last_user_text(body))}"},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13},
        "system_fingerprint": "fp_fake",
        "vendor_extra": {"kept": True},
    }


def stream_chunks(body: dict) -> list[dict]:
    base = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": body["model"],
    }
    usage_on = bool((body.get("stream_options") or {}).get("include_usage"))

    def chunk(delta: dict, finish: str | None = None) -> dict:
        c = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if usage_on:
            c["usage"] = None
        return c

    out = [chunk({"role": "assistant", "content": ""})]
    if body.get("tools"):
        name = body["tools"][0]["function"]["name"]
        out.append(
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": name, "arguments": ""},
                        }
                    ]
                }
            )
        )
        for piece in ('{"city"', ': "Par', 'is"}'):
            out.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
        out.append(chunk({}, "tool_calls"))
    else:
        for word in ("Hello", " there", ", friend", "."):
            out.append(chunk({"content": word}))
        out.append(chunk({}, "stop"))
    if usage_on:
        out.append(
            {
                **base,
                "choices": [],
                "usage": {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15},
            }
        )
    return out


NEEDLE = "The secret passcode for the blue vault is 7316."
QUESTION = "What is the secret passcode for the blue vault?"


def haystack(n: int = 600, *, needle: str | None = NEEDLE, seed: int = 0) -> str:
    """Deterministic filler sentences (none shares a content word with QUESTION), needle inside."""
    import random

    rng = random.Random(seed)
    subj = ["The farmer", "A teacher", "The council", "An engineer", "The river", "Our neighbor"]
    verb = ["painted", "measured", "carried", "described", "repaired", "counted"]
    obj = [
        "the old bridge",
        "a wooden fence",
        "seven apples",
        "the morning train",
        "a quiet garden",
    ]
    sents = [
        f"{rng.choice(subj)} {rng.choice(verb)} {rng.choice(obj)} near town {i}." for i in range(n)
    ]
    if needle:
        sents.insert(n // 2, needle)
    return " ".join(sents)


@dataclass
class FakeAnthropic:
    """Anthropic's Messages API as far as litellm's translation needs it; records requests."""

    received: list[dict] = field(default_factory=list)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/messages", self._messages, methods=["POST"])])

    async def _messages(self, request: Request) -> Response:
        body = json.loads(await request.body())
        self.received.append({"body": body, "headers": dict(request.headers)})
        if body.get("stream"):
            return StreamingResponse(self._events(body), media_type="text/event-stream")
        return JSONResponse(
            {
                "id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
                "content": [{"type": "text", "text": "Hi from claude"}], "stop_reason": "end_turn",
                "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 3},
            }
        )  # fmt: skip

    async def _events(self, body: dict):
        message = {
            "id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": body["model"],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 1},
        }  # fmt: skip
        events = [
            ("message_start", {"type": "message_start", "message": message}),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": "Hello"},
                },
            ),
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": " world"},
                },
            ),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": 2},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        for name, data in events:
            yield f"event: {name}\ndata: {json.dumps(data)}\n\n"


class SlowEngine(QueryWordEngine):
    """QueryWordEngine that takes `steps` x `step_s` seconds, like forward passes: between steps
    it stops with `Cancelled` once `control.cancel` is set, and it records the priority each step
    ran at. `predicted`: what `predict_s` answers (None: no estimate); every call is recorded."""

    def __init__(self, *, steps: int = 10, step_s: float = 0.05, predicted=None, **kw):
        super().__init__(**kw)
        self.steps, self.step_s, self.predicted = steps, step_s, predicted
        self.predict_calls: list[int] = []
        self.priorities: list[list[bool]] = []  # per call: control.background at each step
        self.finished = 0
        self.cancelled = 0
        self.controls: list = []  # the control of every call, as it started

    def predict_s(self, chars: int):
        self.predict_calls.append(chars)
        return self.predicted

    async def compress(self, query, context, *, control=None, **kw):
        from cprs_engine.errors import Cancelled

        seen: list[bool] = []
        self.priorities.append(seen)
        self.controls.append(control)
        for _ in range(self.steps):
            if control is not None and control.cancel.is_set():
                self.cancelled += 1
                raise Cancelled("cancelled")
            seen.append(bool(control.background) if control is not None else False)
            try:
                await asyncio.sleep(self.step_s)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        result = await super().compress(query, context, control=control, **kw)
        self.finished += 1
        return result
