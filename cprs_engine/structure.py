"""Structure-keeping decoding for every document type but prose (cprs_engine/doctypes.py), at
sentence and paragraph granularity; keyword granularity and prose decode as they always did.

    critic spans -> units of the type, each with the context lines that make it readable
                 -> budget (a context line costs tokens like any other)
                 -> merge -> join, with an elision marker between non-adjacent spans

| type     | unit (sentence / paragraph)                  | context added to every unit            |
| -------- | -------------------------------------------- | -------------------------------------- |
| code     | whole statements with their indentation      | enclosing openers (def/class/if/for,   |
|          | (a multi-line call or signature is one) /    | whole multi-line signatures, the `if`  |
|          | the blank-line block                         | of an `else`); a decorator's target    |
| markdown | sentences, but table rows and fenced lines   | the heading path; a table row's header |
|          | whole / paragraphs                           | and separator rows                     |
| log      | whole lines / blank-line blocks              | a continuation line's entry line       |
| json     | jsonprune.py when the text parsed; else whole lines (JSON lines, truncated JSON) |
|          |                                              |                                        |

Spans stay exact substrings of the input, in order, non-overlapping; only the joined text
carries the separators and markers (`separator`). The budget is exact in its unit: units are
chosen greedily by score at their cost with the context they add, and the joined text, markers
included, is counted at the end; the weakest unit goes until it fits.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cprs_engine import doctypes
from cprs_engine.codeindex import CodeIndex
from cprs_engine.mdindex import MarkdownIndex
from cprs_engine.result import Span
from cprs_engine.windows import paragraph_ends

AUTO, NONE, MARKER, ELISIONS = doctypes.AUTO, doctypes.NONE, doctypes.MARKER, doctypes.ELISIONS
# The elision a type gets under `auto`. Prose keeps today's joins exactly (outputs and the
# backends' prompt caches do not move); code and logs read as contiguous without a marker.
DEFAULT_ELISION = {
    doctypes.PROSE: NONE,
    doctypes.MARKDOWN: NONE,
    doctypes.CODE: MARKER,
    doctypes.LOG: MARKER,
    doctypes.JSON: NONE,
}
CODE_MARKER = "..."  # a line of its own, indented like the code around it: valid Python
TEXT_MARKER = "…"  # a line of its own between prose or markdown spans
# Context costs tokens; these bound it (benchmarks/structure_bench.py measured the trade-off):
MAX_STATEMENT_LINES = 6  # a longer statement keeps only its kept lines and its first line
TAIL_LINES = True  # a partly kept statement also keeps its last line (`)`, a closing quote)
MAX_HEADER_LINES = 12  # a longer signature keeps its first and last lines (name, return type)
MAX_UNIT_CHARS = {"sentence": 2_000, "paragraph": 12_000}
MAX_ENTRY_LINES = 50  # how far back a log continuation line looks for its entry
_ENTRY = doctypes.ENTRY  # a log line that starts an entry: a timestamp or a level


@dataclass(frozen=True)
class Unit:
    """A kept piece [start, end) with the char ranges it needs to be read (`context`)."""

    start: int
    end: int
    score: float
    context: tuple[tuple[int, int], ...] = ()

    def ranges(self) -> list[tuple[int, int]]:
        return [(self.start, self.end), *self.context]


def resolve_elision(elision: str | None, doc_type: str, granularity: str) -> bool:
    """Whether joins carry a marker: `auto` (or None) is the type's default; keyword
    granularity never does (its keywords are one per line, not a text)."""
    if elision not in (None, *ELISIONS):
        raise ValueError(f"elision must be one of {', '.join(ELISIONS)}, got {elision!r}")
    if granularity == "keyword":
        return False
    return DEFAULT_ELISION[doc_type] == MARKER if elision in (None, AUTO) else elision == MARKER


def separator(text: str, prev: Span, nxt: Span, granularity: str, doc_type: str, mark: bool) -> str:
    """What goes between two kept spans in the compressed text."""
    lines = doc_type in (doctypes.CODE, doctypes.LOG, doctypes.JSON)
    base = "\n" if lines or granularity != "paragraph" else "\n\n"
    if not mark:
        return base
    if doc_type == doctypes.CODE:
        return "\n" + marker_indent(text, prev, nxt) + CODE_MARKER + "\n"
    if lines:
        return "\n" + CODE_MARKER + "\n"
    return base + TEXT_MARKER + base


def marker_indent(text: str, prev: Span, nxt: Span) -> str:
    """The indentation of a code marker: the next line's when it goes deeper; inside the block
    the previous line opens; else the previous line's (so `else:` still follows its `if`)."""
    last = _last_line(text, prev)
    nl = text.find("\n", nxt.start, nxt.end)
    first = text[nxt.start : nl if nl >= 0 else nxt.end]
    p_ws = last[: len(last) - len(last.lstrip())]
    n_ws = first[: len(first) - len(first.lstrip())]
    if len(n_ws) > len(p_ws):
        return n_ws
    if _opens(last):
        return p_ws + ("\t" if p_ws.startswith("\t") else "    ")
    return p_ws


