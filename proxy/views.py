"""A front door's request body seen as chat messages, so detect/rewrite/followups serve it unchanged.

Detection (proxy.detect) reads chat-shaped `messages`. The Responses API and Anthropic's Messages
API carry the same things in other places; an adapter (`responses_view`, `messages_view`) builds a
`View`: the chat-shaped messages detection reads, and for every text string in them the path of
the same string in the client's own body. Changes then go back through the paths:

    View.messages   [{"role", "content": str | [{"type": "text", "text"}], "tool_calls"?, ...}]
    View.paths      TextLoc(message, part) -> ("input", 3, "content", 0, "text")
    View.inserts    message index -> where that message's excerpt blocks go (`Insert`)

`apply_view` swaps document ranges and puts excerpt blocks in, copying only the containers on
the way to a changed string: the client's object is never mutated, every other byte stays.

How each door maps (tool outputs become `role: tool` messages, calls become `tool_calls`):

    Responses  instructions -> system; input string -> user; message items -> their role, with
               input_text/output_text parts; function_call -> assistant tool call;
               function_call_output -> tool; any other item is not read.
    Messages   system (string or text blocks) -> system; text blocks and document blocks with a
               text source -> parts; tool_use -> assistant tool call; each tool_result -> a tool
               message before the user message's own text; any other block is not read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from proxy.detect import TextLoc
from proxy.rewrite import Replacement, _splice

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Insert:
    """Where excerpt blocks go: before the text at `path` (a string), or as a new part at
    `position` of the list at `path`, built by `make_part(text)`."""

    path: Path
    position: int | None = None
    make_part: Callable[[str], dict] | None = None


@dataclass
class View:
    messages: list[dict] = field(default_factory=list)
    paths: dict[TextLoc, Path] = field(default_factory=dict)
    inserts: dict[int, Insert] = field(default_factory=dict)

    def add(
        self,
        message: dict,
        texts: Sequence[tuple[str, Path]],
        insert: Insert | None,
        *,
        string: bool = False,
    ) -> None:
        """One chat message; `texts` are (text, path) of its parts, or its one string content."""
        index = len(self.messages)
        if string:
            ((text, path),) = texts
            message = {**message, "content": text}
            self.paths[TextLoc(index, None)] = path
        else:
            message = {**message, "content": [{"type": "text", "text": t} for t, _ in texts]}
            for j, (_, path) in enumerate(texts):
                self.paths[TextLoc(index, j)] = path
        self.messages.append(message)
        if insert is not None:
            self.inserts[index] = insert


def apply_view(
    body: dict, view: View, replacements: Sequence[Replacement], excerpts: dict[int, list[str]]
) -> dict:
    """A copy of `body` with document ranges replaced and excerpt blocks inserted."""
    by_loc: dict[TextLoc, list[Replacement]] = {}
    for r in replacements:
        by_loc.setdefault(r.document.loc, []).append(r)
    for loc, reps in by_loc.items():
        path = view.paths[loc]
        body = _set(body, path, _splice(_get(body, path), reps))
    for index, blocks in excerpts.items():
        if not blocks:
            continue
        block, ins = "\n\n".join(blocks), view.inserts[index]
        if ins.position is None:
            body = _set(body, ins.path, f"{block}\n\n{_get(body, ins.path)}")
        else:
            parts = list(_get(body, ins.path))
            parts.insert(ins.position, ins.make_part(block))  # type: ignore[misc]
            body = _set(body, ins.path, parts)
    return body


def _get(obj: Any, path: Path) -> Any:
    for key in path:
        obj = obj[key]
    return obj


def _set(obj: Any, path: Path, value: Any) -> Any:
    """A copy of obj with obj[path] = value; only the containers on the path are copied."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    out = list(obj) if isinstance(obj, list) else dict(obj)
    out[head] = _set(obj[head], rest, value)  # type: ignore[index]
    return out


def _text_part(kind: str) -> Callable[[str], dict]:
    return lambda text: {"type": kind, "text": text}


# --- OpenAI Responses API -----------------------------------------------------------------------

_RESPONSES_TEXT = ("input_text", "output_text", "text")


