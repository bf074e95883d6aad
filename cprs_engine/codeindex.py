"""The line structure of source code: statements and the block openers that enclose them.

A kept line of code means little without what encloses it: the `def` it belongs to, the
`if` or `for` it runs under, the call whose argument it is. `CodeIndex` finds these from the
text alone, for any indentation- or brace-formatted language, in one pass over the lines:

    statement   the lines from one that opens brackets (or a triple-quoted string) to the line
                that closes them: a multi-line signature `def f(\\n a,\\n b):` is one statement
    opener      a statement whose last line ends a block header (`:` or `{`, ignoring a
                trailing comment), e.g. `def`, `class`, `if`, `for`, `with`, `} else {`
    parent      the nearest preceding opener with smaller indentation (comment-only lines and
                blank lines do not close blocks)
    sibling     for `else`/`elif`/`except`/`finally`/`catch` openers, the opener they continue
                (the `if` of an `else`), so that an else-branch shows its condition

Brackets inside strings and `#` comments are not counted (a cheap regex, not a lexer); a
statement whose brackets have not closed after MAX_OPEN_LINES lines is taken as a miscount
and closed, so one stray bracket never swallows the rest of a file (a triple-quoted string
runs to its closing quote, however long). O(lines); no recursion.
"""

from __future__ import annotations

import bisect
import re

MAX_OPEN_LINES = 200
_STRINGS = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|#.*$')
_TRIPLE = re.compile(r'"""|\'\'\'')
_CONTINUES = re.compile(r"^\s*(?:\}\s*)?(?:else|elif|except|finally|catch)\b")
_COMMENT = re.compile(r"^\s*(?:#|//|/\*|\*)")
_DECORATOR = re.compile(r"^\s*@\w")


def _brackets(code: str) -> int:
    """Opening minus closing brackets outside one-line strings and comments."""
    code = _STRINGS.sub("", code)
    return sum(map(code.count, "([{")) - sum(map(code.count, ")]}"))


class CodeIndex:
    """Lines, statements, openers and parents of a source text (see the module docstring)."""

    def __init__(self, text: str):
        self.text = text
        starts = [0] + [m.end() for m in re.finditer("\n", text)]
        if starts[-1] == len(text) and len(starts) > 1:
            starts.pop()  # a final newline opens no line
        self.starts = starts
        n = len(starts)
        self.ends = [
            (starts[i + 1] - 1 if i + 1 < n else len(text)) for i in range(n)
        ]  # exclusive, without the newline
        self.indent: list[int] = []
        self.head = [0] * n  # the first line of each line's statement
        self.tail = list(range(n))  # for a head line: its statement's last line
        self.opener = [False] * n
        self.parent = [-1] * n  # for a head line: the enclosing opener's head, or -1
        self.sibling = [-1] * n  # for an else-like opener: the opener it continues
        self._scan()

    def line(self, i: int) -> str:
        return self.text[self.starts[i] : self.ends[i]]

    def line_of(self, pos: int) -> int:
        return max(0, bisect.bisect_right(self.starts, pos) - 1)

    def blank(self, i: int) -> bool:
        return self.indent[i] < 0

    def _scan(self) -> None:
        text = self.text
        depth, in_triple, head, open_since, quote = 0, False, 0, 0, ""
        stack: list[int] = []  # opener heads, innermost last
        for i, (a, b) in enumerate(zip(self.starts, self.ends, strict=True)):
            line = text[a:b]
            self.indent.append(len(line) - len(line.lstrip()) if line.strip() else -1)
            if depth == 0 and not in_triple:
                head, open_since = i, i
            self.head[i] = head
            # Code and triple-quoted strings alternate; count brackets in code only. Inside a
            # string only its own quote closes it (the other kind is text there).
            pos = 0
            for m in _TRIPLE.finditer(line):
                if not in_triple:
                    depth += _brackets(line[pos : m.start()])
                    in_triple, quote = True, m.group()
                elif m.group() == quote:
                    in_triple = False
                pos = m.end()
            if not in_triple:
                depth += _brackets(line[pos:])
            depth = max(depth, 0)
            if i - open_since >= MAX_OPEN_LINES and not in_triple:
                depth = 0  # a miscount: close the statement here (a long docstring is fine)
            if depth == 0 and not in_triple:
                self.tail[head] = i
                self._close(head, i, stack)

    def _close(self, head: int, last: int, stack: list[int]) -> None:
        """Statement [head, last] is complete: find its parent, push it if it opens a block."""
        first = self.line(head)
        if self.indent[head] < 0 or _COMMENT.match(first):
            return
        d = self.indent[head]
        popped = -1
        while stack and self.indent[stack[-1]] >= d:
            top = stack.pop()
            if self.indent[top] == d:
                popped = top
        self.parent[head] = stack[-1] if stack else -1
        end = _STRINGS.sub("", self.line(last)).rstrip()
        if end.endswith((":", "{")):
            self.opener[head] = True
            if popped >= 0 and _CONTINUES.match(first):
                self.sibling[head] = popped
            stack.append(head)

    def statement(self, i: int) -> tuple[int, int]:
        """(first line, last line) of the statement holding line i."""
        h = self.head[i]
        return h, self.tail[h]

    def nested(self, i: int) -> bool:
        """Whether line i sits inside its statement's structure: it is the statement's first
        line, or indented at least as deep as that line. A continuation line dedented past its
        statement (text at column 0 inside an indented string or call) is not nested in it,
        nor in the blocks around it: it reads as it stands, without their context."""
        h = self.head[i]
        return i == h or self.indent[i] >= self.indent[h]

    def enclosing(self, i: int) -> list[int]:
        """The heads of the openers around line i's statement, innermost first, with the
        siblings of else-like openers (`if` for `else`)."""
        out = []
        h = self.parent[self.head[i]]
        seen = set()
        while h >= 0 and h not in seen:
            seen.add(h)
            out.append(h)
            s = self.sibling[h]
            while s >= 0 and s not in seen:
                seen.add(s)
                out.append(s)
                s = self.sibling[s]
            h = self.parent[h]
        return out

    def decorated(self, i: int) -> int:
        """For a decorator line, the head of the definition it decorates (else -1)."""
        if not _DECORATOR.match(self.line(i)):
            return -1
        j = self.tail[self.head[i]] + 1
        while j < len(self.starts):
            if self.indent[j] >= 0 and not _DECORATOR.match(self.line(j)):
                return self.head[j]
            j = self.tail[self.head[j]] + 1
        return -1
