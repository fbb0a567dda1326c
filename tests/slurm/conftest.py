"""Session fixture ``slurm_cluster``: the local single-node SLURM cluster from cluster.sh.

The fixture starts the cluster (installing the Debian packages on first use), exports
SLURM_CONF for the test process and its children, and stops the cluster at session end
only when this session started it. When the cluster cannot start (not root, no apt,
a daemon fails) the tests are skipped with the script's reason, unless
RCMG_REQUIRE_SLURM=1, in which case they fail.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

CLUSTER_SCRIPT = Path(__file__).resolve().parent / "cluster.sh"
DEFAULT_ROOT = Path("/tmp/rcmg-slurm")
START_TIMEOUT_S = 1200


@dataclass(frozen=True)
class SlurmClusterInfo:
    root: Path
    slurm_conf: Path
    partitions: tuple[str, ...]
    default_partition: str
    gpu_partition: str
    account: str


def _cluster(action: str, root: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(CLUSTER_SCRIPT), action, str(root)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _partitions(env: dict[str, str]) -> tuple[str, ...]:
    listing = subprocess.run(
        ["sinfo", "-h", "-o", "%R"], capture_output=True, text=True, env=env, check=True
    )
    return tuple(sorted(set(listing.stdout.split())))


def _cannot_start(reason: str) -> None:
    if os.environ.get("RCMG_REQUIRE_SLURM") == "1":
        pytest.fail(f"RCMG_REQUIRE_SLURM=1 but the SLURM test cluster is unavailable: {reason}")
    pytest.skip(f"SLURM test cluster unavailable: {reason}")


@pytest.fixture(scope="session")
def slurm_cluster():
    root = Path(os.environ.get("RCMG_SLURM_ROOT", DEFAULT_ROOT))
    already_running = _cluster("status", root).returncode == 0
    started = _cluster("start", root, timeout=START_TIMEOUT_S)
    if started.returncode != 0:
        lines = started.stderr.strip().splitlines() or [f"exit code {started.returncode}"]
        _cannot_start(lines[-1])
    slurm_conf = root / "etc" / "slurm.conf"
    previous_conf = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(slurm_conf)
    try:
        yield SlurmClusterInfo(
            root=root,
            slurm_conf=slurm_conf,
            partitions=_partitions(dict(os.environ)),
            default_partition="cpu",
            gpu_partition="gpu",
            account="rcmg",
        )
    finally:
        if previous_conf is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous_conf
        if not already_running:
            _cluster("stop", root)


SBATCH_LOGGER = """#!{python}
# Logs every sbatch call (argv as one JSON line), then runs the real sbatch.
import json, os, sys
with open({log!r}, "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
os.execv({real!r}, [{real!r}, *sys.argv[1:]])
"""


@dataclass(frozen=True)
class SbatchLog:
    """A logging ``sbatch`` first on PATH: put ``bin_dir`` in front of the jobs' PATH."""

    bin_dir: Path
    path: Path

    def calls(self) -> list[list[str]]:
        """Each sbatch command line the executor issued, as its argument list."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]

    def path_env(self, env: dict[str, str]) -> dict[str, str]:
        return {**env, "PATH": f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"}


def make_sbatch_log(root: Path) -> SbatchLog:
    """A logging sbatch wrapper in ``root/sbatch_bin`` writing ``root/sbatch_calls.jsonl``."""
    import shutil
    import sys

    real = shutil.which("sbatch")
    assert real, "sbatch not on PATH"
    bin_dir = root / "sbatch_bin"
    bin_dir.mkdir(parents=True)
    log = root / "sbatch_calls.jsonl"
    wrapper = bin_dir / "sbatch"
    wrapper.write_text(SBATCH_LOGGER.format(python=sys.executable, log=str(log), real=real))
    wrapper.chmod(0o755)
    return SbatchLog(bin_dir=bin_dir, path=log)


@pytest.fixture()
def sbatch_log(slurm_cluster, tmp_path) -> SbatchLog:
    return make_sbatch_log(tmp_path)


@pytest.fixture(scope="session")
def slurm_subset_run(slurm_cluster, tmp_path_factory):
    """The demo's stages through the SLURM profile, once per session (tests/slurm/subset_run.py):
    what test_workflow_slurm.py checks, and the finished tree the GPU-request forms rerun
    single jobs of."""
    from tests.slurm.subset_run import run_subset

    root = tmp_path_factory.mktemp("slurm_subset")
    return run_subset(root, slurm_cluster.account, make_sbatch_log(root))