def join(spans: Sequence[Span], text: str, granularity: str, doc_type: str, mark: bool) -> str:
    if not spans:
        return ""
    out = [spans[0].text]
    for prev, nxt in zip(spans, spans[1:], strict=False):
        out.append(separator(text, prev, nxt, granularity, doc_type, mark))
        out.append(nxt.text)
    last = spans[-1]
    if mark and doc_type == doctypes.CODE and _opens(_last_line(text, last)):
        out.append("\n" + marker_indent(text, last, last) + CODE_MARKER)  # its body was cut
    return "".join(out)


def _last_line(text: str, span: Span) -> str:
    i = text.rfind("\n", span.start, span.end)
    return text[(i + 1 if i >= 0 else span.start) : span.end]


def _opens(line: str) -> bool:
    return re.sub(r"#.*$", "", line).rstrip().endswith((":", "{"))


def units(
    spans: Sequence[Span],
    text: str,
    doc_type: str,
    granularity: str,
    context: bool = True,
    code_index: CodeIndex | None = None,
) -> list[Unit]:
    """The type's units around the critic's spans, each with its context (see the table).
    Without `context`: whole lines (or blank-line blocks), nothing around them. Code uses
    `code_index` when given (an index of `text`), else builds one."""
    if not context:
        return line_units(spans, text, granularity, entries=False)
    if doc_type == doctypes.CODE:
        return code_units(spans, code_index or CodeIndex(text), granularity)
    if doc_type == doctypes.MARKDOWN:
        return markdown_units(spans, text, granularity)
    return line_units(spans, text, granularity, entries=doc_type == doctypes.LOG)


def code_units(spans: Sequence[Span], ix: CodeIndex, granularity: str) -> list[Unit]:
    """Whole statements (or blank-line blocks) from line starts, with their openers."""
    text = ix.text
    blocks = paragraph_ends(text) if granularity == "paragraph" else None
    found: list[tuple[int, int, float]] = []  # (first line, last line, score)
    for s in spans:
        lo, hi = ix.line_of(s.start), ix.line_of(max(s.end - 1, s.start))
        if blocks is not None:
            k = bisect.bisect_right(blocks, s.start)
            a = blocks[k - 1] if k else 0
            b = blocks[k] if k < len(blocks) else len(text)
            if b - a <= MAX_UNIT_CHARS["paragraph"]:
                lo, hi = min(lo, ix.line_of(a)), max(hi, ix.line_of(max(b - 1, a)))
                found.append((lo, hi, s.score))
                continue
        h0, t0 = ix.statement(lo)
        h1, t1 = ix.statement(hi)
        whole = (
            ix.nested(lo)
            and ix.nested(hi)
            and t1 - h0 < MAX_STATEMENT_LINES
            and ix.ends[t1] - ix.starts[h0] <= MAX_UNIT_CHARS["sentence"]
        )
        found.append((h0, t1, s.score) if whole else (lo, hi, s.score))
    out = []
    for lo, hi, score in _coalesce_lines(found):
        lines = _nonblank(ix, lo, hi)
        if not lines:
            continue
        lo, hi = lines[0], lines[-1]
        ctx: set[tuple[int, int]] = set()
        for i in {ix.head[j] for j in lines if ix.nested(j)}:
            if i < lo:  # a long statement's first line, for a kept line inside it
                ctx.add(_line_range(ix, i, i))
            if ix.tail[i] > hi and TAIL_LINES:  # and its last line: the brackets close
                ctx.add(_line_range(ix, ix.tail[i], ix.tail[i]))
            for h in ix.enclosing(i):
                ctx.update(_header_ranges(ix, h))
            target = ix.decorated(i)
            if target > hi:
                ctx.update(_header_ranges(ix, target))
        start, end = ix.starts[lo], ix.ends[hi]
        inside = {r for r in ctx if r[0] >= start and r[1] <= end}
        out.append(Unit(start, _rstrip(text, start, end), score, tuple(sorted(ctx - inside))))
    return out


