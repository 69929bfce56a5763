"""The package's shape: layers written down for lint-imports, modules of readable size, no private names shared."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "anime_recs"
MAX_LINES = 600


def _contracts() -> list[dict]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_the_layers_contract_names_every_sub_package_and_cycles_are_forbidden():
    subpackages = {f"anime_recs.{p.name}" for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    layers = next(c for c in _contracts() if c["type"] == "layers")["layers"]
    assert set(layers) == subpackages
    assert [p.name for p in PACKAGE.glob("*.py")] == ["__init__.py"]  # nothing lives outside the layers
    assert any(c["type"] == "acyclic_siblings" and c["ancestors"] == ["anime_recs"] for c in _contracts())


def test_lint_imports_keeps_the_contracts():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "2 kept, 0 broken" in result.stdout


def test_no_module_is_over_600_lines():
    sizes = {str(p.relative_to(REPO)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_no_private_name_is_imported_across_modules():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("anime_recs"):
                offenders += [f"{path.relative_to(REPO)}: {alias.name}" for alias in node.names
                              if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert offenders == []
