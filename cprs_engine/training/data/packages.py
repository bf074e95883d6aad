"""Code and markdown from the installed Python packages, split into train and eval by package.

The project's own environment holds thousands of `.py` files and a few hundred markdown
documents (`.md` files, and the `text/markdown` long descriptions in `*.dist-info/METADATA`).
They are the offline source of the code and markdown document types (issue 18).

Vendored copies (`_vendor/` folders) are skipped: they would carry one package's code
under another's name, across the split.

Split: a package (the top-level folder under site-packages, or the distribution name of a
METADATA file) is in `eval` when the first byte of sha256("cprs-pkg:" + name) is below
EVAL_SHARE * 256, else in `train`. The split depends on the name alone, so a package's
files never appear on both sides, whatever else is installed. Files are read in sorted
order and filtered by size, so a given environment always yields the same lists.
"""

from __future__ import annotations

import functools
import hashlib
import re
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from .sources import _split

EVAL_SHARE = 0.25  # about a quarter of the packages are evaluation-only
MIN_CHARS, MAX_CHARS = 1_500, 80_000  # skip stubs and generated giants


@dataclass(frozen=True)
class SourceFile:
    """One file, read on demand (the train split holds ~150 MB of code)."""

    package: str  # what the split is decided on
    path: str  # relative to site-packages: shown in document headers

    @property
    def text(self) -> str:
        return read_text(self.path)


def split_of(package: str) -> str:
    """`train` or `eval` for a package name (deterministic, name-only). Trailing digits are
    dropped first, so a renamed fork (`httpx2`, `httpcore2`) lands with its original."""
    base = re.sub(r"[\d_-]+$", "", package.lower().replace("-", "_")) or package.lower()
    h = hashlib.sha256(f"cprs-pkg:{base}".encode()).digest()[0]
    return "eval" if h < EVAL_SHARE * 256 else "train"


def site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


@functools.lru_cache(maxsize=256)
def read_text(rel: str) -> str:
    """A listed file's text, newlines normalised and tabs expanded ("" if unreadable)."""
    path = site_packages() / rel
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""
    text = text.replace("\r\n", "\n").replace("\t", "    ")
    if path.name == "METADATA":
        head, sep, body = text.partition("\n\n")
        text = body if sep and "Description-Content-Type: text/markdown" in head else ""
    return "" if "\x00" in text else text


def _listed(path: Path) -> bool:
    try:
        size = path.stat().st_size
    except OSError:
        return False
    return MIN_CHARS <= size <= MAX_CHARS


# The project itself (installed in development mode) changes under the data: never a source.
EXCLUDED = ("cprs",)


def _package_of(root: Path, path: Path) -> str:
    top = path.relative_to(root).parts[0]
    if top.endswith(".dist-info"):
        return top.split("-")[0]
    return top.removesuffix(".py")


def _files(split: str, paths: list[Path]) -> tuple[SourceFile, ...]:
    _split(split)
    root = site_packages()
    out = []
    for path in sorted(paths):
        pkg = _package_of(root, path)
        if pkg.startswith(("_", "~", *EXCLUDED)) or split_of(pkg) != split:
            continue
        vendored = any(part in ("_vendor", "vendor", "vendored") for part in path.parts)
        if vendored or "LICENSE" in path.name.upper() or not _listed(path):
            continue
        out.append(SourceFile(pkg, str(path.relative_to(root))))
    return tuple(out)


@functools.cache
def code_files(split: str) -> tuple[SourceFile, ...]:
    """Python sources of the split's packages (tests and vendored copies included)."""
    return _files(split, list(site_packages().rglob("*.py")))


@functools.cache
def markdown_files(split: str) -> tuple[SourceFile, ...]:
    """Markdown documents of the split's packages: `.md` files and the markdown long
    descriptions of `METADATA` files (a METADATA file of another content type reads as "")."""
    root = site_packages()
    return _files(split, [*root.rglob("*.md"), *root.glob("*.dist-info/METADATA")])
