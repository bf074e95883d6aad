"""Symbol anchors: the lines of source code that a question names by identifier (issue 18).

The critic reads one window of ~512 tokens at a time. A question about `Client.send` names a
function whose `def` line and whose `return` lines may lie in different windows; the small
critic rarely scores a return line it cannot tie to the question (the shipped one gave such a
line 0.04). Identifiers are exact handles into code, though, and resolving them needs no model:

    symbols      the question's code-shaped words: `backticked` names, dotted.names, snake_case,
                 CONSTANT_CASE and CamelCase with an inner capital (`InvalidURL`); plain words
                 ("send", "client") are never symbols, so prose questions anchor nothing
    file         a backticked path (`a/b.py`) restricts the anchors to the part of the document
                 under the header line that names it, up to the next header of the same shape
    definitions  a statement that defines the name (def, class, function, func, fn, struct,
                 ... NAME; NAME = ...; self.NAME = ...); a dotted name needs its qualifiers
                 among the openers that enclose it (`Client.send`: a `send` inside `class
                 Client`), unless none does: a module or an instance (`yaml.safe_load`)
    anchors      per definition: its whole block when it has at most MAX_BLOCK_LINES lines
                 besides its docstring, else (a function) its header and skeleton: the block
                 openers and exits (return, raise, yield, throw) outside nested functions;
                 plus every line that mentions the name (a dotted one in full) outside imports
                 and definitions, when there are at most MAX_MENTIONS of them; a name mentioned
                 more often keeps only its mentions inside another named definition ("Where
                 does `FileSystemLoader` raise `TemplateNotFound`?")

Anchors are char ranges of whole lines; decoding adds them to the critic's spans with
ANCHOR_SCORE, after which they are code units like any other (enclosing openers, budget, gap
markers: structure.py). Deterministic: everything in document order, no model.
"""

from __future__ import annotations

import re

from cprs_engine.codeindex import CodeIndex

MAX_SYMBOLS = 6
MAX_DEFINITIONS = 3  # per symbol
MAX_BLOCK_LINES = 40  # non-blank lines of a definition kept whole
MAX_MENTIONS = 8  # per symbol
ANCHOR_SCORE = 1.0  # a critic score's maximum: a budget keeps anchors first

_BACKTICKED = re.compile(r"`([^`\n]{1,200})`")
_PATH = re.compile(
    r"[/\\]|\.(?:py|pyi|js|jsx|mjs|ts|tsx|go|rs|java|kt|scala|c|h|cc|cpp|hpp|cs|rb|php|swift|sh|"
    r"md|rst|txt|json|yaml|yml|toml|ini|cfg|conf|xml|html|css|sql|log)$"
)
_IDENT = r"[A-Za-z_]\w*"
_NAME = re.compile(rf"^{_IDENT}(?:\.{_IDENT})*$")
_CODE_SHAPED = re.compile(
    rf"\b{_IDENT}(?:\.{_IDENT})+\b"  # dotted.name
    r"|\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b"  # snake_case
    r"|\b_+[A-Za-z]\w*\b"  # _private
    r"|\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b"  # CONSTANT_CASE
    r"|\b[A-Z][a-z0-9]+(?:[A-Z][A-Za-z0-9]*)+\b"  # CamelCase with an inner capital
    r"|\b[A-Z]{2,}[a-z]\w*\b"  # HTTPError
)
# Words that are names in every program and point nowhere in one.
_COMMON_WORDS = (
    "self cls this None True False null true false return import from class def function "
    "args kwargs init __init__ main test e.g i.e etc."
)
_COMMON = frozenset(_COMMON_WORDS.split())
_DEFINES = (
    r"^(?:(?:export|default|pub(?:\([^)]*\))?|public|private|protected|internal|static|final|"
    r"abstract|async|unsafe|override|virtual|inline|extern|open|data|sealed)\s+)*"
    r"(?:def|class|function\*?|func(?:\s*\([^)]*\))?|fn|struct|enum|interface|trait|type|"
    r"module|object|impl|record|union|macro_rules!)\s+{name}\b"
)
_ASSIGNS = (
    r"^(?:(?:export|const|let|var|val|static|final|public|private)\s+)*(?:(?:self|cls|this)\.)?"
    r"{name}\s*(?::[^=\n]*)?:?=(?!=)"
)
_FUNCTION = re.compile(r"^(?:\w+\s+)*(?:def|function\*?|func|fn)\b")
_EXIT = re.compile(r"^(?:return|raise|yield|throw)\b")
_IMPORT = re.compile(r"^\s*(?:from\s+\S+\s+import\b|import\b|use\s|#include\b|require\b|using\s)")


