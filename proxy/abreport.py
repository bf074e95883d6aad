"""`cprs ab-report`: compare the A/B arms from the proxy's JSONL request log.

Per arm (optionally also per tenant, policy or model): requests, errors and error rate, tokens
before and after compression, tokens and percent saved, cache hits, latency p50/p95/p99 (ms).
The log is read as a stream, one record per line; malformed lines are counted and skipped, so a
log being written while it is read still reports. Only the standard library is imported.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

GROUPS = ("tenant", "policy", "model")
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log", help="JSONL request log (default: log.requests_path of --config)")
    parser.add_argument(
        "--config", help="proxy config to read log.requests_path from (or CPRS_CONFIG)"
    )
    parser.add_argument("--tenant", help="only this tenant")
    parser.add_argument("--policy", help="only this policy")
    parser.add_argument(
        "--since",
        help="only records at/after: unix seconds, ISO time (UTC if no zone), or 30m/24h/7d",
    )
    parser.add_argument(
        "--by", action="append", choices=GROUPS, default=[], help="also group by (repeatable)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object instead of a table")


@dataclass
class ArmStats:
    """Running sums for one group; latencies kept for exact percentiles."""

    requests: int = 0
    errors: int = 0
    compressed: int = 0
    cache_hits: int = 0
    original_tokens: int = 0
    sent_tokens: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def add(self, rec: dict) -> None:
        self.requests += 1
        status = rec.get("status")
        if rec.get("error_type") or (isinstance(status, int) and status >= 400):
            self.errors += 1
        self.compressed += bool(rec.get("compressed"))
        self.cache_hits += rec.get("cache") == "hit"
        self.original_tokens += _int(rec.get("original_tokens"))
        self.sent_tokens += _int(rec.get("sent_tokens"))
        lat = rec.get("latency_ms")
        if isinstance(lat, int | float) and math.isfinite(lat):
            self.latencies_ms.append(float(lat))

    def summary(self) -> dict:
        saved = self.original_tokens - self.sent_tokens
        lat = sorted(self.latencies_ms)
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.errors / self.requests if self.requests else 0.0,
            "compressed": self.compressed,
            "cache_hits": self.cache_hits,
            "original_tokens": self.original_tokens,
            "sent_tokens": self.sent_tokens,
            "saved_tokens": saved,
            "saving_pct": 100.0 * saved / self.original_tokens if self.original_tokens else 0.0,
            "latency_ms": {
                "p50": percentile(lat, 50),
                "p95": percentile(lat, 95),
                "p99": percentile(lat, 99),
            },
        }


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None for no data."""
    if not sorted_values:
        return None
    pos = (len(sorted_values) - 1) * p / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def parse_since(text: str, *, now: float | None = None) -> float:
    """Unix seconds from `1718000000`, `2024-06-10T12:00:00[+02:00]` or a relative `24h`."""
    text = text.strip()
    m = _RELATIVE.match(text)
    if m:
        return (time.time() if now is None else now) - float(m.group(1)) * _UNIT_S[m.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"--since: cannot read {text!r} as a time") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def read_records(lines: Iterable[str], counters: dict[str, int]) -> Iterator[dict]:
    """Parsed JSON objects; counts malformed lines in counters["malformed"]."""
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        if not isinstance(rec, dict) or rec.get("arm") not in ("compress", "control"):
            counters["malformed"] = counters.get("malformed", 0) + 1
            continue
        yield rec


def summarize(
    records: Iterable[dict],
    *,
    tenant: str | None = None,
    policy: str | None = None,
    since: float | None = None,
    by: tuple[str, ...] = (),
) -> dict:
    """{"arms": {arm: summary}, "groups": [{tenant?, policy?, model?, arm, ...summary}]}."""
    arms: dict[str, ArmStats] = {}
    groups: dict[tuple, ArmStats] = {}
    for rec in records:
        if tenant is not None and rec.get("tenant") != tenant:
            continue
        if policy is not None and rec.get("policy") != policy:
            continue
        if since is not None and not (
            isinstance(rec.get("ts"), int | float) and rec["ts"] >= since
        ):
            continue
        arm = rec["arm"]
        arms.setdefault(arm, ArmStats()).add(rec)
        if by:
            gkey = tuple(str(rec.get(g, "")) for g in by) + (arm,)
            groups.setdefault(gkey, ArmStats()).add(rec)
    out: dict = {"arms": {a: arms[a].summary() for a in sorted(arms)}}
    if by:
        out["groups"] = [
            {**dict(zip((*by, "arm"), k, strict=True)), **groups[k].summary()}
            for k in sorted(groups)
        ]
    return out


def format_table(report: dict, by: tuple[str, ...] = ()) -> str:
    """A fixed-width table: one row per arm, then one per group."""
    head = ["requests", "errors", "err%", "orig tok", "sent tok", "saved tok", "saved%", "hits"]
    head += ["p50 ms", "p95 ms", "p99 ms"]
    rows = [["arm", *head]]
    for arm, s in report["arms"].items():
        rows.append([arm, *_cells(s)])
    if by and report.get("groups"):
        rows.append([])
        rows.append(["/".join((*by, "arm")), *head])
        for g in report["groups"]:
            rows.append(["/".join(str(g[k]) for k in (*by, "arm")), *_cells(g)])
    widths = [max(len(r[i]) for r in rows if len(r) > i) for i in range(len(rows[0]))]
    lines = []
    for r in rows:
        if not r:
            lines.append("")
            continue
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    path = _log_path(args)
    if path is None:
        print("ab-report: no --log given and no log.requests_path in the config", file=sys.stderr)
        return 2
    try:
        since = parse_since(args.since) if args.since else None
    except ValueError as exc:
        print(f"ab-report: {exc}", file=sys.stderr)
        return 2
    counters: dict[str, int] = {}
    by = tuple(dict.fromkeys(args.by))
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            report = summarize(
                read_records(fh, counters),
                tenant=args.tenant,
                policy=args.policy,
                since=since,
                by=by,
            )
    except OSError as exc:
        print(f"ab-report: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    report["malformed_lines"] = counters.get("malformed", 0)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(format_table(report, by) if report["arms"] else "no matching requests")
        if report["malformed_lines"]:
            print(f"skipped {report['malformed_lines']} malformed line(s)", file=sys.stderr)
    return 0


def _log_path(args: argparse.Namespace) -> Path | None:
    if args.log:
        return Path(args.log)
    config = args.config or os.environ.get("CPRS_CONFIG")
    if config:
        import yaml

        try:
            doc = yaml.safe_load(Path(config).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            print(f"ab-report: cannot read config {config}: {exc}", file=sys.stderr)
            return None
        value = (doc.get("log") or {}).get("requests_path") if isinstance(doc, dict) else None
        if value:
            return Path(value)
    return None


def _cells(s: dict) -> list[str]:
    lat = s["latency_ms"]
    return [
        str(s["requests"]),
        str(s["errors"]),
        f"{100 * s['error_rate']:.1f}",
        str(s["original_tokens"]),
        str(s["sent_tokens"]),
        str(s["saved_tokens"]),
        f"{s['saving_pct']:.1f}",
        str(s["cache_hits"]),
        *("-" if lat[p] is None else f"{lat[p]:.1f}" for p in ("p50", "p95", "p99")),
    ]


def _int(v: object) -> int:
    return (
        int(v) if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) else 0
    )
