#!/usr/bin/env python
"""The prepared GPU benchmark: one command on a bare GPU machine, JSON rows as it measures.

Run through its shell entry point, which first installs the carried wheels (no registry
is reachable there) and then runs this script::

    bash tests/benchmarks/gpu_bench.sh --out "$OUT"            # GPU (about 5 minutes)
    bash tests/benchmarks/gpu_bench.sh --cpu-smoke --out DIR   # every branch, tiny models, CPU

Builds the published-architecture random-weight models (AudioLDM-S, AudioLDM2, CLAP;
``rcmg.standins.real_arch``) directly on the device, then measures, in this order, one
JSON file per group under ``--out`` (rewritten atomically after every row); the bounded
groups first, then the elastic denoiser matrix, torch.compile last:

    env.json          the machine, versions, the wheel install, the model builds on the
                      device, what this run imported (first and last rows)
    flops.json        the chip's bf16 matmul rate (a large bf16 matmul loop, measured first),
                      UNet FLOPs per step (torch.utils.flop_counter) per model and batch, and
                      the achieved fraction of that rate for every denoiser row
    correctness.json  fp16 / bf16 audio finite; the same seed twice gives the same audio;
                      retrieval at alpha 0 equals prompt-only bit for bit (the generate job)
    generate.json     the project's generate CLI (generate.main, in-process) on AudioLDM2
                      over the real prompt file: wall, phases, denoiser share
    clap.json         CLAP audio embeddings/s at batch 64 and the forward share (rcmg's path)
    denoiser.json     UNet s/step and s per 10-s clip, batch 1/8/32: fp16 and bf16 with SDPA,
                      fp16 with classic attention; DDIM and DPM-Solver++ timed for a few steps
                      and extrapolated to 200 / 25; one full DDIM-200 run checks that
    compile.json      fp16 + torch.compile of the UNet, compile time apart; it keeps the
                      last ``--compile-reserve`` (60) s of the budget

Every row holds the device name, torch / CUDA / driver versions, dtype, batch and variant.
An out-of-memory in one variant is a row, not the end of the run; once ``--time-budget``
is spent no new measurement starts and the rest are rows that say so. Random weights:
timing and correctness of the code paths only (pipeline checks), never audio quality.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.metadata
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench_models import Budget

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
LOG = logging.getLogger("gpu_bench")

# one JSON file each: 7 files, so a log beside them stays within the 8 files the device
# tool brings back from $OUT
GROUPS = ("env", "flops", "denoiser", "correctness", "generate", "clap", "compile")
# What the GPU machine gets from the carried wheels (tests/benchmarks/.wheels, made by
# gpu_wheels.sh): the distributions pinned in requirements.txt that this benchmark imports
# (measured: env.json's ``imported``), at their pinned versions ...
CARRIED = (
    "diffusers",
    "transformers",
    "tokenizers",
    "safetensors",
    "huggingface_hub",
    "accelerate",
    "faiss-cpu",
    "soundfile",
    "soxr",
    "pyyaml",
    "tqdm",
    "pillow",
    "jinja2",
)
# ... and the unpinned ones they need that the GPU image lacks or may hold too old for them
# (huggingface_hub 2 imports httpx2, which needs truststore and recent anyio, idna, h11 and
# typing_extensions; transformers checks regex >= 2025.10.22 at import; soundfile needs cffi,
# whose cdef parser is pycparser), at this venv's versions. Checked against the image's
# package list (device KINDS.md, 2026-11-17).
CARRIED_UNPINNED = (
    "httpx2",
    "httpcore2",
    "truststore",
    "anyio",
    "idna",
    "h11",
    "typing_extensions",
    "regex",
    "cffi",
    "pycparser",
)
# Taken from the GPU machine, not carried: torch (its own CUDA build), and numpy and scipy:
# the machine's compiled stack (torch, scipy, ...) is built against its numpy, and their
# wheels (about 16 + 35 MB) would not fit the 64 MiB that travels beside faiss (19 MB).
FROM_DEVICE = ("torch", "numpy", "scipy")
CARRIED_LIST = "carried.txt"  # in the wheel folder: the name==version lines to install
INSTALL_RECORD = "gpu_bench_install.json"  # in --site: what the install step did (env.json)
GENERATION_KINDS = ("audioldm2", "audioldm")  # AudioLDM2 first: the project's main model
PROMPT = "a calm piano melody with soft strings"
# fp16 first (both attention kernels on one load; the full DDIM-200 check on it), then bf16
VARIANTS = (("fp16", "sdpa"), ("fp16", "classic"), ("bf16", "sdpa"))
SCHEDULER_TARGETS = {"ddim": 200, "dpmpp": 25}


# --------------------------------------------------------------------- wheel install


def read_pins(requirements: Path = REPO / "requirements.txt") -> dict[str, str]:
    """``{normalised name: version}`` of the ``name==version`` lines."""
    pins = {}
    for line in requirements.read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[normalise(name)] = version.strip()
    return pins


def normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(".", "-")


def installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def carried_specs() -> list[str]:
    """``name==version`` of every carried distribution: requirements.txt's pins, then the
    unpinned ones at the version installed here (what gpu_wheels.sh downloads)."""
    pins = read_pins()
    missing = [name for name in CARRIED if normalise(name) not in pins]
    if missing:
        raise SystemExit(f"requirements.txt pins none of {missing}; fix CARRIED in {__file__}")
    specs = [f"{name}=={pins[normalise(name)]}" for name in CARRIED]
    for name in CARRIED_UNPINNED:
        version = installed_version(name)
        if version is None:
            raise SystemExit(f"{name} is not installed here: cannot pin its carried wheel")
        specs.append(f"{name}=={version}")
    return specs


def wanted_specs(wheels: Path) -> list[str]:
    """The carried list gpu_wheels.sh wrote beside the wheels, else computed here."""
    listed = wheels / CARRIED_LIST
    if listed.is_file():
        return [ln.strip() for ln in listed.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return carried_specs()


def install_wheels(wheels: Path, site: Path, python: str = sys.executable) -> dict:
    """Install the carried wheels whose pinned version is not already the installed one.

    ``pip install --no-index --no-deps --find-links WHEELS --target SITE``: nothing is
    fetched. A pin with no wheel for this interpreter keeps the installed version; the
    record says which, so every row's versions are known.
    """
    started = time.perf_counter()
    site.mkdir(parents=True, exist_ok=True)
    present, wanted = {}, []
    for spec in wanted_specs(wheels):
        name, version = spec.split("==")
        have = installed_version(name)
        if have == version:
            present[name] = have
        else:
            wanted.append((spec, have))
    record = {"wheels": str(wheels), "site": str(site), "present": present, "installed": {}}
    record["kept_device_version"] = {}
    if wanted and not wheels.is_dir():
        record["kept_device_version"] = {spec: have for spec, have in wanted}
        record["note"] = f"no wheel folder {wheels}: run tests/benchmarks/gpu_wheels.sh first"
        wanted = []
    base = [python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
    base += ["--no-cache-dir", "--upgrade", "--disable-pip-version-check"]
    base += ["--find-links", str(wheels), "--target", str(site)]
    if wanted:
        done = subprocess.run(base + [s for s, _ in wanted], capture_output=True, text=True)
        ok = [item for item in wanted] if done.returncode == 0 else []
        if done.returncode != 0:  # one at a time: keep what installs, name what does not
            for item in wanted:
                one = subprocess.run(base + [item[0]], capture_output=True, text=True)
                if one.returncode == 0:
                    ok.append(item)
                else:
                    record["kept_device_version"][item[0]] = item[1]
                    record.setdefault("errors", {})[item[0]] = one.stderr.strip()[-400:]
        record["installed"] = {spec: {"replaces": have} for spec, have in ok}
    record["from_device"] = {name: installed_version(name) for name in FROM_DEVICE}
    record["seconds"] = round(time.perf_counter() - started, 3)
    return record


# ------------------------------------------------------------------------- reporting


class Groups:
    """One JSON file per measurement group; each row printed and the file rewritten."""

    def __init__(self, out: Path, env: dict, mode: str):
        from rcmg.workflow.atomic import write_json

        self._write_json = write_json
        self.out = out
        self.env = env
        self.mode = mode
        self.rows: dict[str, list[dict]] = {}
        out.mkdir(parents=True, exist_ok=True)

    def add(self, group: str, variant: str | None, dtype: str | None, batch: int | None, **fields):
        if group not in GROUPS:
            raise KeyError(f"unknown group {group!r}")
        row = {**self.env, "group": group, "variant": variant, "dtype": dtype, "batch": batch}
        row.update(fields)
        self.rows.setdefault(group, []).append(row)
        shown = {k: v for k, v in fields.items() if not isinstance(v, dict | list)}
        print(f"[{group}] {variant} {dtype} b={batch} {shown}", flush=True)
        self.flush(group)
        return row

    def skip(self, group: str, variant, dtype, batch, reason: str, **fields):
        return self.add(group, variant, dtype, batch, skipped=reason, **fields)

    def flush(self, group: str) -> None:
        data = {"group": group, "mode": self.mode, "rows": self.rows.get(group, [])}
        self._write_json(self.out / f"{group}.json", data)


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def driver_version() -> str | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        done = subprocess.run(
            [exe, "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip().splitlines()[0] if done.stdout.strip() else None


def environment(device: str) -> dict:
    import torch
    from rcmg.workflow.runinfo import cpu_name

    cuda = device.startswith("cuda")
    return {
        "device": device,
        "device_name": torch.cuda.get_device_name(0) if cuda else cpu_name(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "driver": driver_version() if cuda else None,
        "python": platform.python_version(),
        "diffusers": installed_version("diffusers"),
        "transformers": installed_version("transformers"),
    }


def imported_distributions() -> dict[str, str]:
    """``{distribution: version}`` of every non-stdlib package this process imported."""
    by_module = importlib.metadata.packages_distributions()
    found = {}
    for module in list(sys.modules):
        top = module.split(".")[0]
        for dist in by_module.get(top, ()):
            found[dist] = installed_version(dist) or "?"
    return dict(sorted(found.items()))


def finite(array) -> bool:
    import numpy as np

    return bool(np.isfinite(np.asarray(array, dtype=np.float64)).all())


def oom_types() -> tuple[type, ...]:
    import torch

    return (torch.OutOfMemoryError,)


def free_memory(device: str) -> None:
    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------ plan


class Plan:
    """The sizes of one run: the GPU benchmark or the CPU smoke of every branch."""

    def __init__(self, args, device: str):
        smoke = args.cpu_smoke
        self.smoke = smoke
        self.device = device
        self.batches = [int(b) for b in (args.batches or ("1,2" if smoke else "1,8,32")).split(",")]
        self.steps = args.steps or (1 if smoke else 5)
        self.clip_seconds = args.clip_seconds or (1.0 if smoke else 10.0)
        self.peak_n, self.peak_iters = (256, 3) if smoke else (8192, 100)
        self.generate_prompts = args.generate_prompts or (2 if smoke else 8)
        self.generate_steps = 2 if smoke else None  # None: config/config.yaml's steps
        self.generate_seconds = 1.0 if smoke else None
        self.check_prompts, self.check_steps = 2, (2 if smoke else 5)
        self.full_steps = 4 if smoke else 200  # the extrapolation check: a full DDIM-200 call
        self.clap_batch = args.clap_batch or (4 if smoke else 64)
        self.clap_batches = 2 if smoke else 3
        oom = (args.simulate_oom or "").split(":")
        self.simulate_oom = (oom[0], oom[1], int(oom[2])) if len(oom) == 3 else None
        self.compile_backend = args.compile_backend or ("eager" if smoke else "inductor")
        self.compile_batches = self.batches[:1] if smoke else self.batches
        # dynamo's graph capture of the tiny AudioLDM2 UNet alone costs ~16 s of CPU: the
        # smoke compiles the tiny AudioLDM-S (same code path) and records why not the other
        self.compile_kinds = ("audioldm",) if smoke else GENERATION_KINDS

    def dtype(self, requested: str) -> tuple[str, str]:
        """(dtype used, why it differs) for ``requested`` on this device."""
        if requested == "fp16" and not self.device.startswith("cuda"):
            return "fp32", "fp16 on CPU has no fast kernels: fp32 here (the GPU run uses fp16)"
        return requested, ""


# ----------------------------------------------------------------------------- models


def build_models(plan: Plan, models_dir: Path, groups: Groups) -> dict[str, Path]:
    """Build each model with its weights created on the device (a CPU build if that fails)."""
    import torch
    from rcmg.standins.real_arch import build_real_arch_model
    from rcmg.standins.tiny_models import build_tiny_model

    builder = build_tiny_model if plan.smoke else build_real_arch_model
    paths = {}
    for kind in (*GENERATION_KINDS, "clap"):
        start = time.perf_counter()
        built_on, note = plan.device, ""
        try:
            with torch.device(plan.device):
                paths[kind] = builder(kind, models_dir / kind, seed=0)
        except (RuntimeError, TypeError, ValueError) as exc:
            built_on, note = "cpu", f"build on {plan.device} failed ({exc}); built on the CPU"
            LOG.warning("%s: %s", kind, note)
            paths[kind] = builder(kind, models_dir / kind, seed=0)
        seconds = time.perf_counter() - start
        size = sum(p.stat().st_size for p in paths[kind].rglob("*") if p.is_file())
        groups.add(
            "env", f"build:{kind}", "fp32", None, seconds=seconds, built_on=built_on,
            folder_bytes=size, tiny=plan.smoke, note=note,
        )  # fmt: skip
        free_memory(plan.device)
    return paths


# ----------------------------------------------------------------------- peak matmul


def measure_peak(plan: Plan, groups: Groups) -> float:
    """bf16 matmul rate (FLOP/s) of an N x N x N product loop; the reference for fractions."""
    import torch

    n, iters = plan.peak_n, plan.peak_iters
    gen = torch.Generator(plan.device).manual_seed(0)
    a = torch.randn(n, n, device=plan.device, dtype=torch.bfloat16, generator=gen)
    b = torch.randn(n, n, device=plan.device, dtype=torch.bfloat16, generator=gen)
    for _ in range(3):
        a @ b
    sync(plan.device)
    start = time.perf_counter()
    for _ in range(iters):
        a @ b
    sync(plan.device)
    seconds = time.perf_counter() - start
    rate = 2.0 * n**3 * iters / seconds
    groups.add(
        "flops", "peak:bf16_matmul", "bf16", None, n=n, iters=iters, seconds=seconds,
        tflops_per_s=rate / 1e12,
    )  # fmt: skip
    del a, b
    free_memory(plan.device)
    return rate


# ---------------------------------------------------------------------- denoiser


def pipeline_call(pipe, kind: str, timer, plan: Plan, batch: int, steps: int):
    """One pipeline call decoded to a waveform: (wall seconds, audio [B, T])."""
    import torch
    from bench_models import synchronize

    timer.reset()
    kwargs = {
        "num_inference_steps": steps,
        "audio_length_in_s": plan.clip_seconds,
        "num_waveforms_per_prompt": 1,
        "generator": torch.Generator("cpu").manual_seed(0),
        "output_type": "np",
    }
    if kind != "audioldm":
        kwargs["max_new_tokens"] = 8
    synchronize(timer.device)
    start = time.perf_counter()
    with torch.inference_mode():
        audio = pipe([PROMPT] * batch, **kwargs).audios
    synchronize(timer.device)
    return time.perf_counter() - start, audio


def load_variant(kind: str, path: Path, plan: Plan, dtype: str, attention: str, compiled=False):
    """bench_models' loader (from_pretrained, to device, attention processor), timed."""
    from bench_models import PhaseTimer, Variant, instrument, load_pipeline

    start = time.perf_counter()
    pipe = load_pipeline(kind, path, plan.device, Variant(dtype, attention))
    if compiled:
        import torch

        pipe.unet.forward = torch.compile(
            pipe.unet.forward, backend=plan.compile_backend, dynamic=False
        )
    load_s = time.perf_counter() - start
    timer = PhaseTimer(plan.device, plan.clip_seconds)
    instrument(pipe, kind, timer)
    return pipe, timer, load_s


