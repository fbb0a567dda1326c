"""Fail fast when a GPU job sees no CUDA device (instead of silently running on CPU).

Policy (config ``cluster.require_cuda``, per rule ``resources.<rule>.require_cuda``):

- ``auto``: enforced only inside a SLURM job that was allocated GPUs (SLURM_JOB_ID set and
  SLURM_STEP_GPUS / SLURM_JOB_GPUS / SLURM_GPUS_ON_NODE naming a GPU). Local and demo
  runs on CPU are never stopped.
- ``always``: enforced everywhere (e.g. a GPU workstation that must not fall back).
- ``never``: CPU fallback allowed (``device: auto`` then runs on CPU).

torch is imported only when the policy applies, so the check costs nothing on CPU runs.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping

POLICIES = ("auto", "always", "never")
# What SLURM sets in a job/step holding GPUs (device lists, then the count). Not
# CUDA_VISIBLE_DEVICES: sbatch --export=ALL can carry it over from the login shell.
_DEVICE_LIST_VARS = ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS")
_NO_DEVICE = {"", "-1", "none", "nodevfiles"}


def slurm_gpu_allocation(env: Mapping[str, str]) -> str | None:
    """``VAR=value`` showing the GPU SLURM allocated to this job, or None (not a SLURM GPU job)."""
    if not env.get("SLURM_JOB_ID"):
        return None
    for var in _DEVICE_LIST_VARS:
        value = env.get(var, "").strip()
        if value.lower() not in _NO_DEVICE:
            return f"{var}={value}"
    count = env.get("SLURM_GPUS_ON_NODE", "").strip()
    if count.isdigit() and int(count) > 0:
        return f"SLURM_GPUS_ON_NODE={count}"
    return None


def enforced(policy: str, env: Mapping[str, str]) -> bool:
    if policy not in POLICIES:
        raise ValueError(f"require_cuda must be one of {', '.join(POLICIES)}, not {policy!r}")
    if policy == "never":
        return False
    return policy == "always" or slurm_gpu_allocation(env) is not None


def torch_cuda() -> tuple[bool, str]:
    """(CUDA usable, torch build description)."""
    import torch

    build = f"torch {torch.__version__}, " + (
        f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only build"
    )
    return bool(torch.cuda.is_available()), build


def problem(
    rule: str,
    policy: str,
    env: Mapping[str, str] | None = None,
    probe: Callable[[], tuple[bool, str]] = torch_cuda,
    host: str | None = None,
) -> str | None:
    """The one-line failure message, or None when the job may run."""
    env = os.environ if env is None else env
    if not enforced(policy, env):
        return None
    available, build = probe()
    if available:
        return None
    host = host or socket.gethostname()
    allocation = slurm_gpu_allocation(env) or "no SLURM GPU allocation"
    job = f" (SLURM job {env['SLURM_JOB_ID']})" if env.get("SLURM_JOB_ID") else ""
    return (
        f"rule {rule} on host {host}{job} sees no CUDA device ({build}; {allocation}): "
        "install a CUDA build of torch in the job's environment, or set "
        "cluster.require_cuda: never (or resources.<rule>.require_cuda: never) "
        "to allow CPU fallback"
    )
