"""The one entry point, `cprs`. Each subcommand lives in its own module, imported only when run,
so `cprs serve` works without torch installed."""

from __future__ import annotations

import argparse
import importlib
import sys

# (command, module, help). A module defines `add_arguments(parser)` and `run(args) -> int`.
COMMANDS: list[tuple[str, str, str]] = [
    ("compress", "cprs_engine.commands.compress", "compress a document for a query"),
    ("serve", "proxy.commands", "run the OpenAI-compatible proxy"),
    ("engine", "cprs_engine.service", "the engine alone: `cprs engine serve`"),
    ("train", "cprs_engine.train", "train the default critic (resumable)"),
    ("tune", "cprs_engine.tune", "choose the critic's decoding settings on training data"),
    ("eval", "cprs_engine.evaluate", "recall / ratio / latency against RAG and BM25"),
    ("eval-followups", "proxy.followup_eval", "follow-up questions through the proxy, per mode"),
    ("ab-report", "proxy.abreport", "summarise A/B arms: requests, tokens, latency, errors"),
]


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """All subcommands are listed; only `command`'s module is imported to add its arguments."""
    parser = argparse.ArgumentParser(prog="cprs", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module, help_text in COMMANDS:
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(_module=module)
        if name == command:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