def symbols(query: str) -> tuple[list[str], list[str]]:
    """(names, paths) the question mentions, each in order of first mention, deduplicated."""
    names: list[str] = []
    paths: list[str] = []
    for m in _BACKTICKED.finditer(query):
        word = m.group(1).strip().removesuffix("()").strip()
        if _NAME.match(word) and not _PATH.search(word):
            names.append(word)
        elif _PATH.search(word) and " " not in word:
            paths.append(word)
    bare = _BACKTICKED.sub(" ", query)
    for m in _CODE_SHAPED.finditer(bare):
        word = m.group(0)
        if _PATH.search(word):
            continue  # a file name ("setup.py"), not a symbol
        names.append(word)
    keep = [n for n in dict.fromkeys(names) if not {n, n.split(".")[-1]} & _COMMON]
    return keep[:MAX_SYMBOLS], list(dict.fromkeys(paths))


def code_anchors(query: str, text: str, ix: CodeIndex | None = None) -> list[tuple[int, int]]:
    """Char ranges [start, end) of whole lines that the question's symbols anchor, sorted
    and merged; [] when the question names no symbol found in `text`."""
    names, paths = symbols(query)
    if not names:
        return []
    ix = ix or CodeIndex(text)
    lo, hi = _file_region(ix, paths)
    found = [_find(ix, name, lo, hi) for name in names]
    lines: set[int] = set()
    extents = []  # every anchored definition's whole extent, header to block end
    for heads, _ in found:
        for h in heads:
            block = _block(ix, h)
            lines.update(_definition(ix, h, block))
            extents.append((h, max([ix.tail[h], *block])))
    for _, mentions in found:
        if len(mentions) <= MAX_MENTIONS:
            lines.update(mentions)
        else:  # too common to point anywhere, except inside another named definition
            lines.update(m for m in mentions if any(a <= m <= b for a, b in extents))
    return _ranges(ix, sorted(lines))


def _file_region(ix: CodeIndex, paths: list[str]) -> tuple[int, int]:
    """Lines [lo, hi) under the first header line naming one of `paths` (the whole text when
    none does): up to the next line of the same shape (same text before and after a path,
    and a path between them: a comment `# Anti-commutator` is not the next file's header)."""
    n = len(ix.starts)
    for path in paths:
        for i in range(n):
            line = ix.line(i)
            at = line.find(path)
            if at < 0 or len(line) > len(path) + 40:
                continue
            before, after = re.escape(line[:at]), re.escape(line[at + len(path) :])
            header = re.compile(rf"^{before}(\S+){after}$")
            end = next((j for j in range(i + 1, n) if _is_header(header, ix.line(j))), n)
            return i, end
    return 0, n


def _is_header(header: re.Pattern, line: str) -> bool:
    m = header.match(line)
    return m is not None and _PATH.search(m.group(1)) is not None


