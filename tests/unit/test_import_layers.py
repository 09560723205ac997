"""The layers of ``shared/`` (docs/architecture.md, "Layers"): each imports only the layers
below it, no module of the library imports a program, no process imports another, and no
package has an import cycle between its modules. The contracts are import-linter's, in
pyproject.toml; this runs them over the import graph of the tree as it is."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("shared", "cli", "gateway", "queue_worker", "autorestart_worker", "log_janitor")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_import_contracts_hold() -> None:
    run = lint_imports(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


def test_a_layer_importing_upwards_is_caught(tmp_path: Path) -> None:
    """The contracts are not vacuous: in a copy of the tree, a core module that imports a
    service breaks them."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("static"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    (tmp_path / "shared" / "core" / "probe.py").write_text("from shared.services import claims\n")
    run = lint_imports(tmp_path)
    assert run.returncode != 0
    assert "shared.core.probe -> shared.services.claims" in run.stdout
