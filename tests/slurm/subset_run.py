"""One run of the demo's stages through the repository's SLURM profile, shared by the
SLURM tests (session fixture ``slurm_subset_run`` in conftest.py).

As a site without conda and with gres-only GPU requests would: the profile's default
(conda-free) mode, `cluster.gpu_request: gres`, and the evaluate jobs grouped three to an
allocation. The targets are every run of one AudioLDM2 model plus one AudioLDM1 retrieval
run: that plans every submitted rule of the demo (data, CLAP, bank, index, alignment check,
adapter training, generation, evaluation) at a fifth of the demo's generate/evaluate jobs,
and cuts one model's evaluations into a full and a partial group. A generate job is
scancelled mid-run (the workflow must retry it). The local rules (compare, listening test)
are covered by the local demo tests.
"""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.slurm.helpers import SNAKEMAKE_FAST_POLL, cluster_overlay, slurm_test_profile
from tests.workflow.helpers import copy_workflow, offline_env, planned_jobs, rule_counts

GROUP_SIZE = 3
GROUPED_MODEL = "audioldm2-music"  # 4 runs in the demo: a group of 3 and a group of 1
ALDM1_RUN = ("audioldm", "retrieval_native")  # plans align_check and an AudioLDM1 adapter


@dataclass(frozen=True)
class SubsetRun:
    workdir: Path
    cfg: dict  # config/demo.yaml
    runs: list[tuple[str, str, int]]  # (model, condition, seed) submitted
    run_dirs: list[str]  # relative to paths.results
    planned: dict[str, int]  # jobs per submitted rule, grouping off (dry-run)
    planned_full_demo: dict[str, int]  # the same for the whole demo
    returncode: int
    log: str  # Snakemake's stdout + stderr
    calls: list[list[str]]  # each sbatch command line, in order
    cancelled: list[str]  # SLURM job ids the test scancelled


def local_rules(workdir: Path) -> set[str]:
    """The rules the workflow declares `localrules:` (never submitted), and `all`."""
    names = {"all"}
    for smk in [workdir / "Snakefile", *sorted((workdir / "rules").glob("*.smk"))]:
        lines = smk.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.startswith("localrules:"):
                for item in lines[i + 1 :]:
                    if not item.startswith(" "):
                        break
                    names.add(item.strip().rstrip(","))
    return names


def target_runs(cfg: dict) -> list[tuple[str, str, int]]:
    """(model, condition, seed) of the runs submitted."""
    runs = [
        (GROUPED_MODEL, c, s)
        for c, cond in cfg["conditions"].items()
        if GROUPED_MODEL in cond.get("models", cfg["models"])  # a condition's own models
        for s in cfg["seeds"]
    ]
    return runs + [(*ALDM1_RUN, s) for s in cfg["seeds"]]


def run_dir(run: tuple[str, str, int]) -> str:
    model, condition, seed = run
    return f"runs/{model}/{condition}/seed{seed}"


def _cancel_first_generate_job(stop: threading.Event, cancelled: list[str]) -> None:
    """Wait for a running generate job, scancel it once."""
    while not stop.is_set():
        listing = subprocess.run(
            ["squeue", "-h", "-t", "RUNNING", "-o", "%i|%k"], capture_output=True, text=True
        ).stdout
        for line in listing.splitlines():
            job_id, comment = line.split("|", 1)
            if comment.startswith("rule_generate"):
                time.sleep(2)  # let it load the model, then kill it mid-run
                subprocess.run(["scancel", job_id], check=False)
                cancelled.append(job_id)
                return
        time.sleep(0.5)


def _planned_cluster_jobs(workdir, profile, overlay, env, targets) -> dict[str, int]:
    """Jobs per rule the profile would submit one by one (grouping off), from a dry-run."""
    ungrouped = cluster_overlay(workdir, "ungrouped.yaml", evaluate_group_size=1)
    plan = subprocess.run(
        [*SNAKEMAKE_FAST_POLL, *targets, "--profile", str(profile), "-n"]
        + ["--configfile", "config/demo.yaml", overlay, ungrouped],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    counts = rule_counts(planned_jobs(plan))
    return {rule: n for rule, n in counts.items() if rule not in local_rules(workdir)}


def run_subset(root: Path, account: str, sbatch_log) -> SubsetRun:
    workdir = copy_workflow(root / "wf")
    profile = slurm_test_profile(workdir, account)
    # fake GPUs and CPU torch: this test cluster is a site that allows CPU fallback
    overlay = cluster_overlay(
        workdir, gpu_request="gres", evaluate_group_size=GROUP_SIZE, require_cuda="never"
    )
    env = sbatch_log.path_env(offline_env(HF_HOME=str(root / "hf_home")))
    cfg = yaml.safe_load((workdir / "config/demo.yaml").read_text())
    runs = target_runs(cfg)
    run_dirs = [run_dir(run) for run in runs]
    targets = [f"{cfg['paths']['results']}/{run}/report.html" for run in run_dirs]
    planned = _planned_cluster_jobs(workdir, profile, overlay, env, targets)
    planned_full_demo = _planned_cluster_jobs(workdir, profile, overlay, env, [])
    stop, cancelled = threading.Event(), []
    watcher = threading.Thread(target=_cancel_first_generate_job, args=(stop, cancelled))
    watcher.start()
    try:
        proc = subprocess.run(
            [*SNAKEMAKE_FAST_POLL, *targets, "--profile", str(profile)]
            + ["--configfile", "config/demo.yaml", overlay],
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=2400,
        )
    finally:
        stop.set()
        watcher.join()
    return SubsetRun(
        workdir=workdir,
        cfg=cfg,
        runs=runs,
        run_dirs=run_dirs,
        planned=planned,
        planned_full_demo=planned_full_demo,
        returncode=proc.returncode,
        log=proc.stdout,
        calls=sbatch_log.calls(),
        cancelled=cancelled,
    )
