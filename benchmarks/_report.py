"""Shared by the benchmarks: marked sections of BENCHMARKS.md, the machine, small statistics.

Each benchmark owns one section between `<!-- NAME:start -->` and `<!-- NAME:end -->`; writing it
replaces that section only, so the engine, eval and proxy benchmarks can share one file.
"""

from __future__ import annotations

import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path

TITLE = "# Benchmarks\n\nEach section is written by the command it names; rerun it to refresh.\n"


def replace_section(path: str | os.PathLike, name: str, body: str) -> Path:
    """Put `body` between the `name` markers in `path`; append the section when it is missing.

    The file is created (with a title) when absent; text outside the markers is kept byte for byte.
    """
    path = Path(path)
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.strip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else TITLE
    i, j = text.find(start), text.find(end)
    if i >= 0 and j > i:
        text = text[:i] + block + text[j + len(end) :]
    else:
        if i >= 0 or j >= 0:
            raise ValueError(f"{path}: unbalanced {name} markers; fix the file by hand")
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def command_line(module: str, argv: list[str] | None = None) -> str:
    """The command as a user would retype it."""
    argv = sys.argv[1:] if argv is None else argv
    return shlex.join(["python", "-m", module, *argv])


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