def step_fields(total: float, timer, steps: int, batch: int, scheduler: str) -> dict:
    from bench_models import extrapolate

    denoise = timer.seconds.get("denoise", 0.0)
    ex = extrapolate(total, denoise, steps, batch)
    target = SCHEDULER_TARGETS[scheduler]
    return {
        "scheduler": scheduler,
        "measured_steps": steps,
        "total_s": total,
        "phases_s": dict(timer.seconds),
        "s_per_step": ex["sec_per_step"],
        "fixed_s": ex["fixed_s"],
        "target_steps": target,
        "s_per_clip_extrapolated": ex[f"{'ddim' if scheduler == 'ddim' else 'dpmpp'}{target}_s_per_clip"],
        "denoiser_share_extrapolated": ex[f"{'ddim' if scheduler == 'ddim' else 'dpmpp'}{target}_denoise_fraction"],
        "extrapolated": True,
    }  # fmt: skip


def capture_unet_inputs(pipe):
    """A forward pre-hook that keeps the first UNet call's inputs (for the FLOP count)."""
    seen = {}

    def hook(module, args, kwargs):
        if "args" not in seen:
            seen["args"], seen["kwargs"] = args, dict(kwargs)

    handle = pipe.unet.register_forward_pre_hook(hook, with_kwargs=True)
    return seen, handle


