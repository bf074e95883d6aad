"""Write the last reliability run's figures into RELIABILITY.md.

    python -m tests.reliability.report [--write RELIABILITY.md] [--soak runs/soak.json]

Reads runs/reliability.json (written by `make reliability`) and, when present, the soak's JSON;
replaces the `reliability-figures` section of the file. Nothing here measures anything.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks import _report

SECTION = "reliability-figures"


def _cpu_per_stream(phase: dict) -> str:
    cpu = phase.get("cpu_ms_per_stream")
    if not cpu:
        return ""
    order = [n for n in ("proxy", "backend", "load client") if n in cpu]
    return "; CPU per stream in that phase: " + ", ".join(f"{n} {cpu[n]:.2f} ms" for n in order)


def render(rel: dict, soak: dict | None) -> str:
    m = rel.get("_machine", {})
    kinds = rel.get("bad_input_kinds", {})
    fuzz = rel.get("fuzz", {})
    faults = rel.get("faults_survived", {})
    lines = [
        "## Figures of the last run",
        "",
        f"- Run: {rel.get('_written', '?')}, `make reliability`",
        f"- Machine: {_report.machine_text(m) if m else '?'}",
        "- `lscpu | head`: " + "; ".join(" ".join(x.split()) for x in m.get("lscpu", [])[:10]),
        "- The machine's 2 cores were shared with three other agents' work: timings are relative"
        " (proxy vs direct in the same run), not absolute.",
        "",
        "| what | result |",
        "| :--- | :--- |",
        f"| bad-input kinds tried | {len(kinds)}; 500s: {sum(1 for v in kinds.values() if v >= 500)};"
        f" statuses: {_counts(kinds.values())} |",
    ]
    for part in ("structured", "raw"):
        got = fuzz.get(part, {})
        n = sum(got.values())
        fives = sum(v for k, v in got.items() if k.startswith("5"))
        lines.append(f"| fuzzing, {part} bodies | {n} examples; 500s: {fives}; statuses: {got} |")
    if fuzz:
        lines.append(
            f"| fuzzing, documents compressed | {fuzz.get('changed_documents', 0)} requests had "
            "document text changed; no other byte of any body changed |"
        )
    if faults:
        lines.append(
            f"| faults survived | {len(faults)}: "
            + "; ".join(f"{k} → {v}" for k, v in faults.items())
            + " |"
        )
    if "redis_faults" in rel:
        r = rel["redis_faults"]
        lines.append(
            f"| Redis killed, restarted, frozen (SIGSTOP) | {r['requests']} requests through "
            f"the outages, {r['failed']} failed, slowest {r['slowest_s'] * 1000:.0f} ms |"
        )
    if "client_disconnects" in rel:
        lines.append(
            "| clients leaving | "
            + ", ".join(rel["client_disconnects"])
            + ": all logged 499, backend calls closed, nothing leaked |"
        )
    if "load" in rel:
        ld = rel["load"]
        p, d = ld["proxy"], ld["direct"]
        lines.append(
            f"| load: {ld['streams']} concurrent streams, {ld['seconds']:.0f} s each way | "
            f"through the proxy {p['requests']} streams ({p['rps']}/s), {p['errors']} errors; "
            f"direct {d['requests']} ({d['rps']}/s), {d['errors']} errors; time to first byte "
            f"p50 {p['ttfb_p50_ms']:.0f} ms vs {d['ttfb_p50_ms']:.0f} ms, p99 "
            f"{p['ttfb_p99_ms']:.0f} ms vs {d['ttfb_p99_ms']:.0f} ms ({ld['ttfb_p99_ratio']}× direct)"
            + _cpu_per_stream(p)
            + " |"
        )
    if "tenant_isolation" in rel:
        t = rel["tenant_isolation"]
        lines.append(
            f"| tenant isolation | {t['tenants']} random tenants, {t['requests']} requests, "
            f"{t['cache_reads']} cache reads, {t['cross_tenant_reads']} cross-tenant |"
        )
    if "secrets_scan" in rel:
        s = rel["secrets_scan"]
        lines.append(
            f"| secrets scan | {s['canaries']} canaries over {s['places_scanned']} logs, request "
            f"log lines, headers, bodies, metrics and cache keys: found {s['found']} times |"
        )
    if soak:
        lines.append(
            f"| soak ({soak['minutes']:g} min{'' if soak['minutes'] >= 30 else ', SHORTENED'}, "
            f"concurrency {soak['concurrency']}) | {sum(soak['counts'].values())} requests, "
            f"{soak['failed']} failed; RSS {soak['rss']['after_warmup'] / 1024:.0f} → "
            f"{soak['rss']['end'] / 1024:.0f} MiB ({soak['rss']['drift_pct']:+.1f}%, peak "
            f"{soak['rss']['peak'] / 1024:.0f}); open files {soak['fds']['after_warmup']} → "
            f"{soak['fds']['end']} (peak {soak['fds']['peak']}) |"
        )
    return "\n".join(lines)


def _counts(values) -> str:
    out: dict[int, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return ", ".join(f"{k}: {n}" for k, n in sorted(out.items()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.reliability.report")
    p.add_argument("--results", default="runs/reliability.json")
    p.add_argument("--soak", default="runs/soak.json")
    p.add_argument("--write", metavar="FILE")
    args = p.parse_args(argv)
    rel = json.loads(Path(args.results).read_text())
    soak = json.loads(Path(args.soak).read_text()) if Path(args.soak).exists() else None
    text = render(rel, soak)
    print(text)
    if args.write:
        _report.replace_section(args.write, SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
