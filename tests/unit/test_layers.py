"""The architecture rules, enforced (style.md rule 1, docs/architecture.md).

The import contracts (layers, forbidden and independent packages) live in pyproject.toml under
`[tool.importlinter]` and are checked by import-linter, from `make lint` and from here, so a plain
pytest run catches a broken boundary too. What import-linter cannot see stays a test below.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE_FILES = sorted((ROOT / "accel").rglob("*.py"))


def test_import_contracts_hold() -> None:
    # In a child process: import-linter configures logging with dictConfig, which would disable the
    # loggers (accel.audit.policy) that later tests capture.
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--no-cache", "--config", str(ROOT / "pyproject.toml")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_core_module_reads_no_environment(path: Path) -> None:
    assert "os.environ" not in path.read_text(encoding="utf-8"), (
        "the core must receive configuration, not read it"
    )