def count_unet_flops(pipe, inputs: dict, device: str) -> int:
    """FLOPs of one UNet forward (both guidance branches) on the captured inputs.

    On CUDA with the pipeline's own SDPA attention (FlopCounterMode has formulas for the
    flash / memory-efficient / cuDNN kernels); on the CPU with the classic processor, whose
    attention is plain matmuls (the CPU's fused SDPA kernel has no formula).
    """
    import torch
    from diffusers.models.attention_processor import AttnProcessor
    from torch.utils.flop_counter import FlopCounterMode

    processors = pipe.unet.attn_processors
    if not device.startswith("cuda"):
        pipe.unet.set_attn_processor(AttnProcessor())
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            pipe.unet(*inputs["args"], **inputs["kwargs"])
    finally:
        pipe.unet.set_attn_processor(processors)
    return int(counter.get_total_flops())


def set_attention(pipe, attention: str) -> None:
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    pipe.unet.set_attn_processor(AttnProcessor() if attention == "classic" else AttnProcessor2_0())


def record_flops(plan: Plan, pipe, kind: str, dtype: str, batch: int, seen: dict, groups, flops):
    """Count the UNet FLOPs of (kind, batch) once; an OOM here costs only the count."""
    if (kind, batch) in flops:
        return
    shape = list(seen["args"][0].shape) if seen.get("args") else None
    try:
        flops[kind, batch] = count_unet_flops(pipe, seen, plan.device)
    except oom_types() as exc:
        flops[kind, batch] = None
        groups.skip("flops", kind, dtype, batch, f"out of memory counting: {exc}".splitlines()[0])
        free_memory(plan.device)
        return
    groups.add(
        "flops", kind, dtype, batch, flops_per_step=flops[kind, batch],
        unet_batch=shape[0] if shape else None, latent_shape=shape,
        attention="sdpa" if plan.device.startswith("cuda") else "classic (matmuls)",
        note="one UNet forward = one denoising step (both guidance branches)",
    )  # fmt: skip


