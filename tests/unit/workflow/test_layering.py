"""Plumbing knows no stage: rcmg.workflow imports none of the stage packages.

The stages (rcmg.data, rcmg.bank, rcmg.generation, rcmg.evaluation, ...) build on the
plumbing (config checks, sweeps, plan cost, atomic writes); a check that needs a stage
lives with that stage and rcmg.generation.config_checks.problems runs them all. Every import counts, the
lazy ones inside functions too.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[3] / "workflow_scripts" / "rcmg"
STAGES = sorted(
    p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file() and p.name != "workflow"
)


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_the_stages_are_the_packages_beside_workflow():
    assert {"bank", "data", "evaluation", "generation", "models"} <= set(STAGES)


def test_workflow_modules_import_no_stage():
    upward = {
        f"{path.name}: {name}"
        for path in sorted((PACKAGE / "workflow").rglob("*.py"))
        for name in _imports(path)
        if name.split(".")[:2] in ([["rcmg", s] for s in STAGES])
    }
    assert not upward, sorted(upward)
