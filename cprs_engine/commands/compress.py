"""`cprs compress --query Q --file F [--granularity G] [--instruction TEXT] [--prompt NAME]
[--budget N [--budget-unit U]] [--doc-type T] [--elision E] [--checkpoint PATH] [--json]`:
compress one document for one query.

Prints the compressed text, or with --json one JSON object: `CompressionResult.to_dict()`, the
same body `POST /v1/compress` returns. `--file -` reads standard input.

Exit status: 0 done; 2 bad usage or input (empty query, missing/empty/oversized/non-UTF-8
file, unknown granularity or prompt, bad budget or budget unit); 3 no critic checkpoint; 1
anything else.
Errors are one line on stderr. There is no fallback: without a critic nothing is compressed.
Inputs are checked before the model loads, so a typo fails in milliseconds, not seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import IO, Any

from cprs_engine import doctypes, prompts, units
from cprs_engine.errors import CheckpointNotFound, CPRSError, InvalidInput

MAX_FILE_BYTES = 64 << 20  # the engine service's default body limit


class UsageError(Exception):
    """Bad input before the engine runs: exit 2."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--query", "-q", required=True, help="the question the document serves")
    parser.add_argument("--file", "-f", required=True, help="the document (UTF-8); - for stdin")
    parser.add_argument("--granularity", help="keyword, sentence (default) or paragraph")
    parser.add_argument("--instruction", help="free-text control prompt (replaces the library's)")
    parser.add_argument("--prompt", help=f"library prompt: {', '.join(sorted(prompts.LIBRARY))}")
    parser.add_argument("--budget", type=int, help="keep at most this many tokens")
    parser.add_argument(
        "--budget-unit",
        help="what --budget counts: critic (default) or a backend's, e.g. tiktoken:o200k_base",
    )
    parser.add_argument(
        "--doc-type",
        choices=doctypes.DOC_TYPES,
        help="decode as this document type (default: detected; --json shows it)",
    )
    parser.add_argument(
        "--elision",
        choices=doctypes.ELISIONS,
        help="markers between non-adjacent kept spans: auto (the type's default), none, marker",
    )
    parser.add_argument("--checkpoint", help="critic directory (default: the shipped critic)")
    parser.add_argument("--window-tokens", type=int, help="tokens per window (w)")
    parser.add_argument("--windows-per-pass", type=int, help="windows per forward pass (ρ)")
    parser.add_argument("--device", help="torch device (default: best found)")
    parser.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        help="auto (default): bf16 autocast where the CPU has native bf16, else fp32",
    )
    parser.add_argument("--max-bytes", type=int, default=MAX_FILE_BYTES, help="largest input")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")


def load_compressor(args: argparse.Namespace):
    """The real critic: `Compressor.load` with the command line's options."""
    from cprs_engine.compressor import Compressor

    opts = {
        k: v
        for k, v in (
            ("window_tokens", args.window_tokens),
            ("windows_per_pass", args.windows_per_pass),
            ("device", args.device),
            ("precision", getattr(args, "precision", None)),
        )
        if v is not None
    }
    return Compressor.load(args.checkpoint, **opts)


def run(args: argparse.Namespace) -> int:
    return main_with(args, load=load_compressor)


def main_with(
    args: argparse.Namespace,
    *,
    load: Callable[[argparse.Namespace], Any],
    stdin: IO[bytes] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> int:
    """The command with its compressor loader and streams injected (tests pass their own)."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        query, context = read_inputs(args, stdin if stdin is not None else sys.stdin.buffer)
        compressor = load(args)
        result = compressor.compress(
            query,
            context,
            granularity=args.granularity,
            instruction=args.instruction,
            budget_tokens=args.budget,
            prompt=args.prompt,
            budget_unit=args.budget_unit,
            **_doc_options(args),
        )
    except (UsageError, InvalidInput) as exc:
        return _fail(stderr, str(exc), 2)
    except CheckpointNotFound as exc:
        return _fail(stderr, exc.message, 3)
    except CPRSError as exc:
        return _fail(stderr, exc.message, 1)
    except Exception as exc:  # a one-line report, not a traceback, for a CLI user
        return _fail(stderr, f"{type(exc).__name__}: {exc}", 1)
    if args.json:
        stdout.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
    else:
        stdout.write(result.compressed + "\n")
    stdout.flush()
    return 0


def _doc_options(args: argparse.Namespace) -> dict:
    """--doc-type / --elision, passed only when given (a test's compressor may not take them)."""
    opts = {"doc_type": getattr(args, "doc_type", None), "elision": getattr(args, "elision", None)}
    return {k: v for k, v in opts.items() if v is not None}


def read_inputs(args: argparse.Namespace, stdin: IO[bytes]) -> tuple[str, str]:
    """Validated (query, document), or UsageError/InvalidInput with a message for the user."""
    if not args.query or not args.query.strip():
        raise UsageError("--query must not be empty")
    if args.budget is not None and args.budget < 1:
        raise UsageError(f"--budget must be a positive integer, got {args.budget}")
    prompts.resolve(args.granularity, prompt=args.prompt, instruction=args.instruction)
    units.check(args.budget_unit)
    limit = args.max_bytes
    if args.file == "-":
        data = stdin.read(limit + 1)
        name = "standard input"
    else:
        try:
            with open(args.file, "rb") as f:
                data = f.read(limit + 1)
        except OSError as exc:
            raise UsageError(f"cannot read {args.file}: {exc.strerror or exc}") from exc
        name = args.file
    if len(data) > limit:
        raise UsageError(f"{name} is larger than {limit} bytes (--max-bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{name} is not UTF-8 text (byte {exc.start})") from exc
    if not text.strip():
        raise UsageError(f"{name} is empty")
    return args.query, text


def _fail(stderr: IO[str], message: str, code: int) -> int:
    stderr.write(f"cprs compress: error: {' '.join(message.split())}\n")
    stderr.flush()
    return code
