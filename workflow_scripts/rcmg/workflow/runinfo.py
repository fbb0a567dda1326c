"""Run provenance: code version, hardware description, phase timers.

``PhaseTimer`` produces ``timings_s`` with the keys of :data:`PHASES`. Time spent
inside the pipeline is split with forward (pre-)hooks on its modules
(:class:`ModuleHookTimer`): public torch API, no patching of diffusers internals.
On GPU every boundary is ``cuda.synchronize``-d so the numbers are real.
"""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

PHASES = ("load", "encode", "retrieve", "denoise", "decode", "vocode", "write", "total")


def code_version(repo_dir: str | Path | None = None) -> str:
    """``git describe --always --dirty`` of the code (e.g. ``3f2a1bc-dirty``), or ``unknown``."""
    where = Path(repo_dir) if repo_dir else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _memory_gb() -> float | None:
    with contextlib.suppress(ValueError, OSError, AttributeError):
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 2)
    return None


def _package_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _gpu_fields(device: str) -> dict:
    import torch

    fields = {"gpu_name": None, "driver": None, "cuda": torch.version.cuda}
    if str(device).startswith("cuda") and torch.cuda.is_available():
        fields["gpu_name"] = torch.cuda.get_device_name(torch.device(device))
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            )
            fields["driver"] = out.stdout.strip().splitlines()[0]
    return fields


def _torch_threads() -> int | None:
    """Intra-op threads torch uses in this process (Snakemake sets OMP_NUM_THREADS = threads)."""
    try:
        import torch
    except ImportError:
        return None
    return torch.get_num_threads()


def hardware_info(device: str = "cpu") -> dict:
    """The hardware.json record for a run on ``device``."""
    return {
        "device": str(device),
        **_gpu_fields(device),
        "torch": _package_version("torch"),
        "diffusers": _package_version("diffusers"),
        "transformers": _package_version("transformers"),
        "python": platform.python_version(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "cpus_allowed": len(os.sched_getaffinity(0)),
        "torch_threads": _torch_threads(),
        "memory_gb": _memory_gb(),
        "hostname": socket.gethostname(),
    }


def _sync(cuda: bool) -> None:
    if cuda:
        import torch

        torch.cuda.synchronize()


class PhaseTimer:
    """Accumulates seconds per phase; ``total`` runs from construction to :meth:`as_dict`."""

    def __init__(self, cuda: bool = False):
        self.cuda = cuda
        self.seconds = dict.fromkeys(PHASES[:-1], 0.0)
        self._start = time.perf_counter()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if name not in self.seconds:
            raise KeyError(f"unknown phase {name!r}; phases: {PHASES[:-1]}")
        _sync(self.cuda)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            _sync(self.cuda)
            self.seconds[name] += time.perf_counter() - t0

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + float(seconds)

    def as_dict(self) -> dict[str, float]:
        _sync(self.cuda)
        out = {k: round(v, 6) for k, v in self.seconds.items()}
        out["total"] = round(time.perf_counter() - self._start, 6)
        return out


class ModuleHookTimer:
    """Time spent in the forward passes of groups of modules, via forward (pre-)hooks.

    ``groups`` maps a phase name to modules. Nested hooked modules are counted once
    (only the outermost active one accumulates). ``calls[phase]`` counts outermost calls.
    Use as a context manager, or call :meth:`remove` when done.
    """

    def __init__(self, groups: dict[str, list], cuda: bool = False):
        self.cuda = cuda
        self.seconds = dict.fromkeys(groups, 0.0)
        self.calls = dict.fromkeys(groups, 0)
        self._stack: list[tuple[str, float] | None] = []
        self._handles = []
        seen: set[int] = set()
        for phase, modules in groups.items():
            for module in modules:
                if module is None or id(module) in seen:
                    continue
                seen.add(id(module))
                self._handles.append(module.register_forward_pre_hook(self._pre(phase)))
                self._handles.append(module.register_forward_hook(self._post))

    def _pre(self, phase: str):
        def hook(_module, _args):
            if self._stack:
                self._stack.append(None)
                return
            _sync(self.cuda)
            self._stack.append((phase, time.perf_counter()))

        return hook

    def _post(self, _module, _args, _output):
        entry = self._stack.pop() if self._stack else None
        if entry is None:
            return
        _sync(self.cuda)
        phase, t0 = entry
        self.seconds[phase] += time.perf_counter() - t0
        self.calls[phase] += 1

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> ModuleHookTimer:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def generate_benchmark_tsv(bench_root: str | Path, model, condition, seed) -> Path:
    """Where Snakemake's ``benchmark:`` directive of the generate rule writes its TSV."""
    return Path(bench_root) / "generate" / str(model) / str(condition) / f"seed{seed}.tsv"


def read_benchmark_tsv(path: str | Path) -> list[dict[str, str]]:
    """The rows of a Snakemake benchmark TSV (``s``, ``cpu_time``, ``max_rss``, ...); [] if absent."""
    import csv

    path = Path(path)
    if not path.is_file():
        return []
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def determinism_settings(seeding: str | None = None) -> dict:
    """The torch settings that decide whether a rerun reproduces bit for bit.

    Deterministic-algorithms flag, cuDNN benchmark / deterministic, the TF32 switches
    (and the fp32 precision API where torch has it), the float32 matmul precision, the
    environment variables that matter (CUBLAS_WORKSPACE_CONFIG, PYTHONHASHSEED) and how
    the step seeds its random numbers (``seeding``, written by the step).
    """
    import torch

    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    return {
        "torch_version": torch.__version__,
        "deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
        "deterministic_warn_only": bool(torch.is_deterministic_algorithms_warn_only_enabled()),
        "cudnn_benchmark": bool(cudnn.benchmark),
        "cudnn_deterministic": bool(cudnn.deterministic),
        "cudnn_allow_tf32": bool(cudnn.allow_tf32),
        "cuda_matmul_allow_tf32": bool(matmul.allow_tf32),
        "cuda_matmul_fp32_precision": getattr(matmul, "fp32_precision", None),
        "cudnn_fp32_precision": getattr(cudnn, "fp32_precision", None),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED"),
        "seeding": seeding,
    }
