"""Smoke tests on the local SLURM cluster: sbatch with fake GPUs, and Snakemake's
SLURM executor (snakemake-executor-plugin-slurm) submitting CPU and GPU rules,
including a job cancelled with scancel and retried.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.slurm.helpers import SNAKEMAKE_FAST_POLL

pytestmark = pytest.mark.slurm

FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"}
SACCT_FIELDS = ("JobID", "State", "Partition", "AllocTRES", "Comment", "ExitCode")
SUBMITTED_RE = re.compile(r"submitted with SLURM jobid (\d+) \(log: .*/rule_([A-Za-z0-9_]+)/")
ENV_PROBE = 'echo "job=$SLURM_JOB_ID cuda=${CUDA_VISIBLE_DEVICES:-none}" > '


def sbatch(*args: str) -> str:
    submitted = subprocess.run(
        ["sbatch", "--parsable", *args], capture_output=True, text=True, check=True
    )
    return submitted.stdout.strip().split(";")[0]


def sacct_rows(job_ids: list[str]) -> dict[str, dict[str, str]]:
    """Allocation-level sacct rows (no steps), keyed by job id."""
    listing = subprocess.run(
        ["sacct", "-X", "-P", "-n", "-j", ",".join(job_ids), "-o", ",".join(SACCT_FIELDS)],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = (
        dict(zip(SACCT_FIELDS, line.split("|"), strict=True))
        for line in listing.stdout.splitlines()
    )
    return {row["JobID"]: row for row in rows}


def is_settled(row: dict[str, str] | None) -> bool:
    """Final state with partition and TRES recorded: slurmdbd can briefly hold a job's
    completion record before its start record, so State alone is not enough."""
    if not row or not row["State"]:
        return False
    return row["State"].split()[0] in FINAL_STATES and bool(row["Partition"] and row["AllocTRES"])


def wait_for_final_states(job_ids: list[str], timeout_s: float = 90) -> dict[str, dict[str, str]]:
    """Poll sacct until every job is settled in a final state (slurmdbd lags a little)."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = sacct_rows(job_ids)
        if all(is_settled(rows.get(job_id)) for job_id in job_ids):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"jobs not settled in {timeout_s} s: {rows}")
        time.sleep(0.5)


def read_probe(path: Path) -> dict[str, str]:
    """Parse the 'job=ID cuda=DEVICES' line an ENV_PROBE job wrote."""
    return dict(item.split("=", 1) for item in path.read_text().split())