def _coalesce_lines(found: list[tuple[int, int, float]]) -> list[tuple[int, int, float]]:
    merged: list[list] = []
    for lo, hi, sc in sorted(found):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
            merged[-1][2] = max(merged[-1][2], sc)
        else:
            merged.append([lo, hi, sc])
    return [(a, b, c) for a, b, c in merged]


def _nonblank(ix: CodeIndex, lo: int, hi: int) -> list[int]:
    return [i for i in range(lo, hi + 1) if not ix.blank(i)]


def _line_range(ix: CodeIndex, lo: int, hi: int) -> tuple[int, int]:
    return ix.starts[lo], _rstrip(ix.text, ix.starts[lo], ix.ends[hi])


def _header_ranges(ix: CodeIndex, h: int) -> list[tuple[int, int]]:
    """An opener's whole statement (a multi-line signature), or, longer than MAX_HEADER_LINES,
    its first and last lines (`def f(` ... `) -> T:`): the name and the return type."""
    t = ix.tail[h]
    if t - h < MAX_HEADER_LINES:
        return [_line_range(ix, h, t)]
    return [_line_range(ix, h, h), _line_range(ix, t, t)]


def _rstrip(text: str, a: int, b: int) -> int:
    while b > a and text[b - 1].isspace():
        b -= 1
    return b


def line_units(spans: Sequence[Span], text: str, granularity: str, *, entries: bool) -> list[Unit]:
    """Whole lines (or blank-line blocks), leading whitespace kept. `entries` (logs): an
    indented line (a stack trace's) brings the nearest unindented line before it and the
    entry line (timestamp or level) it belongs to, at most MAX_ENTRY_LINES back."""
    starts = [0] + [m.end() for m in re.finditer("\n", text)]
    blocks = paragraph_ends(text) if granularity == "paragraph" else None
    found = []
    for s in spans:
        lo = bisect.bisect_right(starts, s.start) - 1
        hi = bisect.bisect_right(starts, max(s.end - 1, s.start)) - 1
        if blocks is not None:
            k = bisect.bisect_right(blocks, s.start)
            a = blocks[k - 1] if k else 0
            b = blocks[k] if k < len(blocks) else len(text)
            if b - a <= MAX_UNIT_CHARS["paragraph"]:
                lo = min(lo, bisect.bisect_right(starts, a) - 1)
                hi = max(hi, bisect.bisect_right(starts, max(b - 1, a)) - 1)
        found.append((lo, hi, s.score))
    out = []
    for lo, hi, score in _coalesce_lines(found):
        a = starts[lo]
        b = _rstrip(text, a, starts[hi + 1] if hi + 1 < len(starts) else len(text))
        while a < b and text[a] in "\r\n":
            a += 1
        if a >= b:
            continue
        ctx: list[tuple[int, int]] = []
        if entries and text[a] in " \t":  # a continuation: its unindented and stamped lines
            j, floor, want_flat = lo - 1, max(-1, lo - MAX_ENTRY_LINES), True
            while j > floor:
                line = text[starts[j] : starts[j + 1]]
                if line.strip() and (want_flat and line[0] not in " \t" or _ENTRY.match(line)):
                    ctx.append((starts[j], _rstrip(text, starts[j], starts[j + 1])))
                    want_flat = False
                    if _ENTRY.match(line):
                        break
                j -= 1
        out.append(Unit(a, b, score, tuple(sorted(ctx))))
    return out