def measure_batch(plan, pipe, timer, kind, variant, requested, attention, batch, load_s, groups, flops, peak):  # fmt: skip
    """Warm-up call (new shapes), FLOP count, then a few steps per scheduler; the rows."""
    from bench_models import set_scheduler

    if plan.simulate_oom == (kind, variant, batch):  # the smoke test's out-of-memory branch
        import torch

        raise torch.OutOfMemoryError(f"simulated (--simulate-oom {kind}:{variant}:{batch})")

    dtype, why = plan.dtype(requested)
    set_scheduler(pipe, "ddim")
    seen, handle = capture_unet_inputs(pipe)
    try:
        warm_s, _ = pipeline_call(pipe, kind, timer, plan, batch, 1)
    finally:
        handle.remove()
    record_flops(plan, pipe, kind, dtype, batch, seen, groups, flops)
    del seen
    rows = {}
    for scheduler in SCHEDULER_TARGETS:
        set_scheduler(pipe, scheduler)
        total, audio = pipeline_call(pipe, kind, timer, plan, batch, plan.steps)
        fields = step_fields(total, timer, plan.steps, batch, scheduler)
        count = flops.get((kind, batch))
        rate = count / fields["s_per_step"] if count and fields["s_per_step"] else None
        rows[scheduler] = groups.add(
            "denoiser", variant, dtype, batch, model=kind, dtype_requested=requested,
            dtype_note=why, attention=attention, load_s=load_s, warmup_s=warm_s,
            clip_seconds=plan.clip_seconds, audio_finite=finite(audio), flops_per_step=count,
            achieved_tflops_per_s=rate / 1e12 if rate else None,
            fraction_of_bf16_peak=rate / peak if rate and peak else None, **fields,
        )  # fmt: skip
    return rows


def bench_denoiser(plan: Plan, paths: dict, groups: Groups, budget: Budget, peak: float) -> None:
    """Every (model, variant, batch, scheduler); FLOPs per batch; one full DDIM-200."""
    flops: dict[tuple[str, int], int | None] = {}
    for kind in GENERATION_KINDS:
        full_check = kind == GENERATION_KINDS[0]
        try:
            bench_denoiser_model(plan, kind, paths[kind], groups, budget, peak, flops, full_check)
        except oom_types():
            raise  # caught per variant inside; one escaping here is a bug to see
        except Exception as exc:  # one model's failure leaves the other model measured
            message = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
            LOG.exception("denoiser %s failed", kind)
            groups.skip("denoiser", "failed", None, None, f"{kind}: {message}", model=kind)
        free_memory(plan.device)
    add_flops_summary(groups, peak)


