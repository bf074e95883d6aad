"""Line documents (code, JSON, logs, markdown): whole lines, some of them gold.

The line tasks of issue 18 ask for the line that answers (a return statement, a record's
field, a log line, a table row). A gold span is the line without its indentation and
trailing whitespace, so it is an exact, trimmed substring, and recall is "the line is in the
output" (whitespace-normalised, evaluate.recall).
"""

from __future__ import annotations

import random

from .packages import SourceFile
from .text import Builder

Line = tuple[str, bool]  # (text without "\n", is_gold)


def add_lines(builder: Builder, lines: list[Line], trim: str = "") -> None:
    """Append `lines` (each ended by "\n"); a gold line's indentation, and any trailing
    `trim` characters (a JSON member's comma), stay outside its span."""
    for text, gold in lines:
        body = text.strip().rstrip(trim)
        if gold and body:
            lead = text[: len(text) - len(text.lstrip())]
            if lead:
                builder.add(lead)
            builder.add(body, gold=True)
            tail = text[len(lead) + len(body) :]
            if tail:
                builder.add(tail)
        elif text:
            builder.add(text)
        builder.add("\n")


def build(lines: list[Line], trim: str = "") -> tuple[str, list[tuple[int, int]]]:
    b = Builder()
    add_lines(b, lines, trim)
    return b.build()


def window(
    rng: random.Random, lines: list[str], gold: set[int], target_chars: int
) -> tuple[int, int]:
    """[a, b) of `lines` holding every gold line, grown at random ends to ~target_chars."""
    a, b = (min(gold), max(gold) + 1) if gold else (rng.randrange(len(lines)),) * 2
    size = sum(len(x) + 1 for x in lines[a:b])
    while size < target_chars and (a > 0 or b < len(lines)):
        if b >= len(lines) or (a > 0 and rng.random() < 0.5):
            a -= 1
            size += len(lines[a]) + 1
        else:
            size += len(lines[b]) + 1
            b += 1
    return a, b


def file_lines(f: SourceFile, header: str = "# {path}") -> list[Line]:
    """A whole file as non-gold lines, under a header line naming it (none if `header` is "")."""
    head = [(header.format(path=f.path), False)] if header else []
    return head + [(x.rstrip(), False) for x in f.text.strip("\n").split("\n")]


def fill_files(
    rng: random.Random,
    files: tuple[SourceFile, ...],
    n_chars: int,
    header: str = "# {path}",
    used: list[str] | None = None,
) -> list[list[Line]]:
    """Whole files (the last one cut at a line end) adding up to about `n_chars`; their paths
    go to `used`."""
    used = [] if used is None else used
    out: list[list[Line]] = []
    room = n_chars
    for _ in range(1000):
        if room <= 80:
            break
        f = rng.choice(files)
        ls = file_lines(f, header)
        size = sum(len(t) + 1 for t, _ in ls)
        if size > room:
            cut, acc = 0, 0
            while cut < len(ls) and acc + len(ls[cut][0]) + 1 <= room:
                acc += len(ls[cut][0]) + 1
                cut += 1
            ls, size = ls[:cut], acc
        if ls:
            used.append(f.path)
            out.append(ls)
            room -= size + 1
    return out


def assemble(rng: random.Random, segment: list[Line], fillers: list[list[Line]]) -> list[Line]:
    """The segment at a random place among the filler blocks, blocks separated by a blank line."""
    blocks = list(fillers)
    blocks.insert(rng.randint(0, len(blocks)), segment)
    out: list[Line] = []
    for i, block in enumerate(b for b in blocks if b):
        if i:
            out.append(("", False))
        out.extend(block)
    return out
