"""Content hash of a workflow step's code: its CLI plus every local module it imports.

Snakemake reruns a job when its params change but only tracks the *text* of a
``shell:`` directive, not the Python it calls. Each rule passes
``step_code_hash("workflow_scripts/STEP.py")`` as a param, so editing the step's
module (or any ``rcmg`` module it imports, transitively, the ``__init__.py`` of every
package on the way, or a template in a ``templates/`` folder beside a module that reads
it) triggers a rerun of exactly the jobs that use it.

Imports are resolved the way Python resolves them: ``import rcmg.a.b`` and
``from rcmg.a import b`` load ``rcmg/__init__.py``, ``rcmg/a/__init__.py`` and
``rcmg/a/b.py`` (or ``rcmg/a/b/__init__.py``); ``from .x import y`` inside
``rcmg/a/m.py`` means ``rcmg.a.x``, ``from .. import z`` means ``rcmg.z``.

Only the standard library is used: this runs while Snakemake parses the workflow.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

PACKAGE = "rcmg"


def _module_name(path: Path, package_dir: Path) -> str | None:
    """Dotted name of a file inside ``package_dir`` (``rcmg.a.b``), or None outside it."""
    try:
        rel = path.relative_to(package_dir.parent)
    except ValueError:
        return None
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _absolute(node: ast.ImportFrom, current: str | None, is_package: bool) -> str:
    """The absolute module name a (possibly relative) ``from ... import`` refers to."""
    if not node.level:
        return node.module or ""
    if current is None:
        return ""
    parts = current.split(".")
    # Level 1 is the current package: the module itself for an __init__, else its parent.
    drop = node.level - 1 if is_package else node.level
    base = parts[: len(parts) - drop] if drop else parts
    return ".".join([*base, node.module] if node.module else base)


def _files_of(name: str, package_dir: Path) -> set[Path]:
    """Files that importing ``name`` executes: each package ``__init__`` on the way, the module."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return set()
    found: set[Path] = set()
    node = package_dir
    init = node / "__init__.py"
    if init.is_file():
        found.add(init)
    for part in parts[1:]:
        node = node / part
        if (node / "__init__.py").is_file():
            found.add(node / "__init__.py")
        elif node.with_suffix(".py").is_file():
            found.add(node.with_suffix(".py"))
            break
        else:
            break
    return found


def _local_imports(path: Path, package_dir: Path) -> set[Path]:
    """Module files of ``package_dir`` imported (absolutely or relatively) by ``path``."""
    current = _module_name(path, package_dir)
    is_package = path.name == "__init__.py"
    found: set[Path] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, current, is_package)
            if base:
                names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            found |= _files_of(name, package_dir)
    return found


def _templates(module: Path) -> set[Path]:
    """Files of the ``templates/`` folder beside a module whose code names it.

    "Names it" means a string constant that is exactly ``"templates"`` (as in
    ``Path(__file__).parent / "templates"``); the word in a docstring or comment is not a use.
    """
    folder = module.parent / "templates"
    if not folder.is_dir() or module.suffix != ".py":
        return set()
    tree = ast.parse(module.read_text(encoding="utf-8"))
    if not any(isinstance(n, ast.Constant) and n.value == "templates" for n in ast.walk(tree)):
        return set()
    return {p for p in folder.rglob("*") if p.is_file()}


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
        todo.extend(_local_imports(path, package_dir) - seen)
    for module in list(seen):
        seen |= _templates(module)
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
