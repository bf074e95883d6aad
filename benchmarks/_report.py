"""Shared by the benchmarks: the machine, small statistics, and the marked sections of
BENCHMARKS.md (`replace_section`, the one writer, which `cprs eval` uses too: it lives in
cprs_engine/evaluation/sections.py).
"""

from __future__ import annotations

import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path

from cprs_engine.evaluation.sections import cpu_model, replace_section

__all__ = ["cpu_model", "replace_section"]  # re-exported for the benchmarks


def command_line(module: str, argv: list[str] | None = None) -> str:
    """The command as a user would retype it."""
    argv = sys.argv[1:] if argv is None else argv
    return shlex.join(["python", "-m", module, *argv])


def ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / (1 << 20)
    except OSError:
        pass
    return None


def machine(torch_threads: int | None = None, *, with_torch: bool = True) -> dict:
    """What the numbers were measured on; load average too, since a busy machine skews them."""
    info = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": ram_gib(),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "loadavg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    if not with_torch:
        return info
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch_threads or torch.get_num_threads()
    except ImportError:
        pass
    return info


def machine_text(info: dict) -> str:
    parts = [f"{info['cpu']}, {info['cores']} logical cores"]
    if info.get("ram_gib"):
        parts.append(f"{info['ram_gib']:.1f} GiB RAM")
    parts.append(f"{info['os']}, Python {info['python']}")
    if "torch" in info:
        parts.append(f"torch {info['torch']} ({info['torch_threads']} threads)")
    if info.get("loadavg_1m") is not None:
        parts.append(f"1-min load average {info['loadavg_1m']:.2f} at start")
    return "; ".join(parts)


def today() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100]) of a non-empty list."""
    assert values, "percentile of nothing"
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def linear_fit(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Least squares y = a*x + b; returns (a, b, R^2). R^2 is 1.0 when ys do not vary."""
    n = len(xs)
    assert n >= 2 and n == len(ys), "a fit needs at least two points"
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    a = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    b = my - a * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - (a * x + b)) ** 2 for x, y in zip(xs, ys, strict=True))
    return a, b, (1.0 - ss_res / ss_tot) if ss_tot > 0 else 1.0


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A GitHub markdown table (first column left-aligned, the rest right-aligned)."""
    align = [":---"] + ["---:"] * (len(headers) - 1)
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def publish(text: str, path: str | None, section: str) -> None:
    """Print a benchmark's section, and with `path` (its --write) replace that section there."""
    print(text)
    if path:
        replace_section(path, section, text)
        print(f"\nwrote the {section} section of {path}", file=sys.stderr)