def bench_denoiser_model(plan, kind, path, groups, budget, peak, flops, full_check) -> None:
    """One model: one pipeline per dtype on the device at a time (fp16 serves both attention
    kernels, then the full DDIM-200 check, then bf16). An out-of-memory ends that variant's
    larger batches, as a row."""
    loaded = {}  # dtype -> (pipe, timer, load_s)
    reference = {}  # the fp16-sdpa rows at the first batch, by scheduler
    pending_check = full_check

    def check_once():
        nonlocal pending_check
        if not pending_check:
            return
        pending_check = False
        if budget.exhausted():
            dtype = plan.dtype("fp16")[0]
            groups.skip("denoiser", "fp16-sdpa-ddim200-full", dtype, plan.batches[0], "time budget spent", model=kind)  # fmt: skip
        else:
            full_ddim_check(plan, kind, loaded, reference, groups)

    for requested, attention in VARIANTS:
        dtype, _ = plan.dtype(requested)
        variant = f"{requested}-{attention}"
        if budget.exhausted():
            groups.skip("denoiser", variant, dtype, None, "time budget spent", model=kind)
            continue
        try:
            if dtype not in loaded:
                if loaded:
                    check_once()  # on the fp16 pipeline, before it is unloaded
                loaded.clear()
                free_memory(plan.device)
                loaded[dtype] = load_variant(kind, path, plan, dtype, "sdpa")
            pipe, timer, load_s = loaded[dtype]
            set_attention(pipe, attention)
        except oom_types() as exc:
            groups.skip("denoiser", variant, dtype, None, f"out of memory loading: {exc}".splitlines()[0], model=kind)  # fmt: skip
            loaded.clear()
            free_memory(plan.device)
            continue
        for batch in plan.batches:
            if budget.exhausted():
                groups.skip("denoiser", variant, dtype, batch, "time budget spent", model=kind)
                continue
            try:
                rows = measure_batch(
                    plan, pipe, timer, kind, variant, requested, attention, batch, load_s,
                    groups, flops, peak,
                )  # fmt: skip
            except oom_types() as exc:
                groups.skip("denoiser", variant, dtype, batch, f"out of memory: {exc}".splitlines()[0], model=kind)  # fmt: skip
                free_memory(plan.device)
                break
            if batch == plan.batches[0] and variant == "fp16-sdpa":
                reference.update(rows)
        del pipe, timer
    check_once()
    loaded.clear()


def full_ddim_check(plan: Plan, kind: str, loaded: dict, reference: dict, groups: Groups) -> None:
    """One full DDIM-200 call at the first batch: measured against the extrapolation.

    The CPU smoke runs the same check with ``plan.full_steps`` (4) steps."""
    from bench_models import set_scheduler

    dtype, _ = plan.dtype("fp16")
    batch = plan.batches[0]
    if dtype not in loaded or "ddim" not in reference:
        groups.skip("denoiser", "fp16-sdpa-ddim200-full", dtype, batch, "no fp16 DDIM row to check", model=kind)  # fmt: skip
        return
    pipe, timer, _ = loaded[dtype]
    set_attention(pipe, "sdpa")
    set_scheduler(pipe, "ddim")
    steps = plan.full_steps
    total, audio = pipeline_call(pipe, kind, timer, plan, batch, steps)
    ref = reference["ddim"]
    predicted = ref["fixed_s"] + steps * ref["s_per_step"]
    groups.add(
        "denoiser", "fp16-sdpa-ddim200-full", dtype, batch, model=kind, scheduler="ddim",
        measured_steps=steps, total_s=total, phases_s=dict(timer.seconds),
        s_per_step=timer.seconds.get("denoise", 0.0) / steps, s_per_clip_measured=total / batch,
        s_per_clip_extrapolated=predicted / batch, measured_over_extrapolated=total / predicted,
        audio_finite=finite(audio), extrapolated=False, clip_seconds=plan.clip_seconds,
    )  # fmt: skip


def add_flops_summary(groups: Groups, peak: float) -> None:
    """flops.json also gets the achieved fraction of the bf16 peak for every denoiser row."""
    for row in groups.rows.get("denoiser", []):
        if "skipped" in row or not row.get("flops_per_step") or row.get("extrapolated") is False:
            continue
        groups.add(
            "flops", row["variant"], row["dtype"], row["batch"], model=row["model"],
            scheduler=row["scheduler"], flops_per_step=row["flops_per_step"],
            s_per_step=row["s_per_step"], achieved_tflops_per_s=row["achieved_tflops_per_s"],
            bf16_peak_tflops_per_s=peak / 1e12, fraction_of_bf16_peak=row["fraction_of_bf16_peak"],
        )  # fmt: skip


# -------------------------------------------------------------------- generate CLI


def sampling_config(model: str = "audioldm2") -> dict:
    import yaml

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text(encoding="utf-8"))
    return {"prompts": config["prompts"], **config["models"][model]["sampling"]}


def generate_cli(argv: list[str]) -> int:
    """``workflow_scripts/generate.py``'s entry point, called in this process."""
    import generate

    return generate.main(argv)


def generate_argv(model_dir: Path, out_dir: Path, plan: Plan, **over) -> list[str]:
    sampling = sampling_config()
    values = {
        "model-key": "audioldm2",
        "model-id": str(model_dir),
        "family": "audioldm2",
        "condition": "prompt",
        "condition-type": "prompt",
        "prompts": str(REPO / sampling["prompts"]),
        "prompt-subset": plan.generate_prompts,
        "seed": 42,
        "steps": plan.generate_steps or sampling["steps"],
        "guidance": sampling["guidance"],
        "seconds": plan.generate_seconds or sampling["seconds"],
        "batch": sampling["batch"],
        "dtype": sampling["dtype"],
        "scheduler": sampling["scheduler"],
        "device": plan.device,
        "out-dir": str(out_dir),
        "log-level": "WARNING",
    }
    values.update({k.replace("_", "-"): v for k, v in over.items()})
    argv = []
    for key, value in values.items():
        argv += [f"--{key}", str(value)]
    return argv


