"""The layers, enforced: `proxy` may import `policies` and `cprs_engine`; `cprs_engine` imports
neither; `policies` imports neither (shared/DESIGN.md).

Every module's AST is walked, so lazy imports inside functions count, and so do the ways
around a static import graph: `importlib.import_module("...")` / `__import__("...")` calls and
dotted strings naming a module (a command table such as `("serve", "proxy.commands", ...)`).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cprs_engine", "policies", "proxy")
FORBIDDEN = {"cprs_engine": {"proxy", "policies"}, "policies": {"proxy", "cprs_engine"}}
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+(:[A-Za-z_]\w*)?")
_IMPORT_CALLS = {"import_module", "__import__"}


def references(source: str) -> set[str]:
    """Every module a source file imports or names: import statements, importlib calls, and
    string constants shaped like a dotted module path (`proxy.commands`, `proxy.cli:main`)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            first = node.args[0] if node.args else None
            if name in _IMPORT_CALLS and isinstance(first, ast.Constant):
                found.add(str(first.value))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and _DOTTED.fullmatch(node.value)
        ):
            found.add(node.value.split(":")[0])
    return found


def top_level(module: str) -> str:
    return module.split(".")[0]


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_nothing_above_it(package):
    bad = []
    for path in modules(package):
        for ref in references(path.read_text(encoding="utf-8")):
            if top_level(ref) in FORBIDDEN[package]:
                bad.append(f"{path.relative_to(ROOT)}: {ref}")
    assert not bad, f"{package} must not reach {sorted(FORBIDDEN[package])}:\n" + "\n".join(bad)


def test_every_package_is_walked():
    for package in PACKAGES:
        assert len(modules(package)) > 3, package


@pytest.mark.parametrize(
    "source,expected",
    [
        ("import proxy.app", "proxy.app"),
        ("from policies.schema import Policy", "policies.schema"),
        ("def f():\n    from proxy import cli\n", "proxy"),
        ("import importlib\nimportlib.import_module('proxy.commands')", "proxy.commands"),
        ("from importlib import import_module\nimport_module('policies')", "policies"),
        ("__import__('proxy')", "proxy"),
        ("COMMANDS = [('serve', 'proxy.commands', 'help')]", "proxy.commands"),
        ("ENTRY = 'proxy.cli:main'", "proxy.cli"),
    ],
)
def test_the_walker_sees_every_way_in(source, expected):
    assert expected in references(source)


def test_prose_is_not_a_module_reference():
    assert references("x = 'the proxy and policies, e.g. this'") == set()


def test_the_engine_entry_point_runs_without_the_proxy():
    """`python -m cprs_engine` (an engine-only image) loads no proxy or policies module."""
    import subprocess
    import sys

    code = (
        "import runpy, sys\n"
        "for cmd in ('compress', 'engine', 'train', 'tune', 'eval'):\n"
        "    sys.argv = ['cprs_engine', cmd, '--help']\n"
        "    try:\n"
        "        runpy.run_module('cprs_engine', run_name='__main__', alter_sys=True)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('proxy', 'policies')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_cprs_lists_the_engine_commands_and_the_proxy_ones(capsys):
    from proxy.cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out
    for cmd in ("compress", "serve", "engine", "train", "tune", "eval", "ab-report"):
        assert cmd in listed
