"""`cprs serve`: run the OpenAI-compatible proxy with uvicorn.

Imports nothing heavy at module level: `proxy/cli.py` imports every command module to
build its parser. The config path comes from --config, else $CPRS_CONFIG, else the embedded
defaults (see proxy/config.py); --host/--port override server.host/server.port.
"""

from __future__ import annotations

import argparse
import logging
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", help="proxy config YAML (default: $CPRS_CONFIG, else built-in defaults)"
    )
    parser.add_argument("--host", help="listen address (default: server.host, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (default: server.port, 8000)")


def run(args: argparse.Namespace) -> int:
    from proxy.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"cprs serve: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log.level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    # The format above names no source line, thread or process: skip looking them up on each
    # record (the logging docs' "Optimization" table; one log line per request).
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    import uvicorn

    from proxy.app import create_app
    from proxy.http_limits import uvicorn_settings

    app = create_app(config)
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    where = config.source or "built-in defaults"
    logging.getLogger("proxy").info("cprs serve on http://%s:%s (config: %s)", host, port, where)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=config.log.level.lower(),
        access_log=False,
        **uvicorn_settings(config.server),
    )
    return 0
