"""Structure-keeping decoding (structure.py, codeindex.py, jsonprune.py): every kept unit comes
with what makes it readable, spans stay exact substrings, the budget holds, prose is untouched."""

import ast
import json
import random
import re

import pytest

from benchmarks.structure_bench import python_files
from cprs_engine import decoding, structure
from cprs_engine.codeindex import CodeIndex
from cprs_engine.decoding import B, I, O, check_spans
from cprs_engine.result import Span


def words(s: str) -> int:
    return len(s.split())


def span_of(text: str, needle: str, score: float = 0.5) -> Span:
    a = text.index(needle)
    return Span(a, a + len(needle), needle, score)


def enclosing_headers(tree: ast.AST, line: int) -> list[tuple[int, int]]:
    """The oracle, from Python's own parser: (first, last) header lines of every def/class
    around `line`, and the opener line of every if/for/while/with whose body holds it."""
    out = []
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(body, list) or not body or not isinstance(node, ast.stmt):
            continue
        if not (body[0].lineno <= line <= (node.end_lineno or 0)) or node.lineno == line:
            continue
        if line > max(getattr(s, "end_lineno", 0) or 0 for s in body):
            continue  # in an else/except/finally branch: not this body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            last = max(
                [node.lineno] + [getattr(a, "end_lineno", 0) or 0 for a in ast.walk(node.args)]
            )
            if node.returns is not None:
                last = max(last, node.returns.end_lineno or 0)
            out.append((node.lineno, min(last, body[0].lineno - 1)))
        elif isinstance(node, ast.ClassDef | ast.If | ast.For | ast.While | ast.With):
            out.append((node.lineno, node.lineno))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_code_keeps_indentation_and_every_enclosing_signature(seed):
    """Random kept lines of real Python files: each comes back whole, indentation and all, and
    every def/class signature and block opener around it (by `ast`) is in the output too (a
    signature longer than MAX_HEADER_LINES: its first line)."""
    rng = random.Random(seed)
    checked = 0
    for path, text, tree in python_files(8, seed, min_chars=2_000, max_chars=80_000):
        lines = text.split("\n")
        candidates = [
            k
            for k, ln in enumerate(lines, 1)
            if ln.strip() and not ln.lstrip().startswith(("#", '"', "'", "@"))
        ]
        kept = sorted(rng.sample(candidates, min(6, len(candidates))))
        spans = []
        for k in kept:
            a = sum(len(x) + 1 for x in lines[: k - 1])
            s = a + len(lines[k - 1]) - len(lines[k - 1].lstrip())
            spans.append(
                Span(
                    s, a + len(lines[k - 1].rstrip()), text[s : a + len(lines[k - 1].rstrip())], 0.5
                )
            )
        out, got = structure.decode(spans, text, "code", "sentence", mark=True)
        check_spans(got, text)
        out_lines = set(out.split("\n"))
        for k in kept:
            assert lines[k - 1].rstrip() in out_lines, f"{path}:{k} not kept whole"
            for first, last in enclosing_headers(tree, k):
                whole = last - first + 2 <= structure.MAX_HEADER_LINES  # with its `):` line
                for h in range(first, last + 1) if whole else [first]:
                    if lines[h - 1].strip() and not lines[h - 1].lstrip().startswith("#"):
                        assert lines[h - 1].rstrip() in out_lines, (
                            f"{path}:{k}: enclosing line {h} {lines[h - 1]!r} missing"
                        )
            checked += 1
    assert checked >= 30


SIG = """class Client:
    def send(
        self,
        request,
        follow_redirects=False,
    ):
        if follow_redirects:
            for hop in range(10):
                response = self._hop(request)
        else:
            response = self._once(request)
        return response

    @property
    def limit(self):
        return 20
"""


def test_a_multi_line_signature_is_kept_whole_and_else_brings_its_if():
    out, _ = structure.decode(
        [span_of(SIG, "response = self._once(request)")], SIG, "code", "sentence"
    )
    assert out.split("\n") == [
        "class Client:",
        "    def send(",
        "        self,",
        "        request,",
        "        follow_redirects=False,",
        "    ):",
        "        if follow_redirects:",
        "        else:",
        "            response = self._once(request)",
    ]


