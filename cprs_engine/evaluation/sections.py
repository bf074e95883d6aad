"""The marked sections of BENCHMARKS.md, one writer for `eval` and the benchmarks
(benchmarks/_report.py re-exports it: benchmarks/ is not an installed package, this is).

Each run owns one section between `<!-- NAME:start -->` and `<!-- NAME:end -->`; writing it
replaces that section only, so the engine, eval and proxy benchmarks can share one file.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path


def markers(name: str) -> tuple[str, str]:
    """The comments that open and close section `name`."""
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


TITLE = "# Benchmarks\n\nEach section is written by the command it names; rerun it to refresh.\n"


def replace_section(path: str | os.PathLike, name: str, body: str) -> Path:
    """Put `body` between the `name` markers in `path`; append the section when it is missing.

    The file is created (with a title) when absent; text outside the markers is kept byte for byte.
    """
    path = Path(path)
    start, end = markers(name)
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


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
