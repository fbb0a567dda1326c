"""The repository's SLURM profile adapted to the test cluster, config overlays, and
readers for the sbatch command lines the executor issued."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

# `snakemake` for runs through the SLURM profile: status checked every 2 s (see the script)
SNAKEMAKE_FAST_POLL = [sys.executable, str(Path(__file__).with_name("fast_poll_snakemake.py"))]


def slurm_test_profile(workdir: Path, account: str, name: str = "test_profile") -> Path:
    """The repository's slurm profile as a new user runs it (conda-free by default), on the
    test account, with the test-only speed-ups: fast status polling, short latency wait."""
    profile = yaml.safe_load((workdir / "slurm/config.yaml").read_text())
    assert "software-deployment-method" not in profile, "the profile must plan without conda"
    profile["default-resources"]["slurm_account"] = account
    profile["jobs"] = 4
    profile["latency-wait"] = 10
    # Tests only: the executor waits this long before its first status check and after each
    # finished job (it adds 10 s per check that sees nothing finish, up to 180 s).
    profile["slurm-init-seconds-before-status-checks"] = 1
    profile["slurm-logdir"] = str(workdir / "slurm_logs")
    profile["slurm-keep-successful-logs"] = True
    target = workdir / name
    target.mkdir()
    (target / "config.yaml").write_text(yaml.safe_dump(profile))
    return target


def cluster_overlay(workdir: Path, name: str = "cluster_overlay.yaml", **cluster) -> str:
    """A config file (relative to ``workdir``) overriding keys of ``cluster:``."""
    path = workdir / "config" / name
    path.write_text(yaml.safe_dump({"cluster": cluster}))
    return f"config/{name}"


def flag_values(call: list[str], flag: str) -> list[str]:
    """Values of ``--flag=V`` / ``--flag V`` / ``-C V`` in one sbatch call (its argv)."""
    words = call
    values = []
    for i, word in enumerate(words):
        if word.startswith(flag + "="):
            values.append(word.split("=", 1)[1])
        elif word == flag and i + 1 < len(words):
            values.append(words[i + 1])
    return values


def job_name_of(call: list[str]) -> str:
    """What one sbatch call submitted, from the executor's log folder: ``generate`` for a
    rule's job, ``group_evaluate_audioldm_...`` for a group job."""
    (output,) = flag_values(call, "--output")
    folder = Path(output).parent.name
    if folder.startswith("rule_"):
        return folder.removeprefix("rule_")
    wildcard_folder = Path(output).parent.parent.name  # rule_NAME/WILDCARDS/%j.log
    if wildcard_folder.startswith("rule_"):
        return wildcard_folder.removeprefix("rule_")
    return folder


def rule_of_comment(comment: str) -> str:
    """The rule of a sacct Comment (``rule_NAME_wildcards_...``; a group of evaluate jobs
    is ``rule_evaluate_<model>_...``)."""
    name = comment.removeprefix("rule_").split("_wildcards")[0]
    return "evaluate" if name.startswith("evaluate_") else name


def sacct_rows(job_ids: list[str], fields: str = "JobID,JobName,Partition,State,AllocTRES,Comment"):
    out = subprocess.run(
        ["sacct", "-n", "-P", "-X", "-j", ",".join(job_ids), "-o", fields],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = {}
    for line in out.splitlines():
        values = dict(zip(fields.split(","), line.split("|"), strict=True))
        rows[values["JobID"]] = values
    return rows
