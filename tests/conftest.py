"""Shared pytest fixtures: tiny HF-format models and the synthetic demo corpus.

Both are built once per test session from the same library code the workflow's demo
rules call, so tests exercise the user's code path.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEFAULT_THREADS = int(os.environ.get("OMP_NUM_THREADS") or len(os.sched_getaffinity(0)))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# The SLURM test cluster is started and stopped once per process: every test that uses it
# runs on the same xdist worker (make test: ``-n 2 --dist loadgroup``). The demo is built
# once per session for all workers (``demo_build``), so its tests need no group. The tests
# of a module with a module-scoped fixture (a tiny generation, a served report tree) run on
# one worker, so the fixture is built once, not once per worker.
SLURM_FIXTURE = "slurm_cluster"
DEMO_FIXTURE = "demo_workdir"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        names = getattr(item, "fixturenames", ())
        if SLURM_FIXTURE in names:
            group = "slurm"
        elif DEMO_FIXTURE not in names and _uses_a_module_fixture(item):
            group = "module_" + item.nodeid.split("::")[0].replace("/", "_")
        else:
            continue
        item.add_marker(pytest.mark.xdist_group(group))
    # The schedule follows this order (make test keeps it: --no-loadscope-reorder): the
    # SLURM group first and the demo's tests next, so one worker runs the SLURM tests while
    # the other builds the demo; in the SLURM group, the tests of the SLURM run (session
    # fixture slurm_subset_run) and of single jobs rerun in its tree, and last the one test
    # that compares it with the local demo.
    items.sort(key=_schedule_rank)


def _uses_a_module_fixture(item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    defs = getattr(info, "name2fixturedefs", {}) if info is not None else {}
    return any(d and d[-1].scope == "module" for d in defs.values())


# (test file, test name part) -> rank within the SLURM group
SLURM_ORDER = (
    ("test_workflow_slurm", "test_subset_"),
    ("test_workflow_slurm", "test_profile_"),
    ("test_gpu_requests", ""),
    ("test_cluster_smoke", ""),
)


def _schedule_rank(item) -> tuple[int, int]:
    names = getattr(item, "fixturenames", ())
    if SLURM_FIXTURE in names:
        for rank, (module, name) in enumerate(SLURM_ORDER):
            if module in item.nodeid and f"::{name}" in item.nodeid:
                return (0, rank)
        return (0, len(SLURM_ORDER))  # the comparison with the local demo, and new ones
    return (1, 0) if DEMO_FIXTURE in names else (2, 0)


@pytest.fixture(autouse=True)
def _restore_openmp_threads():
    """Put the OpenMP thread count back after each test.

    faiss.omp_set_num_threads (rcmg.bank.retrieval.set_threads, e.g. a test's
    ``threads=1``) sets the process-wide OpenMP pool that torch's intra-op threads use
    too: left at 1, every later in-process generation would run with another thread count
    than the runs it is compared with bit for bit (float sums are not associative).
    """
    yield
    faiss = sys.modules.get("faiss")
    if faiss is not None:
        faiss.omp_set_num_threads(DEFAULT_THREADS)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """Factory: ``tiny_model("clap" | "audioldm" | "audioldm2" | "audioldm2-music") -> Path``.

    Each kind is built once per session (random weights, HF folder format).
    """
    from rcmg.standins.tiny_models import build_tiny_model

    root = tmp_path_factory.mktemp("tiny_models")
    cache: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in cache:
            cache[kind] = build_tiny_model(kind, root / kind, seed=0)
        return cache[kind]

    return get


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory) -> Path:
    """The deterministic synthetic corpus in the real dataset layouts (maestro/, urmp/, fsd50k/)."""
    from rcmg.standins.demo_corpus import write_demo_corpus

    root = tmp_path_factory.mktemp("demo_raw")
    write_demo_corpus(root, seed=0)
    return root


def _shared_tmp(tmp_path_factory) -> Path:
    """The session's temporary root, shared by all xdist workers (each has its own
    ``popen-gwN`` folder below it); the base temp itself without xdist."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def demo_build(tmp_path_factory) -> Path:
    """The demo workflow run to completion once per test session, for every xdist worker.

    The first worker to ask builds it under a file lock; the others wait for it, then read
    it. A failed build is recorded, so the other workers fail at once with its message
    instead of building again. Tests never use this tree directly: ``demo_workdir`` is a
    private copy.
    """
    from filelock import FileLock

    from tests.workflow.helpers import copy_workflow, snakemake

    shared = _shared_tmp(tmp_path_factory)
    root, done, failed = (
        shared / "demo_build",
        shared / "demo_build.done",
        shared / "demo_build.failed",
    )
    with FileLock(str(shared / "demo_build.lock")):
        if failed.exists():
            pytest.fail(f"the demo build failed in another worker: {failed.read_text()[-3000:]}")
        if not done.exists():
            shutil.rmtree(root, ignore_errors=True)  # a build a killed worker left
            workdir = copy_workflow(root / "wf")
            try:
                snakemake(workdir, "--configfile", "config/demo.yaml", "--cores", "2", timeout=3000)
            except BaseException as error:
                failed.write_text(f"{type(error).__name__}: {error}")
                raise
            done.write_text(str(workdir))
    return root / "wf"


@pytest.fixture(scope="session")
def demo_workdir(demo_build, tmp_path_factory) -> Path:
    """A scratch copy of the repository in which the demo workflow has run to completion.

    Shared by this worker's workflow, SLURM and browser tests (which may edit and rerun
    it, one test at a time); a full copy of ``demo_build`` with modification times and
    Snakemake's metadata, so Snakemake sees a finished workflow.
    """
    workdir = tmp_path_factory.mktemp("demo") / "wf"
    shutil.copytree(demo_build, workdir, symlinks=True)
    return workdir
