"""Run the workflow in a scratch copy of the repository and read what Snakemake plans."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from rcmg.workflow.pause_point import ENV as PAUSE_ENV

REPO = Path(__file__).resolve().parents[2]
WORKFLOW_PARTS = ("Snakefile", "rules", "workflow_scripts", "config", "envs", "report", "slurm")
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
# Rules that ask SLURM for a GPU (resources.<rule>.gpu in the configs) and run the CUDA check.
GPU_RULES = frozenset(
    {
        "clap_embed",
        "space_embed",
        "reference_stats",
        "judge_bank_embed",
        "classifier_bank_embed",
        "align_check",
        "style_target",
        "train_adapter",
        "generate",
        "evaluate",
    }
)


def copy_workflow(dst: Path) -> Path:
    """A scratch copy of the workflow (code + config, no outputs) at ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in WORKFLOW_PARTS:
        src = REPO / part
        if src.is_dir():
            shutil.copytree(src, dst / part, ignore=ignore, dirs_exist_ok=True)
        elif src.is_file():
            shutil.copy2(src, dst / part)
    return dst


def offline_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        TOKENIZERS_PARALLELISM="false",
        TRANSFORMERS_NO_TORCHVISION="1",
        PYTHONUNBUFFERED="1",
    )
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: float = 1800, **popen):
    """Run ``snakemake ARGS`` in ``workdir``; return the CompletedProcess (stdout+stderr merged)."""
    proc = subprocess.run(
        [*SNAKEMAKE, *args],
        cwd=workdir,
        env=offline_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        **popen,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-6000:]}"
        )
    return proc


def kill_at_pause_point(workdir: Path, *args: str, job: str, skip: int = 0) -> dict | None:
    """Run ``snakemake ARGS`` until a generate job whose output path contains ``job`` (the
    ``skip``+1-th such job to start) pauses after its first batch (rcmg.workflow.pause_point),
    then SIGKILL Snakemake and its jobs there: mid-run for certain. Returns the marker the
    paused job wrote (its ``job`` is the job's output folder), None when none paused."""
    marker = workdir / "paused.json"
    for old in [marker, *workdir.glob(f"{marker.name}.hit*")]:
        old.unlink(missing_ok=True)
    pause = {"point": "generate.first_batch", "job": job, "marker": str(marker), "skip": skip}
    proc = subprocess.Popen(
        [*SNAKEMAKE, *args],
        cwd=workdir,
        env={**offline_env(), PAUSE_ENV: json.dumps(pause)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 600
    while time.time() < deadline and not marker.is_file() and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return json.loads(marker.read_text()) if marker.is_file() else None


_JOB = re.compile(r"^(?:local)?rule (\w+):\s*$")
_WILDCARDS = re.compile(r"^\s+wildcards: (.*)$")


def planned_jobs(output: str) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    """The jobs a ``snakemake -n`` run printed, as {(rule, ((wildcard, value), ...))}."""
    jobs: set = set()
    current: str | None = None
    wildcards: tuple = ()

    def flush():
        if current is not None:
            jobs.add((current, wildcards))

    for line in output.splitlines():
        match = _JOB.match(line)
        if match:
            flush()
            current, wildcards = match.group(1), ()
            continue
        match = _WILDCARDS.match(line)
        if match and current is not None:
            pairs = [p.split("=", 1) for p in match.group(1).split(", ")]
            wildcards = tuple(sorted((k, v) for k, v in pairs))
    flush()
    return jobs


def job(rule: str, **wildcards) -> tuple[str, tuple[tuple[str, str], ...]]:
    return rule, tuple(sorted((k, str(v)) for k, v in wildcards.items()))


def rule_counts(jobs) -> dict[str, int]:
    counts: dict[str, int] = {}
    for rule, _ in jobs:
        counts[rule] = counts.get(rule, 0) + 1
    return counts


def run_points(cfg: dict):
    """The run points a config plans (configured model x condition + sweep points), from
    the same planner as the workflow (rcmg.workflow.sweeps): counts derive from the config."""
    from rcmg.workflow.sweeps import plan

    return plan(cfg)