def responses_view(body: dict) -> View:
    view = View()
    if isinstance(body.get("instructions"), str):
        view.add({"role": "system"}, [(body["instructions"], ("instructions",))], None, string=True)
    items = body.get("input")
    if isinstance(items, str):
        view.add({"role": "user"}, [(items, ("input",))], Insert(("input",)), string=True)
        return view
    for i, item in enumerate(items if isinstance(items, list) else []):
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            _responses_message(view, item, ("input", i))
        elif kind == "function_call":
            call = {"id": item.get("call_id"), "type": "function"}
            call["function"] = {"name": item.get("name"), "arguments": item.get("arguments")}
            _add_call(view, call)
        elif kind == "function_call_output":
            out = item.get("output")
            msg = {"role": "tool", "tool_call_id": item.get("call_id")}
            if isinstance(out, str):
                view.add(msg, [(out, ("input", i, "output"))], None, string=True)
            elif isinstance(out, list):
                texts = _parts(out, ("input", i, "output"), _RESPONSES_TEXT)
                view.add(msg, texts, None)
    return view


def _responses_message(view: View, item: dict, at: Path) -> None:
    role, content = item.get("role"), item.get("content")
    if isinstance(content, str):
        view.add(
            {"role": role}, [(content, (*at, "content"))], Insert((*at, "content")), string=True
        )
    elif isinstance(content, list):
        texts = _parts(content, (*at, "content"), _RESPONSES_TEXT)
        view.add({"role": role}, texts, Insert((*at, "content"), 0, _text_part("input_text")))


def _parts(parts: list, at: Path, kinds: tuple[str, ...]) -> list[tuple[str, Path]]:
    return [
        (p["text"], (*at, j, "text"))
        for j, p in enumerate(parts)
        if isinstance(p, dict) and p.get("type") in kinds and isinstance(p.get("text"), str)
    ]


def _add_call(view: View, call: dict) -> None:
    """An assistant tool call; consecutive calls share one assistant message (one turn)."""
    last = view.messages[-1] if view.messages else None
    if last is not None and last.get("role") == "assistant" and "tool_calls" in last:
        last["tool_calls"].append(call)
    else:
        view.messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


# --- Anthropic Messages API ---------------------------------------------------------------------


def messages_view(body: dict) -> View:
    view = View()
    system = body.get("system")
    if isinstance(system, str):
        view.add({"role": "system"}, [(system, ("system",))], None, string=True)
    elif isinstance(system, list):
        view.add({"role": "system"}, _parts(system, ("system",), ("text",)), None)
    for i, msg in enumerate(body.get("messages") or []):
        if isinstance(msg, dict):
            _anthropic_message(view, msg, ("messages", i))
    return view


def _anthropic_message(view: View, msg: dict, at: Path) -> None:
    role, content = msg.get("role"), msg.get("content")
    if isinstance(content, str):
        view.add(
            {"role": role}, [(content, (*at, "content"))], Insert((*at, "content")), string=True
        )
        return
    if not isinstance(content, list):
        return
    texts: list[tuple[str, Path]] = []
    calls, first_own = [], None
    for j, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        where = (*at, "content", j)
        if kind == "tool_result":
            _tool_result(view, block, where)
            continue
        if first_own is None:
            first_own = j
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append((block["text"], (*where, "text")))
        elif kind == "document" and _text_source(block):
            texts.append((block["source"]["data"], (*where, "source", "data")))
        elif kind == "tool_use":
            args = json.dumps(block.get("input"), ensure_ascii=False, sort_keys=True)
            fn = {"name": block.get("name"), "arguments": args}
            calls.append({"id": block.get("id"), "type": "function", "function": fn})
    if role == "assistant" and calls and not texts:
        for call in calls:
            _add_call(view, call)
        return
    if texts or role == "assistant":
        insert = Insert((*at, "content"), first_own or 0, _text_part("text"))
        view.add({"role": role}, texts, insert)
        if calls:
            view.messages[-1]["tool_calls"] = calls


def _tool_result(view: View, block: dict, at: Path) -> None:
    msg = {"role": "tool", "tool_call_id": block.get("tool_use_id")}
    content = block.get("content")
    if isinstance(content, str):
        view.add(msg, [(content, (*at, "content"))], None, string=True)
    elif isinstance(content, list):
        view.add(msg, _parts(content, (*at, "content"), ("text",)), None)


def _text_source(block: dict) -> bool:
    source = block.get("source")
    return (
        isinstance(source, dict)
        and source.get("type") == "text"
        and isinstance(source.get("data"), str)
    )
