"""Markdown table lookup: generated tables inside real markdown, and the row that answers.

A table (a `## heading`, a header row, a separator, 6-40 rows whose first cell is a unique
name) is set among markdown documents of the split's packages (packages.py), with up to two
other generated tables as distractors. The question names a row and a column ("What is the
license of `vexing-harbor`?"); gold = that row's line. `positive=False`: the asked name is
in no table.
"""

from __future__ import annotations

import random

from cprs_engine.prompts import LIBRARY

from . import lines as L
from .example import Example, from_prompt
from .packages import markdown_files
from .sources import load_corpora

SCHEMAS = {
    "Packages": ("Package", ["Version", "License", "Maintainer", "Python"]),
    "Services": ("Service", ["Port", "Owner", "Status", "Region"]),
    "Endpoints": ("Endpoint", ["Method", "Auth", "Rate limit", "Since"]),
    "Settings": ("Setting", ["Default", "Type", "Env var", "Scope"]),
    "Hosts": ("Host", ["IP", "OS", "CPU", "Datacenter"]),
}
QUERIES = (
    "What is the {col} of {name}?",
    "In the {table} table, which {col} does {name} have?",
    "Look up the {col} for `{name}`.",
)


def _cell(rng: random.Random, col: str, words: tuple[str, ...]) -> str:
    w = rng.choice(words)
    return {
        "Version": f"{rng.randint(0, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 20)}",
        "License": rng.choice(["MIT", "Apache-2.0", "BSD-3-Clause", "MPL-2.0", "GPL-3.0"]),
        "Maintainer": f"@{w}",
        "Python": rng.choice([">=3.8", ">=3.9", ">=3.10", ">=3.11"]),
        "Port": str(rng.randint(1024, 65000)),
        "Owner": f"team-{w}",
        "Status": rng.choice(["running", "degraded", "stopped", "deprecated"]),
        "Region": rng.choice(["eu-west-1", "us-east-2", "ap-south-1", "sa-east-1"]),
        "Method": rng.choice(["GET", "POST", "PUT", "PATCH", "DELETE"]),
        "Auth": rng.choice(["none", "token", "oauth2", "mTLS"]),
        "Rate limit": f"{rng.choice([10, 60, 100, 600, 1000])}/min",
        "Since": f"v{rng.randint(1, 4)}.{rng.randint(0, 12)}",
        "Default": rng.choice(["`true`", "`false`", f"`{rng.randint(1, 500)}`", f"`{w}`"]),
        "Type": rng.choice(["bool", "int", "str", "float", "list"]),
        "Env var": f"`APP_{w.upper()}`",
        "Scope": rng.choice(["global", "tenant", "request"]),
        "IP": f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        "OS": rng.choice(["Ubuntu 24.04", "Debian 12", "Alpine 3.20", "RHEL 9"]),
        "CPU": f"{rng.choice([2, 4, 8, 16, 32])} vCPU",
        "Datacenter": w.title(),
    }[col]


def _table(rng: random.Random, words, names: list[str]) -> tuple[str, list[str], list[str]]:
    """(title, header lines, row lines) of a table whose first column is `names`."""
    title = rng.choice(list(SCHEMAS))
    first, cols = SCHEMAS[title]
    cols = rng.sample(cols, rng.randint(2, len(cols)))
    head = [f"| {first} | " + " | ".join(cols) + " |", "|" + " --- |" * (len(cols) + 1)]
    rows = [f"| `{n}` | " + " | ".join(_cell(rng, c, words) for c in cols) + " |" for n in names]
    return title, head, rows


def make_md_table(
    rng: random.Random,
    target_chars: int,
    *,
    positive: bool = True,
    split: str = "train",
    train_templates: bool = True,
) -> Example:
    """Markdown of about `target_chars` holding tables and a row question; gold = the row."""
    words = load_corpora().vocab
    n_tables = rng.randint(1, 3)
    n_rows = [rng.randint(6, 40 if target_chars > 4000 else 12) for _ in range(n_tables)]
    names = list(dict.fromkeys(f"{rng.choice(words)}-{rng.choice(words)}" for _ in range(200)))
    tables = []
    for k, n in enumerate(n_rows):
        title, head, rows = _table(rng, words, names[:n])
        names = names[n:]
        tables.append((title, head, rows, k == 0))
    title, head, rows, _ = tables[0]
    at = rng.randrange(len(rows))
    asked_row = rows[at]
    asked = asked_row.split("`")[1]
    cols = [c.strip() for c in head[0].strip("|").split("|")][1:]
    col = rng.choice(cols)
    if not positive:
        rows.pop(at)
    blocks: list[list[L.Line]] = []
    for t_title, t_head, t_rows, gold_table in tables:
        block = [(f"## {t_title}", False), ("", False)] + [(h, False) for h in t_head]
        block += [(r, gold_table and positive and r == asked_row) for r in t_rows]
        blocks.append(block)
    room = target_chars - sum(sum(len(t) + 1 for t, _ in b) for b in blocks)
    drawn: list[str] = []
    fillers = L.fill_files(rng, markdown_files(split), room, header="", used=drawn)
    for block in blocks[1:]:
        fillers.insert(rng.randint(0, len(fillers)), block)
    context, spans = L.build(L.assemble(rng, blocks[0], fillers))
    wording = QUERIES[rng.randrange(3) if train_templates else 0]
    query = wording.format(col=col.lower(), name=asked, table=title.lower())
    facts = [asked_row] if positive else []
    p = LIBRARY["fact"]
    meta = {"source": "markdown", "facts": facts, "type": "markdown"}
    meta["drawn"] = [("markdown", path) for path in drawn]
    return from_prompt(p, p.text, query, context, spans, "md_table", meta)
