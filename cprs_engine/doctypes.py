"""Document types: a cheap, deterministic guess of what a document is, so that decoding keeps
its structure (cprs_engine/structure.py).

    prose      essays, articles, encyclopedic paragraphs, chat transcripts (the default)
    markdown   headings, tables, fenced code: READMEs and docs
    code       source files of any brace or indentation language
    json       a JSON document, or JSON lines (one record a line)
    log        lines that mostly start with a timestamp or a level

Why sample-based: the detector runs on every request, and a document may hold 1M tokens.
It reads at most `SAMPLE_LINES` lines from the start and as many from the middle (`_sample`),
never the whole text, except for JSON, where `json.loads` (C speed, about 0.1 s for 16 MB)
decides whether the structural JSON path can promise output that parses.

The order of the checks is the order of their certainty: JSON (it parses) -> log (timestamps
on most lines) -> code vs markdown (line shapes) -> prose. A mixed document takes the type of
its majority of lines; anything uncertain is prose, whose decoding is today's, unchanged.
"""

from __future__ import annotations

import json
import re

PROSE, MARKDOWN, CODE, JSON, LOG = "prose", "markdown", "code", "json", "log"
DOC_TYPES = (PROSE, MARKDOWN, CODE, JSON, LOG)
# Elision markers between non-adjacent kept spans (structure.py): `auto` is the type's default
# (a marker for code and logs, none for prose, markdown and JSON), `none` never, `marker` always.
AUTO, NONE, MARKER = "auto", "none", "marker"
ELISIONS = (AUTO, NONE, MARKER)
SAMPLE_LINES = 400
SAMPLE_CHARS = 60_000  # per sample; a minified one-line document is cut here
MAX_JSON_PARSE_CHARS = 32_000_000  # above this, a document starting with { or [ is not parsed

_TIMESTAMP = re.compile(
    r"^\s*[\[(]?(?:"
    r"\d{4}[-/]\d{2}[-/]\d{2}[T ]\d{1,2}:\d{2}"  # 2024-05-01 12:00 / 2024-05-01T12:00
    r"|\d{1,2}:\d{2}:\d{2}"  # 12:00:01
    r"|[A-Z][a-z]{2} +\d{1,2} \d{2}:\d{2}:\d{2}"  # syslog: May  1 12:00:01
    r"|\d{1,2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}"  # access log: 01/May/2024:12:00
    r"|\d{10}(?:\.\d+)?\b"  # epoch seconds
    r"|\s*\d+\.\d+\]"  # dmesg: [   12.345678]
    r")"
)
_LEVEL = re.compile(r"^\s*\[?(?:TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|ERR|FATAL|CRITICAL)\b")
ENTRY = re.compile(f"(?:{_TIMESTAMP.pattern})|(?:{_LEVEL.pattern})")  # a log entry's first line
_HEADING = re.compile(r"^ {0,3}#{1,6}(?:[ \t]+\S|$)")
_TABLE_SEP = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)+\|?\s*$")
_FENCE = re.compile(r"^ {0,3}(?:```|~~~)")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+\S")
_MD_LINK = re.compile(r"\[[^\]\n]+\]\([^)\s]+\)|`[^`\n]+`|\*\*[^*\n]+\*\*")
_CODE_START = re.compile(
    r"^\s*(?:def|class|import|from\s+[\w.]+\s+import|return|elif|else|try|except|finally|with|"
    r"raise|yield|async|await|function|const|let|var|public|private|protected|static|package|"
    r"func|fn|struct|impl|use|namespace|template|typedef|#include|#define|#ifn?def|#endif|"
    r"switch|case|break|continue|pass|lambda|del|assert|global|nonlocal)\b"
    r"|^\s*(?:if|for|while)\b.*[:{)]\s*$"
    r"|^\s*[@}\])]"
)
_CODE_END = re.compile(r"(?:[;{}:(\[,]|\)|=>|->)\s*$")
_CODE_INNER = re.compile(r"\w\(|\)\s*[:{;]|==|!=|\+=|-=|::|->|=>|&&|\|\||\w+\s*=\s*\S|\w\.\w+\(")
# `name: Type`, `x: int | None = 0`: a lower-case name and a type without spaces but `|`
# (so "User: Sure, here it is." in a chat transcript is not one)
_ANNOTATION = re.compile(
    r"^\s*[a-z_]\w*\s*:\s*[\w.\[\]\"',]+(?:\s*\|\s*[\w.\[\]\"',]+)*(?:\s*=.*)?$"
)
_TRIPLE = re.compile(r'"""|\'\'\'')


def detect(text: str) -> str:
    """The document's type, one of DOC_TYPES. Deterministic; reads bounded samples only."""
    head = text.lstrip()[:1]
    if head in "{[" and head and _is_json(text):
        return JSON
    lines = [ln for ln in _sample(text) if ln.strip()]
    if len(lines) < 3:
        return PROSE
    if _is_json_lines(lines):
        return JSON
    n = len(lines)
    stamped = sum(1 for ln in lines if _TIMESTAMP.match(ln) or _LEVEL.match(ln))
    if stamped >= 0.6 * n:
        return LOG
    fenced, outside = _split_fences(_drop_docstrings(lines))
    md = _markdown_marks(outside)
    counted = _drop_comment_blocks(outside)
    code = sum(1 for ln in counted if _looks_like_code(ln))
    prose_lines = sum(1 for ln in counted if _looks_like_prose(ln))
    if counted and code >= 0.45 * len(counted) and code > 2 * prose_lines and md["tables"] == 0:
        return CODE
    if md["headings"] >= 2 or md["tables"] >= 1 or (md["fences"] >= 1 and md["headings"] >= 1):
        return MARKDOWN
    if md["headings"] + md["fences"] >= 1 and md["inline"] + md["lists"] >= 0.2 * n:
        return MARKDOWN
    return PROSE


