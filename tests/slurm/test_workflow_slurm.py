"""`snakemake --profile slurm` runs the demo's stages on the local SLURM cluster.

As a site without conda and with gres-only GPU requests would: the profile's default
(conda-free) mode, `cluster.gpu_request: gres`, and the evaluate jobs grouped three to an
allocation. The targets are every run of one AudioLDM2 model plus one AudioLDM1 retrieval
run: that plans every submitted rule of the demo (data, CLAP, bank, index, alignment check,
adapter training, generation, evaluation) at a fifth of the demo's generate/evaluate jobs,
and cuts one model's evaluations into a full and a partial group. The local rules (compare,
listening test) are covered by the local demo tests.
Every job goes through sbatch (a logging wrapper records each command line);
GPU rules get a GPU allocation and CPU rules do not; the groups make fewer submissions,
each asking for one GPU; a generate job cancelled with scancel mid-run is retried and the
workflow completes; the results equal a local run's.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.slurm.helpers import (
    cluster_overlay,
    flag_values,
    job_name_of,
    rule_of_comment,
    sacct_rows,
    slurm_test_profile,
)
from tests.workflow.helpers import (
    GPU_RULES,
    copy_workflow,
    offline_env,
    planned_jobs,
    rule_counts,
)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

GROUP_SIZE = 3
GROUPED_MODEL = "audioldm2-music"  # 4 runs in the demo: a group of 3 and a group of 1
ALDM1_RUN = ("audioldm", "retrieval_mlp")  # plans align_check and an AudioLDM1 adapter


def _local_rules(workdir: Path) -> set[str]:
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


def _target_runs(cfg: dict) -> list[tuple[str, str, int]]:
    """(model, condition, seed) of the runs this test submits."""
    runs = [
        (GROUPED_MODEL, c, s)
        for c, cond in cfg["conditions"].items()
        if GROUPED_MODEL in cond.get("models", cfg["models"])  # a condition's own models
        for s in cfg["seeds"]
    ]
    return runs + [(*ALDM1_RUN, s) for s in cfg["seeds"]]


def _run_dir(run: tuple[str, str, int]) -> str:
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


def assert_same_runs(a: Path, b: Path, run_dirs: list[str]) -> None:
    """Same clips, prompts and retrievals in each run of ``run_dirs`` (relative to ``a`` and
    ``b``). Audio equal up to float round-off: a SLURM job runs torch with its allocation's
    thread count, which changes summation order."""
    import numpy as np
    import soundfile as sf

    for run in run_dirs:
        assert (a / run / "metrics/summary.json").is_file() and (a / run / "report.html").is_file()
    wavs_a = sorted(p.relative_to(a) for run in run_dirs for p in (a / run).glob("wav/*.wav"))
    wavs_b = sorted(p.relative_to(b) for run in run_dirs for p in (b / run).glob("wav/*.wav"))
    assert wavs_a and wavs_a == wavs_b
    for rel in wavs_a:
        x, sr_x = sf.read(a / rel, dtype="float32")
        y, sr_y = sf.read(b / rel, dtype="float32")
        assert sr_x == sr_y and x.shape == y.shape, rel
        peak = max(float(np.abs(y).max()), 1e-12)
        assert float(np.abs(x - y).max()) <= 1e-3 * peak, rel
    keys = ("item", "prompt", "prompt_used", "augment_tags", "status", "style_source")
    for items in sorted(a / run / "items.jsonl" for run in run_dirs):
        rows_a = [json.loads(line) for line in items.read_text().splitlines()]
        rows_b = [json.loads(line) for line in (b / items.relative_to(a)).read_text().splitlines()]
        assert [{k: r.get(k) for k in keys} for r in rows_a] == [
            {k: r.get(k) for k in keys} for r in rows_b
        ], items
        assert [[h["segment_id"] for h in r["retrieved"]] for r in rows_a] == [
            [h["segment_id"] for h in r["retrieved"]] for r in rows_b
        ], items


def _planned_cluster_jobs(
    workdir: Path, profile: Path, overlay: str, env, targets: list[str]
) -> dict[str, int]:
    """Jobs per rule the profile would submit one by one (grouping off), from a dry-run."""
    ungrouped = cluster_overlay(workdir, "ungrouped.yaml", evaluate_group_size=1)
    plan = subprocess.run(
        [sys.executable, "-m", "snakemake", *targets, "--profile", str(profile), "-n"]
        + ["--configfile", "config/demo.yaml", overlay, ungrouped],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    counts = rule_counts(planned_jobs(plan))
    return {rule: n for rule, n in counts.items() if rule not in _local_rules(workdir)}


def test_demo_on_slurm_matches_local_run(slurm_cluster, demo_workdir, sbatch_log, tmp_path):
    workdir = copy_workflow(tmp_path / "wf")
    profile = slurm_test_profile(workdir, slurm_cluster.account)
    # fake GPUs and CPU torch: this test cluster is a site that allows CPU fallback
    overlay = cluster_overlay(
        workdir, gpu_request="gres", evaluate_group_size=GROUP_SIZE, require_cuda="never"
    )
    env = sbatch_log.path_env(offline_env(HF_HOME=str(tmp_path / "hf_home")))
    cfg = yaml.safe_load((workdir / "config/demo.yaml").read_text())
    runs = _target_runs(cfg)
    run_dirs = [_run_dir(run) for run in runs]  # relative to paths.results
    targets = [f"{cfg['paths']['results']}/{run}/report.html" for run in run_dirs]
    planned = _planned_cluster_jobs(workdir, profile, overlay, env, targets)
    assert planned["generate"] == planned["evaluate"] == len(runs), planned
    # the subset still submits every rule the whole demo submits
    assert set(planned) == set(_planned_cluster_jobs(workdir, profile, overlay, env, [])), planned
    stop, cancelled = threading.Event(), []
    watcher = threading.Thread(target=_cancel_first_generate_job, args=(stop, cancelled))
    watcher.start()
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "snakemake",
                *targets,
                "--profile",
                str(profile),
                "--configfile",
                "config/demo.yaml",
                overlay,
            ],
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
    log = proc.stdout
    assert proc.returncode == 0, log[-5000:]
    assert cancelled, "no generate job was seen running"
    assert "CANCELLED" in log and "Trying to restart job" in log

    # what the executor asked sbatch for: gres only, one GPU per group, fewer submissions
    calls = sbatch_log.calls()
    by_name: dict[str, list[list[str]]] = {}
    for call in calls:
        by_name.setdefault(job_name_of(call), []).append(call)
    groups = {name: c for name, c in by_name.items() if name.startswith("group_evaluate_")}
    runs_per_model = {m: sum(run[0] == m for run in runs) for m in {run[0] for run in runs}}
    assert runs_per_model[GROUPED_MODEL] % GROUP_SIZE, "the grouped model needs a partial group"
    # Snakemake cuts each model's evaluations into groups of GROUP_SIZE (the last smaller)
    group_sizes = {
        m: [GROUP_SIZE] * (n // GROUP_SIZE) + ([n % GROUP_SIZE] if n % GROUP_SIZE else [])
        for m, n in runs_per_model.items()
    }
    n_groups = sum(map(len, group_sizes.values()))
    evaluate_runtime = cfg["resources"]["evaluate"]["runtime"]
    for m in runs_per_model:
        of_model = [c for name, c in groups.items() if name.startswith(f"group_evaluate_{m}_")]
        assert len(of_model) == 1 and len(of_model[0]) == len(group_sizes[m]), m
        # runtimes add up over a group's sequential members
        assert sorted(int(flag_values(call, "-t")[0]) for call in of_model[0]) == sorted(
            size * evaluate_runtime for size in group_sizes[m]
        ), m
    assert sum(map(len, groups.values())) == n_groups
    assert "evaluate" not in by_name
    expected = sum(planned.values()) - planned["evaluate"] + n_groups + len(cancelled)
    assert len(calls) == expected, (len(calls), planned, sorted(by_name))
    for group_calls in groups.values():
        for call in group_calls:
            assert flag_values(call, "--gres") == ["gpu:1"], call
            # one member's memory and cpus (Snakemake sums parallel members' otherwise)
            assert flag_values(call, "--mem") == [str(cfg["resources"]["evaluate"]["mem_mb"])]
            assert f"--cpus-per-task={cfg['resources']['evaluate']['cpus']}" in call, call
    for name, name_calls in by_name.items():
        gpu_rule = name in GPU_RULES or name in groups
        for call in name_calls:
            assert not flag_values(call, "--gpus"), call
            assert flag_values(call, "--gres") == (["gpu:1"] if gpu_rule else []), call
            assert flag_values(call, "-p") == (["gpu"] if gpu_rule else ["cpu"]), call

    submitted = re.findall(r"submitted with SLURM jobid (\d+)", log)
    job_ids = sorted(set(submitted))
    assert len(job_ids) == len(calls)
    rows = sacct_rows(job_ids)
    rules_seen = set()
    for row in rows.values():
        rule = rule_of_comment(row["Comment"])
        rules_seen.add(rule)
        if row["JobID"] in cancelled:
            assert row["State"].startswith("CANCELLED")
            continue
        assert row["State"] == "COMPLETED", row
        assert ("gres/gpu=1" in row["AllocTRES"]) == (rule in GPU_RULES), row
        assert row["Partition"] == ("gpu" if rule in GPU_RULES else "cpu"), row
    assert GPU_RULES | {"segment", "build_bank", "build_index", "demo_model"} <= rules_seen
    assert not rules_seen & _local_rules(workdir)
    print(
        f"\nsbatch submissions: {len(calls)} with evaluate grouped by {GROUP_SIZE} "
        f"({n_groups} groups); {expected - n_groups + planned['evaluate']} without grouping"
    )

    results = workdir / cfg["paths"]["results"]
    # the same results as a local run of the same workflow
    local = demo_workdir
    local_results = local / cfg["paths"]["results"]
    assert_same_runs(results, local_results, run_dirs)
    processed = cfg["paths"]["processed"]
    import numpy as np

    bank = np.load(workdir / processed / "bank/style_bank.npy")
    np.testing.assert_allclose(bank, np.load(local / processed / "bank/style_bank.npy"), atol=1e-5)
    run_config = json.loads(next(results.glob("runs/*/*/seed*/run_config.json")).read_text())
    assert run_config["timings_s"]["total"] > 0
