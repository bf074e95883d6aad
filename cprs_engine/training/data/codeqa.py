"""Code questions over real Python sources, with the lines that answer them (issue 18).

The sources are the `.py` files of installed packages (packages.py; `split` picks the side).
Questions are read off the file's syntax tree, so their gold lines are exact:

| kind     | question (one of its wordings)                  | gold lines                      |
| -------- | ----------------------------------------------- | ------------------------------- |
| returns  | What does `Client.send` return?                 | its `return <value>` lines (1-3) |
| raises   | Where is `InvalidURL` raised?                    | the one `raise InvalidURL...` line |
| env      | Where is the environment variable `X` read?     | the lines reading it            |
| constant | What is the value of `DEFAULT_TIMEOUT`?          | its assignment line             |

Only single-line statements whose text (stripped) occurs once in the file and is at least
MIN_GOLD characters long are used, so a gold line found in the output is the answer, not
a look-alike; a builtin exception (raised everywhere) is never asked about, and the
evaluation's questions name the file (half the training ones do). The context is the file (or a window of it holding the gold lines) among
other files of the same split, each under a `# path` header; `positive=False` puts the
question over other files only.
"""

from __future__ import annotations

import ast
import builtins
import random
from collections import Counter
from dataclasses import dataclass

from cprs_engine.prompts import LIBRARY

from . import lines as L
from .example import Example, from_prompt
from .packages import code_files

MIN_GOLD = 8
QUERIES = {
    "returns": (
        "What does `{name}` return?",
        "What is the return value of `{name}()`?",
        "Show where `{name}` returns its result.",
    ),
    "raises": (
        "Where is `{name}` raised?",
        "Which function raises {name}, and on what condition?",
        "In which case does the code raise `{name}`?",
    ),
    "env": (
        "Where is the environment variable `{name}` read?",
        "Which setting is read from the environment variable {name}?",
    ),
    "constant": (
        "What is the value of `{name}`?",
        "Where is the constant {name} defined, and to what?",
    ),
}


@dataclass(frozen=True)
class Question:
    kind: str
    name: str
    lines: tuple[int, ...]  # 0-based line numbers of the gold lines


def _env_name(node: ast.AST) -> str | None:
    """`os.environ.get("X")`, `os.getenv("X")`, `os.environ["X"]` -> "X"."""
    src = None
    if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
        f = ast.unparse(node.func)
        if f in ("os.environ.get", "os.getenv", "environ.get", "getenv"):
            src = node.args[0].value
    elif (
        isinstance(node, ast.Subscript)
        and ast.unparse(node.value) in ("os.environ", "environ")
        and isinstance(node.slice, ast.Constant)
    ):
        src = node.slice.value
    return src if isinstance(src, str) and src else None


def questions(text: str) -> list[Question]:
    """Every question of the table above that `text` (a Python source) supports."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError):
        return []
    src = text.split("\n")
    counts = Counter(x.strip() for x in src)

    def good(node: ast.stmt | ast.expr) -> bool:
        if node.lineno != getattr(node, "end_lineno", node.lineno):
            return False
        line = src[node.lineno - 1].strip()
        return len(line) >= MIN_GOLD and counts[line] == 1

    out: list[Question] = []
    raised: dict[str, list[ast.Raise]] = {}
    env: dict[str, list[int]] = {}

    def visit(node: ast.AST, scope: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = ".".join([*scope, child.name])
                rets = [
                    r
                    for r in _own_nodes(child)
                    if isinstance(r, ast.Return) and r.value is not None
                ]
                if 1 <= len(rets) <= 3 and all(good(r) for r in rets):
                    out.append(Question("returns", name, tuple(sorted(r.lineno - 1 for r in rets))))
                visit(child, [*scope, child.name])
            elif isinstance(child, ast.ClassDef):
                visit(child, [*scope, child.name])
            else:
                if isinstance(child, ast.Raise) and isinstance(child.exc, ast.Call):
                    exc = ast.unparse(child.exc.func)
                    raised.setdefault(exc, []).append(child)
                name = _env_name(child)
                if name and hasattr(child, "lineno"):
                    env.setdefault(name, []).append(child.lineno - 1)
                visit(child, scope)

    visit(tree, [])
    for exc, nodes in raised.items():
        builtin = exc in dir(builtins)  # ValueError etc.: raised everywhere, ambiguous
        if len(nodes) == 1 and good(nodes[0]) and exc[:1].isupper() and not builtin:
            out.append(Question("raises", exc, (nodes[0].lineno - 1,)))
    for name, where in env.items():
        ls = sorted(set(where))
        unique = all(len(src[i].strip()) >= MIN_GOLD and counts[src[i].strip()] == 1 for i in ls)
        if len(ls) <= 3 and unique:
            out.append(Question("env", name, tuple(ls)))
    for stmt in tree.body:
        if (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
            and stmt.targets[0].id.isupper()
            and len(stmt.targets[0].id) >= 4
            and good(stmt)
        ):
            out.append(Question("constant", stmt.targets[0].id, (stmt.lineno - 1,)))
    return out


def _own_nodes(fn: ast.AST):
    """Nodes of a function body, not descending into nested functions, classes or lambdas."""
    stack = list(ast.iter_child_nodes(fn))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            stack.extend(ast.iter_child_nodes(node))


def make_code_qa(
    rng: random.Random,
    target_chars: int,
    *,
    positive: bool = True,
    split: str = "train",
    train_templates: bool = True,
) -> Example:
    """A code question over ~`target_chars` of source; gold = the answering lines."""
    files = code_files(split)
    for _ in range(200):
        f = rng.choice(files)
        qs = questions(f.text)
        if qs:
            q = rng.choice(qs)
            src = f.text.split("\n")
            if sum(len(src[i]) for i in q.lines) < target_chars // 2:
                break
    else:
        raise RuntimeError(f"no code question found in split {split!r}")
    gold = set(q.lines)
    if positive:
        a, b = L.window(rng, src, gold, target_chars)
        head = [(f"# {f.path}", False)] if a == 0 else []
        segment = head + [(src[i].rstrip(), i in gold) for i in range(a, b)]
    else:
        segment = []
    room = target_chars - sum(len(t) + 1 for t, _ in segment)
    others = tuple(x for x in files if x.path != f.path)
    drawn = [f.path] if positive else []
    context, spans = L.build(L.assemble(rng, segment, L.fill_files(rng, others, room, used=drawn)))
    wordings = QUERIES[q.kind]
    query = (rng.choice(wordings) if train_templates else wordings[0]).format(name=q.name)
    if not train_templates or rng.random() < 0.5:  # name the file: the same name recurs
        query = f"In `{f.path}`: {query}"
    facts = [src[i].strip() for i in q.lines] if positive else []
    p = LIBRARY["fact"]
    meta = {"source": "code", "facts": facts, "file": f.path, "kind": q.kind, "type": "code"}
    meta["drawn"] = [("code", path) for path in drawn]
    return from_prompt(p, p.text, query, context, spans, "code_qa", meta)