def bench_generate(plan: Plan, paths: dict, work: Path, groups: Groups, budget: Budget) -> None:
    sampling = sampling_config()
    if budget.exhausted():
        groups.skip("generate", "generate_cli", sampling["dtype"], sampling["batch"], "time budget spent")  # fmt: skip
        return
    out_dir = work / "generate" / "audioldm2_prompt"
    argv = generate_argv(paths["audioldm2"], out_dir, plan)
    start = time.perf_counter()
    code = generate_cli(argv)
    wall = time.perf_counter() - start
    if code != 0:
        groups.skip("generate", "generate_cli", sampling["dtype"], sampling["batch"], f"generate exited {code}", argv=argv)  # fmt: skip
        return
    run = json.loads((out_dir / "run_config.json").read_text(encoding="utf-8"))
    timings, params = run["timings_s"], run["params"]
    generating = timings["total"] - timings["load"]
    groups.add(
        "generate", "generate_cli", params["dtype"], params["batch"], model="audioldm2",
        prompts_file=sampling["prompts"], n_prompts_file=run["n_prompts"],
        prompt_subset=plan.generate_prompts, clips=run["n_clips_ok"], steps=params["steps"],
        scheduler=params.get("scheduler"), seconds=params["seconds"], wall_s=wall,
        timings_s=timings, unet_forward_s=run["unet_forward_s"],
        denoiser_share_of_job=run["unet_forward_s"] / timings["total"],
        denoiser_share_excluding_load=run["unet_forward_s"] / generating if generating else None,
        s_per_clip_excluding_load=generating / max(run["n_clips_ok"], 1),
        model_loads=1, is_pipeline_check=run["is_pipeline_check"], argv=argv,
    )  # fmt: skip


# --------------------------------------------------------------------- correctness


def read_run_audio(run_dir: Path) -> dict[str, object]:
    import soundfile as sf

    return {p.name: sf.read(p, dtype="float32")[0] for p in sorted((run_dir / "wav").glob("*.wav"))}


def write_check_bank(folder: Path) -> dict:
    """20 seeded unit vectors with tags: a bank for the alpha-0 retrieval run."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((20, 512)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    np.save(folder / "bank.npy", vectors)
    tags = ["piano", "violin", "strings", "cello", "flute", "guitar"]
    rows = [
        {"segment_id": f"seg{i:03d}", "tags": [tags[i % 6]], "source_id": f"s{i}"}
        for i in range(20)
    ]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (folder / "bank.jsonl").write_text(text, encoding="utf-8")
    return {"bank": str(folder / "bank.npy"), "bank-mapping": str(folder / "bank.jsonl")}


def bench_correctness(plan: Plan, paths: dict, work: Path, groups: Groups, budget: Budget) -> None:
    """Through the generate job: finite fp16/bf16 audio, seed determinism, alpha 0 = prompt."""
    import numpy as np

    root = work / "correctness"
    small = {
        "prompt-subset": plan.check_prompts, "steps": plan.check_steps,
        "seconds": plan.generate_seconds or 10.0, "batch": plan.check_prompts,
    }  # fmt: skip
    runs = {
        "fp16_a": {"dtype": "fp16"},
        "fp16_b": {"dtype": "fp16"},
        "bf16": {"dtype": "bf16"},
        "fp16_alpha0": {
            "dtype": "fp16", "condition": "retrieval_null", "condition-type": "retrieval",
            "adapter": "native", "alpha": 0.0, "style-space": "own_text_encoder",
            **write_check_bank(root / "bank"),
        },
    }  # fmt: skip
    audio, dtypes = {}, {}
    for name, extra in runs.items():
        if budget.exhausted():
            groups.skip("correctness", name, extra["dtype"], small["batch"], "time budget spent")
            continue
        out = root / name
        code = generate_cli(generate_argv(paths["audioldm2"], out, plan, **{**small, **extra}))
        if code != 0:
            groups.skip("correctness", name, extra["dtype"], small["batch"], f"generate exited {code}")  # fmt: skip
            continue
        audio[name] = read_run_audio(out)
        dtypes[name] = json.loads((out / "run_config.json").read_text())["params"]["dtype"]

    def check(name: str, runs_used: list[str], passed: bool, **detail):
        dtype = dtypes.get(runs_used[0])
        groups.add(
            "correctness", name, dtype, small["batch"], passed=bool(passed), runs=runs_used,
            dtype_requested=runs[runs_used[0]]["dtype"], steps=small["steps"], **detail,
        )  # fmt: skip

    def have(*names):
        missing = [n for n in names if n not in audio]
        if missing:
            groups.skip("correctness", "+".join(names), None, small["batch"], f"runs missing: {missing}")  # fmt: skip
        return not missing

    for name in ("fp16_a", "bf16"):
        if have(name):
            peak_abs = max(float(np.abs(a).max()) for a in audio[name].values())
            check(f"finite_{runs[name]['dtype']}", [name], all(finite(a) for a in audio[name].values()),
                  clips=len(audio[name]), max_abs=peak_abs)  # fmt: skip
    for name, pair in (("same_seed_twice", ("fp16_a", "fp16_b")), ("alpha0_equals_prompt", ("fp16_a", "fp16_alpha0"))):  # fmt: skip
        if have(*pair):
            a, b = audio[pair[0]], audio[pair[1]]
            same = sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)
            diff = max((float(np.abs(a[k] - b[k]).max()) for k in a if k in b), default=None)
            check(name, list(pair), same, clips=len(a), max_abs_diff=diff, bit_equal=same)


# ---------------------------------------------------------------------------- CLAP


def bench_clap(plan: Plan, paths: dict, work: Path, groups: Groups, budget: Budget) -> None:
    """The clap_embed job's path: ClapEmbedder + embed_rows_resumable (prefetched features)."""
    import numpy as np
    from rcmg.models.clap import ChunkStore, ClapEmbedder, embed_rows_resumable

    if budget.exhausted():
        groups.skip("clap", "embed_audio", None, plan.clap_batch, "time budget spent")
        return
    embedder = ClapEmbedder(str(paths["clap"]), device=plan.device, dtype="auto")
    n_samples = int(embedder.sampling_rate * plan.clip_seconds)
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal((plan.clap_batch, n_samples))).astype(np.float32)
    embedder.embed_audio(audio[: min(4, plan.clap_batch)])  # warm-up (not measured)
    n = plan.clap_batch * plan.clap_batches
    audio = np.concatenate([audio] * plan.clap_batches)
    embedder.model_forward_seconds = 0.0
    store = ChunkStore(work / "clap_chunks", {"bench": "gpu_bench"}, embedder.dim)
    start = time.perf_counter()
    rows, counts = embed_rows_resumable(embedder, audio, np.arange(n), store, plan.clap_batch)
    wall = time.perf_counter() - start
    groups.add(
        "clap", "embed_audio", embedder.dtype_name, plan.clap_batch, clips=n,
        clip_seconds=plan.clip_seconds, wall_s=wall, clips_per_s=n / wall,
        forward_s=embedder.model_forward_seconds,
        forward_share=embedder.model_forward_seconds / wall, rows_finite=finite(rows), **counts,
    )  # fmt: skip
    del embedder
    free_memory(plan.device)