def test_a_kept_argument_brings_its_whole_call_and_a_decorator_its_def():
    src = "def f():\n    x = call(\n        a,\n        b=2,\n    )\n    return x\n"
    out, _ = structure.decode([span_of(src, "b=2")], src, "code", "sentence")
    assert out == "def f():\n    x = call(\n        a,\n        b=2,\n    )"
    out, _ = structure.decode([span_of(SIG, "@property")], SIG, "code", "sentence")
    assert "    @property\n    def limit(self):" in out and out.startswith("class Client:")


def test_code_markers_sit_between_non_adjacent_lines_at_a_sensible_indent():
    spans = [span_of(SIG, "response = self._hop(request)"), span_of(SIG, "return response")]
    marked, got = structure.decode(spans, SIG, "code", "sentence", mark=True)
    plain, got2 = structure.decode(spans, SIG, "code", "sentence", mark=False)
    assert got == got2, "markers change the joined text only, never the spans"
    assert "..." not in plain
    # the marker stands where lines went, at the depth of the line before it
    assert "self._hop(request)\n" + " " * 16 + "...\n        return response" in marked
    ast.parse(marked)
    # an else-branch alone: its `if` is kept, and its body is a marker, so the excerpt parses
    spans = [span_of(SIG, "response = self._once(request)")]
    marked, _ = structure.decode(spans, SIG, "code", "sentence", mark=True)
    plain, _ = structure.decode(spans, SIG, "code", "sentence", mark=False)
    assert "if follow_redirects:\n" + " " * 12 + "...\n        else:" in marked
    ast.parse(marked)
    with pytest.raises(SyntaxError):
        ast.parse(plain)  # without it the `if` has no body


@pytest.mark.parametrize("budget", [5, 12, 20, 35, 60])
def test_the_budget_holds_with_context_lines_and_markers(budget):
    spans = [
        span_of(SIG, "response = self._hop(request)", 0.9),
        span_of(SIG, "response = self._once(request)", 0.6),
        span_of(SIG, "return 20", 0.3),
    ]
    for mark in (False, True):
        out, got = structure.decode(
            spans, SIG, "code", "sentence", budget_tokens=budget, count_tokens=words, mark=mark
        )
        assert words(out) <= budget
        check_spans(got, SIG)


def test_more_budget_never_keeps_less_and_no_budget_keeps_all():
    spans = [span_of(SIG, "response = self._hop(request)", 0.9), span_of(SIG, "return 20", 0.3)]
    full, _ = structure.decode(spans, SIG, "code", "sentence", mark=True)
    best, _ = structure.decode(spans[:1], SIG, "code", "sentence", mark=True)
    for extra in (0, 3):
        out, _ = structure.decode(
            spans, SIG, "code", "sentence", budget_tokens=words(best) + 1 + extra,
            count_tokens=words, mark=True,
        )  # fmt: skip
        assert out == best  # room for the best unit with its context, not for both
    assert "self._hop" in full and "return 20" in full


MD = """# Guide

Intro text. More intro.

## Install

Use pip. It works.

### Options

| option | default |
| --- | --- |
| port | 8080 |
| host | 127.0.0.1 |

## Usage

Call run() to start.
"""


def test_markdown_keeps_the_heading_path_and_the_table_header():
    out, got = structure.decode([span_of(MD, "127.0.0.1")], MD, "markdown", "sentence")
    check_spans(got, MD)
    assert out.split("\n") == [
        "# Guide",
        "## Install",
        "### Options",
        "",  # the input's own blank line: the heading and the table's header are one span
        "| option | default |",
        "| --- | --- |",
        "| host | 127.0.0.1 |",
    ]
    out, _ = structure.decode([span_of(MD, "Call run()")], MD, "markdown", "sentence")
    assert out.split("\n") == ["# Guide", "## Usage", "", "Call run() to start."]
    out, _ = structure.decode([span_of(MD, "It works")], MD, "markdown", "sentence")
    assert out.split("\n") == ["# Guide", "## Install", "It works."]  # a sentence, not the line


