"""Find the long documents in a chat request, and the question each one is compressed for.

Pure functions over the parsed `messages` list; nothing here changes the request.

What counts as a document (in this order, per text string = string content or a `text` part):
1. Marked: `<document>...</document>` (or any configured marker name, attributes allowed, e.g.
   `<document title="x">`) in a system, developer or user message. Only the inner text is a
   document; the tags and everything around them stay.
2. A system/developer text with no markers at or above `system_min_tokens`: the whole text.
3. A user text part with no markers at or above `threshold_tokens` (when compress_user_parts):
   the whole part, except that when the message holds no other text, a short last paragraph (the
   question) and a short first paragraph (an instruction) are carved out and stay verbatim.
4. A `role: tool` message's text at or above `threshold_tokens` (when tool_outputs): the whole
   text, a tool output. Front doors that carry tool results elsewhere (Responses'
   `function_call_output`, Messages' `tool_result`) show them to detection as tool messages.
   Its query is the last user question before it plus the assistant's call that asked for it
   (`name(arguments)`, matched by `tool_call_id`), so it too is fixed once sent.
Only documents at or above `threshold_tokens` are returned; the rest pass byte for byte.

The query: messages are split into turns at assistant messages. A document's query is the text
outside all documents in the last user message of the turn it appears in (walking back through
that turn's user messages if the last one holds none). So a document in an earlier turn keeps the
query it had when it was first sent, compresses identically on every later turn, hits the cache,
and keeps the providers' prompt caches warm. System documents belong to the first turn. Every
turn's question is kept too (`Detection.questions`), with the message it was read from, so the
policy's `followups` can serve later questions about earlier documents (proxy/followups.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from policies.schema import Policy

Count = Callable[[str], int]
SYSTEM_ROLES = ("system", "developer")
QUERY_PARAGRAPH_MAX_TOKENS = 256  # a carved-out question/instruction paragraph is at most this
QUERY_MAX_CHARS = 8000  # the query sent to the engine keeps this many trailing characters


@dataclass(frozen=True)
class TextLoc:
    """Where a text string lives: messages[message].content, or its content[part]["text"]."""

    message: int
    part: int | None


@dataclass(frozen=True)
class Document:
    loc: TextLoc
    start: int  # char range inside the string at `loc`
    end: int
    text: str
    tokens: int
    kind: str  # "marker" | "system" | "user_part" | "tool"
    marker: str | None  # the marker name for kind == "marker"
    query: str | None  # the question it is compressed for; None = none found
    turn: int


@dataclass(frozen=True)
class Question:
    """The question asked in one turn: the outside-document text of `messages[message]`."""

    turn: int
    message: int
    text: str


@dataclass
class Detection:
    documents: list[Document]
    query: str | None  # the latest turn's question
    texts: list[tuple[TextLoc, str]] = field(default_factory=list)  # every message text string
    tokens: int = 0  # all of `texts`, counted once each
    questions: dict[int, Question] = field(default_factory=dict)  # turn -> its question
    latest_turn: int = 0

    def later_questions(self, turn: int) -> list[Question]:
        """The questions of the turns after `turn`, in conversation order."""
        return [q for t, q in sorted(self.questions.items()) if t > turn]


@dataclass
class _Piece:
    loc: TextLoc
    start: int
    end: int
    kind: str
    marker: str | None
    turn: int
    outer: tuple[int, int] | None = None  # the whole `<tag>...</tag>` for markers

    @property
    def span(self) -> tuple[int, int]:
        """The range the query excludes: with the tags for markers."""
        return self.outer or (self.start, self.end)


def iter_texts(messages: Sequence) -> list[tuple[TextLoc, str, str]]:
    """(loc, role, text) for every text string in the messages, in order."""
    out = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            continue
        role, content = msg.get("role"), msg.get("content")
        if isinstance(content, str):
            out.append((TextLoc(i, None), role, content))
        elif isinstance(content, list):
            for j, part in enumerate(content):
                if (
                    isinstance(part, dict)
                    and part.get("type") == "text"
                    and isinstance(part.get("text"), str)
                ):
                    out.append((TextLoc(i, j), role, part["text"]))
    return out


@lru_cache(maxsize=32)
def marker_pattern(names: tuple[str, ...]) -> re.Pattern[str]:
    alts = "|".join(re.escape(n) for n in names)
    return re.compile(rf"<({alts})(?:\s[^<>]*)?>(.*?)</\1\s*>", re.DOTALL)


def find_documents(
    messages: Sequence,
    *,
    markers: Sequence[str],
    threshold_tokens: int,
    system_min_tokens: int,
    compress_user_parts: bool,
    count: Count,
    tool_outputs: bool = False,
) -> Detection:
    texts = iter_texts(messages)
    turns = _turn_of_messages(messages)
    pattern = marker_pattern(tuple(markers))
    pieces: list[_Piece] = []  # every document-ish range, compressible or not (query excludes them)
    tokens: dict[tuple[TextLoc, int, int], int] = {}
    by_message: dict[int, list[tuple[TextLoc, str]]] = {}
    total = 0
    for loc, role, text in texts:
        by_message.setdefault(loc.message, []).append((loc, text))
        n = count(text)  # the request total, and an unmarked text's threshold test
        total += n
        turn = turns[loc.message]
        if role == "tool":
            if tool_outputs and n >= threshold_tokens and text.strip():
                pieces.append(_Piece(loc, 0, len(text), "tool", None, turn))
                tokens[(loc, 0, len(text))] = n
            continue
        if role not in SYSTEM_ROLES and role != "user":
            continue
        found = [
            _Piece(loc, m.start(2), m.end(2), "marker", m.group(1), turn, (m.start(), m.end()))
            for m in pattern.finditer(text)
        ]
        if found:
            pieces.extend(found)
            continue
        min_tokens = system_min_tokens if role in SYSTEM_ROLES else threshold_tokens
        if role == "user" and not compress_user_parts:
            continue
        if n >= min_tokens and text.strip():
            kind = "system" if role in SYSTEM_ROLES else "user_part"
            pieces.append(_Piece(loc, 0, len(text), kind, None, turn))
            tokens[(loc, 0, len(text))] = n
    _carve_questions(pieces, by_message, count)

    questions = _turn_questions(messages, by_message, pieces, turns)
    queries = {t: q.text for t, q in questions.items()}
    docs = []
    for p in pieces:
        text = _text_at(by_message, p.loc)[p.start : p.end]
        n = tokens.get((p.loc, p.start, p.end))
        if n is None:
            n = count(text)
        floor = system_min_tokens if p.kind == "system" else threshold_tokens
        if n < max(floor, 1) or not text.strip():
            continue
        query = (
            tool_query(messages, p.loc.message, questions)
            if p.kind == "tool"
            else queries.get(p.turn)
        )
        docs.append(Document(p.loc, p.start, p.end, text, n, p.kind, p.marker, query, p.turn))
    latest = max(turns.values(), default=0)
    texts_out = [(loc, t) for loc, _, t in texts]
    return Detection(docs, queries.get(latest), texts_out, total, questions, latest)


def _turn_of_messages(messages: Sequence) -> dict[int, int]:
    turn, out = 0, {}
    for i, msg in enumerate(messages):
        out[i] = turn
        if isinstance(msg, dict) and msg.get("role") == "assistant":
            turn += 1
    return out


def _text_at(by_message: dict[int, list[tuple[TextLoc, str]]], loc: TextLoc) -> str:
    for other, text in by_message.get(loc.message, []):
        if other == loc:
            return text
    raise AssertionError(f"no text at {loc}")


def _carve_questions(pieces: list[_Piece], by_message: dict, count: Count) -> None:
    """A whole-part user document in a message with no other text: keep its short first and last
    paragraphs verbatim (they are the instruction and the question)."""
    for msg_index, entries in by_message.items():
        whole = [p for p in pieces if p.loc.message == msg_index and p.kind == "user_part"]
        if not whole:
            continue
        outside = _outside_text(entries, [p for p in pieces if p.loc.message == msg_index])
        if outside.strip():
            continue
        last, first = whole[-1], whole[0]
        text = _text_at(by_message, last.loc)
        cut = _last_paragraph_start(text[last.start : last.end])
        if cut is not None and count(text[last.start + cut :]) <= QUERY_PARAGRAPH_MAX_TOKENS:
            last.end = last.start + cut
        text = _text_at(by_message, first.loc)
        cut = _first_paragraph_end(text[first.start : first.end])
        if (
            cut is not None
            and count(text[first.start : first.start + cut]) <= QUERY_PARAGRAPH_MAX_TOKENS
        ):
            first.start = first.start + cut


def _last_paragraph_start(text: str) -> int | None:
    body = text.rstrip()
    for sep in ("\n\n", "\n"):
        i = body.rfind(sep)
        if i > 0 and body[i:].strip():
            return i + len(sep)
    return None


def _first_paragraph_end(text: str) -> int | None:
    body_start = len(text) - len(text.lstrip())
    for sep in ("\n\n", "\n"):
        i = text.find(sep, body_start)
        if i > body_start:
            return i + len(sep)
    return None


def _outside_text(entries: list[tuple[TextLoc, str]], pieces: list[_Piece]) -> str:
    """The message's text with every document range removed, pieces joined by newlines."""
    out = []
    for loc, text in entries:
        ranges = sorted(p.span for p in pieces if p.loc == loc)
        pos = 0
        for s, e in ranges:
            out.append(text[pos:s])
            pos = max(pos, e)
        out.append(text[pos:])
    return "\n".join(s.strip() for s in out if s.strip())


