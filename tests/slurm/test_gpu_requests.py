"""Each GPU request style (config `cluster:`) as the executor submits it to the test cluster.

For every form the test reads the sbatch command line the executor actually issued (a
logging sbatch wrapper) and the allocation SLURM gave the job (sacct, and the GPU the job
itself saw). The jobs run with `require_cuda: auto` on fake GPUs with CPU torch, so each
stops at once with the one-line no-CUDA message: the fail-fast check, end to end.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.slurm.helpers import (
    SNAKEMAKE_FAST_POLL,
    cluster_overlay,
    flag_values,
    job_name_of,
    sacct_rows,
    slurm_test_profile,
)
from tests.workflow.helpers import offline_env

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

NO_CUDA = re.compile(
    r"^error: rule (\w+) on host \S+ \(SLURM job (\d+)\) sees no CUDA device \(torch .*; "
    r"SLURM_STEP_GPUS=\d\): install a CUDA build of torch in the job's environment, or set "
    r"cluster.require_cuda: never .*to allow CPU fallback$"
)


def _scratch_copy(src: Path, dst: Path) -> Path:
    """A finished workflow tree, hard-linked (outputs are only ever replaced, never edited in
    place), with Snakemake's metadata and the logs copied (those are rewritten)."""
    shutil.copytree(src, dst, symlinks=True, copy_function=os.link)
    for part in (".snakemake", "logs"):
        shutil.rmtree(dst / part, ignore_errors=True)
        if (src / part).exists():
            shutil.copytree(src / part, dst / part, symlinks=True)
    return dst


CASES = {
    # form: (cluster keys, forced rule, targets, expected --gpus, --gres, -C, group runtime)
    "gpus_model": (
        {"gpu_request": "gpus", "gpu_model": "testgpu"},
        "reference_stats",
        None,
        ["testgpu:1"],
        [],
        [],
    ),
    "gres_model_constraint": (
        {"gpu_request": "gres", "gpu_model": "testgpu", "gpu_constraint": "testgpu_node"},
        "reference_stats",
        None,
        [],
        ["gpu:testgpu:1"],
        ["testgpu_node"],
    ),
    "gpus_grouped": (
        {"gpu_request": "gpus", "evaluate_group_size": 4},
        "evaluate",
        "audioldm2-music",  # the demo model with exactly 4 runs: one group of 4
        ["1"],
        [],
        [],
    ),
}


@pytest.mark.parametrize("form", sorted(CASES))
def test_gpu_request_form_on_slurm(form, slurm_cluster, slurm_subset_run, sbatch_log, tmp_path):
    cluster, rule, model, gpus, gres, constraint = CASES[form]
    assert slurm_subset_run.returncode == 0, slurm_subset_run.log[-3000:]
    # the SLURM run's finished tree (it holds every run of the grouped model)
    workdir = _scratch_copy(slurm_subset_run.workdir, tmp_path / "wf")
    profile = slurm_test_profile(workdir, slurm_cluster.account, name=f"profile_{form}")
    overlay = cluster_overlay(workdir, f"{form}.yaml", require_cuda="auto", **cluster)
    cfg = yaml.safe_load((workdir / "config/demo.yaml").read_text())
    if rule == "reference_stats":
        targets = [f"{cfg['paths']['processed']}/reference/ref_stats.npz"]
    else:
        targets = [
            f"{cfg['paths']['results']}/runs/{model}/{c}/seed{s}/report.html"
            for c, cond in cfg["conditions"].items()
            if model in cond.get("models", cfg["models"])  # a condition's own models
            for s in cfg["seeds"]
        ]
        # one group job is expected: the model's runs must fill exactly one group
        assert len(targets) == cluster["evaluate_group_size"], (model, len(targets))
    proc = subprocess.run(
        [*SNAKEMAKE_FAST_POLL, *targets, "--profile", str(profile)]
        + ["--retries", "0", "--forcerun", rule, "--configfile", "config/demo.yaml", overlay],
        cwd=workdir,
        env=sbatch_log.path_env(offline_env(HF_HOME=str(tmp_path / "hf_home"))),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )
    log = proc.stdout
    assert proc.returncode != 0, log[-4000:]

    (call,) = sbatch_log.calls()  # one submission, a group of len(targets) jobs included
    name = job_name_of(call)
    if rule == "reference_stats":
        assert name == rule, call
    else:  # one group job holding this model's evaluations
        assert name.startswith(f"group_evaluate_{model}_"), call
    assert flag_values(call, "--gpus") == gpus, call
    assert flag_values(call, "--gres") == gres, call
    assert flag_values(call, "-C") == constraint, call
    assert flag_values(call, "-p") == ["gpu"], call
    runtime = cfg["resources"][rule]["runtime"] * len(targets)
    assert flag_values(call, "-t") == [str(runtime)], call  # a group's runtimes add up
    assert flag_values(call, "--mem") == [str(cfg["resources"][rule]["mem_mb"])], call

    (job_id,) = re.findall(r"submitted with SLURM jobid (\d+)", log)
    row = sacct_rows([job_id])[job_id]
    assert row["Partition"] == "gpu" and "gres/gpu=1" in row["AllocTRES"], row
    assert row["State"].startswith("FAILED"), row

    # the job stopped at once with the one-line message, in the rule's log
    logs = [p for p in (workdir / cfg["paths"]["logs"]).rglob("*.log") if rule in p.as_posix()]
    messages = [p.read_text() for p in logs if "sees no CUDA device" in p.read_text()]
    assert messages, (sorted(map(str, logs)), log[-3000:])
    for text in messages:
        lines = text.splitlines()
        assert len(lines) == 1, text
        match = NO_CUDA.match(lines[0])
        assert match and match.group(1) == rule and match.group(2) == job_id, lines[0]
