"""The test suite's own schedule (make test: two xdist workers, ``--dist loadgroup``).

tests/conftest.py puts every test that uses the SLURM cluster into one xdist group, and the
tests of a module with a module-scoped fixture into one group per module, with xdist's own
``xdist_group`` marker. This runs the pinned pytest and pytest-xdist on a scratch suite under
that conftest and checks that each group stays on one worker (pytest 9 with xdist 3.8
ignores the groups: the cluster would start on both workers).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

CONFTEST = f"""
from pathlib import Path

_real = Path({str(REPO / "tests" / "conftest.py")!r})
exec(compile(_real.read_text(), str(_real), "exec"))


@pytest.fixture(scope="session")
def slurm_cluster():
    return "cluster"
"""

RECORD = """
import json, os, time
from pathlib import Path

import pytest


def record(request, kind):
    time.sleep(0.3)
    out = Path(os.environ["SCHEDULE_OUT"]) / (request.node.name + ".json")
    out.write_text(json.dumps({"kind": kind, "worker": os.environ["PYTEST_XDIST_WORKER"]}))
"""


def _suite(root: Path) -> None:
    (root / "conftest.py").write_text(CONFTEST)
    (root / "record.py").write_text(RECORD)
    files = {
        "test_slurm_a.py": "def test_slurm_a{i}(request, slurm_cluster):\n    record(request, 'slurm')\n",
        "test_slurm_b.py": "def test_slurm_b{i}(request, slurm_cluster):\n    record(request, 'slurm')\n",
        "test_module.py": "def test_module{i}(request, shared):\n    record(request, 'module')\n",
        "test_plain.py": "def test_plain{i}(request):\n    record(request, 'plain')\n",
    }
    for name, body in files.items():
        head = "import pytest\nfrom record import record\n\n"
        if name == "test_module.py":
            head += "@pytest.fixture(scope='module')\ndef shared():\n    return 1\n\n"
        tests = "\n".join(body.format(i=i) for i in range(4 if "plain" not in name else 8))
        (root / name).write_text(head + tests)


def test_groups_stay_on_one_worker_under_make_tests_options(tmp_path):
    suite, out = tmp_path / "suite", tmp_path / "out"
    suite.mkdir()
    out.mkdir()
    _suite(suite)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2",
         "--dist", "loadgroup", "--no-loadscope-reorder", "--rootdir", str(suite), str(suite)],
        cwd=suite,
        env={**__import__("os").environ, "SCHEDULE_OUT": str(out), "PYTHONPATH": str(suite)},
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [json.loads(p.read_text()) for p in out.glob("*.json")]
    assert len(rows) == 20, proc.stdout[-2000:]
    workers = {
        kind: {r["worker"] for r in rows if r["kind"] == kind}
        for kind in ("slurm", "module", "plain")
    }
    assert len(workers["slurm"]) == 1, workers  # both files' cluster tests on one worker
    assert len(workers["module"]) == 1, workers
    assert workers["plain"] == {"gw0", "gw1"}, workers  # ungrouped tests use both
