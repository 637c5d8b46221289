"""The architecture rule, enforced: the pure core imports no IO libraries (style.md rule 1)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_IN_CORE = ("aiohttp", "kubernetes", "kubernetes_asyncio", "prometheus_client", "cryptography",
                     "webhook", "extender", "api", "kube", "serving", "cli", "certs")


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


CORE_FILES = sorted((ROOT / "accel").rglob("*.py"))


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_core_module_imports_no_io_layer(path: Path) -> None:
    bad = [f"line {line}: {name}" for line, name in _imports(path) if name.split(".")[0] in FORBIDDEN_IN_CORE]
    assert not bad, f"{path.relative_to(ROOT)} imports IO/adapter modules: {bad}"


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_core_module_reads_no_environment(path: Path) -> None:
    assert "os.environ" not in path.read_text(encoding="utf-8"), "the core must receive configuration, not read it"


def test_only_kube_package_imports_the_kubernetes_client() -> None:
    offenders = []
    for path in ROOT.glob("*/**/*.py"):
        top = path.relative_to(ROOT).parts[0]
        if top in ("kube", ".venv", "tests") or top.startswith("."):
            continue
        for line, name in _imports(path):
            if name.split(".")[0] in ("kubernetes", "kubernetes_asyncio"):
                offenders.append(f"{path.relative_to(ROOT)}:{line} {name}")
    assert not offenders, offenders
