"""The product's entry point, `cprs`: the engine's commands (cprs_engine/cli.py) plus the
proxy's, `serve` and `ab-report`. It lives in the proxy because only the proxy may import both
the proxy and the engine. Each subcommand's module is imported only when run, so `cprs serve`
works without torch installed.
"""

from __future__ import annotations

import sys

from cprs_engine import cli as engine_cli

COMMANDS: list[engine_cli.Command] = [
    engine_cli.COMMANDS[0],  # compress
    ("serve", "proxy.commands", "run the OpenAI-compatible proxy"),
    *engine_cli.COMMANDS[1:],  # engine, train, tune, eval
    ("eval-followups", "proxy.followup_eval", "follow-up questions through the proxy, per mode"),
    ("ab-report", "proxy.abreport", "summarise A/B arms: requests, tokens, latency, errors"),
]


def main(argv: list[str] | None = None) -> int:
    return engine_cli.main(argv, COMMANDS, prog="cprs")


if __name__ == "__main__":
    sys.exit(main())
