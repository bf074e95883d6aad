"""The proxy's CPU per pass-through request, in process, for one or more source trees.

    python -m benchmarks.proxy_cpu [--tree NAME=DIR ...] [--requests 2000] [--repeat 5]

Each tree (default: this checkout) runs in its own interpreter with that tree first on the
path: the app is built with an in-memory backend (httpx.MockTransport answering a fixed
completion) and driven through raw ASGI calls, so neither an HTTP server nor a client is
measured - only the proxy's own work per request (parse, auth, detect, count, build and send
the backend request, relay, metrics, logs), after the app's startup has run. CPU seconds of the process (`time.process_time`),
which a machine shared with other work disturbs less than wall time; trees alternate, and the
best of `--repeat` runs is reported. No HTTP parsing: httptools/h11 show up in `proxy_bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BODY = json.dumps(
    {"model": "bench", "messages": [{"role": "user", "content": "Say the special magic number."}]}
).encode()
ANSWER = json.dumps(
    {"id": "c", "object": "chat.completion", "model": "bench",
     "choices": [{"index": 0, "message": {"role": "assistant", "content": "7421983"},
                  "finish_reason": "stop"}]}
).encode()  # fmt: skip


def worker(requests: int) -> float:
    """CPU microseconds per request for the `proxy` package first on sys.path."""
    import httpx

    from proxy.app import create_app
    from proxy.config import config_from_dict

    async def backend(request):
        return httpx.Response(200, content=ANSWER, headers={"content-type": "application/json"})

    class NoEngine:
        engine_version = "none"

        def ready(self):
            return True, "none"

        async def start(self):
            return None

        async def close(self):
            return None

    cfg = config_from_dict(
        {
            "models": [{"name": "bench", "model": "openai/bench", "api_base": "http://b/v1",
                        "api_key": "sk-x"}],
            "tenants": [{"name": "t", "api_keys": ["sk-t"]}],
            "policies": {"default": {"threshold_tokens": 4000}},
        }
    )  # fmt: skip
    app = create_app(cfg, engine=NoEngine(), upstream_transport=httpx.MockTransport(backend))
    headers = [
        (b"content-type", b"application/json"),
        (b"authorization", b"Bearer sk-t"),
        (b"content-length", str(len(BODY)).encode()),
    ]
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": "POST", "scheme": "http", "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions", "query_string": b"", "root_path": "",
        "headers": headers, "client": ("127.0.0.1", 5), "server": ("127.0.0.1", 80),
    }  # fmt: skip

    async def one() -> None:
        done = asyncio.Event()
        sent = [False]
        status = []

        async def receive():
            if not sent[0]:
                sent[0] = True
                return {"type": "http.request", "body": BODY, "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            if message["type"] == "http.response.start":
                status.append(message["status"])
            elif not message.get("more_body"):
                done.set()

        await app({**scope, "state": {}}, receive, send)
        if status != [200]:
            raise RuntimeError(f"status {status}")

    async def lifespan() -> asyncio.Task:
        """Start the app as a server would (its startup work included), in a task."""
        messages: asyncio.Queue = asyncio.Queue()
        started = asyncio.Event()
        await messages.put({"type": "lifespan.startup"})

        async def send(message):
            if message["type"].startswith("lifespan.startup."):
                started.set()

        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        task = asyncio.get_running_loop().create_task(app(scope, messages.get, send))
        await started.wait()
        return task

    async def run() -> float:
        await lifespan()
        await asyncio.sleep(0)  # lets the post-startup tasks take their first step
        for _ in range(200):  # warm-up: imports, encodings, the provider table
            await one()
        t = time.process_time()
        for _ in range(requests):
            await one()
        return (time.process_time() - t) / requests * 1e6

    logging.disable(logging.INFO)
    return asyncio.run(run())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.proxy_cpu", description=__doc__)
    p.add_argument("--tree", action="append", default=[], help="NAME=DIR (default: this one)")
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--write", metavar="FILE", help="replace the proxy-cpu section of FILE")
    p.add_argument("--note", default="", help="a sentence for the report (what the trees are)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(worker(args.requests))
        return 0
    trees = dict(t.split("=", 1) for t in args.tree) or {"this checkout": str(ROOT)}
    results: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(args.repeat):
        for name, tree in trees.items():
            env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve())}
            # run as a script: its own folder, then the tree, lead sys.path (not this checkout)
            argv_ = [sys.executable, str(Path(__file__).resolve()), "--worker"]
            argv_ += ["--requests", str(args.requests)]
            out = subprocess.run(
                argv_, cwd=tree, env=env, capture_output=True, text=True, check=True
            )
            results[name].append(float(out.stdout.strip().splitlines()[-1]))
    text = render(results, args, argv)
    print(text)
    if args.write:
        from benchmarks import _report

        _report.replace_section(args.write, "proxy-cpu", text)
    return 0


def render(results: dict[str, list[float]], args: argparse.Namespace, argv) -> str:
    from benchmarks import _report

    info = _report.machine(with_torch=False)
    first = min(next(iter(results.values())))
    rows = [
        [name, f"{min(v):.0f}", f"{(min(v) - first) / first * 100:+.0f}%",
         ", ".join(f"{x:.0f}" for x in sorted(v))]
        for name, v in results.items()
    ]  # fmt: skip
    return "\n".join(
        [
            "## Proxy: CPU per pass-through request (in process)",
            "",
            f"- Date: {_report.today()}",
            f"- Machine: {_report.machine_text(info)}",
            f"- Command: `{_report.command_line('benchmarks.proxy_cpu', argv)}`",
            f"- Setup: {args.requests} requests after 200 warm-up, through raw ASGI calls, the "
            "backend an in-memory httpx.MockTransport; `time.process_time` of the process; trees "
            f"alternate, best of {args.repeat}. {args.note}",
            "",
            _report.table(["tree", "best µs CPU/request", "vs first", "all runs"], rows),
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