def check_options(doc_type: str | None, elision: str | None) -> None:
    """InvalidInput (400, naming the field) for an unknown document type or elision."""
    from cprs_engine.errors import InvalidInput

    if doc_type is not None and doc_type not in DOC_TYPES:
        raise InvalidInput(
            f"unknown doc_type {doc_type!r}; expected one of {', '.join(DOC_TYPES)}",
            param="doc_type",
        )
    if elision is not None and elision not in ELISIONS:
        raise InvalidInput(
            f"unknown elision {elision!r}; expected one of {', '.join(ELISIONS)}", param="elision"
        )


def _is_json(text: str) -> bool:
    """Whether the whole text parses as JSON (bounded size), or, too long or truncated, its
    opening sample reads like JSON: most lines are members or brackets."""
    if len(text) <= MAX_JSON_PARSE_CHARS:
        try:
            json.loads(text)
            return True
        except ValueError:
            pass
    lines = [ln.strip() for ln in text[:SAMPLE_CHARS].splitlines()[:SAMPLE_LINES] if ln.strip()]
    if len(lines) < 5:
        return False
    shaped = sum(
        1 for ln in lines if re.match(r'^(?:"[^"]*"\s*:|[{}\[\],]|"|-?\d|true|false|null)', ln)
    )
    return shaped >= 0.9 * len(lines)


def _is_json_lines(lines: list[str]) -> bool:
    """JSON lines: (nearly) every sampled line is a JSON object or array on its own."""
    shaped = [ln for ln in lines if ln.lstrip()[:1] in "{["]
    if len(shaped) < 0.9 * len(lines):
        return False
    ok = 0
    for ln in shaped[:50]:
        try:
            json.loads(ln)
            ok += 1
        except ValueError:
            pass
    return ok >= 0.9 * min(len(shaped), 50)


def _sample(text: str) -> list[str]:
    """At most SAMPLE_LINES lines from the start and as many from the middle."""
    first = text[:SAMPLE_CHARS].split("\n")[:SAMPLE_LINES]
    if len(text) <= 2 * SAMPLE_CHARS:
        rest = text[SAMPLE_CHARS:].split("\n")[1 : SAMPLE_LINES + 1] if len(first) > 1 else []
        return first + rest
    mid = len(text) // 2
    middle = text[mid : mid + SAMPLE_CHARS].split("\n")[1:-1][:SAMPLE_LINES]
    return first + middle


def _drop_docstrings(lines: list[str]) -> list[str]:
    """The lines outside triple-quoted strings (docstrings read as prose); a line holding the
    quotes stays, as a line of code."""
    out, inside = [], False
    for ln in lines:
        quotes = len(_TRIPLE.findall(ln))
        if quotes:
            out.append('"""')
            inside = inside != (quotes % 2 == 1)
        elif not inside:
            out.append(ln)
    return out


def _drop_comment_blocks(lines: list[str]) -> list[str]:
    """The lines less runs of two or more `#` / `//` comment lines (licence headers), which are
    neither code nor prose; a lone `# Title` stays (markdown counts it as a heading)."""
    comment = [ln.lstrip().startswith(("#", "//")) for ln in lines]
    return [
        ln
        for k, ln in enumerate(lines)
        if not (comment[k] and ((k and comment[k - 1]) or (k + 1 < len(lines) and comment[k + 1])))
    ]


def _split_fences(lines: list[str]) -> tuple[int, list[str]]:
    """(lines inside ``` fences, the lines outside them)."""
    inside, outside, fenced = False, [], 0
    for ln in lines:
        if _FENCE.match(ln):
            inside = not inside
            outside.append(ln)
        elif inside:
            fenced += 1
        else:
            outside.append(ln)
    return fenced, outside


def _markdown_marks(lines: list[str]) -> dict[str, int]:
    return {
        "headings": sum(1 for k, ln in enumerate(lines) if _is_heading(lines, k)),
        "tables": sum(1 for ln in lines if _TABLE_SEP.match(ln) and "|" in ln),
        "fences": sum(1 for ln in lines if _FENCE.match(ln)),
        "lists": sum(1 for ln in lines if _LIST_ITEM.match(ln)),
        "inline": sum(1 for ln in lines if _MD_LINK.search(ln)),
    }


def _is_heading(lines: list[str], k: int) -> bool:
    """A `# ...` line that stands alone: in a run of `#` lines it is a code comment block."""
    if not _HEADING.match(lines[k]) or lines[k].lstrip().startswith("#!"):
        return False
    near = [lines[j] for j in (k - 1, k + 1) if 0 <= j < len(lines)]
    return not any(ln.lstrip().startswith("#") for ln in near)


def _looks_like_code(line: str) -> bool:
    s = line.rstrip()
    if s == '"""' or _ANNOTATION.match(s):
        return True
    if _CODE_START.match(s) or _CODE_END.search(s):
        return not _looks_like_prose(s) or s.endswith((";", "{", "}"))
    if s[:1] in " \t" and not _looks_like_prose(s) and not _LIST_ITEM.match(s):
        return True  # indented and not running text: a continuation line of code
    return bool(_CODE_INNER.search(s)) and len(s.split()) <= 8


def _looks_like_prose(line: str) -> bool:
    """A line of running text: many words, mostly letters, ending like a sentence."""
    s = line.strip()
    words = s.split()
    if len(words) < 8:
        return False
    letters = sum(c.isalpha() or c.isspace() for c in s)
    return letters >= 0.85 * len(s)
