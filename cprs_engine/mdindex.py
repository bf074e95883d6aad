"""The outline of a markdown text, for decoding (structure.py): per line, the heading path
above it and, for a table row, the table's header and separator rows; fenced code is neither.

One pass over the lines with a stack of (level, heading line); ATX headings only (`## Title`;
a setext underline is taken as text). O(lines).
"""

from __future__ import annotations

import bisect
import re

from cprs_engine.windows import sentence_ends

_TABLE_SEP = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)+\|?\s*$")
_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+\S|$)")
_FENCE = re.compile(r"^ {0,3}(?:```|~~~)")


class MarkdownIndex:
    """Per line: the innermost heading above it (and each heading's parent heading), and for
    table rows the table's header and separator lines. Fenced code is not parsed for either."""

    def __init__(self, text: str):
        self.text = text
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]
        n = len(self.starts)
        self.heading = [-1] * n  # innermost heading line at or above each line
        self.parent_heading = [-1] * n  # for heading lines
        self.table_head = [-1] * n  # for table rows: the header line (separator follows it)
        self.fenced = [False] * n
        stack: list[tuple[int, int]] = []  # (level, line)
        fence, table = False, -1
        for i in range(n):
            line = self.line(i)
            if _FENCE.match(line):
                fence = not fence
                self.fenced[i] = True
            elif fence:
                self.fenced[i] = True
            elif m := _HEADING.match(line):
                level = len(m.group(1))
                while stack and stack[-1][0] >= level:
                    stack.pop()
                self.parent_heading[i] = stack[-1][1] if stack else -1
                stack.append((level, i))
            if table >= 0 and not ("|" in line and line.strip()):
                table = -1
            if not fence and i > 0 and _TABLE_SEP.match(line) and "|" in line:
                if "|" in self.line(i - 1):
                    table = i - 1
            elif table >= 0 and i > table + 1:
                self.table_head[i] = table
            self.heading[i] = stack[-1][1] if stack else -1

    def line(self, i: int) -> str:
        end = self.starts[i + 1] - 1 if i + 1 < len(self.starts) else len(self.text)
        return self.text[self.starts[i] : end]

    def line_of(self, pos: int) -> int:
        return max(0, bisect.bisect_right(self.starts, pos) - 1)

    def _range(self, i: int) -> tuple[int, int]:
        a = self.starts[i]
        line = self.line(i)
        return a + len(line) - len(line.lstrip()), a + len(line.rstrip())

    def context(self, i: int) -> list[tuple[int, int]]:
        out = []
        h = self.heading[i]
        while h >= 0:
            out.append(self._range(h))
            h = self.parent_heading[h]
        t = self.table_head[i]
        if t >= 0:
            out += [self._range(t), self._range(t + 1)]
        return [r for r in out if r[1] > r[0]]

    def bounds(self) -> list[int]:
        """Sentence ends, except inside table rows, headings and fenced lines, which end at
        their line end only."""
        whole = [
            i
            for i in range(len(self.starts))
            if self.fenced[i] or self.table_head[i] >= 0 or _HEADING.match(self.line(i))
            or (i + 1 < len(self.starts) and self.table_head[i + 1] >= 0)
        ]  # fmt: skip
        ends = sentence_ends(self.text)
        if not whole:
            return ends
        cut = set(ends)
        for i in whole:
            a = self.starts[i]
            b = self.starts[i + 1] if i + 1 < len(self.starts) else len(self.text)
            lo, hi = bisect.bisect_right(ends, a), bisect.bisect_left(ends, b)
            cut.difference_update(ends[lo:hi])
            cut.update((a, b) if a > 0 else (b,))
        return sorted(c for c in cut if c > 0)
