"""Code questions written by hand over real installed sources: recall of the lines that answer.

    python -m benchmarks.code_questions [--set {a,b,all}] [--json OUT.json]
                                        [--write BENCHMARKS.md] [--section NAME] [--limit N]
                                        [--threads N]

`cprs eval --tasks code_qa` asks questions that cprs_engine/training/data/codeqa.py reads off
a file's syntax tree, in a handful of templates ("What does `X` return?"), the same templates
the critic and the symbol anchors (cprs_engine/anchors.py) were built around. This check
does not come from that generator: CASES is a fixed list of questions as users ask them, each
over one `.py` file of an installed package (a path relative to site-packages), with its gold:
1-3 lines of that file (stripped) that a reader needs to answer it, not just the definition
line. Three kinds, as KINDS names them:

    symbol     names a symbol, in varied forms: `Response.has_redirect_location` backticked,
               bare snake_case (raise_for_status) or module-qualified (yaml.safe_load) names,
               CamelCase exceptions, a lower-case class name that no anchor pattern catches
               ("relativedelta")
    plain      names no symbol at all ("How does a loader use the bytecode cache?")
    elsewhere  about a name defined in one place and used in another: a constant's use
               sites, an environment variable read, a function called from other functions

CASES_B is a second set of 20 (9 symbol, 6 plain, 5 elsewhere), independent of CASES: other
packages (h2, hpack, urllib3, anyio, filelock, dotenv, packaging), written separately from the
sources alone, without reading the anchors, as a held-out check of what was tuned on CASES.
`--set` picks the cases: `a` (CASES, the default), `b` (CASES_B) or `all` (both); --write
replaces the section `code-questions`, `code-questions-b` or `code-questions-all` by set.

Every case runs in two variants: `alone` (the file under a `# <path>` header) and `among 3`
(the file and two files of other packages from the cases run, each under its own header, in a
fixed order with the question's file first, second or third by case number). A case is skipped,
and reported, when its file is missing or too large, or when a gold line does not occur
exactly once in the document (after a package upgrade, say): a gold line is counted found
only when it is in the output, so it must not be found elsewhere.

Methods: `cprs` (Compressor.load(), compress(question, document): the type is detected,
code gets the symbol anchors), `cprs-noanchor` (the same with compressor.symbol_anchors
returning no anchors), and `rag` / `bm25` (cprs_engine/evaluation/baselines.py) at cprs's
output size in the critic's tokens, as `cprs eval` runs them. Recall: the share of gold lines
in the output (`evaluate.recall`, whitespace-normalised). Ratio: context tokens / output
tokens, both summed over the cases (pooled). `anchored`: the share of gold lines inside the
lines the anchors pick (no model), which tells a miss of the anchors from one of the critic.

Some packages here are training-side in the package split (packages.split_of): the files
may have been seen in training, the questions and gold lines were not. Each case's split is
in the --json rows.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks import _report

SECTION = "code-questions"
KINDS = {"symbol": "names a symbol", "plain": "plain language", "elsewhere": "used elsewhere"}
VARIANTS = ("alone", "among 3")
MAX_FILE_CHARS = 70_000  # one file, ~18K tokens: larger ones are skipped
MAX_DOC_CHARS = 110_000  # a three-file document, ~30K tokens: partners are chosen under it
METHODS = ("cprs", "cprs-noanchor", "rag", "bm25")


@dataclass(frozen=True)
class Case:
    kind: str  # a KINDS key
    path: str  # relative to site-packages
    question: str
    gold: tuple[str, ...]  # 1-3 stripped lines of the file, each occurring once


CASES: tuple[Case, ...] = (
    # httpx 0.28.1
    Case(
        "symbol",
        "httpx/_models.py",
        "Which exception does raise_for_status raise for a 404?",
        ('4: "Client error",', "raise HTTPStatusError(message, request=request, response=self)"),
    ),
    Case(
        "symbol",
        "httpx/_models.py",
        "Which status codes does `Response.has_redirect_location` treat as redirects?",
        (
            "# 307 (Equiv. 302, but retain method)",
            "# 308 (Equiv. 301, but retain method)",
            'and "Location" in self.headers',
        ),
    ),
    Case(
        "symbol",
        "httpx/_client.py",
        "Which headers does _redirect_headers drop when a redirect goes to another origin?",
        ('headers.pop("Authorization", None)', 'headers.pop("Cookie", None)'),
    ),
    Case(
        "plain",
        "httpx/_client.py",
        "When does following a redirect turn a POST into a GET?",
        (
            'if response.status_code == codes.SEE_OTHER and method != "HEAD":',
            'if response.status_code == codes.FOUND and method != "HEAD":',
            'if response.status_code == codes.MOVED_PERMANENTLY and method == "POST":',
        ),
    ),
    Case(
        "plain",
        "httpx/_client.py",
        "How are cookies merged into a request?",
        ("merged_cookies = Cookies(self.cookies)", "merged_cookies.update(cookies)"),
    ),
    # h11 0.16.0
    Case(
        "plain",
        "h11/_connection.py",
        "When does h11 decide that a connection cannot be kept alive?",
        (
            'if b"close" in connection:',
            'if getattr(event, "http_version", b"1.1") < b"1.1":',
        ),
    ),
    Case(
        "symbol",
        "h11/_connection.py",
        "Which responses always have an empty body in _body_framing?",
        (
            "event.status_code in (204, 304)",
            'or request_method == b"HEAD"',
            'or (request_method == b"CONNECT" and 200 <= event.status_code < 300)',
        ),
    ),
    Case(
        "symbol",
        "h11/_connection.py",
        "In which situations does next_event raise RemoteProtocolError?",
        (
            'raise RemoteProtocolError("Can\'t receive data when peer state is ERROR")',
            'raise RemoteProtocolError("peer unexpectedly closed connection")',
        ),
    ),
    Case(
        "elsewhere",
        "h11/_connection.py",
        "What is DEFAULT_MAX_INCOMPLETE_EVENT_SIZE and where is the limit enforced?",
        (
            "DEFAULT_MAX_INCOMPLETE_EVENT_SIZE = 16 * 1024",
            "if len(self._receive_buffer) > self._max_incomplete_event_size:",
        ),
    ),
    # click 8.5.1
    Case(
        "elsewhere",
        "click/utils.py",
        "Which environment variables does get_app_dir read?",
        (
            'key = "APPDATA" if roaming else "LOCALAPPDATA"',
            'os.environ.get("XDG_CONFIG_HOME", os.path.expanduser("~/.config")),',
        ),
    ),
    Case(
        "plain",
        "click/utils.py",
        "How is a command's help text shortened when it is too long?",
        (
            'words = help.partition("\\n\\n")[0].split()',
            'return textwrap.shorten(text, max_length, placeholder="...", break_on_hyphens=False)',
        ),
    ),
    # jinja2 3.1.6
    Case(
        "symbol",
        "jinja2/loaders.py",
        "Why would split_template_path reject a template name?",
        ("os.path.sep in piece", "or piece == os.path.pardir"),
    ),
    Case(
        "elsewhere",
        "jinja2/loaders.py",
        "What message does FileSystemLoader give with TemplateNotFound?",
        (
            'plural = "path" if len(self.searchpath) == 1 else "paths"',
            'f"{template!r} not found in search {plural}: {paths_str}",',
        ),
    ),
    Case(
        "plain",
        "jinja2/loaders.py",
        "How does loading a template use the bytecode cache?",
        ("bucket = bcc.get_bucket(environment, name, filename, source)", "bcc.set_bucket(bucket)"),
    ),
    # idna 3.20
    Case(
        "symbol",
        "idna/core.py",
        "Which hyphen positions does `check_hyphen_ok` reject?",
        ('if label[2:4] == "--":', 'if label.startswith("-") or label.endswith("-"):'),
    ),
    Case(
        "elsewhere",
        "idna/core.py",
        "What is _max_domain_length set to and where is it checked?",
        (
            "_max_domain_length = 253  # RFC 1035 octets, excluding any trailing dot",
            "return len(domain) <= _max_domain_length + trailing_dot",
        ),
    ),
    # attrs 26.1.0
    Case(
        "symbol",
        "attr/validators.py",
        "What error message does max_len give when a value is too long?",
        (
            "if len(value) > self.max_length:",
            "msg = f\"Length of '{attr.name}' must be <= {self.max_length}: {len(value)}\"",
        ),
    ),
    Case(
        "elsewhere",
        "attr/validators.py",
        "Where is set_run_validators called, and with what?",
        (
            "set_run_validators(not disabled)",
            "set_run_validators(False)",
            "set_run_validators(prev)",
        ),
    ),
    # pyyaml 6.0.4
    Case(
        "plain",
        "yaml/__init__.py",
        "When no loader is given, which loaders does a new constructor get registered on?",
        (
            "loader.Loader.add_constructor(tag, constructor)",
            "loader.FullLoader.add_constructor(tag, constructor)",
            "loader.UnsafeLoader.add_constructor(tag, constructor)",
        ),
    ),
    Case(
        "symbol",
        "yaml/__init__.py",
        "Which Loader does yaml.safe_load use?",
        ("return load(stream, SafeLoader)",),
    ),
    # python-dateutil 2.9.0.post0
    Case(
        "symbol",
        "dateutil/relativedelta.py",
        "Can relativedelta take fractional years or months?",
        (
            "if any(x is not None and x != int(x) for x in (years, months)):",
            'raise ValueError("Non-integer years and months are "',
        ),
    ),
    Case(
        "plain",
        "dateutil/relativedelta.py",
        "What happens when adding a month lands on a day that does not exist, like January 31?",
        ("day = min(calendar.monthrange(year, month)[1],", "self.day or other.day)"),
    ),
    Case(
        "elsewhere",
        "dateutil/relativedelta.py",
        "Where is `leapdays` applied when the delta is added to a date?",
        ("if self.leapdays and month > 2 and calendar.isleap(year):", "days += self.leapdays"),
    ),
    # charset_normalizer 3.5.3
    Case(
        "plain",
        "charset_normalizer/api.py",
        "What encoding is assumed when the input is empty?",
        ('return CharsetMatches([CharsetMatch(sequences, "utf_8", 0.0, False, [], "")])',),
    ),
    Case(
        "elsewhere",
        "charset_normalizer/api.py",
        "How is TOO_SMALL_SEQUENCE used in from_bytes?",
        ("is_too_small_sequence: bool = len(sequences) < TOO_SMALL_SEQUENCE",),
    ),
    # annotated_types 0.8.0
    Case(
        "symbol",
        "annotated_types/__init__.py",
        "When does `Len` unpack into a MinLen constraint?",
        ("if self.min_length > 0:", "yield MinLen(self.min_length)"),
    ),
)


# A second, independent set over packages CASES does not use, written separately from the
# package sources alone (not from the anchors), as a held-out check: `--set b`.
CASES_B: tuple[Case, ...] = (
    # h2 4.4.1
    Case(
        "plain",
        "h2/settings.py",
        "What is the largest frame size a peer may advertise in its HTTP/2 settings?",
        ("if not 16384 <= value <= 16777215:  # 2^14 and 2^24 - 1",),
    ),
    Case(
        "symbol",
        "h2/settings.py",
        "If the remote peer never sent MAX_CONCURRENT_STREAMS, what limit does "
        "Settings.max_concurrent_streams report?",
        ("return self.get(SettingCodes.MAX_CONCURRENT_STREAMS, 2**32+1)",),
    ),
    # hpack 4.2.0
    Case(
        "plain",
        "hpack/table.py",
        "What happens to the dynamic table when one header is bigger than the table's "
        "maximum size?",
        ("# We just clear the table if the entry is too big", "if size > self._maxsize:"),
    ),
    Case(
        "symbol",
        "hpack/table.py",
        "I get InvalidTableIndex from `HeaderTable.get_by_index(0)`, why is zero not a valid "
        "index?",
        (
            "Note that the table is 1-based ie an index of 0 is",
            'raise InvalidTableIndex("Invalid table index %d" % original_index)',
        ),
    ),
    Case(
        "elsewhere",
        "hpack/table.py",
        "How is STATIC_TABLE_LENGTH used to map an HPACK index onto the dynamic table?",
        (
            "index -= HeaderTable.STATIC_TABLE_LENGTH",
            "offset = HeaderTable.STATIC_TABLE_LENGTH + 1",
        ),
    ),
    # urllib3 2.8.0
    Case(
        "elsewhere",
        "urllib3/util/retry.py",
        "RETRY_AFTER_STATUS_CODES: which codes are in it, and where does the retry decision "
        "look at it?",
        (
            "RETRY_AFTER_STATUS_CODES = frozenset([413, 429, 503])",
            "and (status_code in self.RETRY_AFTER_STATUS_CODES)",
        ),
    ),
    Case(
        "plain",
        "urllib3/util/retry.py",
        "With a backoff factor set, how long does the client sleep between consecutive failed "
        "attempts, and is there a cap?",
        (
            "DEFAULT_BACKOFF_MAX = 120",
            "backoff_value = self.backoff_factor * (2 ** (consecutive_errors_len - 1))",
            "return float(max(0, min(self.backoff_max, backoff_value)))",
        ),
    ),
    Case(
        "symbol",
        "urllib3/util/retry.py",
        "Retry.increment re-raises a read timeout on a POST instead of retrying it. Why?",
        (
            "if read is False or method is None or not self._is_method_retryable(method):",
            '["HEAD", "GET", "PUT", "DELETE", "OPTIONS", "TRACE"]',
        ),
    ),
    # anyio 4.16.0
    Case(
        "elsewhere",
        "anyio/streams/memory.py",
        "When does sending on a memory object stream fail with BrokenResourceError?",
        ("if not self._state.open_receive_channels:", "raise BrokenResourceError from None"),
    ),
    Case(
        "plain",
        "anyio/streams/memory.py",
        "If the task waiting to receive is being cancelled, is a sent item still handed to it?",
        ("if not receiver.task_info.has_pending_cancellation():", "receiver.item = item"),
    ),
    Case(
        "symbol",
        "anyio/streams/memory.py",
        "receive_nowait on an empty stream: when do I get EndOfStream rather than WouldBlock?",
        ("elif not self._state.open_send_channels:",),
    ),
    # filelock 3.32.7
    Case(
        "elsewhere",
        "filelock/_unix.py",
        "Which errno values are in _CONTENTION_ERRNOS and what does a lock attempt do when it "
        "gets one?",
        (
            "_CONTENTION_ERRNOS: Final[frozenset[int]] = frozenset({EACCES, EAGAIN, EWOULDBLOCK})",
            "if exception.errno in _CONTENTION_ERRNOS:",
        ),
    ),
    Case(
        "plain",
        "filelock/_unix.py",
        "What happens when the lock file is on a filesystem that does not support flock?",
        (
            'warnings.warn("flock not supported on this filesystem, falling back to '
            'SoftFileLock", stacklevel=2)',
            "self.__class__ = AsyncSoftFileLock if isinstance(self, BaseAsyncFileLock) "
            "else SoftFileLock",
        ),
    ),
    Case(
        "symbol",
        "filelock/_util.py",
        "What does raise_on_not_writable_file do when the lock path is a directory?",
        (
            "if stat.S_ISDIR(file_stat.st_mode):",
            'raise IsADirectoryError(EISDIR, "Is a directory", filename)  # pragma: win32 no cover',
        ),
    ),
    Case(
        "symbol",
        "filelock/_util.py",
        "How does `break_lock_file` notice that another process recreated the lock after it "
        "was judged stale?",
        (
            "Path(lock_file).rename(break_path)",
            "if st_after.st_mtime > mtime_before or st_after.st_ino != ino_before:",
        ),
    ),
    # python-dotenv 1.2.4
    Case(
        "elsewhere",
        "dotenv/main.py",
        "Which values of PYTHON_DOTENV_DISABLED switch off load_dotenv?",
        (
            'value = os.environ["PYTHON_DOTENV_DISABLED"].casefold()',
            'return value in {"1", "true", "t", "yes", "y"}',
            "if _load_dotenv_disabled():",
        ),
    ),
    Case(
        "plain",
        "dotenv/main.py",
        "If a variable is already set in the environment, does loading a .env file overwrite it?",
        ("override: bool = False,", "if k in os.environ and not self.override:"),
    ),
    Case(
        "symbol",
        "dotenv/main.py",
        'With quote_mode="auto", when does set_key put quotes around the value?',
        ('quote_mode == "auto" and not value_to_set.isalnum()', "value_out = f\"'{escaped}'\""),
    ),
    # packaging 26.4
    Case(
        "symbol",
        "packaging/utils.py",
        "Why is a wheel named foo__bar-1.0-py3-none-any.whl rejected by parse_wheel_filename?",
        (
            'if "__" in name_part or _wheel_name_regex.match(name_part) is None:',
            'raise InvalidWheelFilename(f"Invalid project name: {filename!r}")',
        ),
    ),
    Case(
        "symbol",
        "packaging/utils.py",
        "How does packaging.utils.canonicalize_name treat dots, underscores and runs of dashes?",
        (
            'value = name.lower().replace("_", "-").replace(".", "-")',
            'while "--" in value:',
            'value = value.replace("--", "-")',
        ),
    ),
)

SETS: dict[str, tuple[Case, ...]] = {"a": CASES, "b": CASES_B, "all": CASES + CASES_B}
SET_NAMES = {"a": "CASES", "b": "CASES_B", "all": "CASES and CASES_B"}


def section_of(which: str) -> str:
    """The --write section of a set when --section is not given."""
    return SECTION if which == "a" else f"{SECTION}-{which}"


def site_packages() -> Path:
    from cprs_engine.training.data.packages import site_packages as where

    return where()


def read(path: str) -> str | None:
    """A file's text as the generator reads it (newlines normalised, tabs expanded)."""
    try:
        text = (site_packages() / path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return text.replace("\r\n", "\n").replace("\t", "    ")


def section(path: str, text: str) -> str:
    return f"# {path}\n{text.rstrip()}\n"


def gold_problem(gold: tuple[str, ...], doc: str) -> str | None:
    """Why a case's gold cannot be scored in `doc`, or None: each gold line must be a line of
    it (stripped) and occur exactly once in it, as a substring of the whitespace-normalised
    text too (the way recall looks for it)."""
    from cprs_engine.evaluation.evaluate import normalize

    lines = [ln.strip() for ln in doc.splitlines()]
    flat = normalize(doc)
    for g in gold:
        n_lines, n_sub = lines.count(g), flat.count(normalize(g))
        if n_lines != 1 or n_sub != 1:
            return f"gold {g!r}: {n_lines} line(s), {n_sub} occurrence(s)"
    return None


def package(path: str) -> str:
    return path.split("/", 1)[0]


def partners(case: Case, texts: dict[str, str]) -> list[str]:
    """Two files of other packages from the planned cases, for the three-file variant: the
    first pair, in path order cycling from the case's own file, that keeps the document under
    MAX_DOC_CHARS."""
    pool = sorted(texts)
    start = pool.index(case.path)
    order = [p for p in pool[start + 1 :] + pool[:start] if package(p) != package(case.path)]
    room = MAX_DOC_CHARS - len(texts[case.path])
    for i, a in enumerate(order):
        for b in order[i + 1 :]:
            if package(a) != package(b) and len(texts[a]) + len(texts[b]) <= room:
                return [a, b]
    return []


@dataclass(frozen=True)
class Doc:
    case: int  # index into the cases planned
    variant: str
    files: tuple[str, ...]
    text: str


def plan(cases: tuple[Case, ...] = CASES) -> tuple[list[Doc], list[str]]:
    """The documents to score, and a line per skipped case or variant. No model needed."""
    texts: dict[str, str] = {}
    skipped: list[str] = []
    for path in dict.fromkeys(c.path for c in cases):
        text = read(path)
        if text is None:
            skipped.append(f"{path}: missing or unreadable")
        elif len(text) > MAX_FILE_CHARS:
            skipped.append(f"{path}: {len(text):,} chars, over {MAX_FILE_CHARS:,}")
        else:
            texts[path] = text
    docs: list[Doc] = []
    for i, c in enumerate(cases):
        if c.path not in texts:
            skipped.append(f"case {i} ({c.path}): file skipped")
            continue
        others = partners(c, texts)
        order = list(others)
        order.insert(i % 3, c.path)  # the question's file first, second or third
        variants = {"alone": (c.path,), "among 3": tuple(order)}
        for variant, files in variants.items():
            if len(files) != (1 if variant == "alone" else 3):
                skipped.append(f"case {i} {variant}: too few partner files")
                continue
            text = "\n".join(section(f, texts[f]) for f in files)
            why = gold_problem(c.gold, text)
            if why:
                skipped.append(f"case {i} {variant} ({c.path}): {why}")
                continue
            docs.append(Doc(i, variant, files, text))
    return docs, skipped


def anchored_share(query: str, text: str, gold: tuple[str, ...]) -> float:
    """Share of gold lines inside the symbol anchors' line ranges (no model)."""
    from cprs_engine.anchors import code_anchors

    ranges = code_anchors(query, text)
    hits = 0
    for g in gold:
        at = next(
            i
            for i, ln in _line_spans(text)
            if text[i : i + len(ln)].strip() == g  # the one line (gold_problem checked)
        )
        hits += any(s <= at < e for s, e in ranges)
    return hits / len(gold)


def _line_spans(text: str):
    pos = 0
    for ln in text.split("\n"):
        yield pos, ln
        pos += len(ln) + 1


def run_doc(doc: Doc, case: Case, comp, view, embedder) -> list[dict]:
    import cprs_engine.compressor as compressor
    from cprs_engine.evaluation.baselines import retrieve
    from cprs_engine.evaluation.evaluate import recall

    ctx = view.count(doc.text)
    rows, budget = [], None
    for method in METHODS:
        t0 = time.perf_counter()
        doc_type = None
        if method.startswith("cprs"):
            saved = compressor.symbol_anchors
            if method == "cprs-noanchor":
                compressor.symbol_anchors = lambda *_: []  # whatever its signature: no anchors
            try:
                res = comp.compress(case.question, doc.text)
            finally:
                compressor.symbol_anchors = saved
            out, doc_type = res.compressed, res.doc_type
            if method == "cprs":
                budget = view.count(out)
        else:
            out = retrieve(method, case.question, doc.text, budget, view, embedder=embedder)
        found = [g for g in case.gold if recall([g], out) == 1.0]
        rows.append(
            {
                "case": doc.case,
                "kind": case.kind,
                "variant": doc.variant,
                "path": case.path,
                "files": list(doc.files),
                "question": case.question,
                "method": method,
                "doc_type": doc_type,
                "context_tokens": ctx,
                "output_tokens": view.count(out),
                "recall": recall(list(case.gold), out),
                "missed": [g for g in case.gold if g not in found],
                "seconds": time.perf_counter() - t0,
            }
        )
    return rows


def summarize(rows: list[dict], anchored: dict[tuple[int, str], float]) -> list[list[str]]:
    """A table row per kind and variant, then one per variant over all kinds."""
    out = []
    groups = [(k, v) for v in VARIANTS for k in KINDS] + [(None, v) for v in VARIANTS]
    for kind, variant in groups:
        sel = [r for r in rows if r["variant"] == variant and kind in (None, r["kind"])]
        if not sel:
            continue
        cases = sorted({r["case"] for r in sel})
        cells = [KINDS[kind] if kind else "**all**", variant, str(len(cases))]
        for m in METHODS:
            rs = [r for r in sel if r["method"] == m]
            cells.append(f"{sum(r['recall'] for r in rs) / len(rs):.2f}")
        cells.append(f"{sum(anchored[(c, variant)] for c in cases) / len(cases):.2f}")
        for m in ("cprs", "cprs-noanchor"):
            rs = [r for r in sel if r["method"] == m]
            ctx = sum(r["context_tokens"] for r in rs)
            outs = sum(max(r["output_tokens"], 1) for r in rs)
            cells.append(f"{ctx / outs:.1f}×")
        out.append(cells)
    return out


def report(rows, anchored, skipped, info, argv, which: str = "a") -> str:
    headers = ["kind", "variant", "cases", *(f"recall {m}" for m in METHODS), "anchored"]
    headers += ["ratio cprs", "ratio cprs-noanchor"]
    ctx = [r["context_tokens"] for r in rows if r["method"] == "cprs"]
    misses = [
        f"- case {r['case']} ({r['variant']}, {r['path']}): {r['question']} — missed "
        + "; ".join(f"`{g}`" for g in r["missed"])
        for r in rows
        if r["method"] == "cprs" and r["missed"]
    ]
    lines = [
        "## Code questions written by hand (not the code_qa generator)"
        + ("" if which == "a" else f", set {which}"),
        "",
        f"- Date: {_report.today()}",
        f"- Machine: {_report.machine_text(info)}",
        f"- Command: `{_report.command_line('benchmarks.code_questions', argv)}`",
        f"- Cases: {len(SETS[which])} questions ({SET_NAMES[which]}) in "
        "benchmarks/code_questions.py over installed "
        "package sources, gold = 1-3 lines of the file; each alone and among 2 files of other "
        f"packages; documents {min(ctx, default=0):,}-{max(ctx, default=0):,} tokens "
        "(the critic's tokenizer). Baselines at cprs's output size. Ratios pooled "
        "(context tokens / output tokens, summed). `anchored`: share of gold lines inside "
        "the symbol anchors' lines.",
        f"- Skipped: {'; '.join(skipped) if skipped else 'none'}",
        "",
        _report.table(headers, summarize(rows, anchored)),
    ]
    if misses:
        lines += ["", "Gold lines cprs missed:", "", *misses]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.code_questions", description=__doc__)
    p.add_argument("--json", metavar="OUT", help="write every row, the skips and the machine")
    p.add_argument("--write", metavar="FILE", help="replace the --section section of FILE")
    p.add_argument(
        "--set",
        dest="which",
        choices=SETS,
        default="a",
        help="a: CASES (default), b: CASES_B, all: both",
    )
    p.add_argument(
        "--section",
        default=None,
        help=f"marked section (default {SECTION}, {SECTION}-b or {SECTION}-all by set)",
    )
    p.add_argument("--limit", type=int, default=None, help="only the first N cases")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default torch's)")
    args = p.parse_args(argv)

    import torch

    from cprs_engine.compressor import Compressor
    from cprs_engine.evaluation.baselines import MiniLM, TokenView

    if args.threads:
        torch.set_num_threads(args.threads)
    info = _report.machine(args.threads)
    cases = SETS[args.which]
    section_name = args.section or section_of(args.which)
    docs, skipped = plan(cases)
    if args.limit is not None:
        docs = [d for d in docs if d.case < args.limit]
    comp = Compressor.load()
    view = TokenView.from_hf(comp.tokenizer)
    embedder = MiniLM(threads=args.threads) if args.threads else MiniLM()
    rows: list[dict] = []
    anchored: dict[tuple[int, str], float] = {}
    for n, doc in enumerate(docs, 1):
        case = cases[doc.case]
        anchored[(doc.case, doc.variant)] = anchored_share(case.question, doc.text, case.gold)
        for row in run_doc(doc, case, comp, view, embedder):
            row["set"] = "a" if case in CASES else "b"
            row["anchored"] = anchored[(doc.case, doc.variant)]
            rows.append(row)
            print(
                f"[{n}/{len(docs)}] case {doc.case} {doc.variant} {row['method']}: "
                f"recall {row['recall']:.2f} {row['context_tokens']:,}->{row['output_tokens']:,} "
                f"tokens {row['seconds']:.1f}s",
                flush=True,
            )
    text = report(rows, anchored, skipped, info, argv, args.which)
    print("\n" + text)
    if args.write:
        _report.replace_section(args.write, section_name, text)
        print(f"\nwrote the {section_name} section of {args.write}", file=sys.stderr)
    if args.json:
        from cprs_engine.training.data.packages import split_of

        for r in rows:
            r["split"] = split_of(package(r["path"]))
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps(
                {"set": args.which, "machine": info, "skipped": skipped, "rows": rows}, indent=1
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
