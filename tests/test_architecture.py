"""The layers' import rules (docs/ARCHITECTURE.md), checked on the source: arrows only point down.

Every ``import`` and ``from ... import`` in the project's packages is read from the syntax
tree (function-level imports included) and checked against the table below; the test fails,
naming the file, the line and the rule, when a module imports something its layer may not.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("diagnostics", "probes", "dashboard")

#: layer (module prefix; the longest one that matches a module applies) -> the project
#: modules it may import (prefixes; "=name" allows that exact module only; "!prefix"
#: forbids what a broader prefix of the same layer would allow)
ALLOWED: dict[str, tuple[str, ...]] = {
    "diagnostics._version": (),
    "diagnostics._validate": (),
    "diagnostics.schema": (),
    "diagnostics.estimators": ("diagnostics.estimators", "diagnostics._validate"),
    "diagnostics.detectors": ("diagnostics.detectors", "diagnostics.schema"),
    "diagnostics.runlog": ("diagnostics.runlog", "diagnostics.schema", "diagnostics._version"),
    "diagnostics.datasets": ("diagnostics._validate",),
    "diagnostics.offline": (
        "=diagnostics",
        "diagnostics.offline",
        "diagnostics.estimators",
        "diagnostics.detectors",
        "diagnostics.runlog",
        "diagnostics.schema",
        "diagnostics.datasets",
        "diagnostics._validate",
        "diagnostics._version",
    ),
    "diagnostics.cli": ("diagnostics",),
    "diagnostics": ("diagnostics",),  # the package's own lazy facade and _moved
    "probes": ("probes", "diagnostics"),
    "dashboard": (
        "!dashboard.samples",  # the app never imports the training code
        "!dashboard.commands",
        "dashboard",
        "=diagnostics",
        "diagnostics.runlog",
        "diagnostics.schema",
        "diagnostics.detectors",
        "diagnostics.cli",
        "diagnostics._version",
    ),
    # `infoscope dashboard` / `infoscope demo`; only `demo --regenerate` imports samples
    "dashboard.commands": ("dashboard", "=diagnostics", "diagnostics.cli", "diagnostics.runlog"),
    # the code that records the sample runs: a layer above probes, below nothing
    "dashboard.samples": ("dashboard.samples", "probes", "diagnostics"),
    "app": ("!dashboard.samples", "!dashboard.commands", "dashboard"),
}

#: layers (keys of ALLOWED) that must not import torch: the dashboard and everything it
#: reads runs through (``dashboard.samples``, which trains models, is a layer of its own)
NO_TORCH = (
    "diagnostics.schema",
    "diagnostics.runlog",
    "diagnostics.detectors",
    "diagnostics.cli",
    "dashboard",
    "dashboard.commands",
    "app",
)


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str, table) -> str | None:
    hits = [p for p in table if module == p or module.startswith(p + ".")]
    return max(hits, key=len) if hits else None


def _allows(allowed: tuple[str, ...], target: str) -> bool:
    for a in allowed:
        if a.startswith("!"):
            if target == a[1:] or target.startswith(a[1:] + "."):
                return False
        elif a.startswith("="):
            if target == a[1:]:
                return True
        elif target == a or target.startswith(a + "."):
            return True
    return False


def _imports(tree: ast.AST, module: str, is_package: bool, root: Path):
    """(line, imported module) for every import in the tree, resolved to module names."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                path = root.joinpath(*sub.split("."))
                is_module = path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()
                yield node.lineno, sub if is_module else base


def violations(root: Path, table=ALLOWED, no_torch=NO_TORCH) -> list[str]:
    """Every import that breaks the table, as ``file:line: module imports X (rule)``."""
    files = [p for pkg in PACKAGES for p in sorted((root / pkg).rglob("*.py"))]
    files += [p for p in (root / "app.py",) if p.is_file()]
    found = []
    for path in files:
        module = _module_name(path, root)
        layer = _layer(module, table)
        if layer is None:
            found.append(f"{path.relative_to(root)}: module {module} belongs to no layer")
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, target in _imports(tree, module, path.name == "__init__.py", root):
            top = target.split(".")[0]
            where = f"{path.relative_to(root)}:{line}"
            if top == "torch" and layer in no_torch:
                found.append(f"{where}: {module} imports torch (layer {layer} must not)")
            elif top in (*PACKAGES, "app") and not _allows(table[layer], target):
                found.append(
                    f"{where}: {module} imports {target} "
                    f"(layer {layer} may import only {', '.join(table[layer]) or 'nothing'})"
                )
    return found


def test_every_import_follows_the_layers():
    found = violations(ROOT)
    assert not found, "imports against docs/ARCHITECTURE.md:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("where", "code", "expected"),
    [
        ("diagnostics/estimators/bad.py", "from diagnostics.runlog import RunWriter\n", "runlog"),
        (
            "diagnostics/estimators/bad.py",
            "def f():\n    import diagnostics.detectors\n",
            "detectors",
        ),
        ("diagnostics/detectors/bad.py", "import torch\n", "torch"),
        ("diagnostics/runlog/bad.py", "from . import writer\nimport probes\n", "probes"),
        ("dashboard/bad.py", "import torch\n", "torch"),
        ("dashboard/bad.py", "from diagnostics.estimators import ksg_mi\n", "estimators"),
        ("dashboard/figures/bad.py", "import torch\n", "torch"),
        ("dashboard/figures/bad.py", "from dashboard.samples import digits\n", "samples"),
        ("dashboard/app_pages/bad.py", "def f():\n    import dashboard.samples\n", "samples"),
        ("dashboard/bad.py", "from dashboard import commands\n", "commands"),
        ("dashboard/samples/bad.py", "from dashboard import figures\n", "figures"),
        ("probes/bad.py", "from dashboard import figures\n", "dashboard"),
        ("diagnostics/cli/bad.py", "from probes import Monitor\n", "probes"),
    ],
)
def test_the_check_catches_a_forbidden_import(tmp_path, where, code, expected):
    # a copy of the tree's layout with one offending module: the checker must name it
    for pkg in PACKAGES:
        for src in (ROOT / pkg).rglob("*.py"):
            dst = tmp_path / src.relative_to(ROOT)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(src.read_text())
    bad = tmp_path / where
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_text(textwrap.dedent(code))
    found = violations(tmp_path)
    assert len(found) == 1 and where in found[0] and expected in found[0], found


@pytest.mark.parametrize(
    "module",
    ["diagnostics", "diagnostics.runlog", "diagnostics.detectors", "diagnostics.cli", "dashboard"],
)
def test_reading_layers_do_not_load_torch_at_run_time(module):
    code = f"import sys, {module}; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