def _turn_questions(
    messages: Sequence, by_message: dict, pieces: list[_Piece], turns: dict
) -> dict[int, Question]:
    """turn -> the question asked in it (outside-document text of its last user message)."""
    questions: dict[int, Question] = {}
    for i in sorted(by_message, reverse=True):
        msg = messages[i]
        if msg.get("role") != "user" or turns[i] in questions:
            continue
        text = _outside_text(by_message[i], [p for p in pieces if p.loc.message == i])
        if text:
            questions[turns[i]] = Question(turns[i], i, text[-QUERY_MAX_CHARS:])
    return questions


def find_for_policy(messages: Sequence, policy: Policy, count: Count) -> Detection:
    """`find_documents` with a policy's detection settings (every front door and prefetch alike)."""
    return find_documents(
        messages,
        markers=policy.markers,
        threshold_tokens=policy.threshold_tokens,
        system_min_tokens=policy.effective_system_min_tokens,
        compress_user_parts=policy.compress_user_parts,
        count=count,
        tool_outputs=policy.compress_tool_outputs,
    )


def tool_query(messages: Sequence, index: int, questions: dict[int, Question]) -> str | None:
    """A tool output's query: the last user question before it, then the call that produced it."""
    asked = [q for q in questions.values() if q.message < index]
    question = max(asked, key=lambda q: q.message).text if asked else None
    call = _tool_call_text(messages, index)
    parts = [p for p in (question, call) if p]
    return "\n".join(parts)[-QUERY_MAX_CHARS:] if parts else None


def _tool_call_text(messages: Sequence, index: int) -> str | None:
    """`name(arguments)` of the assistant's call that messages[index] (role tool) answers."""
    call_id = messages[index].get("tool_call_id")
    for msg in reversed(messages[:index]):
        if not isinstance(msg, dict) or msg.get("role") != "assistant":
            continue
        calls = [c for c in msg.get("tool_calls") or [] if isinstance(c, dict)]
        match = [c for c in calls if c.get("id") == call_id] or calls[:1]
        if not match:
            return None
        fn = match[0].get("function") or {}
        name, args = fn.get("name") or "", fn.get("arguments") or ""
        return f"{name}({args if isinstance(args, str) else ''})" if name or args else None
    return None
