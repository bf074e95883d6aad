"""JSON that stays JSON: the kept values of a JSON document, with their key paths, as a pruned
document that parses.

    parse     the text's tokens with their offsets (one regex pass; only for a text that
              `json.loads` accepted, so the grammar can be trusted) -> a tree of nodes
    units     each critic span -> the values it touches -> the unit: the whole record (an
              object or array that is an element of an array) if it is at most RECORD_CHARS
              (sentence) or MAX_UNIT_CHARS (paragraph) long, else the member itself; a hit on a
              key counts for its value; units inside a kept unit are dropped
    render    the root, keeping only the containers on the way to a unit: `{"key": ...}` with
              the original key text, `[...]` with only the kept elements, and each unit's own
              original text, formatting and all

`spans` are exact substrings of the input: the kept units (a member from its key to its value's
end) and the keys on their paths; only `compressed` holds the brackets, commas and colons that
make it a document. Dropped members are simply absent, as in a filtered API response, and no
elision marker is ever added (one would stop the output from parsing). Array positions are not
kept: the second kept record of an array is its second element in the output.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Callable, Sequence

from cprs_engine.result import Span

RECORD_CHARS = 1_500  # at sentence granularity, a record (array element) up to this is kept whole
PARAGRAPH_RECORD_CHARS = 12_000
MAX_DEPTH = 400  # deeper documents are decoded as lines (render recurses)
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\],:]|[^\s{}\[\],:"]+')


class Node:
    __slots__ = ("start", "end", "kind", "key", "parent", "children", "depth")

    def __init__(self, start, kind, key, parent):
        self.start, self.end, self.kind, self.key, self.parent = start, start, kind, key, parent
        self.children: list[Node] = []
        self.depth = 0 if parent is None else parent.depth + 1

    @property
    def first(self) -> int:
        """Where the member starts: its key, or the value for an array element / the root."""
        return self.key[0] if self.key else self.start

    def size(self) -> int:
        return self.end - self.first


class Tree:
    """A parsed JSON text: the root node, and every value and key in document order
    (`items`: (start, end, the value node a hit there counts for))."""

    def __init__(self, text: str, root: Node, items: list[tuple[int, int, Node]]):
        self.text, self.root, self.items = text, root, items
        self.item_starts = [a for a, _, _ in items]


def parse(text: str) -> Tree | None:
    """The tree of a text that is one JSON document; None otherwise (or too deep)."""
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return None
    stack: list[Node] = []
    items: list[tuple[int, int, Node]] = []
    root: Node | None = None
    key: tuple[int, int] | None = None
    expect_key = False
    for m in _TOKEN.finditer(text):
        a, b = m.span()
        c = text[a]
        top = stack[-1] if stack else None
        if c in "{[":
            node = Node(a, "obj" if c == "{" else "arr", key, top)
            if node.depth > MAX_DEPTH:
                return None
            _attach(node, top, items)
            root = root or node
            stack.append(node)
            key, expect_key = None, c == "{"
        elif c in "}]":
            stack.pop().end = b
            expect_key = False
        elif c == ",":
            expect_key = top is not None and top.kind == "obj"
        elif c == ":":
            expect_key = False
        elif expect_key:
            key, expect_key = (a, b), False
        else:
            node = Node(a, "val", key, top)
            node.end = b
            _attach(node, top, items)
            root = root or node
            key = None
    assert root is not None and not stack, "json.loads accepted what the scanner did not"
    return Tree(text, root, items)


def _attach(node: Node, parent: Node | None, items: list) -> None:
    if parent is not None:
        parent.children.append(node)
    if node.key:
        items.append((node.key[0], node.key[1], node))
    if node.kind == "val":
        items.append((node.start, node.end, node))


def units(tree: Tree, spans: Sequence[Span], granularity: str) -> list[tuple[Node, float]]:
    """(unit node, score) per kept unit, in document order, none inside another."""
    limit = PARAGRAPH_RECORD_CHARS if granularity == "paragraph" else RECORD_CHARS
    best: dict[int, tuple[Node, float]] = {}
    for s in spans:
        k = max(0, bisect.bisect_right(tree.item_starts, s.start) - 1)
        while k < len(tree.items) and tree.items[k][0] < s.end:
            a, b, node = tree.items[k]
            k += 1
            if b <= s.start:
                continue
            unit = _unit(node, limit)
            if unit is not None:
                old = best.get(id(unit))
                best[id(unit)] = (unit, max(s.score, old[1] if old else s.score))
    chosen = sorted(best.values(), key=lambda u: u[0].first)
    out: list[tuple[Node, float]] = []
    for node, score in chosen:  # drop units inside an earlier kept one
        if out and node.end <= out[-1][0].end:
            out[-1] = (out[-1][0], max(out[-1][1], score))
            continue
        out.append((node, score))
    return out


def _unit(node: Node, limit: int) -> Node | None:
    """The record around a hit (an array's element container, small enough), else the member;
    a hit on the key of a container too large to keep whole keeps nothing."""
    n = node
    while n.parent is not None:
        if n.parent.kind == "arr" and n.kind != "val" and n.size() <= limit:
            return n
        n = n.parent
    if node.kind == "val" or node.size() <= limit:
        return node if node.parent is not None else None
    return None


def render(tree: Tree, kept: Sequence[Node]) -> tuple[str, list[Span]]:
    """The pruned document and its spans (kept members, and the keys on their paths)."""
    if not kept:
        return "", []
    text = tree.text
    keep = {id(n) for n in kept}
    partial: set[int] = set()
    for n in kept:
        p = n.parent
        while p is not None and id(p) not in partial:
            partial.add(id(p))
            p = p.parent
    spans: list[Span] = []

    def out(n: Node) -> str:
        if id(n) in keep:
            spans.append(Span(n.first, n.end, text[n.first : n.end], 0.0))
            return text[n.start : n.end]
        if n.key:
            spans.append(Span(n.key[0], n.key[1], text[n.key[0] : n.key[1]], 0.0))
        inner = []
        for c in n.children:
            if id(c) in keep or id(c) in partial:
                body = out(c)
                inner.append(f"{text[c.key[0] : c.key[1]]}: {body}" if c.key else body)
        return (
            ("{" if n.kind == "obj" else "[") + ", ".join(inner) + ("}" if n.kind == "obj" else "]")
        )

    compressed = out(tree.root)
    return compressed, spans


def decode(
    tree: Tree,
    spans: Sequence[Span],
    granularity: str,
    *,
    budget_tokens: int | None = None,
    count_tokens: Callable[[str], int] | None = None,
) -> tuple[str, list[Span]]:
    """Critic spans -> (pruned JSON text, its spans scored by their units), within the budget:
    units greedily by score at the cost of their text and new keys, then the weakest dropped
    until the rendered document fits."""
    found = units(tree, spans, granularity)
    if budget_tokens is not None:
        assert count_tokens is not None, "a budget needs count_tokens"
        found = _greedy(tree, found, budget_tokens, count_tokens)
    while True:
        compressed, out = render(tree, [n for n, _ in found])
        if budget_tokens is None or not found or count_tokens(compressed) <= budget_tokens:
            break
        weakest = min(range(len(found)), key=lambda k: (found[k][1], -found[k][0].first))
        found = found[:weakest] + found[weakest + 1 :]
    return compressed, _scored(out, found)


def _greedy(tree, found, budget_tokens, count_tokens):
    text = tree.text
    ranked = sorted(range(len(found)), key=lambda k: (-found[k][1], found[k][0].first))
    have: set[int] = set()
    kept, used = [], 2  # the root's brackets
    for k in ranked:
        node = found[k][0]
        cost = count_tokens(text[node.first : node.end]) + 1
        path = []
        p = node.parent
        while p is not None and id(p) not in have:
            path.append(p)
            cost += 2 + (count_tokens(text[p.key[0] : p.key[1]]) if p.key else 0)
            p = p.parent
        if used + cost <= budget_tokens:
            kept.append(k)
            have.update(id(p) for p in path)
            used += cost
    return [found[k] for k in sorted(kept)]


def _scored(spans: list[Span], found) -> list[Span]:
    """Spans in document order, each scored as its unit (a path key: the next unit's)."""
    firsts = [n.first for n, _ in found]
    out = []
    for s in sorted(spans, key=lambda s: s.start):
        k = min(bisect.bisect_left(firsts, s.start), len(found) - 1)
        out.append(Span(s.start, s.end, s.text, found[k][1]))
    return out
