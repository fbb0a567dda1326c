"""The library's layout rules: stand-ins stay apart, sub-packages re-export nothing."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[3] / "workflow_scripts"
PACKAGE = SCRIPTS / "rcmg"
STANDIN_CLIS = {"demo_dataset.py", "demo_model.py", "real_arch_model.py"}
STAGES = ("data", "models", "bank", "generation", "evaluation", "standins", "workflow")


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    parts = list(path.relative_to(SCRIPTS).with_suffix("").parts)
    package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def product_files() -> list[Path]:
    library = [p for p in PACKAGE.rglob("*.py") if "standins" not in p.relative_to(PACKAGE).parts]
    clis = [p for p in SCRIPTS.glob("*.py") if p.name not in STANDIN_CLIS]
    return sorted(library + clis)


@pytest.mark.parametrize("path", product_files(), ids=lambda p: str(p.relative_to(SCRIPTS)))
def test_no_product_module_imports_the_standins(path):
    bad = sorted(n for n in imported_modules(path) if n.startswith("rcmg.standins"))
    assert not bad, f"{path.relative_to(SCRIPTS)} imports stand-ins: {bad}"


def test_the_check_sees_a_relative_import_of_the_standins(tmp_path):
    module = PACKAGE / "bank" / "probe_for_layout_test.py"
    try:
        module.write_text("from ..standins import tiny_models\n", encoding="utf-8")
        assert "rcmg.standins.tiny_models" in imported_modules(module)
    finally:
        module.unlink()


def test_the_library_has_one_subpackage_per_stage():
    found = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))
    assert found == sorted(STAGES)
    assert sorted(p.name for p in PACKAGE.glob("*.py")) == ["__init__.py"]


@pytest.mark.parametrize("stage", STAGES)
def test_subpackage_init_reexports_nothing(stage):
    tree = ast.parse((PACKAGE / stage / "__init__.py").read_text(encoding="utf-8"))
    body = tree.body
    assert len(body) == 1 and isinstance(body[0], ast.Expr), f"{stage}/__init__.py: docstring only"
