"""Code-hash reruns across sub-packages: relative imports, parent __init__ files, templates."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from rcmg.workflow.codehash import step_files

SCRIPTS = Path(__file__).resolve().parents[3] / "workflow_scripts"


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_step_files_follow_relative_imports_parent_inits_and_templates(tmp_path):
    _write(
        tmp_path,
        {
            "step.py": "from rcmg.stage.a import run\n",
            "other_step.py": "import rcmg.lonely\nimport rcmg.quiet\n",
            "rcmg/quiet/__init__.py": '"""A docstring that mentions templates is not a use."""\n',
            "rcmg/quiet/templates/unused.j2": "{{ y }}\n",
            "rcmg/__init__.py": '"""top"""\n',
            "rcmg/lonely.py": "X = 1\n",
            "rcmg/stage/__init__.py": '"""stage"""\n',
            "rcmg/stage/a.py": "from .b import helper\nfrom .. import shared\n",
            "rcmg/stage/b.py": "from . import c\nTEMPLATES = 'templates'\n",
            "rcmg/stage/c.py": "C = 3\n",
            "rcmg/stage/templates/page.html.j2": "{{ x }}\n",
            "rcmg/shared.py": "S = 1\n",
            "rcmg/unused.py": "U = 1\n",
        },
    )
    names = {p.relative_to(tmp_path).as_posix() for p in step_files(tmp_path / "step.py")}
    assert names == {
        "step.py",
        "rcmg/__init__.py",
        "rcmg/stage/__init__.py",
        "rcmg/stage/a.py",
        "rcmg/stage/b.py",
        "rcmg/stage/c.py",
        "rcmg/shared.py",
        "rcmg/stage/templates/page.html.j2",
    }
    other = {p.relative_to(tmp_path).as_posix() for p in step_files(tmp_path / "other_step.py")}
    assert other == {
        "other_step.py",
        "rcmg/__init__.py",
        "rcmg/lonely.py",
        "rcmg/quiet/__init__.py",
    }


def _step_hashes(scripts: Path) -> dict[str, str]:
    """Every step's code hash, computed in a fresh interpreter (the hash is cached per process)."""
    code = (
        "import sys, json, pathlib; sys.path.insert(0, sys.argv[1]);"
        "from rcmg.workflow.codehash import step_code_hash;"
        "print(json.dumps({p.stem: step_code_hash(p) for p in sorted(pathlib.Path(sys.argv[1]).glob('*.py'))}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(scripts)], capture_output=True, text=True, check=True
    )
    import json

    return json.loads(out.stdout)


def _changed(before: dict, after: dict) -> set[str]:
    return {step for step in before if before[step] != after[step]}


def test_edits_rerun_exactly_the_steps_that_use_them_in_the_real_tree(tmp_path):
    scripts = tmp_path / "workflow_scripts"
    shutil.copytree(SCRIPTS, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    package = scripts / "rcmg"
    users_of_blend = {
        p.stem for p in scripts.glob("*.py") if package / "bank/blend.py" in step_files(p)
    }
    assert {"generate", "train_adapter"} <= users_of_blend and "segment" not in users_of_blend

    # A relative import inside a sub-package: bank/blend.py now uses bank/probe.py.
    (package / "bank/probe.py").write_text("PROBE = 1\n", encoding="utf-8")
    blend = package / "bank/blend.py"
    blend.write_text(blend.read_text(encoding="utf-8") + "\nfrom .probe import PROBE  # noqa\n")
    before = _step_hashes(scripts)
    (package / "bank/probe.py").write_text("PROBE = 2\n", encoding="utf-8")
    assert _changed(before, _step_hashes(scripts)) == users_of_blend

    # A parent __init__.py: every step importing anything of rcmg.evaluation.
    users_of_evaluation = {
        p.stem
        for p in scripts.glob("*.py")
        if any("rcmg/evaluation/" in f.as_posix() for f in step_files(p))
    }
    assert {"evaluate", "compare"} <= users_of_evaluation and "generate" not in users_of_evaluation
    before = _step_hashes(scripts)
    init = package / "evaluation/__init__.py"
    init.write_text(init.read_text(encoding="utf-8") + "# an edit\n", encoding="utf-8")
    assert _changed(before, _step_hashes(scripts)) == users_of_evaluation

    # A template under evaluation/templates: the steps that render reports.
    before = _step_hashes(scripts)
    template = package / "evaluation/templates/run_report.html.j2"
    template.write_text(template.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    renderers = _changed(before, _step_hashes(scripts))
    assert {"evaluate", "compare"} <= renderers and "generate" not in renderers
    assert renderers == {p.stem for p in scripts.glob("*.py") if template in step_files(p)}