def _find(ix: CodeIndex, name: str, lo: int, hi: int) -> tuple[list[int], list[int]]:
    """(definition heads, mention lines) of `name` in lines [lo, hi). A dotted name whose
    qualifiers enclose none of its definitions (`yaml.safe_load`: a module, `client.send`: an
    instance) takes the definitions of its last part."""
    parts = name.split(".")
    last = re.escape(parts[-1])
    defines = re.compile(_DEFINES.format(name=last))
    assigns = re.compile(_ASSIGNS.format(name=last))
    # A dotted name is mentioned only in full (`Client.send`, not any `send`).
    word = re.compile(rf"(?<![\w$]){re.escape(name)}(?![\w$])")
    qualified: list[int] = []
    loose: list[int] = []
    mentions: list[int] = []
    for i in range(lo, hi):
        if ix.blank(i):
            continue
        stripped = ix.line(i).strip()
        if ix.head[i] == i and (defines.match(stripped) or assigns.match(stripped)):
            (qualified if _qualified(ix, i, parts[:-1]) else loose).append(i)
        elif word.search(stripped) and not _IMPORT.match(stripped):
            mentions.append(i)
    heads = qualified or (loose if len(parts) > 1 else [])
    return heads[:MAX_DEFINITIONS], mentions


def _qualified(ix: CodeIndex, i: int, qualifiers: list[str]) -> bool:
    """Whether the openers enclosing line i name `qualifiers`, innermost last, in order."""
    if not qualifiers:
        return True
    names = []
    for h in ix.enclosing(i):
        m = re.search(rf"\b(?:class|def|function|func|fn|struct|impl|object|module|trait|"
                      rf"interface|enum)\s+({_IDENT})", ix.line(h))  # fmt: skip
        if m:
            names.append(m.group(1))
    want = list(reversed(qualifiers))  # innermost first, like `enclosing`
    k = 0
    for n in names:
        if k < len(want) and n == want[k]:
            k += 1
    return k == len(want)


def _block(ix: CodeIndex, head: int) -> list[int]:
    """The lines of the block that the statement at `head` opens (after its last line): the
    lines indented deeper, and a closing brace at the header's own indentation."""
    if not ix.opener[head]:
        return []
    d = ix.indent[head]
    out = []
    j = ix.tail[head] + 1
    while j < len(ix.starts):
        if not ix.blank(j):
            if ix.indent[j] < d or (ix.indent[j] == d and ix.head[j] == j):
                if ix.indent[j] == d and ix.line(j).lstrip().startswith(("}", "end")):
                    out.append(j)
                break
            out.append(j)
        j += 1
    return out


def _definition(ix: CodeIndex, head: int, block: list[int]) -> list[int]:
    """A definition's lines, given its `_block`: header and block when the block is short (its
    docstring not counted), else, for a function, its header and skeleton: the block openers
    (if, for, try, ...) and exits (return, raise, ...), nested functions' excluded, at most
    MAX_BLOCK_LINES lines, exits first."""
    header = list(range(head, ix.tail[head] + 1))
    doc = _docstring(ix, block)
    if len(block) - len(doc) <= MAX_BLOCK_LINES:
        return header + block
    if not _FUNCTION.match(ix.line(head).strip()):
        return header
    exits, openers, skip_below = [], [], -1
    for j in block:
        if skip_below >= 0 and ix.indent[j] > skip_below:
            continue
        skip_below = -1
        if ix.head[j] != j or j in doc:
            continue
        stripped = ix.line(j).strip()
        whole = list(range(j, ix.tail[j] + 1))
        if ix.opener[j] and _FUNCTION.match(stripped):
            skip_below = ix.indent[j]  # a nested function's skeleton is its own
        elif _EXIT.match(stripped):
            exits.extend(whole)
        elif ix.opener[j]:
            openers.extend(whole)
    room = max(MAX_BLOCK_LINES - len(exits), 0)
    return header + exits[:MAX_BLOCK_LINES] + openers[:room]


def _docstring(ix: CodeIndex, block: list[int]) -> set[int]:
    """The lines of a block's leading string statement (a docstring), if it has one."""
    if not block or not re.match(r"^[rRbBuU]?(?:\"\"\"|\'\'\'|\"|\')", ix.line(block[0]).strip()):
        return set()
    h = ix.head[block[0]]
    return set(range(h, ix.tail[h] + 1))


def _ranges(ix: CodeIndex, lines: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for i in lines:
        a, b = ix.starts[i], ix.ends[i]
        while b > a and ix.text[b - 1] in "\r\n":
            b -= 1
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(b, out[-1][1]))
        else:
            out.append((a, b))
    return out
