"""Content hash of a workflow step's code: its CLI plus every local module it imports.

Snakemake reruns a job when its params change but only tracks the *text* of a
``shell:`` directive, not the Python it calls. Each rule passes
``step_code_hash("workflow_scripts/STEP.py")`` as a param, so editing the step's
module (or any ``rcmg`` module it imports, transitively, or a template in
``rcmg/templates``) triggers a rerun of exactly the jobs that use it.

Only the standard library is used: this runs while Snakemake parses the workflow.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

PACKAGE = "rcmg"


def _local_imports(source: str, package_dir: Path) -> set[Path]:
    """Module files of ``package_dir`` imported (absolutely or relatively) by ``source``."""
    found: set[Path] = set()
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import inside the package
                base = f"{PACKAGE}.{base}" if base else PACKAGE
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] != PACKAGE:
                continue
            candidate = package_dir.joinpath(*parts[1:])
            for path in (candidate.with_suffix(".py"), candidate / "__init__.py"):
                if path.is_file():
                    found.add(path)
    return found


def step_files(script: str | Path) -> list[Path]:
    """The script plus the transitive closure of its local ``rcmg`` imports and templates."""
    script = Path(script).resolve()
    package_dir = script.parent / PACKAGE
    if not package_dir.is_dir():
        package_dir = script.parent.parent / PACKAGE
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo.extend(_local_imports(path.read_text(encoding="utf-8"), package_dir) - seen)
    templates = package_dir / "templates"
    uses_templates = any("templates" in p.read_text(encoding="utf-8") for p in seen)
    if uses_templates and templates.is_dir():
        seen.update(p for p in templates.rglob("*") if p.is_file())
    return sorted(seen)


@functools.cache
def step_code_hash(script: str | Path) -> str:
    """sha256 (first 16 hex digits) over the relative names and contents of ``step_files``."""
    script = Path(script).resolve()
    root = script.parent
    digest = hashlib.sha256()
    for path in step_files(script):
        try:
            name = path.relative_to(root).as_posix()
        except ValueError:
            name = path.name
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:16]
