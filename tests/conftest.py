"""Shared pytest fixtures: tiny HF-format models and the synthetic demo corpus.

Both are built once per test session from the same library code the workflow's demo
rules call, so tests exercise the user's code path.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEFAULT_THREADS = int(os.environ.get("OMP_NUM_THREADS") or len(os.sched_getaffinity(0)))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# Fixtures that cost minutes once per process: every test that uses one runs on the same
# xdist worker (make test: ``-n 2 --dist loadgroup``), so the demo runs once per session.
SHARED_SESSION_FIXTURES = ("demo_workdir", "slurm_cluster")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    loadgroup = bool(config.getoption("loadgroup", default=False))
    for item in items:
        if any(name in SHARED_SESSION_FIXTURES for name in getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group("demo"))
            if loadgroup:
                _suffix_group(item, "demo")


def _suffix_group(item, group: str) -> None:
    """What xdist's loadgroup does to a grouped item: ``nodeid@group`` (the controller
    schedules by that suffix). pytest-xdist 3.8 sets ``item._nodeid``, which pytest 9
    no longer reads (the id is ``item._id``), so without this every group is ignored and
    two workers would each run the demo and start the SLURM cluster."""
    from _pytest.nodeid import coerce_node_id

    if not item.nodeid.endswith(f"@{group}"):
        item._id = coerce_node_id(f"{item.nodeid}@{group}")


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


@pytest.fixture(scope="session")
def demo_workdir(tmp_path_factory) -> Path:
    """A scratch copy of the repository in which the demo workflow has run to completion.

    Shared by the workflow, SLURM and browser tests: one local demo run per session.
    """
    from tests.workflow.helpers import copy_workflow, snakemake

    workdir = copy_workflow(tmp_path_factory.mktemp("demo") / "wf")
    snakemake(workdir, "--configfile", "config/demo.yaml", "--cores", "2", timeout=3000)
    return workdir