def test_fenced_lines_are_not_headings_and_stay_whole():
    md = "# Top\n\n```python\n# not a heading\nx = 1. + 2\n```\n\nText.\n"
    out, _ = structure.decode([span_of(md, "x = 1")], md, "markdown", "sentence")
    assert out.split("\n") == ["# Top", "x = 1. + 2"]


def test_log_lines_come_whole_with_their_entry_and_markers():
    log = (
        "2024-05-01 12:00:00 INFO start\n"
        "2024-05-01 12:00:01 ERROR boom\n"
        "Traceback (most recent call last):\n"
        '  File "a.py", line 3, in f\n'
        "    raise ValueError\n"
        "2024-05-01 12:00:02 INFO retry\n"
        "2024-05-01 12:00:03 INFO done\n"
    )
    out, got = structure.decode(
        [span_of(log, "raise ValueError"), span_of(log, "done")], log, "log", "sentence", mark=True
    )
    check_spans(got, log)
    assert out.split("\n") == [
        "2024-05-01 12:00:01 ERROR boom",
        "Traceback (most recent call last):",
        "...",
        "    raise ValueError",
        "...",
        "2024-05-01 12:00:03 INFO done",
    ]


API = {
    "meta": {"page": 1, "total": 3},
    "data": [
        {"id": 1, "name": "alpha", "tags": ["x"], "owner": {"email": "a@example.com"}},
        {"id": 2, "name": "beta", "tags": [], "owner": {"email": "b@example.com"}},
        {"id": 3, "name": "gamma", "tags": ["y", "z"], "owner": {"email": "c@example.com"}},
    ],
}


@pytest.mark.parametrize("indent", [None, 2])
def test_json_keeps_records_with_their_key_path_and_parses(indent):
    text = json.dumps(API, indent=indent)
    out, got = structure.decode([span_of(text, "b@example.com")], text, "json", "sentence")
    check_spans(got, text)
    assert json.loads(out) == {"data": [API["data"][1]]}  # the whole record, under its key
    out, _ = structure.decode([span_of(text, '"total"')], text, "json", "sentence")
    assert json.loads(out) == {"meta": {"total": 3}}  # a key hit keeps its value


def test_json_output_parses_on_random_spans_and_budgets():
    rng = random.Random(3)
    doc = {
        "results": [
            {"id": i, "name": f"item-{i}", "price": i * 1.5, "attrs": {"color": rng.choice("rgb")}}
            for i in range(60)
        ],
        "next": "https://api.example.com/p/2",
    }
    for indent in (None, 1):
        text = json.dumps(doc, indent=indent)
        for _ in range(20):
            spans = []
            for a in sorted(rng.sample(range(len(text) - 8), 4)):
                spans.append(Span(a, a + 6, text[a : a + 6], rng.random()))
            spans = decoding.merge(spans, text, max_gap_chars=-1)
            budget = rng.choice([None, 15, 40, 200])
            out, got = structure.decode(
                spans, text, "json", "sentence", budget_tokens=budget, count_tokens=words
            )
            check_spans(got, text)
            if budget is not None:
                assert words(out) <= budget
            if out:  # a budget too small for any record keeps nothing, never a cut record
                json.loads(out)
            else:
                assert not got


def test_json_lines_decode_as_whole_lines():
    text = "\n".join(json.dumps({"id": i, "msg": f"event {i}"}) for i in range(10))
    out, _ = structure.decode([span_of(text, "event 4")], text, "json", "sentence")
    assert json.loads(out) == {"id": 4, "msg": "event 4"}


PROSE = (
    "Paris is the capital of France. The Eiffel Tower was finished in 1889! "
    "Mount Fuji is in Japan? It is tall.\n\nOne of the special magic numbers is: 4821937. "
) * 6


def word_offsets(text):
    return [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]


@pytest.mark.parametrize("granularity", ["sentence", "paragraph", "keyword"])
def test_prose_default_is_unchanged_and_markers_only_on_request(granularity):
    offsets = word_offsets(PROSE)
    rng = random.Random(5)
    tags = [B if rng.random() < 0.03 else O for _ in offsets]
    scores = [rng.random() for _ in offsets]
    base = decoding.decode(tags, offsets, PROSE, scores, granularity=granularity)
    for elision in (None, "auto", "none"):
        assert (
            decoding.decode(tags, offsets, PROSE, scores, granularity=granularity, elision=elision)
            == base
        )
    text, spans = decoding.decode(
        tags, offsets, PROSE, scores, granularity=granularity, elision="marker"
    )
    assert spans == base[1], "a marker never changes the spans"
    sep = {"sentence": "\n…\n", "paragraph": "\n\n…\n\n", "keyword": "\n"}[granularity]
    assert len(spans) >= 2 and text == sep.join(s.text for s in spans)  # keywords: never


