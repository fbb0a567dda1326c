"""First contact with a cluster: the profile plans anywhere; GPU request style, CUDA policy
and evaluate grouping come from config `cluster:` (checked here by dry-runs and the check
itself; tests/slurm runs them on a real SLURM cluster)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .helpers import GPU_RULES, REPO, copy_workflow, planned_jobs, rule_counts, run_points

sys.path.insert(0, str(REPO / "workflow_scripts"))

from rcmg.workflow import cuda_check  # noqa: E402


@pytest.fixture()
def workdir(tmp_path):
    return copy_workflow(tmp_path / "wf")


def _bare_env(tmp_path: Path) -> dict[str, str]:
    """A new user's shell after the README's set-up: no HF_HOME, no conda on PATH."""
    env = {k: v for k, v in os.environ.items() if k != "HF_HOME" and not k.startswith("CONDA")}
    bin_dir = tmp_path / "bin"  # only the venv's snakemake, plus the system tools
    bin_dir.mkdir()
    (bin_dir / "snakemake").symlink_to(Path(sys.executable).parent / "snakemake")
    env["PATH"] = os.pathsep.join([str(bin_dir), "/usr/bin", "/bin"])
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


def _snakemake(workdir, env, *args):
    proc = subprocess.run(
        ["snakemake", *args],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    return proc.stdout


def test_profile_plans_full_matrix_without_hf_home_or_conda(workdir, tmp_path):
    env = _bare_env(tmp_path)
    assert subprocess.run(["sh", "-c", "command -v conda"], env=env).returncode != 0
    out = _snakemake(workdir, env, "--profile", "slurm", "-n")
    counts = rule_counts(planned_jobs(out))
    cfg = yaml.safe_load((workdir / "config/config.yaml").read_text())
    # a condition runs on the models it names (conditions.<name>.models), else on all;
    # sweeps add their points (rcmg.workflow.sweeps plans both)
    points = run_points(cfg)
    n_runs = len(cfg["seeds"]) * len(points)
    # a sharded model's run is generate_shard jobs + one gather_generate (config/README.md)
    shards = {m: spec["sampling"].get("prompt_shards", 1) for m, spec in cfg["models"].items()}
    runs = [p.model for p in points] * len(cfg["seeds"])
    assert counts.get("generate", 0) + counts.get("gather_generate", 0) == n_runs
    assert counts.get("generate_shard", 0) == sum(shards[m] for m in runs if shards[m] > 1)
    assert counts["evaluate"] == n_runs
    assert counts["segment"] == sum(d["shards"] for d in cfg["datasets"].values())
    assert "This was a dry-run" in out


def _resources_by_rule(out: str) -> dict[str, set[str]]:
    """rule -> the `resources:` lines a dry-run printed for its jobs."""
    seen: dict[str, set[str]] = {}
    rule = None
    for line in out.splitlines():
        if line.strip().startswith(("rule ", "localrule ")):
            rule = line.split()[1].rstrip(":")
        elif line.strip().startswith("resources:") and rule:
            seen.setdefault(rule, set()).add(line.strip())
    return seen


CLUSTER_KEYS = ("gpu", "gres", "gpu_model", "constraint", "require_cuda")


@pytest.mark.parametrize(
    ("cluster", "expected"),
    [
        ({}, {"gpu": "1", "require_cuda": "auto"}),
        ({"gpu_request": "gres"}, {"gres": "gpu:1", "require_cuda": "auto"}),
        (
            {"gpu_request": "gres", "gpu_model": "a100", "gpu_constraint": "nvlink"},
            {"gres": "gpu:a100:1", "constraint": "nvlink", "require_cuda": "auto"},
        ),
        ({"gpu_model": "h100"}, {"gpu": "1", "gpu_model": "h100", "require_cuda": "auto"}),
        ({"require_cuda": "never"}, {"gpu": "1", "require_cuda": "never"}),
    ],
)
def test_gpu_request_style_reaches_every_gpu_rule_and_only_those(workdir, cluster, expected):
    # one model unsharded: both generate (1 shard) and generate_shard (8) are planned
    overlay = {"cluster": cluster, "models": {"audioldm": {"sampling": {"prompt_shards": 1}}}}
    (workdir / "config/overlay.yaml").write_text(yaml.safe_dump(overlay))
    gpu_rules = GPU_RULES | {"generate_shard"}
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--configfile", "config/overlay.yaml"],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    seen = _resources_by_rule(out)
    assert gpu_rules <= set(seen), sorted(seen)
    for rule, lines in seen.items():
        for line in lines:
            fields = dict(
                f.strip().split("=", 1) for f in line.removeprefix("resources:").split(",")
            )
            got = {k: v for k, v in fields.items() if k in CLUSTER_KEYS}
            assert got == (expected if rule in gpu_rules else {}), (rule, line)


def test_evaluate_jobs_are_grouped_per_model_only_when_asked(workdir):
    def groups(*extra):
        out = subprocess.run(
            [sys.executable, "-m", "snakemake", "-n", "--configfile", "config/demo.yaml", *extra],
            cwd=workdir,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return [
            line.split("Group job ")[1].split()[0]
            for line in out.splitlines()
            if "Group job " in line
        ]

    cfg = yaml.safe_load((workdir / "config/demo.yaml").read_text())
    assert groups() == []
    (workdir / "config/group.yaml").write_text(
        yaml.safe_dump({"cluster": {"evaluate_group_size": 4}})
    )
    # a condition runs on the models it names (conditions.<name>.models), else on all;
    # sweep points are runs of their model too (rcmg.workflow.sweeps plans both)
    points = run_points(cfg)
    runs_per_model = {
        m: len(cfg["seeds"]) * sum(p.model == m for p in points) for m in cfg["models"]
    }
    assert sorted(groups("config/group.yaml")) == sorted(
        f"evaluate_{m}" for m in cfg["models"] for _ in range(-(-runs_per_model[m] // 4))
    )
    (workdir / "config/group2.yaml").write_text(
        yaml.safe_dump({"cluster": {"evaluate_group_size": 2}})
    )
    assert sorted(groups("config/group2.yaml")) == sorted(
        f"evaluate_{m}" for m in cfg["models"] for _ in range(-(-runs_per_model[m] // 2))
    )


# ---------------------------------------------------------------- the CUDA check itself
SLURM_GPU_JOB = {"SLURM_JOB_ID": "42", "SLURM_STEP_GPUS": "0", "SLURM_JOB_GPUS": "0"}
SLURM_CPU_JOB = {"SLURM_JOB_ID": "43"}


def _no_cuda():
    return False, "torch 2.x, CPU-only build"


def _cuda():
    return True, "torch 2.x, CUDA 12.1"


@pytest.mark.parametrize(
    ("policy", "env", "probe", "fails"),
    [
        ("auto", SLURM_GPU_JOB, _no_cuda, True),
        ("auto", {"SLURM_JOB_ID": "42", "SLURM_GPUS_ON_NODE": "1"}, _no_cuda, True),
        ("auto", SLURM_GPU_JOB, _cuda, False),
        ("auto", SLURM_CPU_JOB, _no_cuda, False),  # gpu: 0 on this site: CPU is intended
        ("auto", {"CUDA_VISIBLE_DEVICES": "0"}, _no_cuda, False),  # local run, demo, tests
        ("auto", {"SLURM_JOB_ID": "43", "CUDA_VISIBLE_DEVICES": "0"}, _no_cuda, False),
        ("always", {}, _no_cuda, True),
        ("always", {}, _cuda, False),
        ("never", SLURM_GPU_JOB, _no_cuda, False),
    ],
)
def test_cuda_policy(policy, env, probe, fails):
    message = cuda_check.problem("generate", policy, env=env, probe=probe, host="node7")
    assert (message is not None) == fails, message
    if fails:
        assert "\n" not in message
        assert message.startswith("rule generate on host node7")
        assert "install a CUDA build of torch" in message
        assert "cluster.require_cuda: never" in message


def test_cuda_policy_never_imports_torch_when_not_enforced():
    def probe():
        raise AssertionError("probed")

    assert cuda_check.problem("evaluate", "auto", env={}, probe=probe) is None
    assert cuda_check.problem("evaluate", "never", env=SLURM_GPU_JOB, probe=probe) is None


def test_check_cuda_cli_exits_1_with_one_line_in_stderr_and_log(tmp_path):
    log = tmp_path / "logs" / "generate.log"
    env = {**os.environ, **SLURM_GPU_JOB}
    proc = subprocess.run(
        [sys.executable, str(REPO / "workflow_scripts/check_cuda.py"), "--rule", "generate"]
        + ["--policy", "auto", "--log", str(log)],
        env=env,
        capture_output=True,
        text=True,
    )
    import torch

    if torch.cuda.is_available():
        assert proc.returncode == 0 and not log.exists()
        return
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: rule generate on host ")
    assert log.read_text() == proc.stderr
    ok = subprocess.run(
        [sys.executable, str(REPO / "workflow_scripts/check_cuda.py"), "--rule", "generate"]
        + ["--policy", "never", "--log", str(tmp_path / "never.log")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and ok.stderr == "" and not (tmp_path / "never.log").exists()