# ------------------------------------------------------------------------- compile


def eager_row(groups: Groups, kind: str, batch: int) -> dict | None:
    """The uncompiled fp16-sdpa DDIM row of (kind, batch), to compare a compiled one with."""
    for row in groups.rows.get("denoiser", []):
        if (row.get("model"), row["variant"], row["batch"], row.get("scheduler")) == (
            kind, "fp16-sdpa", batch, "ddim",
        ) and "skipped" not in row and row.get("extrapolated"):  # fmt: skip
            return row
    return None


def bench_compile(plan: Plan, paths: dict, groups: Groups, budget: Budget) -> None:
    """fp16 + torch.compile(UNet) last: the first call per shape (compile) timed apart.

    Batch by batch over both models (batch 1 of each first): a compile takes a minute or
    more on the GPU, and the time budget stops new ones. ``dynamic=False``: one graph
    per batch size, as a fixed-batch job would run it."""
    import torch
    from bench_models import set_scheduler

    dtype, why = plan.dtype("fp16")
    variant = "fp16-sdpa-compile"
    note = why
    if plan.compile_backend != "inductor":
        note = (note + "; " if note else "") + (
            f"backend {plan.compile_backend}: dynamo graph capture only, no inductor code "
            "generation (CPU smoke); the GPU run uses inductor"
        )
    for kind in GENERATION_KINDS:
        if kind not in plan.compile_kinds:
            reason = "cpu-smoke: torch.compile runs on the tiny audioldm only (time); the GPU run compiles both"
            groups.skip("compile", variant, dtype, None, reason, model=kind)
    pipes, failed = {}, set()
    for batch in plan.compile_batches:
        for kind in plan.compile_kinds:
            if kind in failed:
                continue
            if budget.exhausted():
                groups.skip("compile", variant, dtype, batch, "time budget spent", model=kind)
                continue
            try:
                if kind not in pipes:
                    pipes[kind] = load_variant(kind, paths[kind], plan, dtype, "sdpa", compiled=True)  # fmt: skip
                pipe, timer, load_s = pipes[kind]
                set_scheduler(pipe, "ddim")
                first_s, _ = pipeline_call(pipe, kind, timer, plan, batch, 1)
                first_unet = timer.seconds.get("denoise", 0.0)
                pipeline_call(pipe, kind, timer, plan, batch, 1)
                again_unet = timer.seconds.get("denoise", 0.0)
                total, audio = pipeline_call(pipe, kind, timer, plan, batch, plan.steps)
            except oom_types() as exc:
                groups.skip("compile", variant, dtype, batch, f"out of memory: {exc}".splitlines()[0], model=kind)  # fmt: skip
                failed.add(kind)
                free_memory(plan.device)
                continue
            except Exception as exc:  # a compiler failure is a result here, not a crash
                message = f"torch.compile failed: {type(exc).__name__}: {exc}".splitlines()[0]
                groups.skip("compile", variant, dtype, batch, message[:500], model=kind)
                failed.add(kind)
                continue
            fields = step_fields(total, timer, plan.steps, batch, "ddim")
            eager = eager_row(groups, kind, batch)
            eager_step = eager["s_per_step"] if eager else None
            groups.add(
                "compile", variant, dtype, batch, model=kind, backend=plan.compile_backend,
                dynamic=False, load_s=load_s, first_call_s=first_s,
                compile_s=max(first_unet - again_unet, 0.0), audio_finite=finite(audio),
                eager_s_per_step=eager_step,
                speedup_vs_eager=eager_step / fields["s_per_step"] if eager_step and fields["s_per_step"] else None,
                clip_seconds=plan.clip_seconds, note=note, **fields,
            )  # fmt: skip
    pipes.clear()
    torch._dynamo.reset()
    free_memory(plan.device)


