"""The engine's own entry point, `python -m cprs_engine`: compress, engine serve, train, tune,
eval. It never imports the proxy, so an engine-only image runs it alone; the product's `cprs`
command (proxy/cli.py) lists these same commands beside the proxy's.

Each subcommand lives in its own module, imported only when run, so listing the commands needs
no torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# (command, module, help). A module defines `add_arguments(parser)` and `run(args) -> int`.
Command = tuple[str, str, str]
COMMANDS: list[Command] = [
    ("compress", "cprs_engine.commands.compress", "compress a document for a query"),
    ("engine", "cprs_engine.service", "the engine alone: `engine serve`"),
    ("train", "cprs_engine.training.train", "train the default critic (resumable)"),
    (
        "tune",
        "cprs_engine.evaluation.tune",
        "choose the critic's decoding settings on training data",
    ),
    ("eval", "cprs_engine.evaluation.evaluate", "recall / ratio / latency against RAG and BM25"),
]


def build_parser(
    command: str | None = None,
    commands: Sequence[Command] = COMMANDS,
    prog: str = "python -m cprs_engine",
) -> argparse.ArgumentParser:
    """All subcommands are listed; only `command`'s module is imported to add its arguments."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module, help_text in commands:
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(_module=module)
        if name == command:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(
    argv: list[str] | None = None,
    commands: Sequence[Command] = COMMANDS,
    prog: str = "python -m cprs_engine",
) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv[0] if argv else None, commands, prog).parse_args(argv)
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