def test_a_marker_counts_inside_the_budget():
    offsets = word_offsets(PROSE)
    tags = [I] * len(offsets)
    scores = [0.5] * len(offsets)
    for budget in (7, 20, 50):
        text, _ = decoding.decode(
            tags, offsets, PROSE, scores, budget_tokens=budget, count_tokens=words, elision="marker"
        )
        assert words(text) <= budget


def test_decode_routes_non_prose_types_through_their_units():
    offsets = [(m.start(), m.end()) for m in re.finditer(r"\S+", SIG)]
    k = next(i for i, (a, _) in enumerate(offsets) if SIG[a:].startswith("self._once"))
    tags = [O] * len(offsets)
    tags[k] = B
    scores = [0.5] * len(offsets)
    prose, _ = decoding.decode(tags, offsets, SIG, scores)
    code, _ = decoding.decode(tags, offsets, SIG, scores, doc_type="code")
    assert prose == "response = self._once(request)"
    assert code.startswith("class Client:\n    def send(") and code.endswith(
        "        else:\n            response = self._once(request)"
    )


def test_code_index_survives_unbalanced_brackets():
    src = "x = (\n" + "y = 1\n" * 300 + "def f():\n    return 2\n"
    ix = CodeIndex(src)
    last = len(ix.starts) - 1
    assert ix.statement(last)[0] > 250, "a stray bracket closes after MAX_OPEN_LINES lines"


def test_a_marker_after_a_one_line_span_takes_that_lines_indent():
    src = (
        "class A:\n    def f(self):\n        a = 1\n        b = 2\n        c = 3\n"
        "        d = 4\n        return a\n"
    )
    spans = [span_of(src, "b = 2"), span_of(src, "d = 4")]
    out, got = structure.decode(spans, src, "code", "sentence", mark=True)
    assert out == (
        "class A:\n    def f(self):\n        ...\n        b = 2\n        ...\n        d = 4"
    )
    ast.parse(out)


@pytest.mark.parametrize("doc_type", ["code", "markdown"])
def test_without_context_a_kept_line_comes_alone(doc_type):
    """A standalone prompt's extract (a needle in code or markdown): the line, no signatures,
    no heading path, no statement around it; with context the structure comes back."""
    needle = "One of the special magic numbers for x is: 42."
    if doc_type == "code":
        text = f"class A:\n    def f(self):\n        x = 1\n        {needle}\n        return 1\n"
    else:
        text = f"# Title\n\n## Part\n\nSome text here.\n{needle}\nMore text.\n"
    spans = [span_of(text, needle)]
    alone, kept = structure.decode(spans, text, doc_type, "sentence", context=False)
    assert alone.strip() == needle and [s.text.strip() for s in kept] == [needle]
    full, _ = structure.decode(spans, text, doc_type, "sentence")
    assert needle in full and len(full) > len(alone)
    assert ("def f" in full) if doc_type == "code" else ("## Part" in full)


@pytest.mark.parametrize("opener", ['"""Doc.', "call("])
def test_a_line_dedented_past_its_statement_reads_alone(opener):
    """A line inside a docstring or a call but indented less than the statement's first line
    (text at column 0 that does not belong to the code around it) takes none of its
    statement's context; the same line indented inside it takes all of it."""
    closer = '"""' if opener.startswith('"""') else ")"
    for indent, nested in (("", False), ("            ", True)):
        line = f"{indent}VAR X = 12."
        text = (
            f"class A:\n    def f(self):\n        {opener}\n            a,\n{line}\n"
            f"            b,\n        {closer}\n        return 1\n"
        )
        out, _ = structure.decode([span_of(text, "VAR X = 12.")], text, "code", "sentence")
        assert ("def f(self):" in out) is nested and ("class A:" in out) is nested
        assert line in out