# ---------------------------------------------------------------------------- main


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, default=None, help="JSON folder (default $OUT, else results/bench/gpu)")  # fmt: skip
    p.add_argument("--cpu-smoke", action="store_true", help="tiny models on the CPU: every branch, < 1 min")  # fmt: skip
    p.add_argument("--device", default="auto", help="auto | cuda | cpu (--cpu-smoke: cpu)")
    p.add_argument("--work-dir", type=Path, default=None, help="models and runs (default: a temp dir)")  # fmt: skip
    p.add_argument("--time-budget", type=float, default=None, help="seconds; 0 = none (GPU default 270)")  # fmt: skip
    p.add_argument("--compile-reserve", type=float, default=60.0, help="seconds of the budget kept for torch.compile (GPU)")  # fmt: skip
    p.add_argument("--batches", default=None, help="denoiser batches (default 1,8,32)")
    p.add_argument("--steps", type=int, default=None, help="measured steps per call (default 5)")
    p.add_argument("--clip-seconds", type=float, default=None, help="default 10")
    p.add_argument("--generate-prompts", type=int, default=None, help="prompt subset of the generate run (default 8)")  # fmt: skip
    p.add_argument("--clap-batch", type=int, default=None, help="default 64")
    p.add_argument("--simulate-oom", default=None, help="MODEL:VARIANT:BATCH raises an out-of-memory there (tests the OOM rows)")  # fmt: skip
    p.add_argument("--compile-backend", default=None, help="default inductor (CPU smoke: eager)")
    p.add_argument("--install-wheels", type=Path, default=None, help="only install these carried wheels into --site, then exit")  # fmt: skip
    p.add_argument("--print-carried", action="store_true", help="print the carried name==version lines (gpu_wheels.sh)")  # fmt: skip
    p.add_argument("--site", type=Path, default=Path("/tmp/rcmg_gpu_site"), help="--target of the wheel install")  # fmt: skip
    return p.parse_args(argv)


def out_dir(args) -> Path:
    if args.out is not None:
        return args.out
    if os.environ.get("OUT"):
        return Path(os.environ["OUT"])
    return REPO / "results" / "bench" / "gpu"


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.print_carried:
        print("\n".join(carried_specs()))
        return 0
    out = out_dir(args)
    if args.install_wheels is not None:
        record = install_wheels(args.install_wheels, args.site)
        out.mkdir(parents=True, exist_ok=True)
        (args.site / INSTALL_RECORD).write_text(
            json.dumps(record, indent=2) + "\n", encoding="utf-8"
        )
        print(f"[install] {json.dumps(record)}", flush=True)
        return 0
    for name, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"),
                        ("HF_HUB_DISABLE_TELEMETRY", "1"), ("TOKENIZERS_PARALLELISM", "false")):  # fmt: skip
        os.environ.setdefault(name, value)
    sys.path[:0] = [str(REPO / "workflow_scripts"), str(HERE)]
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    import torch
    from rcmg.models.device import resolve_device

    device = "cpu" if args.cpu_smoke else resolve_device(args.device)
    if args.cpu_smoke:  # tiny models gain nothing from threads; a shared CPU loses a lot
        torch.set_num_threads(1)
    if not args.cpu_smoke and not device.startswith("cuda"):
        raise SystemExit("no CUDA device: run on the GPU machine, or pass --cpu-smoke")
    budget_s = args.time_budget if args.time_budget is not None else (0 if args.cpu_smoke else 270)
    from bench_models import Budget  # the wall-clock budget of bench_models

    budget = Budget(budget_s)
    plan = Plan(args, device)
    env = environment(device)
    groups = Groups(out, env, "cpu-smoke" if plan.smoke else "gpu")
    with contextlib.ExitStack() as stack:
        if args.work_dir is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gpu_bench_")))
        else:
            work = args.work_dir
        env_fields = {"budget_s": budget_s, "argv": sys.argv[1:] if argv is None else list(argv)}
        install = args.site / INSTALL_RECORD
        if install.is_file():
            env_fields["install"] = json.loads(install.read_text(encoding="utf-8"))
        groups.add(
            "env", "start", None, None, **env_fields, cudnn=torch.backends.cudnn.version(),
            torch_threads=torch.get_num_threads(), cpu_count=os.cpu_count(),
            load_avg_1m=round(os.getloadavg()[0], 2),
        )  # fmt: skip
        failures = []

        def isolated(group: str, fn, *fn_args):
            """One group's crash is a row in its file (traceback on stderr); the rest run."""
            try:
                return fn(*fn_args)
            except Exception as exc:  # the one-shot GPU run goes on
                traceback.print_exc()
                message = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
                failures.append(f"{group}: {message}")
                groups.skip(group, "failed", None, None, f"{fn.__name__} raised {message}")
                free_memory(device)
                return None

        # bounded groups first, the elastic denoiser matrix next (it stops where the budget
        # minus the compile reserve ends), torch.compile last with what is left
        early = budget.minus(args.compile_reserve if not plan.smoke else 0.0)
        peak = isolated("flops", measure_peak, plan, groups) or 0.0
        paths = isolated("env", build_models, plan, work / "models", groups)
        if paths is not None:
            isolated("correctness", bench_correctness, plan, paths, work, groups, early)
            isolated("generate", bench_generate, plan, paths, work, groups, early)
            isolated("clap", bench_clap, plan, paths, work, groups, early)
            isolated("denoiser", bench_denoiser, plan, paths, groups, early, peak)
            isolated("compile", bench_compile, plan, paths, groups, budget)
        groups.add(
            "env", "end", None, None, elapsed_s=budget.elapsed(), failures=failures,
            imported=imported_distributions(),
            max_memory_allocated=torch.cuda.max_memory_allocated() if device.startswith("cuda") else None,
        )  # fmt: skip
    print(f"total {budget.elapsed():.1f}s; JSON in {out}", flush=True)
    if failures:
        print("FAILED groups: " + "; ".join(failures), file=sys.stderr, flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