def wait_for_file(path: Path, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while not (path.exists() and path.read_text().strip()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout_s} s")
        time.sleep(0.2)
    return path.read_text()


def snakemake_command(account: str, workdir: Path, *extra: str) -> list[str]:
    return [
        *SNAKEMAKE_FAST_POLL,
        "--executor",
        "slurm",
        "--jobs",
        "2",
        "--latency-wait",
        "5",
        "--slurm-init-seconds-before-status-checks",
        "1",
        # sacct reports a scancelled job as 'CANCELLED by <uid>', which plugin 2.8.0 does
        # not recognise as failed (the workflow waits forever); squeue reports 'CANCELLED'.
        "--slurm-status-command",
        "squeue",
        "--slurm-logdir",
        str(workdir / "slurm_logs"),
        "--slurm-keep-successful-logs",
        "--default-resources",
        f"slurm_account={account}",
        "slurm_partition=cpu",
        "runtime=10",
        "mem_mb=500",
        *extra,
    ]


def snakemake_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def submitted_jobs(snakemake_log: str) -> dict[str, list[str]]:
    """rule name -> SLURM job ids, from the executor's 'submitted with SLURM jobid' lines."""
    jobs: dict[str, list[str]] = {}
    for job_id, rule in SUBMITTED_RE.findall(snakemake_log):
        jobs.setdefault(rule, []).append(job_id)
    return jobs


def test_cluster_has_cpu_and_gpu_partitions(slurm_cluster):
    assert set(slurm_cluster.partitions) == {"cpu", "gpu"}
    node = subprocess.run(
        ["scontrol", "show", "node"], capture_output=True, text=True, check=True
    ).stdout
    assert "gres/gpu=2" in node


def test_sbatch_cpu_and_gpu_jobs(slurm_cluster, tmp_path):
    account = slurm_cluster.account
    cpu_job = sbatch(
        "-p", "cpu", "-A", account, "-D", str(tmp_path), "--wrap", ENV_PROBE + "cpu.txt"
    )
    gpus_job = sbatch(
        "-p",
        "gpu",
        "-A",
        account,
        "--gpus=1",
        "-D",
        str(tmp_path),
        "--wrap",
        ENV_PROBE + "gpus.txt",
    )
    gres_job = sbatch(
        "-p",
        "gpu",
        "-A",
        account,
        "--gres=gpu:1",
        "-D",
        str(tmp_path),
        "--wrap",
        ENV_PROBE + "gres.txt",
    )
    rows = wait_for_final_states([cpu_job, gpus_job, gres_job])

    assert {job: rows[job]["State"] for job in rows} == dict.fromkeys(
        [cpu_job, gpus_job, gres_job], "COMPLETED"
    )
    assert rows[cpu_job]["Partition"] == "cpu"
    assert "gres/gpu" not in rows[cpu_job]["AllocTRES"]
    assert read_probe(tmp_path / "cpu.txt")["cuda"] == "none"
    for job, probe in ((gpus_job, "gpus.txt"), (gres_job, "gres.txt")):
        assert rows[job]["Partition"] == "gpu"
        assert "gres/gpu=1" in rows[job]["AllocTRES"]
        assert read_probe(tmp_path / probe)["cuda"] in {"0", "1"}


GPU_WORKFLOW = """
rule all:
    input: "cpu.txt", "gpu_count.txt", "gpu_gres.txt"

rule cpu:
    output: "cpu.txt"
    shell: 'echo "job=$SLURM_JOB_ID cuda=${{CUDA_VISIBLE_DEVICES:-none}}" > {output}'

rule gpu_count:
    output: "gpu_count.txt"
    resources: gpu=1, slurm_partition="gpu"
    shell: 'echo "job=$SLURM_JOB_ID cuda=${{CUDA_VISIBLE_DEVICES:-none}}" > {output}'

rule gpu_gres:
    output: "gpu_gres.txt"
    resources: gres="gpu:1", slurm_partition="gpu"
    shell: 'echo "job=$SLURM_JOB_ID cuda=${{CUDA_VISIBLE_DEVICES:-none}}" > {output}'
"""


def test_snakemake_slurm_executor_allocates_gpus(slurm_cluster, tmp_path):
    (tmp_path / "Snakefile").write_text(GPU_WORKFLOW)
    run = subprocess.run(
        snakemake_command(slurm_cluster.account, tmp_path),
        cwd=tmp_path,
        env=snakemake_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-4000:]

    jobs = submitted_jobs(run.stderr)
    assert sorted(jobs) == ["cpu", "gpu_count", "gpu_gres"], run.stderr[-4000:]
    job_of_rule = {rule: ids[0] for rule, ids in jobs.items()}
    rows = wait_for_final_states(list(job_of_rule.values()))
    for rule, job in job_of_rule.items():
        assert rows[job]["State"] == "COMPLETED"
        assert rows[job]["Comment"].startswith(f"rule_{rule}")
        assert read_probe(tmp_path / f"{rule}.txt")["job"] == job

    assert rows[job_of_rule["cpu"]]["Partition"] == "cpu"
    assert "gres/gpu" not in rows[job_of_rule["cpu"]]["AllocTRES"]
    assert read_probe(tmp_path / "cpu.txt")["cuda"] == "none"
    for rule in ("gpu_count", "gpu_gres"):
        assert rows[job_of_rule[rule]]["Partition"] == "gpu"
        assert "gres/gpu=1" in rows[job_of_rule[rule]]["AllocTRES"]
        assert read_probe(tmp_path / f"{rule}.txt")["cuda"] in {"0", "1"}


CANCEL_WORKFLOW = """
rule slow:
    output: "slow.txt"
    shell:
        'echo $SLURM_JOB_ID >> attempts.txt; '
        'if [ ! -e cancelled.flag ]; then sleep 300; fi; '
        'echo done > {output}'
"""


def test_scancelled_job_is_retried(slurm_cluster, tmp_path):
    (tmp_path / "Snakefile").write_text(CANCEL_WORKFLOW)
    log_path = tmp_path / "snakemake.log"
    with log_path.open("w") as log_file:
        workflow = subprocess.Popen(
            snakemake_command(slurm_cluster.account, tmp_path, "--retries", "1"),
            cwd=tmp_path,
            env=snakemake_env(),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            first_job = wait_for_file(tmp_path / "attempts.txt", timeout_s=60).split()[0]
            (tmp_path / "cancelled.flag").touch()
            subprocess.run(["scancel", first_job], check=True)
            returncode = workflow.wait(timeout=300)
        finally:
            if workflow.poll() is None:
                workflow.kill()
                workflow.wait()
    log = log_path.read_text()
    assert returncode == 0, log[-4000:]

    attempts = (tmp_path / "attempts.txt").read_text().split()
    assert len(attempts) == 2 and attempts[0] == first_job, attempts
    assert submitted_jobs(log) == {"slow": attempts}
    rows = wait_for_final_states(attempts)
    assert rows[attempts[0]]["State"] == f"CANCELLED by {os.getuid()}"
    assert rows[attempts[1]]["State"] == "COMPLETED"
    assert f"SLURM-job '{first_job}' failed, SLURM status is: 'CANCELLED'" in log
    assert (tmp_path / "slow.txt").read_text().strip() == "done"