def markdown_units(spans: Sequence[Span], text: str, granularity: str) -> list[Unit]:
    """Sentences (table rows and fenced lines whole) or paragraphs, with heading paths and
    table headers."""
    from cprs_engine.decoding import expand

    md = MarkdownIndex(text)
    bounds = md.bounds() if granularity == "sentence" else None
    out = []
    for s in expand(spans, text, granularity, bounds=bounds):
        ctx: set[tuple[int, int]] = set()
        for i in range(md.line_of(s.start), md.line_of(max(s.end - 1, s.start)) + 1):
            ctx.update(md.context(i))
        inside = {r for r in ctx if r[0] >= s.start and r[1] <= s.end}
        out.append(Unit(s.start, s.end, s.score, tuple(sorted(ctx - inside))))
    return out


def budget_units(
    chosen: list[Unit], budget_tokens: int, count_tokens: Callable[[str], int], text: str,
    marker_cost: int,
) -> list[Unit]:  # fmt: skip
    """Greedy by score (ties: earlier first): a unit costs its own tokens, the tokens of the
    context ranges no chosen unit has brought yet (each with a newline), and one marker.
    Result in document order."""
    line_cost = max(count_tokens("a\nb") - count_tokens("a b"), 0)
    ranked = sorted(range(len(chosen)), key=lambda k: (-chosen[k].score, chosen[k].start))
    have: set[tuple[int, int]] = set()
    kept, used = [], 0
    for k in ranked:
        new = [r for r in chosen[k].ranges() if r not in have]
        cost = sum(count_tokens(text[a:b]) + line_cost for a, b in new) + marker_cost
        if used + cost <= budget_tokens:
            kept.append(k)
            have.update(new)
            used += cost
    return [chosen[k] for k in sorted(kept)]


def to_spans(chosen: Sequence[Unit], text: str) -> list[Span]:
    """Every range of the chosen units, merged where they overlap, touch or are separated by
    whitespace only; a context range scores as the best unit that needs it."""
    from cprs_engine.decoding import merge

    parts = [Span(a, b, text[a:b], u.score) for u in chosen for a, b in u.ranges() if b > a]
    return merge(sorted(parts, key=lambda s: (s.start, s.end)), text, score="max")


def decode(
    spans: Sequence[Span],
    text: str,
    doc_type: str,
    granularity: str,
    *,
    budget_tokens: int | None = None,
    count_tokens: Callable[[str], int] | None = None,
    mark: bool = False,
    context: bool = True,
    code_index: CodeIndex | None = None,
) -> tuple[str, list[Span]]:
    """Critic spans -> (compressed text, kept spans) for a structured type (see the table);
    `context=False`: whole lines alone (a standalone prompt's extracts); `code_index`: an
    index of `text` already built (`units`)."""
    from cprs_engine import jsonprune
    from cprs_engine.decoding import _truncate

    if doc_type == doctypes.JSON and (tree := jsonprune.parse(text)) is not None:
        return jsonprune.decode(
            tree, spans, granularity, budget_tokens=budget_tokens, count_tokens=count_tokens
        )
    found = units(spans, text, doc_type, granularity, context, code_index)
    if budget_tokens is not None:
        assert count_tokens is not None, "a budget needs count_tokens"
        marker = CODE_MARKER if doc_type in (doctypes.CODE, doctypes.LOG) else TEXT_MARKER
        cost = count_tokens(marker) if mark else 0
        kept = budget_units(found, budget_tokens, count_tokens, text, cost)
        if not kept and found:  # nothing fits with its context: the best unit's prefix alone
            best = min(found, key=lambda u: (-u.score, u.start))
            cut = _truncate(Span(best.start, best.end, text[best.start : best.end], best.score),
                            budget_tokens, count_tokens)  # fmt: skip
            return (cut[0].text if cut else ""), cut
        found = kept
    out = to_spans(found, text)
    compressed = join(out, text, granularity, doc_type, mark)
    while budget_tokens is not None and found and count_tokens(compressed) > budget_tokens:
        weakest = min(range(len(found)), key=lambda k: (found[k].score, -found[k].start))
        found = found[:weakest] + found[weakest + 1 :]
        out = to_spans(found, text)
        compressed = join(out, text, granularity, doc_type, mark)
    return compressed, out
